# The compute module with a mocked AWS provider: security settings, capacity,
# and the 70/30 GPU alarms wired to the right scaling policies.

mock_provider "aws" {
  mock_data "aws_region" {
    defaults = { name = "us-east-1" }
  }
  mock_data "aws_caller_identity" {
    defaults = { account_id = "123456789012" }
  }
  mock_data "aws_partition" {
    defaults = { partition = "aws" }
  }
  mock_data "aws_ssm_parameter" {
    defaults = { value = "ami-0123456789abcdef0" }
  }
  mock_data "aws_iam_policy_document" {
    defaults = { json = "{\"Version\":\"2012-10-17\",\"Statement\":[]}" }
  }
  # The provider validates ARNs it is given; mocks must look like them.
  mock_resource "aws_iam_instance_profile" {
    defaults = { arn = "arn:aws:iam::123456789012:instance-profile/llmfleet-test-instance" }
  }
  mock_resource "aws_iam_role" {
    defaults = { arn = "arn:aws:iam::123456789012:role/llmfleet-test-instance" }
  }
  mock_resource "aws_s3_bucket" {
    defaults = { arn = "arn:aws:s3:::llmfleet-test-artifacts", id = "llmfleet-test-artifacts", bucket = "llmfleet-test-artifacts" }
  }
  mock_resource "aws_cloudwatch_metric_alarm" {
    defaults = { arn = "arn:aws:cloudwatch:us-east-1:123456789012:alarm:a" }
  }
  mock_resource "aws_launch_template" {
    defaults = { id = "lt-0123456789abcdef0", latest_version = 1 }
  }
}

# Distinct policy ARNs, so that an alarm wired to the wrong policy fails.
override_resource {
  target = aws_autoscaling_policy.gpu["high"]
  values = { arn = "arn:aws:autoscaling:us-east-1:123456789012:scalingPolicy:1:autoScalingGroupName/llmfleet-test-gpu:policyName/high" }
}
override_resource {
  target = aws_autoscaling_policy.gpu["low"]
  values = { arn = "arn:aws:autoscaling:us-east-1:123456789012:scalingPolicy:2:autoScalingGroupName/llmfleet-test-gpu:policyName/low" }
}

override_resource {
  target = aws_autoscaling_policy.queue_guard["queue-high"]
  values = { arn = "arn:aws:autoscaling:us-east-1:123456789012:scalingPolicy:3:autoScalingGroupName/llmfleet-test-gpu:policyName/queue-high" }
}
override_resource {
  target = aws_autoscaling_policy.queue_guard["ttft-guardrail"]
  values = { arn = "arn:aws:autoscaling:us-east-1:123456789012:scalingPolicy:4:autoScalingGroupName/llmfleet-test-gpu:policyName/ttft-guardrail" }
}
override_resource {
  target = aws_autoscaling_policy.queue_guard["queue-quiet"]
  values = { arn = "arn:aws:autoscaling:us-east-1:123456789012:scalingPolicy:5:autoScalingGroupName/llmfleet-test-gpu:policyName/queue-quiet" }
}

variables {
  name                  = "llmfleet-test"
  vpc_id                = "vpc-0123"
  private_subnet_ids    = ["subnet-a", "subnet-b"]
  alb_security_group_id = "sg-alb"
  target_group_arns     = ["arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/r/1"]
  capacity              = { min = 1, max = 3, desired = 1 }
  model                 = { id = "Qwen/Qwen2.5-1.5B-Instruct", served_name = "qwen", hf_token_parameter = "/llmfleet/test/hf" }
  api_keys_parameter    = "/llmfleet/test/api-keys"
  package_path          = "tests/fixtures/llmfleet-0.0.0-py3-none-any.whl"
  log_group_arns        = ["arn:aws:logs:us-east-1:123456789012:log-group:/llmfleet/t/vllm"]
  log_group_names       = { vllm = "/llmfleet/t/vllm", router = "/llmfleet/t/router", agent = "/llmfleet/t/agent" }
}

run "secure_launch_template" {
  command = apply
  module {
    source = "./modules/compute"
  }

  assert {
    condition     = aws_launch_template.this.metadata_options[0].http_tokens == "required"
    error_message = "IMDSv2 must be required."
  }
  assert {
    condition     = aws_launch_template.this.metadata_options[0].http_put_response_hop_limit == 1
    error_message = "Instance metadata must not be reachable beyond the host."
  }
  assert {
    condition     = aws_launch_template.this.metadata_options[0].instance_metadata_tags == "enabled"
    error_message = "The agent reads its Auto Scaling group from instance tags."
  }
  assert {
    condition = alltrue([for b in aws_launch_template.this.block_device_mappings :
    b.ebs[0].encrypted == "true" && b.ebs[0].volume_type == "gp3"])
    error_message = "Root volumes must be encrypted gp3."
  }
  assert {
    condition     = one(aws_launch_template.this.block_device_mappings).ebs[0].throughput == 500
    error_message = "The root volume writes a fetched model at 500 MiB/s, not gp3's default 125."
  }
  assert {
    condition     = aws_launch_template.this.image_id == "ami-0123456789abcdef0"
    error_message = "The AMI must come from the SSM parameter."
  }
}

run "not_publicly_reachable" {
  command = apply
  module {
    source = "./modules/compute"
  }

  assert {
    condition     = aws_vpc_security_group_ingress_rule.router_from_alb.referenced_security_group_id == "sg-alb"
    error_message = "Only the load balancer may reach the router."
  }
  assert {
    condition     = aws_vpc_security_group_ingress_rule.router_from_alb.cidr_ipv4 == null
    error_message = "The router port must not be open to an address range."
  }
  assert {
    condition     = aws_autoscaling_group.this.vpc_zone_identifier == toset(["subnet-a", "subnet-b"])
    error_message = "Instances must run in the private subnets."
  }
  assert {
    condition     = !strcontains(output.user_data, "sk-") && !strcontains(output.user_data, "hf_")
    error_message = "User data must not carry secrets."
  }
}

