# The whole stack planned with an environment's values (run with
# -var-file=../environments/ENV.tfvars; `make infra-check` runs dev and prod, and the
# examples with two pools, dev-pools and prod-pools).

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

  # One pool keeps the deployment's name; each of several is named after it too.
  assert {
    condition = var.pools == null ? keys(module.compute) == ["main"] && module.compute["main"].autoscaling_group_name == "${var.name}-gpu" : alltrue([
    for key, pool in module.compute : pool.autoscaling_group_name == "${var.name}-${key}-gpu"])
    error_message = "The single pool's group is <name>-gpu; each of several pools' is <name>-<pool>-gpu."
  }
  assert {
    condition = var.environment != "prod" || (var.alb.deletion_protection && !var.single_nat_gateway && var.alarm_email != null && alltrue(
    [for capacity in(var.pools == null ? [var.capacity] : [for p in values(var.pools) : p.capacity]) : capacity.min >= 2]))
    error_message = "prod needs deletion protection, a NAT per AZ, alarm e-mail and at least two instances in each pool."
  }
  assert {
    condition = length(module.archive_bucket) == (var.archive == null ? 0 : 1) && (var.archive == null ? true :
    module.archive_bucket[0].force_destroy == (var.environment == "dev" && var.archive.force_destroy))
    error_message = "The archive has a bucket of its own exactly when it is on, which destroy deletes with its records only in a dev deployment that says so."
  }
  # The routers closed idle connections after 5 s while the load balancer kept them 600 s:
  # requests it sent on a connection being closed came back as 502s.
  assert {
    condition     = alltrue([for pool in module.compute : pool.router_keepalive_s > module.load_balancer.idle_timeout_s])
    error_message = "The routers' keep-alive outlasts the load balancer's idle timeout."
  }
  assert {
    condition     = alltrue([for pool in module.compute : pool.drain_timeout_s == module.load_balancer.deregistration_delay_s])
    error_message = "The agent drains for exactly as long as the load balancer keeps a leaving target's requests."
  }
  assert {
    condition = var.environment != "dev" || (var.single_nat_gateway && alltrue(
    [for capacity in(var.pools == null ? [var.capacity] : [for p in values(var.pools) : p.capacity]) : capacity.max == 1]))
    error_message = "dev is one instance per pool behind one NAT gateway."
  }
  # What the simulator recommends (README, "Scaling"): inflight-guard, in every pool; 48
  # requests per instance for the single pool's g5.2xlarge in prod.
  assert {
    condition = alltrue([for pool in module.compute : toset(keys(pool.scaling_alarm_arns)) == toset(["ttft-guardrail", "queue-quiet"]) && pool.inflight_target != null]) && (
    var.pools != null ? true : module.compute["main"].inflight_target == 48)
    error_message = "The fleet scales with inflight-guard: tracking a target per instance (48 for the single pool), out on the TTFT guardrail too, in after quiet minutes."
  }
  # Several pools: the load balancer between them, a target group per pool, and every
  # router told its pool and where the others are.
  assert {
    condition = var.pools == null ? length(module.pools) == 0 : (
      length(module.pools) == 1 && toset(keys(module.pools[0].target_group_arns)) == toset(keys(var.pools)) && alltrue([
      for key, pool in module.compute : pool.pool == { name = key, peers = sort(keys(var.pools)) }]) &&
    alltrue([for key in keys(var.pools) : contains(keys(module.monitoring.alarm_names), "${key}/no-healthy-hosts")]))
    error_message = "Several pools have the load balancer between them, and each router its pool and the peers."
  }
}

run "model_and_pools_are_not_both_given" {
  command = plan
  variables {
    model = { id = "Qwen/Qwen2.5-1.5B-Instruct" }
    pools = { a = { model = { id = "Qwen/Qwen2.5-1.5B-Instruct" } }, b = { model = { id = "meta-llama/Llama-3.1-8B-Instruct" } } }
  }
  expect_failures = [output.autoscaling_group_name]
}

run "routing_names_only_served_models" {
  command = plan
  variables {
    routing = { length_rules = [{ model = "a-model-nobody-serves" }] }
  }
  expect_failures = [output.autoscaling_group_name]
}

run "routing_the_router_would_refuse_is_refused_at_plan" {
  command = plan
  variables {
    routing = { length_rules = [{ model = "auto", max_prompt_tokens = 0.5 }] }
  }
  expect_failures = [var.routing]
}

run "rejects_an_archive_kept_for_part_of_a_day" {
  command = plan
  variables {
    archive = { content = "full", retention_days = 1.5 }
  }
  expect_failures = [var.archive]
}

run "rejects_an_unknown_archive_content" {
  command = plan
  variables {
    archive = { content = "prompts" }
  }
  expect_failures = [var.archive]
}

run "an_archive_s_records_stop_a_destroy_unless_told_otherwise" {
  command = plan
  variables {
    archive = { content = "metadata" }
  }
  assert {
    condition     = module.archive_bucket[0].force_destroy == false
    error_message = "By default destroy stops at the archive's bucket while it holds records."
  }
}
