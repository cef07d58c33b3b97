# The whole stack planned with an environment's values (run with
# -var-file=../environments/ENV.tfvars; `make infra-check` runs dev and prod).

mock_provider "aws" {
  mock_data "aws_availability_zones" {
    defaults = { names = ["us-east-1a", "us-east-1b", "us-east-1c"] }
  }
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
  mock_data "aws_elb_service_account" {
    defaults = { arn = "arn:aws:iam::127311923021:root" }
  }
}

# CloudFront's web ACL and its log group (the demo site) are created in us-east-1.
mock_provider "aws" {
  alias = "us_east_1"
}

variables {
  # No wheel is built for a plan test.
  package_path = "tests/fixtures/llmfleet-0.0.0-py3-none-any.whl"
}

run "plans" {
  command = plan

  assert {
    condition     = module.compute.autoscaling_group_name == "${var.name}-gpu"
    error_message = "The group is named after the deployment."
  }
  assert {
    condition     = var.environment != "prod" || (var.alb.deletion_protection && !var.single_nat_gateway && var.alarm_email != null && var.capacity.min >= 2)
    error_message = "prod needs deletion protection, a NAT per AZ, alarm e-mail and at least two instances."
  }
  # The routers closed idle connections after 5 s while the load balancer kept them 600 s:
  # requests it sent on a connection being closed came back as 502s.
  assert {
    condition     = module.compute.router_keepalive_s > module.load_balancer.idle_timeout_s
    error_message = "The routers' keep-alive outlasts the load balancer's idle timeout."
  }
  assert {
    condition     = module.compute.drain_timeout_s == module.load_balancer.deregistration_delay_s
    error_message = "The agent drains for exactly as long as the load balancer keeps a leaving target's requests."
  }
  assert {
    condition     = var.environment != "dev" || (var.capacity.max == 1 && var.single_nat_gateway)
    error_message = "dev is one instance behind one NAT gateway."
  }
  # What the simulator recommends (README, "Scaling"): inflight-guard, in both.
  assert {
    condition     = toset(keys(module.compute.scaling_alarm_arns)) == toset(["ttft-guardrail", "queue-quiet"]) && module.compute.inflight_target == 48
    error_message = "The fleet scales with inflight-guard: tracking 48 requests per instance, out on the TTFT guardrail too, in after quiet minutes."
  }
}