# AmazonSSMManagedInstanceCore was attached for Session Manager; it also allows
# ssm:GetParameter(s) on "*", so the instances could read every parameter in the account.
run "instance_role_cannot_read_every_ssm_parameter" {
  command = apply
  module {
    source = "./modules/compute"
  }

  assert {
    condition     = length(aws_iam_role_policy_attachments_exclusive.instance.policy_arns) == 0 && aws_iam_role_policy_attachments_exclusive.instance.role_name == aws_iam_role.instance.name
    error_message = "The instance role holds no managed policy (and one attached by hand is removed)."
  }
  assert {
    condition = alltrue([for s in data.aws_iam_policy_document.instance.statement :
      s.effect == "Deny" || length([for a in coalesce(s.actions, []) : a if startswith(a, "ssm:GetParameter")]) == 0 ||
    s.resources == toset(["arn:aws:ssm:us-east-1:123456789012:parameter/llmfleet/test/api-keys", "arn:aws:ssm:us-east-1:123456789012:parameter/llmfleet/test/hf"])])
    error_message = "Parameters are readable only by name: the API keys and the Hugging Face token."
  }
  assert {
    condition = one([for s in data.aws_iam_policy_document.instance.statement : s if s.sid == "DenyOtherParameters"]).effect == "Deny" && (
      one([for s in data.aws_iam_policy_document.instance.statement : s if s.sid == "DenyOtherParameters"]).not_resources ==
      toset(["arn:aws:ssm:us-east-1:123456789012:parameter/llmfleet/test/api-keys", "arn:aws:ssm:us-east-1:123456789012:parameter/llmfleet/test/hf"])) && (
      one([for s in data.aws_iam_policy_document.instance.statement : s if s.sid == "DenyOtherParameters"]).actions ==
    toset(["ssm:GetParameter", "ssm:GetParameters", "ssm:GetParametersByPath", "ssm:GetParameterHistory"]))
    error_message = "An explicit deny keeps every other parameter unreadable, whatever is attached later."
  }
  assert {
    condition = toset(flatten([for s in data.aws_iam_policy_document.instance.statement : s.actions if startswith(coalesce(s.sid, ""), "SessionManager")])) == toset([
      "ssm:UpdateInstanceInformation", "ssmmessages:CreateControlChannel", "ssmmessages:CreateDataChannel",
      "ssmmessages:OpenControlChannel", "ssmmessages:OpenDataChannel", "ec2messages:AcknowledgeMessage",
      "ec2messages:DeleteMessage", "ec2messages:FailMessage", "ec2messages:GetEndpoint", "ec2messages:GetMessages",
    "ec2messages:SendReply"])
    error_message = "Session Manager gets its registration, channel and message calls, nothing more."
  }
}

# The instances ran `pip install vllm==X` (no hashes: whatever PyPI served that day) and
# installed the CloudWatch agent from a "latest" URL.
run "boot_installs_only_hash_pinned_packages" {
  command = apply
  module {
    source = "./modules/compute"
  }

  assert {
    condition     = strcontains(output.user_data, "--require-hashes --only-binary :all: -r requirements.txt -r llmfleet.txt") && !strcontains(output.user_data, "vllm==")
    error_message = "pip installs only the hash-locked requirements and the wheel, by hash."
  }
  assert {
    condition = (strcontains(output.user_data, "${filesha256("tests/fixtures/llmfleet-0.0.0-py3-none-any.whl")}  llmfleet-0.0.0-py3-none-any.whl") &&
    strcontains(output.user_data, "${filesha256("modules/compute/requirements/instance.txt")}  requirements.txt"))
    error_message = "The user data carries the SHA-256 of the wheel and of the lock file it downloads."
  }
  assert {
    condition = (aws_s3_object.requirements.key == "packages/${filemd5("modules/compute/requirements/instance.txt")}/requirements.txt" &&
    aws_s3_object.requirements.bucket == module.artifacts_bucket.name && module.artifacts_bucket.name == "llmfleet-test-artifacts")
    error_message = "The lock travels with the wheel in the artifacts bucket, keyed by its content."
  }
  assert {
    condition     = !strcontains(output.user_data, "/latest/") && strcontains(output.user_data, "install-cloudwatch-agent 1.300072.0b1766")
    error_message = "The CloudWatch agent comes from a versioned URL, never \"latest\"."
  }
}

run "router_keepalive_reaches_the_router" {
  command = apply
  module {
    source = "./modules/compute"
  }
  variables {
    router_keepalive_s = 900
  }

  assert {
    condition     = strcontains(output.user_data, "LLMFLEET_KEEPALIVE_S=900")
    error_message = "The router's keep-alive is set in router.env."
  }
}

# The artifacts bucket had no policy: a request without TLS was served.
run "artifacts_bucket_refuses_requests_without_tls" {
  command = apply
  module {
    source = "./modules/compute"
  }

  assert {
    condition = anytrue([for s in jsondecode(module.artifacts_bucket.policy).Statement :
      s.Effect == "Deny" && s.Action == "s3:*" && s.Condition == { Bool = { "aws:SecureTransport" = "false" } } &&
    s.Resource == ["arn:aws:s3:::llmfleet-test-artifacts", "arn:aws:s3:::llmfleet-test-artifacts/*"]])
    error_message = "The artifacts bucket denies every request made without TLS."
  }
  assert {
    condition     = module.artifacts_bucket.arn == "arn:aws:s3:::llmfleet-test-artifacts"
    error_message = "The policy is the artifacts bucket's (the bucket module writes it to its own bucket)."
  }
}

# CloudWatch has no IAM condition on dimensions or values: the namespace is all IAM can scope.
run "metrics_can_be_published_only_into_the_fleet_namespace" {
  command = apply
  module {
    source = "./modules/compute"
  }

  assert {
    condition = alltrue([for s in data.aws_iam_policy_document.instance.statement :
      !contains(coalesce(s.actions, []), "cloudwatch:PutMetricData") || anytrue([for c in s.condition :
    c.test == "StringEquals" && c.variable == "cloudwatch:namespace" && c.values == tolist(["LLMFleet"])])])
    error_message = "PutMetricData is allowed only into the LLMFleet namespace."
  }
}

