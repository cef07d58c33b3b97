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
    defaults = { arn = "arn:aws:s3:::llmfleet-test-artifacts", bucket = "llmfleet-test-artifacts" }
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

run "scaling_on_group_gpu_utilisation" {
  command = apply
  module {
    source = "./modules/compute"
  }
  assert {
    condition = (aws_cloudwatch_metric_alarm.gpu["high"].threshold == 70 &&
      aws_cloudwatch_metric_alarm.gpu["high"].comparison_operator == "GreaterThanThreshold" &&
    aws_cloudwatch_metric_alarm.gpu["high"].alarm_actions == toset([aws_autoscaling_policy.gpu["high"].arn]))
    error_message = "Above 70% GPU the group must scale out."
  }
  assert {
    condition = (aws_cloudwatch_metric_alarm.gpu["low"].threshold == 30 &&
      aws_cloudwatch_metric_alarm.gpu["low"].comparison_operator == "LessThanThreshold" &&
    aws_cloudwatch_metric_alarm.gpu["low"].alarm_actions == toset([aws_autoscaling_policy.gpu["low"].arn]))
    error_message = "Below 30% GPU the group must scale in."
  }
  assert {
    condition     = aws_autoscaling_policy.gpu["high"].scaling_adjustment == 1 && aws_autoscaling_policy.gpu["low"].scaling_adjustment == -1
    error_message = "Scale out adds one instance, scale in removes one."
  }
  assert {
    condition = alltrue([for a in aws_cloudwatch_metric_alarm.gpu :
      a.metric_name == "GPUUtilization" && a.namespace == "LLMFleet" &&
    a.dimensions["AutoScalingGroupName"] == "llmfleet-test-gpu"])
    error_message = "Both alarms must read the agent's group-level GPUUtilization."
  }
  assert {
    condition     = aws_autoscaling_group.this.health_check_type == "ELB" && aws_autoscaling_group.this.health_check_grace_period >= 600
    error_message = "ELB health checks with a grace period long enough for model load."
  }
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

run "rejects_a_vllm_version_that_is_not_a_release" {
  command = plan
  module {
    source = "./modules/compute"
  }
  variables {
    vllm_version = "latest"
  }
  expect_failures = [var.vllm_version]
}
