output "url" {
  description = "Where the routers send other pools' requests (with the x-llmfleet-pool header)."
  value       = "http://${aws_lb.this.dns_name}"
}

output "security_group_id" {
  description = "The load balancer's security group: the instances admit it on the router port."
  value       = aws_security_group.this.id
}

output "target_group_arns" {
  description = "Each pool's target group ARN, by pool name (its Auto Scaling group registers there)."
  value       = { for pool, group in aws_lb_target_group.pool : pool => group.arn }
}

output "target_group_arn_suffixes" {
  description = "Each pool's target group ARN suffix (CloudWatch's TargetGroup dimension), by pool name."
  value       = { for pool, group in aws_lb_target_group.pool : pool => group.arn_suffix }
}

output "arn_suffix" {
  description = "The load balancer's ARN suffix (its CloudWatch dimension)."
  value       = aws_lb.this.arn_suffix
}