run "scaling_on_group_gpu_utilisation" {
  command = apply
  module {
    source = "./modules/compute"
  }
  assert {
    condition = (aws_cloudwatch_metric_alarm.gpu["high"].threshold == 70 &&
    aws_cloudwatch_metric_alarm.gpu["high"].alarm_actions == toset([aws_autoscaling_policy.gpu["high"].arn]))
    error_message = "Above 70% GPU the group must scale out."
  }
  assert {
    condition = (aws_cloudwatch_metric_alarm.gpu["low"].threshold == 30 &&
    aws_cloudwatch_metric_alarm.gpu["low"].alarm_actions == toset([aws_autoscaling_policy.gpu["low"].arn]))
    error_message = "Below 30% GPU the group must scale in."
  }
  assert {
    condition = alltrue([for a in aws_cloudwatch_metric_alarm.gpu :
    a.namespace == "LLMFleet" && a.dimensions["AutoScalingGroupName"] == "llmfleet-test-gpu"])
    error_message = "Both alarms must read the agent's metric averaged over the group (no per-instance dimension)."
  }
  assert {
    condition     = aws_autoscaling_group.this.health_check_type == "ELB" && aws_autoscaling_group.this.health_check_grace_period >= 600
    error_message = "ELB health checks with a grace period long enough for model load."
  }
}

# The module and the simulator (simulator/policy_config.py) both read scaling_policy.json: the
# plan must carry the file's values, so a change to the file changes what is applied and what is
# simulated alike.
run "scaling_policy_comes_from_its_file" {
  command = plan
  module {
    source = "./modules/compute"
  }

  assert {
    condition = alltrue([for p in [jsondecode(file("modules/compute/scaling_policy.json"))] : alltrue([
      for a in aws_cloudwatch_metric_alarm.gpu : a.metric_name == p.metric_name && a.statistic == p.statistic &&
    a.period == p.period_s && a.treat_missing_data == p.treat_missing_data])])
    error_message = "Both alarms take the metric, statistic, period and missing-data rule from scaling_policy.json."
  }
  assert {
    condition = alltrue([for p in [jsondecode(file("modules/compute/scaling_policy.json"))] :
      aws_cloudwatch_metric_alarm.gpu["high"].comparison_operator == p.scale_out.comparison_operator &&
      aws_cloudwatch_metric_alarm.gpu["low"].comparison_operator == p.scale_in.comparison_operator &&
      aws_autoscaling_policy.gpu["high"].scaling_adjustment == p.scale_out.adjustment &&
    aws_autoscaling_policy.gpu["low"].scaling_adjustment == p.scale_in.adjustment])
    error_message = "The high alarm and policy apply the file's scale_out step, the low ones its scale_in step."
  }
  assert {
    condition = alltrue([for p in [jsondecode(file("modules/compute/scaling_policy.json"))] : alltrue([
      for s in aws_autoscaling_policy.gpu : s.policy_type == p.policy_type && s.adjustment_type == p.adjustment_type &&
    s.cooldown == 300])])
    error_message = "Both policies take their policy and adjustment types from scaling_policy.json, their cooldown from var.scaling."
  }
  # What the simulator assumes of the rest: every period of the window must breach (no
  # datapoints_to_alarm), each window is evaluation_minutes long, and the warm-up is the model's load time.
  assert {
    condition = alltrue([for a in aws_cloudwatch_metric_alarm.gpu : a.datapoints_to_alarm == null && a.evaluation_periods == 3]) && (
    aws_autoscaling_group.this.default_instance_warmup == var.model.model_load_seconds)
    error_message = "Alarms fire on M = N = evaluation_minutes periods; the warm-up is model.model_load_seconds."
  }
}

run "gpu_policy_alone_by_default" {
  command = plan
  module {
    source = "./modules/compute"
  }
  assert {
    condition = (length(aws_cloudwatch_metric_alarm.gpu) == 2 && length(aws_autoscaling_policy.queue_guard) == 0 &&
    length(aws_cloudwatch_metric_alarm.queue_guard) == 0 && length(aws_cloudwatch_metric_alarm.queue_quiet) == 0)
    error_message = "Without scaling.policy the design's GPU policy applies, and only it."
  }
}

