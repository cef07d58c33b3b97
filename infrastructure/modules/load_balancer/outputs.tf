output "alb_arn" {
  description = "ARN of the load balancer."
  value       = aws_lb.this.arn
}

output "alb_arn_suffix" {
  description = "ARN suffix of the load balancer (CloudWatch's LoadBalancer dimension)."
  value       = aws_lb.this.arn_suffix
}

output "alb_dns_name" {
  description = "DNS name of the load balancer."
  value       = aws_lb.this.dns_name
}

output "listener_arn" {
  description = "The listener API Gateway's VPC link integrates with (HTTPS when a certificate is set, else HTTP)."
  value       = local.https ? aws_lb_listener.https[0].arn : aws_lb_listener.http.arn
}

output "security_group_id" {
  description = "Security group of the load balancer."
  value       = aws_security_group.alb.id
}

output "target_group_arn" {
  description = "Target group of the routers."
  value       = aws_lb_target_group.router.arn
}

output "target_group_arn_suffix" {
  description = "ARN suffix of the target group (CloudWatch's TargetGroup dimension)."
  value       = aws_lb_target_group.router.arn_suffix
}

output "web_acl_arn" {
  description = "ARN of the load balancer's WAF web ACL (the API Gateway stage has its own)."
  value       = module.waf.web_acl_arn
}

output "url" {
  description = "Public URL of the load balancer, or null when it is internal."
  value       = var.internet_facing ? "https://${aws_lb.this.dns_name}/v1" : null
}

output "idle_timeout_s" {
  description = "Seconds the load balancer keeps an idle connection open; the routers' keep-alive must exceed it."
  value       = aws_lb.this.idle_timeout
}

output "deregistration_delay_s" {
  description = "Seconds a leaving target keeps its requests in flight (the agent's drain bound must match)."
  value       = tonumber(aws_lb_target_group.router.deregistration_delay)
}

output "access_logs_bucket" {
  description = "The access-log bucket; load balancers may write under alb/ (the pools' one under alb/pools)."
  value       = module.logs_bucket.name
}
