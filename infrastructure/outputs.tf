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
  description = "The GPU Auto Scaling group (the first pool's, by name, when there are several)."
  value       = try(module.compute[local.first_pool].autoscaling_group_name, null)
  precondition {
    condition     = length(local.pools) > 0 && (var.pools == null || var.model == null)
    error_message = "Give either model (one pool, with instance_type, capacity, spot, scaling and warm_pool) or pools (several), not both and not neither."
  }
  precondition {
    condition = alltrue([for model in concat([for r in var.routing.length_rules : r.model], [for m in var.routing.scored_models : m.model]) :
    contains([for p in values(local.pools) : coalesce(p.model.served_name, p.model.id)], model)])
    error_message = "routing names a model no pool serves: use the pools' served names (model.served_name, else model.id)."
  }
}

output "autoscaling_group_names" {
  description = "Each pool's GPU Auto Scaling group, by pool name (\"main\" for the single pool)."
  value       = { for key, pool in module.compute : key => pool.autoscaling_group_name }
}

output "pools_url" {
  description = "The internal load balancer the routers send other pools' requests to (null with one pool)."
  value       = one(module.pools[*].url)
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
  value       = join("\n", compact([for key in sort(keys(module.compute)) : module.compute[key].stage_model_args]))
}

output "archive" {
  description = "Where the archive's records are (s3://bucket/archive/date=YYYY-MM-DD/model=NAME/), and what they keep; null when var.archive is off."
  value = var.archive == null ? null : {
    url     = "s3://${module.archive_bucket[0].name}/${local.archive_prefix}"
    content = var.archive.content
  }
}