# queue-guard: two alarms that add an instance, one on metric math that removes one, each
# invoking its own simple-scaling policy; the thresholds from the SLO and queue_guard.json.
run "queue_guard_alarms_scale_the_group" {
  command = apply
  module {
    source = "./modules/compute"
  }
  variables {
    scaling = { policy = "queue-guard", queue_guard = { ttft_slo_s = 2.5, quiet_minutes = 20 } }
  }
  assert {
    condition     = length(aws_cloudwatch_metric_alarm.gpu) == 0 && length(aws_autoscaling_policy.gpu) == 0
    error_message = "queue-guard replaces the GPU alarms; both would fight over the group."
  }
  assert {
    condition = (aws_cloudwatch_metric_alarm.queue_guard["queue-high"].metric_name == "RequestsWaiting" &&
      aws_cloudwatch_metric_alarm.queue_guard["queue-high"].statistic == "Average" &&
      aws_cloudwatch_metric_alarm.queue_guard["queue-high"].threshold == 1 &&
    aws_cloudwatch_metric_alarm.queue_guard["queue-high"].alarm_actions == toset([aws_autoscaling_policy.queue_guard["queue-high"].arn]))
    error_message = "Requests waiting above 1 per instance (the group's Average) add an instance."
  }
  assert {
    condition = (aws_cloudwatch_metric_alarm.queue_guard["ttft-guardrail"].metric_name == "TTFTP95" &&
      aws_cloudwatch_metric_alarm.queue_guard["ttft-guardrail"].statistic == "Maximum" &&
      aws_cloudwatch_metric_alarm.queue_guard["ttft-guardrail"].threshold == 2 &&
    aws_cloudwatch_metric_alarm.queue_guard["ttft-guardrail"].alarm_actions == toset([aws_autoscaling_policy.queue_guard["ttft-guardrail"].arn]))
    error_message = "The worst instance's p95 TTFT above 0.8 x the 2.5 s SLO adds an instance."
  }
  assert {
    condition = alltrue([for a in aws_cloudwatch_metric_alarm.queue_guard :
      a.namespace == "LLMFleet" && a.dimensions == tomap({ AutoScalingGroupName = "llmfleet-test-gpu" }) &&
    a.evaluation_periods == 2 && a.period == 60 && a.treat_missing_data == "notBreaching" && a.datapoints_to_alarm == null])
    error_message = "Both scale-out alarms read the group's metric for 2 of 2 minutes, and no data is no alarm."
  }
  assert {
    condition = (one(aws_cloudwatch_metric_alarm.queue_quiet).evaluation_periods == 20 &&
      one(aws_cloudwatch_metric_alarm.queue_quiet).threshold == 1 &&
      one(aws_cloudwatch_metric_alarm.queue_quiet).comparison_operator == "GreaterThanOrEqualToThreshold" &&
      one(aws_cloudwatch_metric_alarm.queue_quiet).treat_missing_data == "missing" &&
    one(aws_cloudwatch_metric_alarm.queue_quiet).alarm_actions == toset([aws_autoscaling_policy.queue_guard["queue-quiet"].arn]))
    error_message = "20 quiet minutes of 20 remove an instance; no datapoint never does."
  }
  assert {
    condition = (
      [for q in one(aws_cloudwatch_metric_alarm.queue_quiet).metric_query : q.expression if q.id == "quiet"] ==
      ["IF(waiting == 0 AND FILL(ttft, 0) < 1.000, 1, 0)"] &&
      { for q in one(aws_cloudwatch_metric_alarm.queue_quiet).metric_query : q.id => [
        q.metric[0].metric_name, q.metric[0].stat, q.metric[0].namespace, q.metric[0].dimensions["AutoScalingGroupName"]
        ] if q.id != "quiet" } == {
        waiting = ["RequestsWaiting", "Maximum", "LLMFleet", "llmfleet-test-gpu"]
        ttft    = ["TTFTP95", "Maximum", "LLMFleet", "llmfleet-test-gpu"]
    })
    error_message = "Scale-in needs no request waiting anywhere and the worst TTFT under half the 2 s guardrail, both from the group's metrics."
  }
  assert {
    condition = ({ for k, p in aws_autoscaling_policy.queue_guard : k => [p.scaling_adjustment, p.cooldown, p.policy_type] } == {
      queue-high     = [1, 300, "SimpleScaling"]
      ttft-guardrail = [1, 300, "SimpleScaling"]
      queue-quiet    = [-1, 300, "SimpleScaling"]
    })
    error_message = "One instance out per scale-out alarm, one in per quiet window, each after a 300 s cooldown."
  }
  assert {
    condition     = toset(keys(output.scaling_alarm_arns)) == toset(["queue-high", "ttft-guardrail", "queue-quiet"])
    error_message = "The module names the alarms of the policy it applies."
  }
}

# The module and the simulator (simulator/policy_config.py) both read queue_guard.json.
run "queue_guard_comes_from_its_file" {
  command = plan
  module {
    source = "./modules/compute"
  }
  variables {
    scaling = { policy = "queue-guard" }
  }
  assert {
    condition = alltrue([for f in [jsondecode(file("modules/compute/queue_guard.json"))] : alltrue([
      for key, rule in { queue-high = f.queue_high, ttft-guardrail = f.ttft_guardrail } :
      aws_cloudwatch_metric_alarm.queue_guard[key].metric_name == rule.metric_name &&
      aws_cloudwatch_metric_alarm.queue_guard[key].statistic == rule.statistic &&
      aws_cloudwatch_metric_alarm.queue_guard[key].comparison_operator == rule.comparison_operator &&
      aws_cloudwatch_metric_alarm.queue_guard[key].treat_missing_data == rule.treat_missing_data &&
      aws_cloudwatch_metric_alarm.queue_guard[key].period == f.period_s &&
    aws_autoscaling_policy.queue_guard[key].scaling_adjustment == rule.adjustment])])
    error_message = "Both scale-out alarms and their policies take the file's metric, statistic, operator, missing-data rule, period and adjustment."
  }
  assert {
    condition = alltrue([for f in [jsondecode(file("modules/compute/queue_guard.json"))] :
      aws_cloudwatch_metric_alarm.queue_guard["ttft-guardrail"].threshold == f.guardrail_share * 2 &&
      one(aws_cloudwatch_metric_alarm.queue_quiet).comparison_operator == f.queue_quiet.comparison_operator &&
      one(aws_cloudwatch_metric_alarm.queue_quiet).treat_missing_data == f.queue_quiet.treat_missing_data &&
      aws_autoscaling_policy.queue_guard["queue-quiet"].scaling_adjustment == f.queue_quiet.adjustment &&
      [for q in one(aws_cloudwatch_metric_alarm.queue_quiet).metric_query : q.expression if q.id == "quiet"] ==
    [format(f.queue_quiet.expression, f.calm_share * f.guardrail_share * 2)]])
    error_message = "The guardrail is the file's share of the SLO; the quiet alarm takes the file's expression, operator and adjustment."
  }
}

run "scheduled_minimums_raise_the_floor_in_their_window" {
  command = plan
  module {
    source = "./modules/compute"
  }
  variables {
    scaling = { scheduled_minimums = [
      { name = "business-hours", start = "0 8 * * MON-FRI", end = "0 18 * * MON-FRI", min_size = 3, time_zone = "Europe/Berlin" },
    ] }
  }
  assert {
    condition = ({ for k, a in aws_autoscaling_schedule.minimum : k => [a.recurrence, a.min_size, a.max_size, a.desired_capacity, a.time_zone] } == {
      business-hours-start = ["0 8 * * MON-FRI", 3, -1, -1, "Europe/Berlin"]
      business-hours-end   = ["0 18 * * MON-FRI", 1, -1, -1, "Europe/Berlin"]
    })
    error_message = "The minimum rises to 3 at the window's start and returns to capacity.min at its end; maximum and desired are left alone."
  }
}

run "rejects_a_scheduled_minimum_above_max" {
  command = plan
  module {
    source = "./modules/compute"
  }
  variables {
    scaling = { scheduled_minimums = [{ name = "peak", start = "0 8 * * *", end = "0 18 * * *", min_size = 4 }] }
  }
  expect_failures = [aws_autoscaling_schedule.minimum]
}

run "rejects_an_unknown_policy" {
  command = plan
  module {
    source = "./modules/compute"
  }
  variables {
    scaling = { policy = "inflight" }
  }
  expect_failures = [var.scaling]
}

