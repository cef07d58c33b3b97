output "web_acl_arn" {
  description = "ARN of the web ACL (associate it with exactly one entry)."
  value       = aws_wafv2_web_acl.this.arn
}

output "rate_limit_exempt_cidrs" {
  description = "Source ranges the per-IP rate limit leaves to another web ACL."
  value       = var.rate_limit_exempt_cidrs
}

output "log_group_name" {
  description = "Log group of the web ACL's request records."
  value       = aws_cloudwatch_log_group.this.name
}
