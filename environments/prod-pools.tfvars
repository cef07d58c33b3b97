# prod with two pools: a small model on a small GPU and a larger one on a larger GPU, each its
# own Auto Scaling group of 2-6 instances, behind one public HTTPS load balancer and API
# Gateway. Every router takes any request; `auto` sends short prompts to the small model and
# the rest to the large one, and moves to the other pool when one has no healthy instance.
# make apply ENV=prod-pools (state in prod-pools.s3.tfbackend's key).
name        = "llmfleet-prodp"
environment = "prod"
region      = "us-east-1"

vpc_cidr           = "10.30.0.0/16"
az_count           = 3
single_nat_gateway = false

# Two pools, each sized and scaled on its own. Targets: about three quarters of the requests
# the planner says one instance holds within a 2 s TTFT and 100 ms TPOT at 512 prompt and 256
# output tokens (llmfleet plan --model M --input-len 512 --output-len 256 --ttft-ms 2000
# --tpot-ms 100 --all: 256 for the small model on a g5.xlarge, 128 for the large one on a
# g6e.xlarge, both fp16; `llmfleet plan pools` sizes both for a traffic mix and may pick
# fp8 for the large one). Spot for the small pool's instances above its base.
pools = {
  small = {
    instance_type = "g5.xlarge" # one A10G, 24 GB
    capacity      = { min = 2, max = 6, desired = 2 }
    spot          = { on_demand_base = 2, spot_percentage = 50, extra_instance_types = ["g6.xlarge"] }
    scaling = {
      policy                = "inflight-guard"
      inflight_per_instance = 192
      queue_guard           = { ttft_slo_s = 2, waiting_per_instance = 1, out_minutes = 2, quiet_minutes = 15 }
    }
    model = {
      id             = "Qwen/Qwen2.5-1.5B-Instruct"
      source         = "s3"
      served_name    = "qwen2.5-1.5b"
      max_model_len  = 8192
      root_volume_gb = 150
    }
  }
  large = {
    instance_type = "g6e.xlarge" # one L40S, 48 GB
    capacity      = { min = 2, max = 6, desired = 2 }
    scaling = {
      policy                = "inflight-guard"
      inflight_per_instance = 96
      queue_guard           = { ttft_slo_s = 2, waiting_per_instance = 1, out_minutes = 2, quiet_minutes = 15 }
    }
    model = {
      id                 = "meta-llama/Llama-3.1-8B-Instruct"
      source             = "s3"
      served_name        = "llama-3.1-8b"
      hf_token_parameter = "/llmfleet/prod/hf-token"
      max_model_len      = 16384
      root_volume_gb     = 250
    }
  }
}

# auto: prompts up to ~512 tokens to the small model, longer ones to the large.
routing = {
  length_rules = [
    { model = "qwen2.5-1.5b", max_prompt_tokens = 512 },
    { model = "llama-3.1-8b" },
  ]
}

api_keys_parameter = "/llmfleet/prod/api-keys"

alb = {
  internet_facing     = true
  certificate_arn     = "arn:aws:acm:us-east-1:123456789012:certificate/replace-with-yours"
  deletion_protection = true
}

rate_limit_per_ip = 300
api_throttle      = { rate_per_s = 50, burst = 100 }
api_clients       = ["web", "batch"]

alarm_email        = "oncall@example.com"
log_retention_days = 30
demo_site          = true