run "rejects_a_scheduled_minimum_below_min" {
  command = plan
  module {
    source = "./modules/compute"
  }
  variables {
    capacity = { min = 2, max = 3, desired = 2 }
    scaling  = { scheduled_minimums = [{ name = "peak", start = "0 8 * * *", end = "0 18 * * *", min_size = 1 }] }
  }
  expect_failures = [aws_autoscaling_schedule.minimum]
}

run "rejects_a_cron_without_five_fields" {
  command = plan
  module {
    source = "./modules/compute"
  }
  variables {
    scaling = { scheduled_minimums = [{ name = "peak", start = "0  8 * * *", end = "0 18 * * *", min_size = 1 }] }
  }
  expect_failures = [var.scaling]
}

run "rejects_a_window_name_aws_would_not_take" {
  command = plan
  module {
    source = "./modules/compute"
  }
  variables {
    scaling = { scheduled_minimums = [{ name = "Peak Hours", start = "0 8 * * *", end = "0 18 * * *", min_size = 1 }] }
  }
  expect_failures = [var.scaling]
}

run "rejects_two_windows_of_one_name" {
  command = plan
  module {
    source = "./modules/compute"
  }
  variables {
    scaling = { scheduled_minimums = [
      { name = "peak", start = "0 8 * * *", end = "0 12 * * *", min_size = 1 },
      { name = "peak", start = "0 14 * * *", end = "0 18 * * *", min_size = 1 },
    ] }
  }
  expect_failures = [var.scaling]
}

run "rejects_a_ttft_slo_of_zero" {
  command = plan
  module {
    source = "./modules/compute"
  }
  variables {
    scaling = { policy = "queue-guard", queue_guard = { ttft_slo_s = 0 } }
  }
  expect_failures = [var.scaling]
}

run "rejects_a_queue_guard_cooldown_under_a_minute" {
  command = plan
  module {
    source = "./modules/compute"
  }
  variables {
    scaling = { policy = "queue-guard", queue_guard = { cooldown_s = 30 } }
  }
  expect_failures = [var.scaling]
}

run "rejects_a_quiet_window_longer_than_a_day" {
  command = plan
  module {
    source = "./modules/compute"
  }
  variables {
    scaling = { policy = "queue-guard", queue_guard = { quiet_minutes = 1441 } }
  }
  expect_failures = [var.scaling]
}

run "rejects_bad_capacity" {
  command = plan
  module {
    source = "./modules/compute"
  }
  variables {
    capacity = { min = 2, max = 3, desired = 1 }
  }
  expect_failures = [var.capacity]
}

run "rejects_scale_in_above_scale_out" {
  command = plan
  module {
    source = "./modules/compute"
  }
  variables {
    scaling = { scale_out_pct = 50, scale_in_pct = 60 }
  }
  expect_failures = [var.scaling]
}

run "rejects_threshold_over_100" {
  command = plan
  module {
    source = "./modules/compute"
  }
  variables {
    scaling = { scale_out_pct = 120 }
  }
  expect_failures = [var.scaling]
}

run "rejects_non_gpu_instance_type" {
  command = plan
  module {
    source = "./modules/compute"
  }
  variables {
    instance_type = "m7i.large"
  }
  expect_failures = [var.instance_type]
}

run "rejects_tiny_root_volume" {
  command = plan
  module {
    source = "./modules/compute"
  }
  variables {
    model = { id = "x", root_volume_gb = 20 }
  }
  expect_failures = [var.model]
}

run "rejects_spot_share_over_100" {
  command = plan
  module {
    source = "./modules/compute"
  }
  variables {
    spot = { spot_percentage = 150 }
  }
  expect_failures = [var.spot]
}

# An instance leaving the group was cut off after the load balancer's 120 s: nothing told
# its router to stop taking work, and nothing waited for its generations.
run "leaving_instances_drain_through_a_termination_hook" {
  command = apply
  module {
    source = "./modules/compute"
  }

  assert {
    condition = (aws_autoscaling_lifecycle_hook.drain.lifecycle_transition == "autoscaling:EC2_INSTANCE_TERMINATING" &&
      aws_autoscaling_lifecycle_hook.drain.autoscaling_group_name == aws_autoscaling_group.this.name &&
    aws_autoscaling_lifecycle_hook.drain.name == "llmfleet-test-gpu-drain" && output.drain_hook_name == "llmfleet-test-gpu-drain")
    error_message = "Every termination of the group's instances waits on the drain hook."
  }
  assert {
    condition     = aws_autoscaling_lifecycle_hook.drain.heartbeat_timeout == 360 && aws_autoscaling_lifecycle_hook.drain.default_result == "CONTINUE"
    error_message = "The hook waits a minute beyond the agent's 300 s bound, then lets the instance go."
  }
  assert {
    condition = (strcontains(output.user_data, "LLMFLEET_AGENT_LIFECYCLE_HOOK=llmfleet-test-gpu-drain") &&
    strcontains(output.user_data, "LLMFLEET_AGENT_DRAIN_TIMEOUT_S=300"))
    error_message = "The agent is told the hook to complete and how long to drain."
  }
  assert {
    condition = (one([for s in data.aws_iam_policy_document.instance.statement : s if s.sid == "CompleteOwnGroupsLifecycleActions"]).actions == toset(["autoscaling:CompleteLifecycleAction"]) &&
      one([for s in data.aws_iam_policy_document.instance.statement : s if s.sid == "CompleteOwnGroupsLifecycleActions"]).resources ==
    toset(["arn:aws:autoscaling:us-east-1:123456789012:autoScalingGroup:*:autoScalingGroupName/llmfleet-test-gpu"]))
    error_message = "The instances may complete lifecycle actions of their own group only, and do nothing else in Auto Scaling."
  }
  assert {
    condition = length(flatten([for s in data.aws_iam_policy_document.instance.statement :
    [for a in coalesce(s.actions, []) : a if startswith(a, "autoscaling:")]])) == 1
    error_message = "No other Auto Scaling action is granted (no heartbeat: the hook's timeout covers the bound)."
  }
  assert {
    condition     = aws_autoscaling_group.this.capacity_rebalance == false
    error_message = "Without spot there is nothing to rebalance."
  }
}

