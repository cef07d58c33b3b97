# Load balancer: an Application Load Balancer in front of the routers, with
# /ready health checks, an idle timeout long enough for streamed generations,
# invalid headers dropped, access logs in S3, and a WAFv2 web ACL (per-IP rate
# limit and AWS managed rules). Public with HTTPS when a certificate is given,
# else internal and reachable only through API Gateway's VPC link.

data "aws_elb_service_account" "this" {}

locals {
  https = var.certificate_arn != null
}

# --- Security group ------------------------------------------------------------
# Public: 443 (and 80 to redirect) from anywhere; internal: the VPC only.
# Out: the router port, which the instances accept from this group alone.

resource "aws_security_group" "alb" {
  name        = "${var.name}-alb"
  description = "llmfleet load balancer"
  vpc_id      = var.vpc_id
}

resource "aws_vpc_security_group_ingress_rule" "listener" {
  for_each          = toset(local.https ? ["443", "80"] : ["80"])
  security_group_id = aws_security_group.alb.id
  description       = each.key == "443" ? "HTTPS" : (local.https ? "HTTP, redirected to HTTPS" : "HTTP from the VPC (API Gateway VPC link)")
  cidr_ipv4         = var.internet_facing ? "0.0.0.0/0" : var.vpc_cidr
  ip_protocol       = "tcp"
  from_port         = tonumber(each.key)
  to_port           = tonumber(each.key)
}

resource "aws_vpc_security_group_egress_rule" "to_routers" {
  security_group_id = aws_security_group.alb.id
  description       = "To the routers"
  cidr_ipv4         = var.vpc_cidr
  ip_protocol       = "tcp"
  from_port         = var.router_port
  to_port           = var.router_port
}

# --- Access logs ---------------------------------------------------------------

resource "aws_s3_bucket" "logs" {
  #checkov:skip=CKV_AWS_18:This is the access-log bucket; logging it to itself would loop and to another bucket only moves the question.
  #checkov:skip=CKV_AWS_21:Write-once logs that expire after log_retention_days; versions would only keep deleted logs longer.
  #checkov:skip=CKV_AWS_144:Access logs are diagnostics, not data to survive a region loss; replication would double their cost.
  #checkov:skip=CKV_AWS_145:ALB access logging supports SSE-S3 only (AWS does not deliver to SSE-KMS buckets); encrypted with AES256 below.
  #checkov:skip=CKV2_AWS_62:Nothing consumes new-object events for logs; notifications would have no subscriber.
  bucket_prefix = "${var.name}-alb-logs-"
  force_destroy = !var.deletion_protection
}

