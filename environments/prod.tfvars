# prod: a multi-AZ fleet of 2-6 GPU instances, one NAT gateway per AZ, a public
# HTTPS load balancer (your ACM certificate) beside API Gateway, both behind WAF,
# deletion protection, alarms by e-mail.
name        = "llmfleet-prod"
environment = "prod"
region      = "us-east-1"

vpc_cidr           = "10.30.0.0/16"
az_count           = 3
single_nat_gateway = false

instance_type = "g5.2xlarge"
capacity      = { min = 2, max = 6, desired = 2 }
# inflight-guard, as the simulator recommends (README, "Scaling"): target tracking at 48
# requests running or waiting per instance (about three quarters of the 66 the planner says
# a g5.2xlarge holds within the SLO), out too when the worst p95 TTFT nears the 2 s SLO, in
# only after 15 quiet minutes, 300 s apart (queue_guard.cooldown_s, its default). The GPU
# thresholds and cooldown_s (600) are the gpu policy's: kept for `make simulate`'s
# comparison and for policy = "gpu".
scaling = {
  policy                = "inflight-guard"
  inflight_per_instance = 48
  queue_guard           = { ttft_slo_s = 2, waiting_per_instance = 1, out_minutes = 2, quiet_minutes = 15 }
  scale_out_pct         = 70
  scale_in_pct          = 30
  cooldown_s            = 600
  # A higher minimum in business hours, for bursts no reactive policy absorbs:
  # scheduled_minimums = [{ name = "business-hours", start = "0 8 * * MON-FRI",
  #   end = "0 18 * * MON-FRI", min_size = 3, time_zone = "America/New_York" }]
}
spot = { on_demand_base = 2, spot_percentage = 50, extra_instance_types = ["g6.2xlarge"] }
# A warm pool of stopped instances that booted, fetched and loaded once (a scale-out starts
# one instead of launching from scratch) is on-demand only: a stopped spot instance holds no
# capacity. Without spot (spot_percentage = 0), e.g.:
# warm_pool = { min_size = 1 }

# Loaded at boot from the artifacts bucket, where `make apply` stages it once (make
# stage-model: from the hub, with the token from SSM), not from the hub on every start.
model = {
  id                 = "meta-llama/Llama-3.1-8B-Instruct"
  source             = "s3"
  served_name        = "llama-3.1-8b"
  hf_token_parameter = "/llmfleet/prod/hf-token"
  max_model_len      = 16384
  root_volume_gb     = 250
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
