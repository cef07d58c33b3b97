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
scaling       = { scale_out_pct = 70, scale_in_pct = 30, evaluation_minutes = 3, cooldown_s = 600 }
spot          = { on_demand_base = 2, spot_percentage = 50, extra_instance_types = ["g6.2xlarge"] }

model = {
  id                 = "meta-llama/Llama-3.1-8B-Instruct"
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
