# The monitoring module: log retention, the alarms on the agent's metric names,
# the pinned-at-capacity expression, e-mail only when asked.

mock_provider "aws" {
  mock_data "aws_region" {
    defaults = { name = "us-east-1" }
  }
  mock_resource "aws_sns_topic" {
    defaults = { arn = "arn:aws:sns:us-east-1:123456789012:alarms" }
  }
}

variables {
  name                    = "llmfleet-test"
  groups                  = { main = { autoscaling_group_name = "llmfleet-test-gpu", alarm_prefix = "llmfleet-test", max_instances = 4 } }
  alb_arn_suffix          = "app/t/1"
  target_group_arn_suffix = "targetgroup/t/1"
}

run "alarms_and_logs" {
  command = apply
  module {
    source = "./modules/monitoring"
  }

  assert {
    condition     = alltrue([for g in aws_cloudwatch_log_group.service : g.retention_in_days == 30]) && length(aws_cloudwatch_log_group.service) == 3
    error_message = "vLLM, router and agent logs kept 30 days."
  }
  assert {
    condition     = aws_cloudwatch_metric_alarm.group["main/latency-p99"].metric_name == "LatencyP99" && aws_cloudwatch_metric_alarm.group["main/latency-p99"].threshold == 5 && aws_cloudwatch_metric_alarm.group["main/latency-p99"].alarm_name == "llmfleet-test-latency-p99"
    error_message = "p99 latency above 5 s alarms."
  }
  assert {
    condition     = aws_cloudwatch_metric_alarm.metric["no-healthy-hosts"].treat_missing_data == "breaching"
    error_message = "No data from the target group counts as no healthy host."
  }
  assert {
    condition     = strcontains(one([for q in aws_cloudwatch_metric_alarm.gpu_pinned["main"].metric_query : q.expression if q.id == "pinned"]), "inservice >= 4")
    error_message = "Pinned means GPUs busy with the group at its maximum."
  }
  assert {
    condition     = length(aws_sns_topic_subscription.email) == 0
    error_message = "No e-mail subscription unless an address is given."
  }
  assert {
    condition     = length(jsondecode(aws_cloudwatch_dashboard.this.dashboard_body).widgets) == 9
    error_message = "The dashboard has its nine panels."
  }
  assert {
    condition = one([for w in jsondecode(aws_cloudwatch_dashboard.this.dashboard_body).widgets : w.properties.metrics
      if startswith(w.properties.title, "Time to serving")]) == [
      ["LLMFleet", "TimeToServingSeconds", "AutoScalingGroupName", "llmfleet-test-gpu", { label = "slowest start" }],
      ["LLMFleet", "TimeToServingSeconds", "AutoScalingGroupName", "llmfleet-test-gpu", { stat = "Minimum", label = "fastest start" }],
    ]
    error_message = "The dashboard shows each start's time to serving over the group, slowest and fastest."
  }
}

