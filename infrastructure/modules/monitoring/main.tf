# Monitoring: log groups for the three services, an alarm topic, the alarms
# operators act on, and one dashboard. Metric names and dimensions are the
# agent's (agent/datapoints.py) and the load balancer's own. The load balancer's
# alarms are the deployment's; every other alarm and the dashboard's rows are per GPU
# group (one per pool: var.groups).

locals {
  ns  = var.metrics_namespace
  alb = { LoadBalancer = var.alb_arn_suffix, TargetGroup = var.target_group_arn_suffix }
  # Several pools: each one's alarms and dashboard rows carry its name.
  several = length(var.groups) > 1
}

# --- Logs ----------------------------------------------------------------------

resource "aws_cloudwatch_log_group" "service" {
  #checkov:skip=CKV_AWS_158:CloudWatch Logs encrypts every log group at rest with a service key. The services log no prompts, completions or API keys (the router logs key names only), so a customer-managed key ($1/month plus a key policy to keep) is left to operators who need one.
  #checkov:skip=CKV_AWS_338:Retention is log_retention_days, 30 days by default as the platform's requirement states; a year is a per-environment cost choice.
  for_each          = toset(["vllm", "router", "agent"])
  name              = "/llmfleet/${var.name}/${each.key}"
  retention_in_days = var.log_retention_days
}

# --- Alarm topic ---------------------------------------------------------------

resource "aws_sns_topic" "alarms" {
  name              = "${var.name}-alarms"
  kms_master_key_id = "alias/aws/sns"
}

resource "aws_sns_topic_subscription" "email" {
  count     = var.alarm_email == null ? 0 : 1
  topic_arn = aws_sns_topic.alarms.arn
  protocol  = "email"
  endpoint  = var.alarm_email
}

# --- Alarms --------------------------------------------------------------------

locals {
  # One alarm per entry: what it reads, when it fires, and what no data means. The group's
  # serving alarms, for each group.
  group_alarms = merge([for pool, g in var.groups : {
    "${pool}/latency-p99" = {
      pool        = pool, name = "latency-p99", metric = "LatencyP99", stat = "Maximum",
      threshold   = var.alarm_thresholds.latency_p99_s,
      description = "${local.several ? "Pool ${pool}: " : ""}p99 end-to-end latency above ${var.alarm_thresholds.latency_p99_s} s for 5 minutes."
    }
    "${pool}/error-rate" = {
      pool        = pool, name = "error-rate", metric = "ErrorRate", stat = "Average",
      threshold   = var.alarm_thresholds.error_rate_pct,
      description = "${local.several ? "Pool ${pool}: r" : "R"}outer 5xx share above ${var.alarm_thresholds.error_rate_pct}% for 5 minutes."
    }
  }]...)
  # The load balancer's, once for the deployment.
  alarms = {
    alb-5xx = {
      namespace   = "AWS/ApplicationELB", metric = "HTTPCode_ELB_5XX_Count", dimensions = { LoadBalancer = var.alb_arn_suffix },
      stat        = "Sum", minutes = 3, threshold = 10, operator = "GreaterThanThreshold", missing = "notBreaching",
      description = "The load balancer itself answered 5xx (no target, timeouts) more than 10 times a minute for 3 minutes."
    }
    no-healthy-hosts = {
      namespace   = "AWS/ApplicationELB", metric = "HealthyHostCount", dimensions = local.alb, stat = "Minimum",
      minutes     = 3, threshold = 1, operator = "LessThanThreshold",
      missing     = "breaching", # no data from the target group is no healthy host
      description = "No router passes its /ready check: the service is down."
    }
  }
}

resource "aws_cloudwatch_metric_alarm" "group" {
  for_each            = local.group_alarms
  alarm_name          = "${var.groups[each.value.pool].alarm_prefix}-${each.value.name}"
  alarm_description   = each.value.description
  namespace           = local.ns
  metric_name         = each.value.metric
  dimensions          = { AutoScalingGroupName = var.groups[each.value.pool].autoscaling_group_name }
  statistic           = each.value.stat
  period              = 60
  evaluation_periods  = 5
  threshold           = each.value.threshold
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
}

