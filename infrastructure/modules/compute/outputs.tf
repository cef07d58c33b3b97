output "autoscaling_group_name" {
  description = "Name of the GPU Auto Scaling group (the agent's AutoScalingGroupName dimension)."
  value       = aws_autoscaling_group.this.name
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

output "scale_out_alarm_arn" {
  description = "Alarm that adds an instance when GPU utilisation is high."
  value       = aws_cloudwatch_metric_alarm.gpu["high"].arn
}

output "scale_in_alarm_arn" {
  description = "Alarm that removes an instance when GPU utilisation is low."
  value       = aws_cloudwatch_metric_alarm.gpu["low"].arn
}

output "artifacts_bucket" {
  description = "Bucket holding the llmfleet wheel."
  value       = module.artifacts_bucket.name
}

output "router_keepalive_s" {
  description = "Seconds the routers keep an idle client connection open (above the load balancer's idle timeout)."
  value       = var.router_keepalive_s
}