run "spot_instances_at_risk_are_replaced_before_they_are_reclaimed" {
  command = plan
  module {
    source = "./modules/compute"
  }
  variables {
    spot            = { spot_percentage = 50, extra_instance_types = ["g6.xlarge"] }
    drain_timeout_s = 900
  }

  assert {
    condition     = aws_autoscaling_group.this.capacity_rebalance == true
    error_message = "Capacity Rebalancing is on whenever spot is in the mix."
  }
  assert {
    condition     = aws_autoscaling_group.this.mixed_instances_policy[0].instances_distribution[0].spot_allocation_strategy == "price-capacity-optimized"
    error_message = "Spot capacity is drawn from the pools least likely to be interrupted, at a low price."
  }
  assert {
    condition     = aws_autoscaling_lifecycle_hook.drain.heartbeat_timeout == 960
    error_message = "The hook follows the drain bound."
  }
}

run "rejects_a_drain_longer_than_the_load_balancer_allows" {
  command = plan
  module {
    source = "./modules/compute"
  }
  variables {
    drain_timeout_s = 3601
  }
  expect_failures = [var.drain_timeout_s]
}

run "rejects_a_drain_in_fractions_of_a_second" {
  command = plan
  module {
    source = "./modules/compute"
  }
  variables {
    drain_timeout_s = 1.5
  }
  expect_failures = [var.drain_timeout_s]
}

# A scale-out waited for a whole cold start (boot, packages, model copy, engine load): an
# optional pool of stopped instances that booted once, each held by a launch hook until it
# serves, both on entering the pool and on leaving it.
run "a_warm_pool_keeps_prepared_instances_stopped_until_a_scale_out" {
  command = apply
  module {
    source = "./modules/compute"
  }
  variables {
    warm_pool = { min_size = 2, max_prepared = 4 }
    model     = { id = "Qwen/Qwen2.5-1.5B-Instruct", source = "s3", served_name = "qwen", model_load_seconds = 600 }
  }

  assert {
    condition = (aws_autoscaling_group.this.warm_pool[0].pool_state == "Stopped" &&
      aws_autoscaling_group.this.warm_pool[0].min_size == 2 && aws_autoscaling_group.this.warm_pool[0].max_group_prepared_capacity == 4 &&
    aws_autoscaling_group.this.warm_pool[0].instance_reuse_policy[0].reuse_on_scale_in == false)
    error_message = "The pool keeps stopped instances (paying for their volumes only); scale-in terminates through the drain hook."
  }
  assert {
    condition = (aws_autoscaling_lifecycle_hook.launch[0].lifecycle_transition == "autoscaling:EC2_INSTANCE_LAUNCHING" &&
      aws_autoscaling_lifecycle_hook.launch[0].autoscaling_group_name == aws_autoscaling_group.this.name &&
    aws_autoscaling_lifecycle_hook.launch[0].name == "llmfleet-test-gpu-launch" && output.launch_hook_name == "llmfleet-test-gpu-launch")
    error_message = "Every launch, into the pool and out of it, waits on the launch hook."
  }
  assert {
    condition = (aws_autoscaling_group.this.health_check_grace_period == 60 && aws_autoscaling_group.this.default_instance_warmup == 60 &&
    aws_autoscaling_group.this.instance_refresh[0].preferences[0].instance_warmup == "60")
    error_message = "Held by the hook until it serves, an instance needs no model-load grace or warm-up once in service."
  }
  assert {
    condition = (!strcontains(output.user_data, "ExecStartPre=+/usr/local/lib/llmfleet/model-disk") &&
    strcontains(output.user_data, "fetch-model"))
    error_message = "A pooled instance keeps the model's copy on its root volume: a stop blanks an instance store."
  }
  assert {
    condition     = aws_autoscaling_lifecycle_hook.launch[0].heartbeat_timeout == 600 && aws_autoscaling_lifecycle_hook.launch[0].default_result == "ABANDON"
    error_message = "An instance that does not serve within the model's load time is terminated, not pooled or put in service."
  }
  assert {
    condition     = aws_autoscaling_group.this.wait_for_capacity_timeout == "0"
    error_message = "An apply does not wait for the pool to fill: each pooled instance takes a whole cold start."
  }
  assert {
    condition     = strcontains(output.user_data, "LLMFLEET_AGENT_LAUNCH_HOOK=llmfleet-test-gpu-launch")
    error_message = "The agent is told the launch hook to complete."
  }
}

run "without_a_warm_pool_instances_join_as_before" {
  command = plan
  module {
    source = "./modules/compute"
  }
  variables {
    model = { id = "Qwen/Qwen2.5-1.5B-Instruct", source = "s3", served_name = "qwen" }
  }

  assert {
    condition     = length(aws_autoscaling_group.this.warm_pool) == 0 && length(aws_autoscaling_lifecycle_hook.launch) == 0
    error_message = "No pool, no launch hook: instances go in service as they launch and the load balancer's health check admits them."
  }
  assert {
    condition     = aws_autoscaling_group.this.health_check_grace_period == 900 && aws_autoscaling_group.this.default_instance_warmup == 900
    error_message = "Without the hook the group waits the model's load time before health checks and metrics count."
  }
  assert {
    condition     = strcontains(output.user_data, "ExecStartPre=+/usr/local/lib/llmfleet/model-disk /var/lib/llmfleet/models/Qwen/Qwen2.5-1.5B-Instruct")
    error_message = "The model's copy goes to the instance store where the type has one."
  }
  assert {
    condition     = aws_autoscaling_group.this.wait_for_capacity_timeout == "10m"
    error_message = "Without a pool an apply waits for the group's instances, as before."
  }
  assert {
    condition     = !strcontains(output.user_data, "LLMFLEET_AGENT_LAUNCH_HOOK")
    error_message = "The agent completes no launch action when there is no launch hook."
  }
}

run "rejects_a_warm_pool_with_spot" {
  command = plan
  module {
    source = "./modules/compute"
  }
  variables {
    warm_pool = {}
    spot      = { spot_percentage = 50 }
  }
  expect_failures = [aws_autoscaling_group.this]
}

