# dev with two pools: a small model on a small GPU and a larger one on a larger GPU, each
# its own Auto Scaling group, one instance each. Every router takes any request; `auto`
# sends short prompts to the small model and the rest to the large one (router.toml's
# length rules; docs/router.md), and moves to the other pool when one has no instance.
# make apply ENV=dev-pools (state in dev-pools.s3.tfbackend's key).
name        = "llmfleet-devp"
environment = "dev"
region      = "us-east-1"

vpc_cidr           = "10.20.0.0/16"
az_count           = 2
single_nat_gateway = true

# Targets: about three quarters of the requests the planner says one instance holds within a
# 2 s TTFT and 100 ms TPOT at 512 prompt and 256 output tokens (llmfleet plan --model M
# --input-len 512 --output-len 256 --ttft-ms 2000 --tpot-ms 100 --all: 256 for the small
# model on a g5.xlarge, 128 for the large one on a g6e.xlarge, both fp16; `llmfleet plan pools`
# sizes both for a traffic mix and may pick fp8 for the large one).
pools = {
  small = {
    instance_type = "g5.xlarge" # one A10G, 24 GB
    capacity      = { min = 1, max = 1, desired = 1 }
    scaling       = { policy = "inflight-guard", inflight_per_instance = 192 }
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
    capacity      = { min = 1, max = 1, desired = 1 }
    scaling       = { policy = "inflight-guard", inflight_per_instance = 96 }
    model = {
      id                 = "meta-llama/Llama-3.1-8B-Instruct"
      source             = "s3"
      served_name        = "llama-3.1-8b"
      hf_token_parameter = "/llmfleet/dev/hf-token"
      max_model_len      = 16384
      root_volume_gb     = 200
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

# A record of every request served, without prompts or generated text (docs/router.md,
# "Archive"; content = "full" keeps those too), in a bucket of its own for 30 days, which a
# destroy of this disposable deployment deletes with its records.
archive = { content = "metadata", retention_days = 30, force_destroy = true }

api_keys_parameter = "/llmfleet/dev/api-keys"

alb = {
  internet_facing     = false
  deletion_protection = false
}

rate_limit_per_ip = 100
api_throttle      = { rate_per_s = 5, burst = 10, quota_per_month = 100000 }
api_clients       = ["dev"]

log_retention_days = 30
demo_site          = true