resource "aws_cloudwatch_metric_alarm" "metric" {
  for_each            = local.alarms
  alarm_name          = "${var.name}-${each.key}"
  alarm_description   = each.value.description
  namespace           = each.value.namespace
  metric_name         = each.value.metric
  dimensions          = each.value.dimensions
  statistic           = each.value.stat
  period              = 60
  evaluation_periods  = each.value.minutes
  threshold           = each.value.threshold
  comparison_operator = each.value.operator
  treat_missing_data  = each.value.missing
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
}

# A pool with no healthy instance: with several pools the public entry's target group still
# has the others', so its no-healthy-hosts alarm stays quiet; each pool's own target group
# between pools says it. Only for a pool whose minimum is above zero (the root module).
resource "aws_cloudwatch_metric_alarm" "pool_down" {
  for_each            = { for pool, g in var.groups : pool => g if g.alarm_when_down }
  alarm_name          = "${each.value.alarm_prefix}-no-healthy-hosts"
  alarm_description   = "Pool ${each.key}: no router passes its /ready check; auto sends its requests to the other pools' models, and requests naming its model get 503."
  namespace           = "AWS/ApplicationELB"
  metric_name         = "HealthyHostCount"
  dimensions          = { LoadBalancer = var.pools_alb_arn_suffix, TargetGroup = each.value.target_group_arn_suffix }
  statistic           = "Minimum"
  period              = 60
  evaluation_periods  = 3
  threshold           = 1
  comparison_operator = "LessThanThreshold"
  treat_missing_data  = "breaching" # no data from the target group is no healthy host
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
}

# GPUs busy and no room left to scale: demand exceeds what max_size can serve.
resource "aws_cloudwatch_metric_alarm" "gpu_pinned" {
  for_each            = var.groups
  alarm_name          = "${each.value.alarm_prefix}-gpu-pinned-at-capacity"
  alarm_description   = "${local.several ? "Pool ${each.key}: " : ""}GPU utilisation above ${var.alarm_thresholds.gpu_pinned_pct}% with the group at its maximum (${each.value.max_instances}) for 15 minutes: raise max_size or shed load."
  evaluation_periods  = 15
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]

  metric_query {
    id          = "pinned"
    expression  = "IF(gpu > ${var.alarm_thresholds.gpu_pinned_pct} AND inservice >= ${each.value.max_instances}, 1, 0)"
    label       = "GPU pinned at maximum capacity"
    return_data = true
  }
  metric_query {
    id = "gpu"
    metric {
      namespace   = local.ns
      metric_name = "GPUUtilization"
      dimensions  = { AutoScalingGroupName = each.value.autoscaling_group_name }
      stat        = "Average"
      period      = 60
    }
  }
  metric_query {
    id = "inservice"
    metric {
      namespace   = "AWS/AutoScaling"
      metric_name = "GroupInServiceInstances"
      dimensions  = { AutoScalingGroupName = each.value.autoscaling_group_name }
      stat        = "Maximum"
      period      = 60
    }
  }
}

# --- Forged scaling metrics ----------------------------------------------------
# Scaling trusts the agents' GPUUtilization (policy gpu) or RequestsWaiting and TTFTP95
# (queue-guard), and IAM can scope PutMetricData only by
# namespace (cloudwatch:namespace is its one condition key: there is none on metric
# names, dimensions or values). A compromised instance can therefore publish 100%
# GPU under the group and scale the fleet to max_size, or swamp honest agents with
# datapoints carrying a large SampleCount. CloudWatch cannot ask which instance
# published a datapoint (metric math sees values, not publishers, and alarms cannot
# run SEARCH), so these alarms test what it can evaluate: values outside 0-100, more
# samples a minute than the group's agents send, and busy GPUs or waiting requests while
# the load balancer, whose metrics AWS publishes and no instance can forge, forwards
# nothing. A plausible forged TTFTP95 or queue under real traffic is not caught: it can
# add instances up to max_size, or hold queue-guard's scale-in off (docs/security.md).