# PutMetricData is scoped by namespace only (IAM has no condition on dimensions or
# values): a compromised instance could publish 100% GPU and scale the fleet to its
# maximum with nobody told.
run "a_forged_gpu_metric_raises_an_alarm" {
  command = apply
  module {
    source = "./modules/monitoring"
  }
  variables {
    groups = { main = { autoscaling_group_name = "llmfleet-test-gpu", alarm_prefix = "llmfleet-test", max_instances = 4, scale_out_pct = 75 } }
  }

  assert {
    condition = alltrue([for a in aws_cloudwatch_metric_alarm.plausibility :
    a.alarm_actions == toset(["arn:aws:sns:us-east-1:123456789012:alarms"]) && a.treat_missing_data == "notBreaching"])
    error_message = "Every forged-metric alarm notifies the alarm topic."
  }
  # What a single-pool deployment had before pools: the same names and query labels, so an
  # upgrade changes none of its alarms.
  assert {
    condition = (aws_cloudwatch_metric_alarm.plausibility["main/gpu-metric-out-of-range"].alarm_name == "llmfleet-test-gpu-metric-out-of-range" &&
    one([for q in aws_cloudwatch_metric_alarm.plausibility["main/gpu-metric-out-of-range"].metric_query : q.label if q.id == "implausible"]) == "gpu-metric-out-of-range")
    error_message = "A single pool's forged-metric alarms keep their names and labels."
  }
  assert {
    condition     = one([for q in aws_cloudwatch_metric_alarm.plausibility["main/gpu-metric-out-of-range"].metric_query : q.expression if q.id == "implausible"]) == "IF(gpu_max > 100 OR gpu_min < 0, 1, 0)"
    error_message = "A GPU utilisation outside 0-100% alarms."
  }
  assert {
    condition     = one([for q in aws_cloudwatch_metric_alarm.plausibility["main/gpu-metric-oversampled"].metric_query : q.expression if q.id == "implausible"]) == "IF(gpu_samples > 12 * (inservice + 1), 1, 0)"
    error_message = "More samples a minute than twice the group's agents send (6 a minute each) alarms."
  }
  assert {
    condition     = one([for q in aws_cloudwatch_metric_alarm.plausibility["main/gpu-busy-without-traffic"].metric_query : q.expression if q.id == "implausible"]) == "IF(gpu_avg > 75 AND FILL(requests, 0) < 1, 1, 0)"
    error_message = "GPU above the scale-out threshold while nothing is forwarded alarms."
  }
  assert {
    condition = [for q in aws_cloudwatch_metric_alarm.plausibility["main/gpu-busy-without-traffic"].metric_query : [
      q.metric[0].namespace, q.metric[0].metric_name, q.metric[0].stat, q.metric[0].dimensions] if q.id == "requests"] == [[
    "AWS/ApplicationELB", "RequestCount", "Sum", tomap({ LoadBalancer = "app/t/1", TargetGroup = "targetgroup/t/1" })]]
    error_message = "The traffic side is the load balancer's own RequestCount, which no instance can publish."
  }
  assert {
    condition     = aws_cloudwatch_metric_alarm.plausibility["main/gpu-busy-without-traffic"].evaluation_periods == 15
    error_message = "Busy without traffic for 15 minutes, longer than any generation through API Gateway."
  }
  assert {
    condition = (one([for q in aws_cloudwatch_metric_alarm.plausibility["main/waiting-without-traffic"].metric_query : q.expression if q.id == "implausible"]) == "IF(waiting_max > 0 AND FILL(requests, 0) < 1, 1, 0)" &&
      aws_cloudwatch_metric_alarm.plausibility["main/waiting-without-traffic"].evaluation_periods == 15 &&
      [for q in aws_cloudwatch_metric_alarm.plausibility["main/waiting-without-traffic"].metric_query : [
    q.metric[0].metric_name, q.metric[0].stat] if q.id == "waiting_max"] == [["RequestsWaiting", "Maximum"]])
    error_message = "Requests waiting in an engine for 15 minutes while the load balancer forwards nothing alarms (queue-guard scales on that metric)."
  }
  assert {
    condition = (one([for q in aws_cloudwatch_metric_alarm.plausibility["main/queue-metric-out-of-range"].metric_query : q.expression if q.id == "implausible"]) == "IF(waiting_min < 0 OR ttft_min < 0, 1, 0)" &&
    one([for q in aws_cloudwatch_metric_alarm.plausibility["main/queue-metric-oversampled"].metric_query : q.expression if q.id == "implausible"]) == "IF(waiting_samples > 12 * (inservice + 1), 1, 0)")
    error_message = "A negative queue or TTFT, or more queue samples than twice the agents send, alarms."
  }
  assert {
    condition = alltrue(flatten([for a in aws_cloudwatch_metric_alarm.plausibility : [for q in a.metric_query : [for m in q.metric :
    m.dimensions == tomap({ AutoScalingGroupName = "llmfleet-test-gpu" }) if m.metric_name == "GPUUtilization"]]]))
    error_message = "The alarms read the group-level GPUUtilization that scaling reads."
  }
}

