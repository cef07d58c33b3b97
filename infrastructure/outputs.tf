output "api_url" {
  description = "OpenAI-compatible base URL through API Gateway (WAF, API key, usage plan; streaming)."
  value       = module.api_gateway.url
}

output "alb_url" {
  description = "OpenAI-compatible base URL straight to the load balancer (WAF; only when it is internet-facing)."
  value       = module.load_balancer.url
}

output "demo_url" {
  description = "URL of the demo site."
  value       = var.demo_site ? module.demo[0].url : null
}

output "dashboard" {
  description = "CloudWatch dashboard name."
  value       = module.monitoring.dashboard_name
}

output "autoscaling_group_name" {
  description = "The GPU Auto Scaling group."
  value       = module.compute.autoscaling_group_name
}

output "alarm_topic_arn" {
  description = "SNS topic for alarms."
  value       = module.monitoring.alarm_topic_arn
}

output "api_key_ids" {
  description = "API Gateway key ids by client."
  value       = module.api_gateway.api_key_ids
}

output "stage_model_args" {
  description = "What `make stage-model ENV=...` passes to `llmfleet stage-model`: the artifacts bucket, the model, its revision, the region and the hub token's parameter."
  value       = module.compute.stage_model_args
}