locals {
  # An agent on an instance publishes GPUUtilization under the group once per round,
  # every 10 s (the agent's default interval, which the instances keep).
  agent_samples_per_minute = 6

  # Each group's inputs (under its own dimension; the load balancer's requests are the
  # entry's, which every pool's instances share).
  plausibility_inputs = { for pool, g in var.groups : pool => {
    gpu_avg         = { namespace = local.ns, metric = "GPUUtilization", dimensions = { AutoScalingGroupName = g.autoscaling_group_name }, stat = "Average" }
    gpu_max         = { namespace = local.ns, metric = "GPUUtilization", dimensions = { AutoScalingGroupName = g.autoscaling_group_name }, stat = "Maximum" }
    gpu_min         = { namespace = local.ns, metric = "GPUUtilization", dimensions = { AutoScalingGroupName = g.autoscaling_group_name }, stat = "Minimum" }
    gpu_samples     = { namespace = local.ns, metric = "GPUUtilization", dimensions = { AutoScalingGroupName = g.autoscaling_group_name }, stat = "SampleCount" }
    waiting_max     = { namespace = local.ns, metric = "RequestsWaiting", dimensions = { AutoScalingGroupName = g.autoscaling_group_name }, stat = "Maximum" }
    waiting_min     = { namespace = local.ns, metric = "RequestsWaiting", dimensions = { AutoScalingGroupName = g.autoscaling_group_name }, stat = "Minimum" }
    waiting_samples = { namespace = local.ns, metric = "RequestsWaiting", dimensions = { AutoScalingGroupName = g.autoscaling_group_name }, stat = "SampleCount" }
    ttft_min        = { namespace = local.ns, metric = "TTFTP95", dimensions = { AutoScalingGroupName = g.autoscaling_group_name }, stat = "Minimum" }
    inservice       = { namespace = "AWS/AutoScaling", metric = "GroupInServiceInstances", dimensions = { AutoScalingGroupName = g.autoscaling_group_name }, stat = "Maximum" }
    requests        = { namespace = "AWS/ApplicationELB", metric = "RequestCount", dimensions = local.alb, stat = "Sum" }
  } }

  plausibility_checks = {
    gpu-metric-out-of-range = {
      expression  = "IF(gpu_max > 100 OR gpu_min < 0, 1, 0)", inputs = ["gpu_max", "gpu_min"], minutes = 1,
      description = "A GPUUtilization datapoint outside 0-100% was published for the group: only a forged or broken publisher sends that."
    }
    # Twice the honest rate, for one more instance than is in service (one draining).
    gpu-metric-oversampled = {
      expression  = "IF(gpu_samples > ${2 * local.agent_samples_per_minute} * (inservice + 1), 1, 0)",
      inputs      = ["gpu_samples", "inservice"], minutes = 2,
      description = "More GPUUtilization samples a minute than the group's agents publish: something is weighting the group average."
    }
    # 15 minutes: no generation through API Gateway lasts longer (its streaming limit),
    # so busy GPUs that long with no request forwarded are not serving anyone.
    gpu-busy-without-traffic = {
      expression  = "IF(gpu_avg > %s AND FILL(requests, 0) < 1, 1, 0)",
      inputs      = ["gpu_avg", "requests"], minutes = 15,
      description = "Group GPU utilisation above the scale-out threshold (%s%%) for 15 minutes while the load balancer forwarded no request: the metric is not the GPUs' (check who publishes it; suspend the group's AlarmNotification process to stop scaling on it)."
    }
    # queue-guard's inputs: a negative queue or TTFT holds its scale-in condition or
    # drags the group average down; extra queue samples weight the average.
    queue-metric-out-of-range = {
      expression  = "IF(waiting_min < 0 OR ttft_min < 0, 1, 0)", inputs = ["waiting_min", "ttft_min"], minutes = 1,
      description = "A negative RequestsWaiting or TTFTP95 was published for the group: only a forged or broken publisher sends that."
    }
    queue-metric-oversampled = {
      expression  = "IF(waiting_samples > ${2 * local.agent_samples_per_minute} * (inservice + 1), 1, 0)",
      inputs      = ["waiting_samples", "inservice"], minutes = 2,
      description = "More RequestsWaiting samples a minute than the group's agents publish: something is weighting the group average."
    }
    # queue-guard scales out on RequestsWaiting: requests cannot wait in an engine for 15
    # minutes while none reaches it (API Gateway's limit again).
    waiting-without-traffic = {
      expression  = "IF(waiting_max > 0 AND FILL(requests, 0) < 1, 1, 0)",
      inputs      = ["waiting_max", "requests"], minutes = 15,
      description = "Requests reported waiting in an engine for 15 minutes while the load balancer forwarded no request: the metric is not the engines' (check who publishes it; suspend the group's AlarmNotification process to stop scaling on it)."
    }
  }
}

