# The waf module: one web ACL per public entry, its per-IP limit, the managed rule
# groups with the body rules counting at the API, and redacted logs; regional for the
# load balancer and the API stage, CloudFront-scoped for the demo site.

mock_provider "aws" {
  mock_resource "aws_wafv2_web_acl" {
    defaults = { arn = "arn:aws:wafv2:us-east-1:123456789012:regional/webacl/t/1" }
  }
  mock_resource "aws_wafv2_ip_set" {
    defaults = { arn = "arn:aws:wafv2:us-east-1:123456789012:regional/ipset/t/1" }
  }
  mock_resource "aws_cloudwatch_log_group" {
    defaults = { arn = "arn:aws:logs:us-east-1:123456789012:log-group:aws-waf-logs-t" }
  }
}

variables {
  name = "llmfleet-test-api"
}

run "managed_groups_rate_limit_and_redacted_logs" {
  command = apply
  module {
    source = "./modules/waf"
  }

  assert {
    condition = toset([for r in aws_wafv2_web_acl.this.rule : one(r.statement[0].managed_rule_group_statement[*].name) if length(r.statement[0].managed_rule_group_statement) > 0]) == toset([
    "AWSManagedRulesCommonRuleSet", "AWSManagedRulesKnownBadInputsRuleSet", "AWSManagedRulesAnonymousIpList"])
    error_message = "The web ACL runs AWS's common, known-bad-inputs and anonymous-IP rule groups."
  }
  assert {
    condition = one([for r in aws_wafv2_web_acl.this.rule : r.statement[0].rate_based_statement[0] if r.name == "rate-limit-per-ip"]).limit == 100 && (
    one([for r in aws_wafv2_web_acl.this.rule : r.statement[0].rate_based_statement[0] if r.name == "rate-limit-per-ip"]).aggregate_key_type == "IP")
    error_message = "Each source address is limited to rate_limit_per_ip (default 100) a minute."
  }
  assert {
    condition     = length(one([for r in aws_wafv2_web_acl.this.rule : r.statement[0].rate_based_statement[0] if r.name == "rate-limit-per-ip"]).scope_down_statement) == 0 && length(aws_wafv2_ip_set.exempt) == 0
    error_message = "Without exempt ranges the limit applies to every source (the stage sees each client's own address)."
  }
  assert {
    condition     = toset([for f in aws_wafv2_web_acl_logging_configuration.this.redacted_fields : f.single_header[0].name]) == toset(["authorization", "x-api-key"])
    error_message = "WAF logs redact the headers that carry API keys."
  }
  assert {
    condition     = aws_wafv2_web_acl_logging_configuration.this.log_destination_configs == toset([aws_cloudwatch_log_group.this.arn]) && aws_cloudwatch_log_group.this.name == "aws-waf-logs-llmfleet-test-api"
    error_message = "Every request is logged to aws-waf-logs-NAME."
  }
  assert {
    condition     = aws_wafv2_web_acl.this.scope == "REGIONAL"
    error_message = "Web ACLs are regional by default (a load balancer or an API Gateway stage)."
  }
}

# The common rule set blocked request bodies holding `<script>` or `../../etc/passwd`,
# which coding prompts contain: legitimate completions got a 403.
run "prompts_that_quote_code_are_not_blocked_by_body_rules" {
  command = apply
  module {
    source = "./modules/waf"
  }

  assert {
    condition = toset([for o in one([for r in aws_wafv2_web_acl.this.rule : r.statement[0].managed_rule_group_statement[0] if r.name == "aws-common"]).rule_action_override : o.name if length(o.action_to_use[0].count) == 1]) == toset([
    "SizeRestrictions_BODY", "CrossSiteScripting_BODY", "GenericLFI_BODY", "GenericRFI_BODY", "EC2MetaDataSSRF_BODY"])
    error_message = "Every body rule of the common rule set counts instead of blocking."
  }
  assert {
    condition = toset([for o in one([for r in aws_wafv2_web_acl.this.rule : r.statement[0].managed_rule_group_statement[0] if r.name == "aws-known-bad-inputs"]).rule_action_override : o.name if length(o.action_to_use[0].count) == 1]) == toset([
    "Log4JRCE_BODY", "JavaDeserializationRCE_BODY"])
    error_message = "The known-bad-inputs body rules count; its header, URI and query rules still block."
  }
  assert {
    condition = toset([for o in one([for r in aws_wafv2_web_acl.this.rule : r.statement[0].managed_rule_group_statement[0] if r.name == "aws-anonymous-ip"]).rule_action_override : o.name]) == toset([
    "HostingProviderIPList"])
    error_message = "Hosting providers are counted (applications on cloud servers); other anonymisers are blocked."
  }
}

