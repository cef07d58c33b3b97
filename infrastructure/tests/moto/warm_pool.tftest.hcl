# The GPU group with a warm pool, applied to and destroyed from a local AWS (moto; see
# apply.tftest.hcl, which runs first, for how): the compute module alone, on a VPC, subnets,
# target group and log groups made for it (tests/moto/group_network), since the rest of the
# stack is apply.tftest.hcl's. A stack of its own rather than a second apply of dev: turning
# the pool on for a running group changes its launch template (the agent's launch hook, the
# model's disk), which starts an instance refresh, an action moto does not implement.

provider "aws" {
  region                      = "us-east-1"
  access_key                  = "llmfleet-test"
  secret_key                  = "llmfleet-test"
  skip_credentials_validation = true
  skip_metadata_api_check     = true
  skip_requesting_account_id  = true
  s3_use_path_style           = true
}

provider "aws" {
  alias                       = "us_east_1"
  region                      = "us-east-1"
  access_key                  = "llmfleet-test"
  secret_key                  = "llmfleet-test"
  skip_credentials_validation = true
  skip_metadata_api_check     = true
  skip_requesting_account_id  = true
  s3_use_path_style           = true
}

run "setup" {
  module {
    source = "./tests/moto/setup"
  }
}

run "network" {
  module {
    source = "./tests/moto/group_network"
  }
  variables {
    name = "llmfleet-wp"
  }
}

run "warm_pool_group" {
  module {
    source = "./modules/compute"
  }
  variables {
    name                  = "llmfleet-wp"
    vpc_id                = run.network.vpc_id
    private_subnet_ids    = run.network.private_subnet_ids
    alb_security_group_id = run.network.alb_security_group_id
    target_group_arns     = run.network.target_group_arns
    log_group_arns        = run.network.log_group_arns
    log_group_names       = run.network.log_group_names
    ami_ssm_parameter     = run.setup.ami_parameter
    package_path          = "tests/fixtures/llmfleet-0.0.0-py3-none-any.whl"
    api_keys_parameter    = "/llmfleet/wp/api-keys"
    capacity              = { min = 1, max = 2, desired = 1 }
    model                 = { id = "Qwen/Qwen2.5-1.5B-Instruct", source = "s3" }
    scaling               = { policy = "inflight-guard", inflight_per_instance = 48 }
    warm_pool             = { min_size = 1 }
  }

  # The group as the provider read it back from the API after creating it.
  assert {
    condition     = aws_autoscaling_group.this.warm_pool[0].pool_state == "Stopped" && aws_autoscaling_group.this.warm_pool[0].min_size == 1
    error_message = "The group keeps one stopped, prepared instance in its pool."
  }
  assert {
    condition     = aws_autoscaling_lifecycle_hook.launch[0].lifecycle_transition == "autoscaling:EC2_INSTANCE_LAUNCHING" && aws_autoscaling_lifecycle_hook.launch[0].default_result == "ABANDON"
    error_message = "The launch hook holds every new instance until its agent says it serves."
  }
  # (In a group's first apply only: later ones leave this block alone. The plan tests apply
  # one group many times over, so the check lives here, on a group created with its pool.)
  assert {
    condition = (one(aws_autoscaling_group.this.initial_lifecycle_hook).name == "llmfleet-wp-gpu-launch" &&
      one(aws_autoscaling_group.this.initial_lifecycle_hook).lifecycle_transition == "autoscaling:EC2_INSTANCE_LAUNCHING" &&
    one(aws_autoscaling_group.this.initial_lifecycle_hook).default_result == "ABANDON")
    error_message = "A new group has the launch hook before its pool launches anything (the hook resource comes after the group)."
  }
}

# A later change under the pool (here the load time) keeps the group. The provider
# replaces a group whose initial lifecycle hook changes, deleting the whole fleet first; the
# module leaves that block to the group's creation. Planned with the real provider (its
# plan says what it would replace; a replacement leaves the group's ARN unknown and fails
# the first assertion), not applied: moto has no instance refresh to answer an update with.
run "warm_pool_group_changed" {
  command = plan
  module {
    source = "./modules/compute"
  }
  variables {
    name                  = "llmfleet-wp"
    vpc_id                = run.network.vpc_id
    private_subnet_ids    = run.network.private_subnet_ids
    alb_security_group_id = run.network.alb_security_group_id
    target_group_arns     = run.network.target_group_arns
    log_group_arns        = run.network.log_group_arns
    log_group_names       = run.network.log_group_names
    ami_ssm_parameter     = run.setup.ami_parameter
    package_path          = "tests/fixtures/llmfleet-0.0.0-py3-none-any.whl"
    api_keys_parameter    = "/llmfleet/wp/api-keys"
    capacity              = { min = 1, max = 2, desired = 1 }
    model                 = { id = "Qwen/Qwen2.5-1.5B-Instruct", source = "s3", model_load_seconds = 1200 }
    scaling               = { policy = "inflight-guard", inflight_per_instance = 48 }
    warm_pool             = { min_size = 1 }
  }

  assert {
    condition     = aws_autoscaling_group.this.arn == run.warm_pool_group.autoscaling_group_arn
    error_message = "The group would be replaced: a changed initial lifecycle hook must not reach the provider."
  }
  assert {
    condition     = aws_autoscaling_lifecycle_hook.launch[0].heartbeat_timeout == 1200
    error_message = "The hook resource carries the new load time."
  }
}
