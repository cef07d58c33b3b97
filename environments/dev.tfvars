# dev: one small GPU instance, one NAT gateway, an internal load balancer behind
# API Gateway (no domain or certificate needed), small limits, no deletion protection.
name        = "llmfleet-dev"
environment = "dev"
region      = "us-east-1"

vpc_cidr           = "10.20.0.0/16"
az_count           = 2
single_nat_gateway = true

instance_type = "g5.xlarge"
capacity      = { min = 1, max = 1, desired = 1 }
# prod's policy, so dev applies the same alarms; with min = max = 1 none can act.
scaling = { policy = "inflight-guard", inflight_per_instance = 48 }

model = {
  id             = "Qwen/Qwen2.5-1.5B-Instruct"
  source         = "s3" # staged into the artifacts bucket by make apply, as prod
  served_name    = "qwen2.5-1.5b"
  max_model_len  = 8192
  root_volume_gb = 150
}

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
