# The load balancer module: HTTPS only when public, invalid headers dropped,
# the WAF rate limit, and refusal of a public endpoint without a certificate.

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
  mock_resource "aws_s3_bucket" {
    defaults = { arn = "arn:aws:s3:::t-logs", id = "t-logs" }
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
    condition = toset([for r in aws_wafv2_web_acl.this.rule : one(r.statement[0].managed_rule_group_statement[*].name) if length(r.statement[0].managed_rule_group_statement) > 0]) == toset([
    "AWSManagedRulesCommonRuleSet", "AWSManagedRulesKnownBadInputsRuleSet", "AWSManagedRulesAnonymousIpList"])
    error_message = "The web ACL runs AWS's common, known-bad-inputs and anonymous-IP rule groups."
  }

  assert {
    condition     = toset([for f in aws_wafv2_web_acl_logging_configuration.this.redacted_fields : f.single_header[0].name]) == toset(["authorization", "x-api-key"])
    error_message = "WAF logs redact the headers that carry API keys."
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
    condition = one([for r in aws_wafv2_web_acl.this.rule : r.statement[0].rate_based_statement[0].limit
    if r.name == "rate-limit-per-ip"]) == 100
    error_message = "WAF limits each IP to rate_limit_per_ip (default 100) per minute."
  }
  assert {
    condition     = aws_wafv2_web_acl_association.alb.resource_arn == aws_lb.this.arn
    error_message = "The web ACL must protect the load balancer."
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