locals {
  # Each check for each group; the scale-out threshold filled in where a check reads it.
  plausibility_alarms = merge([for pool, g in var.groups : {
    for name, check in local.plausibility_checks : "${pool}/${name}" => merge(check, {
      pool        = pool, name = name
      expression  = replace(check.expression, "%s", format("%g", g.scale_out_pct))
      description = "${local.several ? "Pool ${pool}: " : ""}${replace(replace(check.description, "%s", format("%g", g.scale_out_pct)), "%%", "%")}"
    })
  }]...)
}

resource "aws_cloudwatch_metric_alarm" "plausibility" {
  for_each            = local.plausibility_alarms
  alarm_name          = "${var.groups[each.value.pool].alarm_prefix}-${each.value.name}"
  alarm_description   = each.value.description
  evaluation_periods  = each.value.minutes
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]

  metric_query {
    id          = "implausible"
    expression  = each.value.expression
    label       = each.value.name
    return_data = true
  }
  dynamic "metric_query" {
    for_each = { for id in each.value.inputs : id => local.plausibility_inputs[each.value.pool][id] }
    content {
      id = metric_query.key
      metric {
        namespace   = metric_query.value.namespace
        metric_name = metric_query.value.metric
        dimensions  = metric_query.value.dimensions
        stat        = metric_query.value.stat
        period      = 60
      }
    }
  }
}

# --- Dashboard -----------------------------------------------------------------

data "aws_region" "current" {}

