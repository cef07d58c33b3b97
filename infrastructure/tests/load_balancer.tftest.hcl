# The load balancer module: HTTPS only when public, invalid headers dropped,
# its own web ACL, and refusal of a public endpoint without a certificate.

mock_provider "aws" {
  mock_data "aws_elb_service_account" {
    defaults = { arn = "arn:aws:iam::127311923021:root" }
  }
  mock_data "aws_iam_policy_document" {
    defaults = { json = "{\"Version\":\"2012-10-17\",\"Statement\":[]}" }
  }
  mock_resource "aws_lb" {
    defaults = { arn = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/t/1", arn_suffix = "app/t/1", dns_name = "t.elb.amazonaws.com" }
  }
  mock_resource "aws_lb_target_group" {
    defaults = { arn = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/t/1", arn_suffix = "targetgroup/t/1" }
  }
  mock_resource "aws_wafv2_web_acl" {
    defaults = { arn = "arn:aws:wafv2:us-east-1:123456789012:regional/webacl/t/1" }
  }
  mock_resource "aws_wafv2_ip_set" {
    defaults = { arn = "arn:aws:wafv2:us-east-1:123456789012:regional/ipset/t/1" }
  }
  mock_resource "aws_s3_bucket" {
    defaults = { arn = "arn:aws:s3:::t-logs", id = "t-logs", bucket = "t-logs" }
  }
  mock_resource "aws_cloudwatch_log_group" {
    defaults = { arn = "arn:aws:logs:us-east-1:123456789012:log-group:aws-waf-logs-t" }
  }
}

variables {
  name       = "llmfleet-test"
  vpc_id     = "vpc-0123"
  vpc_cidr   = "10.20.0.0/16"
  subnet_ids = ["subnet-a", "subnet-b"]
}

run "internal_without_certificate" {
  command = apply
  module {
    source = "./modules/load_balancer"
  }

  assert {
    condition     = aws_lb.this.internal && aws_lb.this.drop_invalid_header_fields
    error_message = "Without a certificate the load balancer is internal, and drops invalid headers."
  }
  assert {
    condition     = aws_vpc_security_group_ingress_rule.listener["80"].cidr_ipv4 == "10.20.0.0/16"
    error_message = "An internal load balancer accepts only the VPC."
  }
  assert {
    condition     = aws_lb_target_group.router.health_check[0].path == "/ready"
    error_message = "Targets are checked on the router's /ready."
  }
  assert {
    condition     = aws_lb.this.idle_timeout >= 600
    error_message = "The idle timeout must allow long generations."
  }
  assert {
    condition     = tonumber(aws_lb_target_group.router.deregistration_delay) == 300 && output.deregistration_delay_s == 300
    error_message = "A leaving target keeps its requests in flight for the drain's bound."
  }
  assert {
    condition     = aws_wafv2_web_acl_association.alb.resource_arn == aws_lb.this.arn && aws_wafv2_web_acl_association.alb.web_acl_arn == module.waf.web_acl_arn
    error_message = "The load balancer's own web ACL must protect it."
  }
}

# One web ACL served the load balancer and the API Gateway stage; at the load balancer
# every gateway request came from the VPC link's few addresses, so one busy gateway
# client rate-limited all of them.
run "gateway_clients_are_not_rate_limited_as_one_at_the_load_balancer" {
  command = apply
  module {
    source = "./modules/load_balancer"
  }

  assert {
    condition     = module.waf.rate_limit_exempt_cidrs == tolist(["10.20.0.0/16"])
    error_message = "The load balancer's per-IP limit leaves requests from inside the VPC (API Gateway's) to the stage's web ACL."
  }
}

run "log_bucket_refuses_requests_without_tls_and_admits_log_delivery" {
  command = apply
  module {
    source = "./modules/load_balancer"
  }

  assert {
    condition = anytrue([for s in jsondecode(module.logs_bucket.policy).Statement :
      s.Effect == "Deny" && s.Action == "s3:*" && s.Condition == { Bool = { "aws:SecureTransport" = "false" } } &&
    s.Resource == ["arn:aws:s3:::t-logs", "arn:aws:s3:::t-logs/*"]])
    error_message = "The access-log bucket denies every request made without TLS."
  }
  assert {
    condition     = one(data.aws_iam_policy_document.logs.statement).sid == "ElbWritesAccessLogs"
    error_message = "The bucket policy still lets the load balancer deliver its logs."
  }
  assert {
    condition     = aws_lb.this.access_logs[0].bucket == "t-logs" && aws_lb.this.access_logs[0].enabled
    error_message = "The load balancer writes its access logs to the bucket."
  }
}

run "public_is_https_with_redirect" {
  command = apply
  module {
    source = "./modules/load_balancer"
  }
  variables {
    internet_facing     = true
    certificate_arn     = "arn:aws:acm:us-east-1:123456789012:certificate/abc"
    deletion_protection = true
  }

  assert {
    condition     = !aws_lb.this.internal && aws_lb.this.enable_deletion_protection
    error_message = "Public and protected as asked."
  }
  assert {
    condition     = aws_lb_listener.https[0].protocol == "HTTPS" && startswith(aws_lb_listener.https[0].ssl_policy, "ELBSecurityPolicy-TLS13")
    error_message = "HTTPS with a TLS 1.3 policy."
  }
  assert {
    condition     = aws_lb_listener.http.default_action[0].type == "redirect" && aws_lb_listener.http.default_action[0].redirect[0].protocol == "HTTPS"
    error_message = "Plain HTTP only redirects to HTTPS."
  }
}

run "public_without_certificate_is_refused" {
  command = plan
  module {
    source = "./modules/load_balancer"
  }
  variables {
    internet_facing = true
  }
  expect_failures = [aws_lb.this]
}

run "rejects_a_malformed_certificate" {
  command = plan
  module {
    source = "./modules/load_balancer"
  }
  variables {
    certificate_arn = "my-cert"
  }
  expect_failures = [var.certificate_arn]
}

run "rejects_a_rate_limit_below_the_waf_minimum" {
  command = plan
  module {
    source = "./modules/load_balancer"
  }
  variables {
    rate_limit_per_ip = 5
  }
  expect_failures = [var.rate_limit_per_ip]
}