run "rejects_a_scale_out_threshold_over_100" {
  command = plan
  module {
    source = "./modules/monitoring"
  }
  variables {
    groups = { main = { autoscaling_group_name = "llmfleet-test-gpu", alarm_prefix = "llmfleet-test", max_instances = 4, scale_out_pct = 101 } }
  }
  expect_failures = [var.groups]
}

run "rejects_bad_email" {
  command = plan
  module {
    source = "./modules/monitoring"
  }
  variables {
    alarm_email = "not-an-address"
  }
  expect_failures = [var.alarm_email]
}

run "rejects_unsupported_retention" {
  command = plan
  module {
    source = "./modules/monitoring"
  }
  variables {
    log_retention_days = 31
  }
  expect_failures = [var.log_retention_days]
}

# Several pools: each group has its own alarms (named after its pool) and its own row of
# the dashboard's panels; the load balancer's alarms stay the deployment's.
run "each_pool_has_its_alarms_and_dashboard_row" {
  command = apply
  module {
    source = "./modules/monitoring"
  }
  variables {
    groups = {
      small = { autoscaling_group_name = "llmfleet-test-small-gpu", alarm_prefix = "llmfleet-test-small", max_instances = 6,
      alarm_when_down = true, target_group_arn_suffix = "targetgroup/small/1" }
      large = { autoscaling_group_name = "llmfleet-test-large-gpu", alarm_prefix = "llmfleet-test-large", max_instances = 2, scale_out_pct = 80 }
    }
    pools_alb_arn_suffix = "app/pools/1"
  }

  # The public entry's no-healthy-hosts alarm sees every pool's instances: a pool that is
  # down needs its own, on its target group between pools (not for a pool kept at zero).
  assert {
    condition = (keys(aws_cloudwatch_metric_alarm.pool_down) == ["small"] &&
      aws_cloudwatch_metric_alarm.pool_down["small"].dimensions == tomap({ LoadBalancer = "app/pools/1", TargetGroup = "targetgroup/small/1" }) &&
    aws_cloudwatch_metric_alarm.pool_down["small"].treat_missing_data == "breaching" && aws_cloudwatch_metric_alarm.pool_down["small"].alarm_name == "llmfleet-test-small-no-healthy-hosts")
    error_message = "A pool with no healthy router alarms on its own target group."
  }

  assert {
    condition = (aws_cloudwatch_metric_alarm.group["small/latency-p99"].alarm_name == "llmfleet-test-small-latency-p99" &&
      aws_cloudwatch_metric_alarm.group["large/latency-p99"].dimensions == tomap({ AutoScalingGroupName = "llmfleet-test-large-gpu" }) &&
    startswith(aws_cloudwatch_metric_alarm.group["large/error-rate"].alarm_description, "Pool large: "))
    error_message = "Each pool's latency and error alarms read its own group and say which pool."
  }
  assert {
    condition = (strcontains(one([for q in aws_cloudwatch_metric_alarm.gpu_pinned["large"].metric_query : q.expression if q.id == "pinned"]), "inservice >= 2") &&
    strcontains(one([for q in aws_cloudwatch_metric_alarm.plausibility["large/gpu-busy-without-traffic"].metric_query : q.expression if q.id == "implausible"]), "gpu_avg > 80 "))
    error_message = "Each pool's capacity and scale-out alarms use its own maximum and threshold."
  }
  assert {
    condition     = length(aws_cloudwatch_metric_alarm.plausibility) == 12 && length(aws_cloudwatch_metric_alarm.metric) == 2
    error_message = "The forged-metric checks for each pool; the load balancer's alarms once."
  }
  assert {
    condition = (length(jsondecode(aws_cloudwatch_dashboard.this.dashboard_body).widgets) == 18 &&
    length([for w in jsondecode(aws_cloudwatch_dashboard.this.dashboard_body).widgets : w if startswith(w.properties.title, "small: ")]) == 9)
    error_message = "Each pool has its row of nine panels, titled with its name."
  }
}