resource "aws_s3_bucket_public_access_block" "logs" {
  bucket                  = aws_s3_bucket.logs.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

# ALB access logs support SSE-S3 only (not KMS).
resource "aws_s3_bucket_server_side_encryption_configuration" "logs" {
  bucket = aws_s3_bucket.logs.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "logs" {
  bucket = aws_s3_bucket.logs.id
  rule {
    id     = "expire"
    status = "Enabled"
    filter {}
    expiration {
      days = var.log_retention_days
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }
}

data "aws_iam_policy_document" "logs" {
  statement {
    sid       = "ElbWritesAccessLogs"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.logs.arn}/alb/*"]
    principals {
      type        = "AWS"
      identifiers = [data.aws_elb_service_account.this.arn]
    }
  }
  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.logs.arn, "${aws_s3_bucket.logs.arn}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "logs" {
  bucket = aws_s3_bucket.logs.id
  policy = data.aws_iam_policy_document.logs.json
}

# --- Load balancer, target group, listeners ----------------------------------

resource "aws_lb" "this" {
  #checkov:skip=CKV_AWS_150:Deletion protection is per environment (var.deletion_protection): on in prod.tfvars, off in dev so that make destroy works; tests/environments checks both.
  name                       = substr("${var.name}-alb", 0, 32)
  load_balancer_type         = "application"
  internal                   = !var.internet_facing
  subnets                    = var.subnet_ids
  security_groups            = [aws_security_group.alb.id]
  idle_timeout               = var.idle_timeout_s
  drop_invalid_header_fields = true
  enable_deletion_protection = var.deletion_protection

  access_logs {
    bucket  = aws_s3_bucket.logs.id
    prefix  = "alb"
    enabled = true
  }

  depends_on = [aws_s3_bucket_policy.logs]

  lifecycle {
    precondition {
      condition     = !var.internet_facing || local.https
      error_message = "An internet-facing load balancer needs certificate_arn: public traffic is HTTPS only."
    }
  }
}

resource "aws_lb_target_group" "router" {
  #checkov:skip=CKV_AWS_378:TLS ends at the load balancer; the hop to the router stays inside the VPC, and the instances' security group admits only the load balancer.
  name                 = substr("${var.name}-router", 0, 32)
  port                 = var.router_port
  protocol             = "HTTP"
  vpc_id               = var.vpc_id
  deregistration_delay = 120 # let in-flight generations finish on scale-in
  # Least outstanding requests: generations vary a hundredfold in length.
  load_balancing_algorithm_type = "least_outstanding_requests"

  health_check {
    path                = "/ready"
    matcher             = "200"
    interval            = 15
    timeout             = 5
    healthy_threshold   = 2
    unhealthy_threshold = 3
  }
}

resource "aws_lb_listener" "https" {
  count             = local.https ? 1 : 0
  load_balancer_arn = aws_lb.this.arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = "ELBSecurityPolicy-TLS13-1-2-2021-06"
  certificate_arn   = var.certificate_arn

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.router.arn
  }
}

# With a certificate, port 80 only redirects; without one (internal), it serves.
resource "aws_lb_listener" "http" {
  #checkov:skip=CKV_AWS_2:With a certificate this listener only redirects to HTTPS; without one the load balancer must be internal (precondition above) and is reached only through API Gateway's VPC link, which is HTTPS to clients.
  load_balancer_arn = aws_lb.this.arn
  port              = 80
  protocol          = "HTTP"

  default_action {
    type             = local.https ? "redirect" : "forward"
    target_group_arn = local.https ? null : aws_lb_target_group.router.arn

    dynamic "redirect" {
      for_each = local.https ? [1] : []
      content {
        port        = "443"
        protocol    = "HTTPS"
        status_code = "HTTP_301"
      }
    }
  }
}

# --- WAF -----------------------------------------------------------------------
# A per-IP rate limit, and AWS's common, known-bad-inputs (Log4j and other exploit
# payloads) and anonymous-IP rule groups. The body-size rule of the common set is
# counted, not blocked: prompts are large. Anonymising services (Tor, open proxies,
# consumer VPNs) are blocked: with API keys handed out per client they are mostly
# used to spread abuse over many addresses. Hosting-provider addresses are only
# counted, since applications calling the API from their own cloud servers are the
# main legitimate traffic.

resource "aws_wafv2_web_acl" "this" {
  name  = "${var.name}-alb"
  scope = "REGIONAL"

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
      }
    }
    visibility_config {
      cloudwatch_metrics_enabled = true
      metric_name                = "${var.name}-alb-rate-limit"
      sampled_requests_enabled   = true
    }
  }

  rule {
    name     = "aws-common"
    priority = 2
    override_action {
      none {}
    }
    statement {
      managed_rule_group_statement {
        vendor_name = "AWS"
        name        = "AWSManagedRulesCommonRuleSet"
        rule_action_override {
          name = "SizeRestrictions_BODY"
          action_to_use {
            count {}
          }
        }
      }
    }
    visibility_config {
      cloudwatch_metrics_enabled = true
      metric_name                = "${var.name}-alb-common"
      sampled_requests_enabled   = true
    }
  }

  rule {
    name     = "aws-known-bad-inputs"
    priority = 3
    override_action {
      none {}
    }
    statement {
      managed_rule_group_statement {
        vendor_name = "AWS"
        name        = "AWSManagedRulesKnownBadInputsRuleSet"
      }
    }
    visibility_config {
      cloudwatch_metrics_enabled = true
      metric_name                = "${var.name}-alb-bad-inputs"
      sampled_requests_enabled   = true
    }
  }

  rule {
    name     = "aws-anonymous-ip"
    priority = 4
    override_action {
      none {}
    }
    statement {
      managed_rule_group_statement {
        vendor_name = "AWS"
        name        = "AWSManagedRulesAnonymousIpList"
        rule_action_override {
          name = "HostingProviderIPList"
          action_to_use {
            count {}
          }
        }
      }
    }
    visibility_config {
      cloudwatch_metrics_enabled = true
      metric_name                = "${var.name}-alb-anonymous-ip"
      sampled_requests_enabled   = true
    }
  }

  visibility_config {
    cloudwatch_metrics_enabled = true
    metric_name                = "${var.name}-alb"
    sampled_requests_enabled   = true
  }
}

# WAF logs: every request the web ACL sees, with the headers that carry credentials
# redacted before AWS writes the record. The group name must start with aws-waf-logs-.
resource "aws_cloudwatch_log_group" "waf" {
  #checkov:skip=CKV_AWS_158:CloudWatch Logs encrypts every log group at rest with a service key; credentials are redacted from these records before they are written, so a customer-managed key ($1/month plus a key policy to keep) adds little here.
  #checkov:skip=CKV_AWS_338:Retention is log_retention_days (30 by default, as the issue asks); keeping a year of per-request WAF records is a cost choice for each environment.
  name              = "aws-waf-logs-${var.name}"
  retention_in_days = var.log_retention_days
}

resource "aws_wafv2_web_acl_logging_configuration" "this" {
  resource_arn            = aws_wafv2_web_acl.this.arn
  log_destination_configs = [aws_cloudwatch_log_group.waf.arn]

  dynamic "redacted_fields" {
    for_each = ["authorization", "x-api-key"]
    content {
      single_header {
        name = redacted_fields.value
      }
    }
  }
}

resource "aws_wafv2_web_acl_association" "alb" {
  resource_arn = aws_lb.this.arn
  web_acl_arn  = aws_wafv2_web_acl.this.arn
}