# At the load balancer every API Gateway request came from the VPC link's few
# addresses, so one busy gateway client used up the per-IP limit of all of them.
run "gateway_traffic_is_not_rate_limited_as_one_client_at_the_load_balancer" {
  command = apply
  module {
    source = "./modules/waf"
  }
  variables {
    name                    = "llmfleet-test-alb"
    rate_limit_exempt_cidrs = ["10.20.0.0/16"]
  }

  assert {
    condition     = aws_wafv2_ip_set.exempt[0].addresses == toset(["10.20.0.0/16"]) && aws_wafv2_ip_set.exempt[0].scope == "REGIONAL"
    error_message = "The exempt range (the VPC) is an IP set."
  }
  assert {
    condition = one([for r in aws_wafv2_web_acl.this.rule : r.statement[0].rate_based_statement[0] if r.name == "rate-limit-per-ip"]).scope_down_statement[0].not_statement[0].statement[0].ip_set_reference_statement[0].arn == (
    aws_wafv2_ip_set.exempt[0].arn)
    error_message = "The per-IP limit counts only requests from outside the exempt range."
  }
}

run "rejects_a_rate_limit_below_the_waf_minimum" {
  command = plan
  module {
    source = "./modules/waf"
  }
  variables {
    rate_limit_per_ip = 5
  }
  expect_failures = [var.rate_limit_per_ip]
}

run "rejects_an_exempt_range_that_is_not_an_ipv4_cidr" {
  command = plan
  module {
    source = "./modules/waf"
  }
  variables {
    rate_limit_exempt_cidrs = ["10.20.0.0"]
  }
  expect_failures = [var.rate_limit_exempt_cidrs]
}

# The demo site's web ACL, as the root module makes it (module.demo_waf): the same
# rules as before it moved here from the demo module.
run "cloudfront_scoped_for_the_demo_site_with_every_managed_rule_blocking" {
  command = apply
  module {
    source = "./modules/waf"
  }
  variables {
    name              = "llmfleet-test-site"
    scope             = "CLOUDFRONT"
    rate_limit_per_ip = 300
    serves_api        = false
    redacted_headers  = []
  }

  assert {
    condition     = aws_wafv2_web_acl.this.scope == "CLOUDFRONT" && aws_wafv2_web_acl.this.name == "llmfleet-test-site"
    error_message = "The site's web ACL is CloudFront-scoped."
  }
  assert {
    condition = toset([for r in aws_wafv2_web_acl.this.rule : one(r.statement[0].managed_rule_group_statement[*].name) if length(r.statement[0].managed_rule_group_statement) > 0]) == toset([
    "AWSManagedRulesCommonRuleSet", "AWSManagedRulesKnownBadInputsRuleSet", "AWSManagedRulesAnonymousIpList"])
    error_message = "The site's web ACL runs AWS's common, known-bad-inputs (Log4j) and anonymous-IP rule groups."
  }
  assert {
    condition     = alltrue([for r in aws_wafv2_web_acl.this.rule : length(r.statement[0].managed_rule_group_statement[0].rule_action_override) == 0 if length(r.statement[0].managed_rule_group_statement) > 0])
    error_message = "No managed rule only counts at the site: it takes no prompts and no API clients."
  }
  assert {
    condition = one([for r in aws_wafv2_web_acl.this.rule : r.statement[0].rate_based_statement[0] if r.name == "rate-limit-per-ip"]).limit == 300 && (
    length(one([for r in aws_wafv2_web_acl.this.rule : r.statement[0].rate_based_statement[0] if r.name == "rate-limit-per-ip"]).scope_down_statement) == 0)
    error_message = "The site's web ACL limits every IP to 300 a minute."
  }
  assert {
    condition     = length(aws_wafv2_web_acl_logging_configuration.this.redacted_fields) == 0 && aws_cloudwatch_log_group.this.name == "aws-waf-logs-llmfleet-test-site"
    error_message = "The site's requests are logged to aws-waf-logs-NAME, with nothing to redact."
  }
}

run "rejects_an_unknown_scope" {
  command = plan
  module {
    source = "./modules/waf"
  }
  variables {
    scope = "GLOBAL"
  }
  expect_failures = [var.scope]
}

# WAF matches single headers in lower case: "Authorization" would redact nothing.
run "rejects_a_redacted_header_not_in_lower_case" {
  command = plan
  module {
    source = "./modules/waf"
  }
  variables {
    redacted_headers = ["Authorization"]
  }
  expect_failures = [var.redacted_headers]
}
