# The dev stack applied to, then destroyed from, a local AWS: moto in server mode
# on the loopback. tests/infrastructure/test_moto_apply.py starts moto on a free
# port and runs this file with AWS_ENDPOINT_URL pointing every service at it (the
# provider reads it; a test file's provider block cannot take the port from the
# command line). The credentials below are moto's throwaway ones: without the
# endpoint they are refused by AWS, so this file can never touch a real account.
# Real provider, real API calls; what moto cannot serve is listed in docs/deploy.md.

variables {
  package_path = "tests/fixtures/llmfleet-0.0.0-py3-none-any.whl"
}

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

run "dev_stack" {
  variables {
    ami_ssm_parameter = run.setup.ami_parameter
    # moto has no CreateResponseHeadersPolicy: attach AWS's managed
    # SecurityHeadersPolicy (its fixed, published id) instead of creating ours.
    demo_response_headers_policy_id = "67f7725c-6f97-4210-82d7-5512b31e9d03"
    # dev's inflight-guard (a target-tracking policy on metric math, the guardrail alarm,
    # the quiet alarm on metric math, their policies), plus a scheduled minimum: the Auto
    # Scaling and CloudWatch calls prod's scaling makes.
    scaling = { policy = "inflight-guard", inflight_per_instance = 48, scheduled_minimums = [
      { name = "business-hours", start = "0 8 * * MON-FRI", end = "0 18 * * MON-FRI", min_size = 1 },
    ] }
  }
}

run "read_back" {
  module {
    source = "./tests/moto/readback"
  }
  variables {
    name                   = var.name
    autoscaling_group_name = run.dev_stack.autoscaling_group_name
  }

  assert {
    condition     = output.asg.min == 1 && output.asg.max == 1 && output.asg.health_check_type == "ELB"
    error_message = "dev's group is one instance, replaced when the load balancer finds it unhealthy."
  }
  assert {
    condition     = length(output.asg.subnets) == 2 && length(output.asg.target_groups) == 1
    error_message = "The group spans both private subnets and registers with the router's target group."
  }
  assert {
    condition     = output.launch_template.http_tokens == "required" && alltrue(output.launch_template.encrypted)
    error_message = "Instances launch with IMDSv2 only and encrypted volumes."
  }
  assert {
    condition     = startswith(base64decode(output.launch_template.user_data), "#cloud-config")
    error_message = "The launch template carries the cloud-init document."
  }
  assert {
    condition     = output.alb_internal
    error_message = "dev's load balancer is internal (reached through API Gateway)."
  }
  assert {
    condition = toset(output.log_groups) == toset([
    for s in ["vllm", "router", "agent", "api-gateway", "vpc-flow"] : "/llmfleet/${var.name}/${s}"])
    error_message = "One log group per service, API Gateway's access log and the VPC flow log."
  }
}

# The same stack turned into two pools (its single pool's group replaced by a small and a
# large one), as dev-pools.tfvars does: each pool's group registers with the public entry's
# target group and its own one on the load balancer between pools.
run "two_pools" {
  variables {
    ami_ssm_parameter               = run.setup.ami_parameter
    demo_response_headers_policy_id = "67f7725c-6f97-4210-82d7-5512b31e9d03"
    model                           = null
    pools = {
      small = {
        model   = { id = "Qwen/Qwen2.5-1.5B-Instruct", source = "s3", served_name = "qwen2.5-1.5b", root_volume_gb = 150 }
        scaling = { policy = "inflight-guard", inflight_per_instance = 192 }
      }
      large = {
        instance_type = "g6e.xlarge"
        model         = { id = "meta-llama/Llama-3.1-8B-Instruct", source = "s3", served_name = "llama-3.1-8b" }
        scaling       = { policy = "inflight-guard", inflight_per_instance = 96 }
      }
    }
    routing = { length_rules = [{ model = "qwen2.5-1.5b", max_prompt_tokens = 512 }, { model = "llama-3.1-8b" }] }
    archive = { content = "full", retention_days = 60 }
  }

  assert {
    condition     = startswith(output.archive.url, "s3://llmfleet-") && endswith(output.archive.url, "/archive/") && output.archive.content == "full"
    error_message = "The archive's bucket is made (moto takes its lifecycle and policy) and named in the outputs."
  }
}

run "read_back_pools" {
  module {
    source = "./tests/moto/readback_pools"
  }
  variables {
    name   = var.name
    groups = run.two_pools.autoscaling_group_names
  }

  assert {
    condition     = output.pools_internal && keys(output.groups) == ["large", "small"]
    error_message = "Two pools' groups behind an internal load balancer between them."
  }
  assert {
    condition = alltrue([for pool, group in output.groups :
    toset(group.target_groups) == toset([output.entry_target_group, output.rules[pool].target_group])])
    error_message = "Each pool's group registers with the public entry and its own target group between pools."
  }
  assert {
    condition     = alltrue([for pool, rule in output.rules : rule.header == { http_header_name = "x-llmfleet-pool", values = toset([pool]) } && rule.action == "forward" && rule.health_path == "/ready"])
    error_message = "A rule per pool forwards on the x-llmfleet-pool header naming it; its pool's target group checks /ready."
  }
  assert {
    condition = alltrue([for pool, group in output.groups : strcontains(group.user_data, "LLMFLEET_POOL=${pool}\n") &&
      strcontains(group.user_data, "LLMFLEET_PEERS=large=http://") && strcontains(group.user_data, "[[length_rules]]") &&
    strcontains(group.user_data, "LLMFLEET_AGENT_ARCHIVE_BUCKET=${trimprefix(trimsuffix(run.two_pools.archive.url, "/archive/"), "s3://")}\n")])
    error_message = "Each pool's routers are told their pool, the peers and the alias rules; each agent where to send the archive."
  }
}