run "a_warm_pool_keeps_exactly_its_minimum_unless_told_otherwise" {
  command = plan
  module {
    source = "./modules/compute"
  }
  variables {
    capacity  = { min = 2, max = 6, desired = 2 }
    warm_pool = {}
  }

  assert {
    condition     = aws_autoscaling_group.this.warm_pool[0].min_size == 1 && aws_autoscaling_group.this.warm_pool[0].max_group_prepared_capacity == 2
    error_message = "Prepared capacity at the group's minimum: the pool holds min_size, not AWS's default of max - desired (4 here), each a cold start."
  }
  assert {
    condition     = length(aws_autoscaling_group.this.mixed_instances_policy) == 1
    error_message = "The group keeps its mixed instances policy (on demand only) with a pool."
  }
}

run "rejects_a_load_time_the_warm_up_cannot_hold" {
  command = plan
  module {
    source = "./modules/compute"
  }
  variables {
    model = { id = "Qwen/Qwen2.5-1.5B-Instruct", model_load_seconds = 3601 }
  }
  expect_failures = [var.model]
}

run "rejects_a_warm_pool_of_a_fractional_size" {
  command = plan
  module {
    source = "./modules/compute"
  }
  variables {
    warm_pool = { min_size = 1.5 }
  }
  expect_failures = [var.warm_pool]
}

run "rejects_a_warm_pool_with_no_prepared_capacity" {
  command = plan
  module {
    source = "./modules/compute"
  }
  variables {
    warm_pool = { max_prepared = 0 }
  }
  expect_failures = [var.warm_pool]
}

# Every new instance downloaded its model from the Hugging Face hub over NAT at boot.
run "a_staged_model_is_fetched_from_the_bucket_through_its_endpoint" {
  command = apply
  module {
    source = "./modules/compute"
  }
  variables {
    model = { id = "Qwen/Qwen2.5-1.5B-Instruct", source = "s3", revision = "main", served_name = "qwen", hf_token_parameter = "/llmfleet/test/hf" }
  }

  assert {
    condition     = one([for s in data.aws_iam_policy_document.instance.statement : s.resources if s.sid == "ReadStagedModel"]) == toset(["arn:aws:s3:::llmfleet-test-artifacts/models/Qwen/Qwen2.5-1.5B-Instruct/*"])
    error_message = "The instances read this model's staged files only."
  }
  assert {
    condition     = one([for s in data.aws_iam_policy_document.instance.statement : s.resources if s.sid == "ReadOwnParameters"]) == toset(["arn:aws:ssm:us-east-1:123456789012:parameter/llmfleet/test/api-keys"])
    error_message = "A staged model needs no hub token at boot: the instances cannot read it (only make stage-model does)."
  }
  assert {
    condition     = strcontains(output.stage_model_args, "--hf-token-parameter /llmfleet/test/hf")
    error_message = "Staging reads the token."
  }
  assert {
    condition     = one([for s in data.aws_iam_policy_document.instance.statement : s.actions if s.sid == "ReadStagedModel"]) == toset(["s3:GetObject"])
    error_message = "Read only: instances never write the staged model."
  }
  assert {
    condition     = strcontains(output.user_data, "llmfleet fetch-model --bucket llmfleet-test-artifacts --model Qwen/Qwen2.5-1.5B-Instruct --revision main --region us-east-1 --dest /var/lib/llmfleet/models/Qwen/Qwen2.5-1.5B-Instruct")
    error_message = "The engine's unit fetches the staged model before vLLM starts."
  }
  assert {
    condition     = startswith(output.stage_model_args, "--bucket llmfleet-test-artifacts --model Qwen/Qwen2.5-1.5B-Instruct --revision main --region us-east-1")
    error_message = "make stage-model is told the bucket, the model, its revision and the region."
  }
}

run "a_hub_model_reads_nothing_staged" {
  command = apply
  module {
    source = "./modules/compute"
  }

  assert {
    condition     = length([for s in data.aws_iam_policy_document.instance.statement : s if s.sid == "ReadStagedModel"]) == 0 && output.stage_model_args == ""
    error_message = "Without a staged model the role reads no model files and there is nothing to stage."
  }
  assert {
    condition     = !strcontains(output.user_data, "fetch-model")
    error_message = "A hub model is vLLM's to download."
  }
}

run "rejects_an_unknown_model_source" {
  command = plan
  module {
    source = "./modules/compute"
  }
  variables {
    model = { id = "org/m", source = "ftp" }
  }
  expect_failures = [var.model]
}

run "rejects_a_revision_that_is_a_path" {
  command = plan
  module {
    source = "./modules/compute"
  }
  variables {
    model = { id = "org/m", source = "s3", revision = "../other" }
  }
  expect_failures = [var.model]
}

run "rejects_a_staged_model_named_by_a_path" {
  command = plan
  module {
    source = "./modules/compute"
  }
  variables {
    model = { id = "/mnt/models/m", source = "s3" }
  }
  expect_failures = [var.model]
}

run "rejects_a_root_volume_faster_than_its_baseline_iops_allow" {
  command = plan
  module {
    source = "./modules/compute"
  }
  variables {
    model = { id = "org/m", root_volume_mbps = 1000 }
  }
  expect_failures = [var.model]
}

run "inflight_guard_tracks_requests_per_instance_with_the_guardrail_and_quiet_scale_in" {
  command = apply
  module {
    source = "./modules/compute"
  }
  variables {
    scaling = { policy = "inflight-guard", inflight_per_instance = 48 }
  }

  assert {
    condition = (aws_autoscaling_policy.inflight[0].policy_type == "TargetTrackingScaling" &&
      aws_autoscaling_policy.inflight[0].target_tracking_configuration[0].target_value == 48 &&
    aws_autoscaling_policy.inflight[0].target_tracking_configuration[0].disable_scale_in == true)
    error_message = "Target tracking at 48 requests per instance, which never scales in by itself."
  }
  assert {
    condition = toset([for m in aws_autoscaling_policy.inflight[0].target_tracking_configuration[0].customized_metric_specification[0].metrics :
      jsonencode([m.id, m.return_data, try(m.metric_stat[0].metric[0].metric_name, null), try(m.metric_stat[0].stat, null),
        try(one(m.metric_stat[0].metric[0].dimensions).name, null), try(one(m.metric_stat[0].metric[0].dimensions).value, null),
      try(m.metric_stat[0].metric[0].namespace, null), m.expression])]) == toset([
      jsonencode(["running", false, "RequestsRunning", "Average", "AutoScalingGroupName", "llmfleet-test-gpu", "LLMFleet", null]),
      jsonencode(["waiting", false, "RequestsWaiting", "Average", "AutoScalingGroupName", "llmfleet-test-gpu", "LLMFleet", null]),
      jsonencode(["inflight", true, null, null, null, null, null, "running + waiting"]),
    ])
    error_message = "The tracked metric is the group's average requests running plus its average requests waiting."
  }
  assert {
    condition     = toset(keys(aws_cloudwatch_metric_alarm.queue_guard)) == toset(["ttft-guardrail"]) && length(aws_cloudwatch_metric_alarm.queue_quiet) == 1
    error_message = "queue-guard's guardrail and quiet alarms stay; queue-high gives way to the target."
  }
  assert {
    condition     = toset(keys(aws_autoscaling_policy.queue_guard)) == toset(["ttft-guardrail", "queue-quiet"]) && aws_cloudwatch_metric_alarm.queue_quiet[0].alarm_actions == toset([aws_autoscaling_policy.queue_guard["queue-quiet"].arn])
    error_message = "Only the quiet alarm's policy removes instances."
  }
  assert {
    condition     = length(aws_autoscaling_policy.gpu) == 0 && output.inflight_target == 48
    error_message = "One policy at a time."
  }
}