locals {
  region = data.aws_region.current.name
  # Each group's row of panels; with several pools each title names its pool.
  widgets = flatten([for pool in sort(keys(var.groups)) : [
    for w in [
      { title = "End-to-end latency (s)", stat = "Maximum", metrics = [
      for m in ["LatencyP50", "LatencyP95", "LatencyP99"] : [local.ns, m, "AutoScalingGroupName", var.groups[pool].autoscaling_group_name]] },
      { title = "Time to first token (s)", stat = "Maximum", metrics = [
      for m in ["TTFTP50", "TTFTP95", "TTFTP99"] : [local.ns, m, "AutoScalingGroupName", var.groups[pool].autoscaling_group_name]] },
      { title = "Requests/s (fleet)", stat = "Sum", metrics = [
      [local.ns, "RequestsPerSecond", "AutoScalingGroupName", var.groups[pool].autoscaling_group_name]] },
      { title = "Tokens/s (fleet)", stat = "Sum", metrics = [
      for m in ["GenerationTokensPerSecond", "PromptTokensPerSecond"] : [local.ns, m, "AutoScalingGroupName", var.groups[pool].autoscaling_group_name]] },
      { title = "GPU utilisation (%): fleet average and per instance", stat = "Average", metrics = [
        [local.ns, "GPUUtilization", "AutoScalingGroupName", var.groups[pool].autoscaling_group_name],
        [{ expression = "SEARCH('{${local.ns},AutoScalingGroupName,InstanceId,InstanceType} MetricName=\"GPUUtilization\" AutoScalingGroupName=\"${var.groups[pool].autoscaling_group_name}\"', 'Average', 60)", label = "", id = "perinstance" }],
      ] },
      { title = "Instances in service", stat = "Maximum", metrics = [
      ["AWS/AutoScaling", "GroupInServiceInstances", "AutoScalingGroupName", var.groups[pool].autoscaling_group_name]] },
      { title = "Estimated cost (USD per hour, fleet)", stat = "Sum", metrics = [
      [local.ns, "CostPerHourUSD", "AutoScalingGroupName", var.groups[pool].autoscaling_group_name]] },
      { title = "Cost per million output tokens (USD)", stat = "Average", metrics = [
      [local.ns, "CostPerMillionOutputTokensUSD", "AutoScalingGroupName", var.groups[pool].autoscaling_group_name]] },
      # One datapoint per instance start (the agent's, boot to the router's first ready):
      # what a scale-out waits for, and what the group's grace and warm-up must cover.
      { title = "Time to serving (s): boot to ready, each start", stat = "Maximum", metrics = [
        [local.ns, "TimeToServingSeconds", "AutoScalingGroupName", var.groups[pool].autoscaling_group_name, { label = "slowest start" }],
        [local.ns, "TimeToServingSeconds", "AutoScalingGroupName", var.groups[pool].autoscaling_group_name, { stat = "Minimum", label = "fastest start" }],
      ] },
    ] : merge(w, { title = local.several ? "${pool}: ${w.title}" : w.title })
  ]])
}

resource "aws_cloudwatch_dashboard" "this" {
  dashboard_name = var.name
  dashboard_body = jsonencode({
    widgets = [for i, w in local.widgets : {
      type   = "metric"
      x      = (i % 2) * 12
      y      = floor(i / 2) * 6
      width  = 12
      height = 6
      properties = {
        title   = w.title
        region  = local.region
        stat    = w.stat
        period  = 60
        view    = "timeSeries"
        metrics = w.metrics
      }
    }]
  })
}

# One group's alarms became the "main" pool's (monitoring per pool): the same alarms, at
# new addresses.
moved {
  from = aws_cloudwatch_metric_alarm.metric["latency-p99"]
  to   = aws_cloudwatch_metric_alarm.group["main/latency-p99"]
}

moved {
  from = aws_cloudwatch_metric_alarm.metric["error-rate"]
  to   = aws_cloudwatch_metric_alarm.group["main/error-rate"]
}

moved {
  from = aws_cloudwatch_metric_alarm.gpu_pinned
  to   = aws_cloudwatch_metric_alarm.gpu_pinned["main"]
}

moved {
  from = aws_cloudwatch_metric_alarm.plausibility["gpu-metric-out-of-range"]
  to   = aws_cloudwatch_metric_alarm.plausibility["main/gpu-metric-out-of-range"]
}

moved {
  from = aws_cloudwatch_metric_alarm.plausibility["gpu-metric-oversampled"]
  to   = aws_cloudwatch_metric_alarm.plausibility["main/gpu-metric-oversampled"]
}

moved {
  from = aws_cloudwatch_metric_alarm.plausibility["gpu-busy-without-traffic"]
  to   = aws_cloudwatch_metric_alarm.plausibility["main/gpu-busy-without-traffic"]
}

moved {
  from = aws_cloudwatch_metric_alarm.plausibility["queue-metric-out-of-range"]
  to   = aws_cloudwatch_metric_alarm.plausibility["main/queue-metric-out-of-range"]
}

moved {
  from = aws_cloudwatch_metric_alarm.plausibility["queue-metric-oversampled"]
  to   = aws_cloudwatch_metric_alarm.plausibility["main/queue-metric-oversampled"]
}

moved {
  from = aws_cloudwatch_metric_alarm.plausibility["waiting-without-traffic"]
  to   = aws_cloudwatch_metric_alarm.plausibility["main/waiting-without-traffic"]
}
