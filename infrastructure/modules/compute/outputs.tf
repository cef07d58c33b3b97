output "autoscaling_group_name" {
  description = "Name of the GPU Auto Scaling group (the agent's AutoScalingGroupName dimension)."
  value       = aws_autoscaling_group.this.name
}

output "autoscaling_group_arn" {
  description = "The GPU Auto Scaling group's ARN."
  value       = aws_autoscaling_group.this.arn
}

output "instance_security_group_id" {
  description = "Security group of the GPU instances."
  value       = aws_security_group.instance.id
}

output "instance_role_arn" {
  description = "ARN of the instance role."
  value       = aws_iam_role.instance.arn
}

output "launch_template_id" {
  description = "ID of the launch template."
  value       = aws_launch_template.this.id
}

output "user_data" {
  description = "The rendered cloud-init user data (no secrets: they are fetched from SSM at boot)."
  value       = local.user_data
}

output "scaling_alarm_arns" {
  description = "The chosen scaling policy's alarms by name (gpu: gpu-high, gpu-low; queue-guard: queue-high, ttft-guardrail, queue-quiet; inflight-guard: ttft-guardrail, queue-quiet, beside its target-tracking policy, whose alarms AWS makes), each invoking one scaling policy."
  value = merge(
    { for key, alarm in aws_cloudwatch_metric_alarm.gpu : "gpu-${key}" => alarm.arn },
    { for key, alarm in aws_cloudwatch_metric_alarm.queue_guard : key => alarm.arn },
    { for alarm in aws_cloudwatch_metric_alarm.queue_quiet : "queue-quiet" => alarm.arn },
  )
}

output "artifacts_bucket" {
  description = "Bucket holding the llmfleet wheel."
  value       = module.artifacts_bucket.name
}

output "router_keepalive_s" {
  description = "Seconds the routers keep an idle client connection open (above the load balancer's idle timeout)."
  value       = var.router_keepalive_s
}

output "drain_hook_name" {
  description = "The termination lifecycle hook whose action each instance's agent completes once its router has drained."
  value       = aws_autoscaling_lifecycle_hook.drain.name
}

output "launch_hook_name" {
  description = "The launch lifecycle hook each instance's agent completes once its router first says ready (only with a warm pool; null without)."
  value       = one(aws_autoscaling_lifecycle_hook.launch[*].name)
}

output "drain_timeout_s" {
  description = "Longest a leaving instance's agent waits for its router's requests in flight."
  value       = var.drain_timeout_s
}

output "stage_model_args" {
  description = "The arguments of `llmfleet stage-model` that copy this model into the artifacts bucket (make stage-model ENV=... passes them); empty when the model comes from the hub."
  value = var.model.source != "s3" ? "" : join(" ", compact([
    "--bucket", module.artifacts_bucket.name, "--model", var.model.id, "--revision", var.model.revision,
    "--region", data.aws_region.current.name,
    var.model.hf_token_parameter == null ? "" : "--hf-token-parameter ${var.model.hf_token_parameter}",
  ]))
}

output "inflight_target" {
  description = "inflight-guard's target-tracking value (requests running plus waiting per instance), or null under another policy."
  value       = one(aws_autoscaling_policy.inflight[*].target_tracking_configuration[0].target_value)
}

output "pool" {
  description = "This pool's name and the pools its routers know (with several pools; null with one)."
  value       = var.pool == null ? null : { name = var.pool.name, peers = sort(keys(var.pool.peers)) }
}
