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
  description = "Alarm names by purpose: the deployment's (alb-5xx, no-healthy-hosts) and each group's, keyed <pool>/<purpose> (latency-p99, error-rate, gpu-pinned, and the forged-metric alarms gpu-metric-out-of-range, gpu-metric-oversampled, gpu-busy-without-traffic, queue-metric-out-of-range, queue-metric-oversampled, waiting-without-traffic)."
  value = merge({ for k, a in aws_cloudwatch_metric_alarm.metric : k => a.alarm_name },
    { for k, a in aws_cloudwatch_metric_alarm.group : k => a.alarm_name },
    { for k, a in aws_cloudwatch_metric_alarm.gpu_pinned : "${k}/gpu-pinned" => a.alarm_name },
    { for k, a in aws_cloudwatch_metric_alarm.pool_down : "${k}/no-healthy-hosts" => a.alarm_name },
  { for k, a in aws_cloudwatch_metric_alarm.plausibility : k => a.alarm_name })
}
