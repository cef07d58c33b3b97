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
  autoscaling_group_name  = "llmfleet-test-gpu"
  max_instances           = 4
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
    condition     = aws_cloudwatch_metric_alarm.metric["latency-p99"].metric_name == "LatencyP99" && aws_cloudwatch_metric_alarm.metric["latency-p99"].threshold == 5
    error_message = "p99 latency above 5 s alarms."
  }
  assert {
    condition     = aws_cloudwatch_metric_alarm.metric["no-healthy-hosts"].treat_missing_data == "breaching"
    error_message = "No data from the target group counts as no healthy host."
  }
  assert {
    condition     = strcontains(one([for q in aws_cloudwatch_metric_alarm.gpu_pinned.metric_query : q.expression if q.id == "pinned"]), "inservice >= 4")
    error_message = "Pinned means GPUs busy with the group at its maximum."
  }
  assert {
    condition     = length(aws_sns_topic_subscription.email) == 0
    error_message = "No e-mail subscription unless an address is given."
  }
  assert {
    condition     = length(jsondecode(aws_cloudwatch_dashboard.this.dashboard_body).widgets) == 8
    error_message = "The dashboard has its eight panels."
  }
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
