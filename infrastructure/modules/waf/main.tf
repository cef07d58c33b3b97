# WAF: one web ACL for one public entry (the load balancer, the API Gateway
# stage, the demo site's CloudFront distribution), each entry with its own, so
# that each sees its own clients' addresses: a per-IP rate limit, AWS's common,
# known-bad-inputs and anonymous-IP rule groups, and logs with the credential
# headers redacted. Regional, or CloudFront-scoped (created through a us-east-1 provider).

locals {
  # Rules that inspect the request body only count (they label and log, never block).
  # Bodies here are prompts, and coding prompts hold `<script>`, `../../etc/passwd`,
  # http://169.254.169.254 or `${jndi:...}` as text to talk about: the XSS, LFI, RFI,
  # SSRF and Log4j body rules would refuse them with a 403. Nothing behind this ACL
  # renders a body as HTML, opens a path or URL from it, or logs it through Java; IMDSv2
  # (a token, one hop) answers no request forged from a body; and prompts exceed the
  # 8 KB size rule by design (the routers cap body sizes themselves). Header, URI and
  # query-string rules still block. These `count` lists apply to entries that serve
  # the API (serves_api); elsewhere (the demo site) every rule of the groups blocks.
  managed_groups = {
    common = {
      priority = 2, group = "AWSManagedRulesCommonRuleSet",
      count    = ["SizeRestrictions_BODY", "CrossSiteScripting_BODY", "GenericLFI_BODY", "GenericRFI_BODY", "EC2MetaDataSSRF_BODY"]
    }
    known-bad-inputs = {
      priority = 3, group = "AWSManagedRulesKnownBadInputsRuleSet",
      count    = ["Log4JRCE_BODY", "JavaDeserializationRCE_BODY"]
    }
    # Tor, open proxies and consumer VPNs are blocked: with keys handed out per client
    # they mostly spread abuse over many addresses. Hosting providers are only counted at
    # the API: applications calling from their own cloud servers are its main legitimate traffic.
    anonymous-ip = {
      priority = 4, group = "AWSManagedRulesAnonymousIpList",
      count    = ["HostingProviderIPList"]
    }
  }
}

# --- Sources the per-IP limit leaves alone -----------------------------------
# At the load balancer, API Gateway's traffic arrives from the VPC link's few
# addresses inside the VPC: limiting per source address there would let one busy
# gateway client block every other. That traffic is limited per client at the
# stage's own web ACL instead; clients outside the VPC cannot forge a source inside it.

resource "aws_wafv2_ip_set" "exempt" {
  count              = length(var.rate_limit_exempt_cidrs) > 0 ? 1 : 0
  name               = "${var.name}-rate-limit-exempt"
  description        = "Sources whose requests another web ACL has already rate-limited per client"
  scope              = var.scope
  ip_address_version = "IPV4"
  addresses          = var.rate_limit_exempt_cidrs
}

# --- Web ACL -------------------------------------------------------------------

resource "aws_wafv2_web_acl" "this" {
  #checkov:skip=CKV_AWS_192:The known-bad-inputs group (Log4j) is in the dynamic rule block below, whose names checkov cannot read; tests/waf.tftest.hcl asserts the three managed groups.
  name  = var.name
  scope = var.scope

  default_action {
    allow {}
  }

  rule {
    name     = "rate-limit-per-ip"
    priority = 1
    action {
      block {}
    }
    statement {
      rate_based_statement {
        limit                 = var.rate_limit_per_ip
        evaluation_window_sec = 60
        aggregate_key_type    = "IP"
        dynamic "scope_down_statement" {
          for_each = aws_wafv2_ip_set.exempt
          content {
            not_statement {
              statement {
                ip_set_reference_statement {
                  arn = scope_down_statement.value.arn
                }
              }
            }
          }
        }
      }
    }
    visibility_config {
      cloudwatch_metrics_enabled = true
      metric_name                = "${var.name}-rate-limit"
      sampled_requests_enabled   = true
    }
  }

  dynamic "rule" {
    for_each = local.managed_groups
    content {
      name     = "aws-${rule.key}"
      priority = rule.value.priority
      override_action {
        none {}
      }
      statement {
        managed_rule_group_statement {
          vendor_name = "AWS"
          name        = rule.value.group
          dynamic "rule_action_override" {
            for_each = var.serves_api ? rule.value.count : []
            content {
              name = rule_action_override.value
              action_to_use {
                count {}
              }
            }
          }
        }
      }
      visibility_config {
        cloudwatch_metrics_enabled = true
        metric_name                = "${var.name}-${rule.key}"
        sampled_requests_enabled   = true
      }
    }
  }

  visibility_config {
    cloudwatch_metrics_enabled = true
    metric_name                = var.name
    sampled_requests_enabled   = true
  }
}

# --- Logs ----------------------------------------------------------------------
# Every request the web ACL sees, with the headers that carry credentials
# (redacted_headers) redacted before AWS writes the record. The group name must
# start with aws-waf-logs-; a CloudFront-scoped ACL's group is in us-east-1 with it.

resource "aws_cloudwatch_log_group" "this" {
  #checkov:skip=CKV_AWS_158:CloudWatch Logs encrypts every log group at rest with a service key; credentials are redacted from these records before they are written, so a customer-managed key ($1/month plus a key policy to keep) adds little here.
  #checkov:skip=CKV_AWS_338:Retention is log_retention_days (30 by default, as the issue asks); keeping a year of per-request WAF records is a cost choice for each environment.
  name              = "aws-waf-logs-${var.name}"
  retention_in_days = var.log_retention_days
}

resource "aws_wafv2_web_acl_logging_configuration" "this" {
  resource_arn            = aws_wafv2_web_acl.this.arn
  log_destination_configs = [aws_cloudwatch_log_group.this.arn]

  dynamic "redacted_fields" {
    for_each = var.redacted_headers
    content {
      single_header {
        name = redacted_fields.value
      }
    }
  }
}
