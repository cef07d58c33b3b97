output "cloud_init" {
  description = "The rendered cloud-init document (no secrets: they are fetched from SSM at service start)."
  value       = local.cloud_init
}

output "served_name" {
  description = "The model name clients use (the router's and the agent's Model)."
  value       = local.served_name
}