run "rejects_inflight_guard_without_a_target" {
  command = plan
  module {
    source = "./modules/compute"
  }
  variables {
    scaling = { policy = "inflight-guard" }
  }
  expect_failures = [var.scaling]
}

# Several pools: the router knows its pool and where the others are (name=url pairs, which
# systemd's environment files do not unquote), takes requests from the load balancer between
# pools and may reach it; the alias policy is in the router's TOML file.
run "a_pool_among_several_routes_to_the_others" {
  command = plan
  module {
    source = "./modules/compute"
  }
  variables {
    pool = {
      name  = "small"
      peers = { small = "http://internal-p.elb.amazonaws.com", large = "http://internal-p.elb.amazonaws.com" }
    }
    peer_security_group_id = "sg-pools"
    routing = {
      length_rules = [{ model = "qwen", max_prompt_tokens = 512 }, { model = "llama" }]
    }
  }
  assert {
    condition = (strcontains(output.user_data, "LLMFLEET_POOL=small\n") &&
    strcontains(output.user_data, "LLMFLEET_PEERS=large=http://internal-p.elb.amazonaws.com,small=http://internal-p.elb.amazonaws.com\n"))
    error_message = "The router is told its pool and every pool's URL."
  }
  assert {
    condition     = strcontains(output.user_data, "LLMFLEET_CONFIG_FILE=/etc/llmfleet/router.toml") && strcontains(output.user_data, "[[length_rules]]\n      model = \"qwen\"\n      max_prompt_tokens = 512\n")
    error_message = "The alias policy reaches the router in its TOML file."
  }
  assert {
    condition = (aws_vpc_security_group_ingress_rule.router_from_pools[0].referenced_security_group_id == "sg-pools" &&
      aws_vpc_security_group_ingress_rule.router_from_pools[0].from_port == 8000 &&
    aws_vpc_security_group_egress_rule.to_pools[0].referenced_security_group_id == "sg-pools" && aws_vpc_security_group_egress_rule.to_pools[0].to_port == 80)
    error_message = "The router takes requests from the load balancer between pools, and may reach it on port 80."
  }
}

run "a_single_pool_has_no_peers" {
  command = plan
  module {
    source = "./modules/compute"
  }
  assert {
    condition     = !strcontains(output.user_data, "LLMFLEET_POOL") && length(aws_vpc_security_group_ingress_rule.router_from_pools) == 0 && length(aws_vpc_security_group_egress_rule.to_pools) == 0
    error_message = "One pool: no peers, no load balancer between pools."
  }
}

run "the_archive_is_written_by_the_router_and_sent_by_the_agent_under_its_prefix_only" {
  command = plan
  module {
    source = "./modules/compute"
  }
  variables {
    archive = {
      bucket     = "llmfleet-test-archive-x"
      bucket_arn = "arn:aws:s3:::llmfleet-test-archive-x"
      prefix     = "archive/"
      content    = "full"
    }
  }
  assert {
    condition = (one([for s in data.aws_iam_policy_document.instance.statement : s if s.sid == "WriteArchive"]).actions == toset(["s3:PutObject"]) &&
    one([for s in data.aws_iam_policy_document.instance.statement : s if s.sid == "WriteArchive"]).resources == toset(["arn:aws:s3:::llmfleet-test-archive-x/archive/*"]))
    error_message = "The instance role may put objects under the archive's prefix, and do nothing else there."
  }
  assert {
    condition = (strcontains(output.user_data, "LLMFLEET_ARCHIVE_DIR=/var/lib/llmfleet/archive\n") &&
      strcontains(output.user_data, "LLMFLEET_ARCHIVE_CONTENT=full\n") &&
      strcontains(output.user_data, "LLMFLEET_AGENT_ARCHIVE_BUCKET=llmfleet-test-archive-x\n") &&
    strcontains(output.user_data, "LLMFLEET_AGENT_ARCHIVE_PREFIX=archive/\n"))
    error_message = "The router writes the spool and the agent sends it to the archive's bucket and prefix."
  }
}

run "without_an_archive_nothing_is_written_or_granted" {
  command = plan
  module {
    source = "./modules/compute"
  }
  assert {
    condition = (!strcontains(output.user_data, "ARCHIVE") &&
    length([for s in data.aws_iam_policy_document.instance.statement : s if s.sid == "WriteArchive"]) == 0)
    error_message = "No archive: no spool, no sender, no permission."
  }
}

run "rejects_an_archive_prefix_that_is_not_a_folder" {
  command = plan
  module {
    source = "./modules/compute"
  }
  variables {
    archive = { bucket = "b", bucket_arn = "arn:aws:s3:::b", prefix = "../archive", content = "full" }
  }
  expect_failures = [var.archive]
}

run "rejects_an_unknown_archive_content" {
  command = plan
  module {
    source = "./modules/compute"
  }
  variables {
    archive = { bucket = "b", bucket_arn = "arn:aws:s3:::b", prefix = "archive/", content = "everything" }
  }
  expect_failures = [var.archive]
}
