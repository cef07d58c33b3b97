output "log_group_names" {
  description = "Log group names by service: vllm, router, agent."
  value       = { for k, g in aws_cloudwatch_log_group.service : k => g.name }
}

output "log_group_arns" {
  description = "Log group ARNs (without the :* suffix)."
  value       = [for g in aws_cloudwatch_log_group.service : g.arn]
}

output "alarm_topic_arn" {
  description = "SNS topic the alarms notify."
  value       = aws_sns_topic.alarms.arn
}

output "dashboard_name" {
  description = "Name of the CloudWatch dashboard."
  value       = aws_cloudwatch_dashboard.this.dashboard_name
}

output "alarm_names" {
  description = "Alarm names by purpose."
  value = {
    latency_p99      = aws_cloudwatch_metric_alarm.latency_p99.alarm_name
    error_rate       = aws_cloudwatch_metric_alarm.error_rate.alarm_name
    alb_5xx          = aws_cloudwatch_metric_alarm.alb_5xx.alarm_name
    no_healthy_hosts = aws_cloudwatch_metric_alarm.no_healthy_hosts.alarm_name
    gpu_pinned       = aws_cloudwatch_metric_alarm.gpu_pinned.alarm_name
  }
}
