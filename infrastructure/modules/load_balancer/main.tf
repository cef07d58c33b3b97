# Load balancer: an Application Load Balancer in front of the routers, with
# /ready health checks, an idle timeout long enough for streamed generations,
# invalid headers dropped, access logs in S3, and its own WAFv2 web ACL (per-IP
# rate limit and AWS managed rules). Public with HTTPS when a certificate is given,
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
# Write-once logs: SSE-S3, because ALB log delivery does not write to SSE-KMS buckets;
# no versions, since logs are never overwritten and expire after log_retention_days.
module "logs_bucket" {
  source          = "../bucket"
  name_prefix     = "${var.name}-alb-logs-"
  force_destroy   = !var.deletion_protection
  sse_algorithm   = "AES256"
  versioned       = false
  expiration_days = var.log_retention_days
  # The log delivery statement; the module adds the deny of every request without TLS.
  policy_json = data.aws_iam_policy_document.logs.json
}

data "aws_iam_policy_document" "logs" {
  statement {
    sid       = "ElbWritesAccessLogs"
    actions   = ["s3:PutObject"]
    resources = ["${module.logs_bucket.arn}/alb/*"]
    principals {
      type        = "AWS"
      identifiers = [data.aws_elb_service_account.this.arn]
    }
  }
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
    bucket  = module.logs_bucket.name
    prefix  = "alb"
    enabled = true
  }

  # ELB checks at creation that it may write to the bucket: the bucket module, policy
  # included, comes first (all of it: waiting on its lifecycle rules too costs nothing).
  depends_on = [module.logs_bucket]

  lifecycle {
    precondition {
      condition     = !var.internet_facing || local.https
      error_message = "An internet-facing load balancer needs certificate_arn: public traffic is HTTPS only."
    }
  }
}

resource "aws_lb_target_group" "router" {
  #checkov:skip=CKV_AWS_378:TLS ends at the load balancer; the hop to the router stays inside the VPC, and the instances' security group admits only the load balancer.
  name     = substr("${var.name}-router", 0, 32)
  port     = var.router_port
  protocol = "HTTP"
  vpc_id   = var.vpc_id
  # An instance leaving the group gets this long to finish its generations in flight (the
  # agent drains its router for as long: docs/deploy.md "Leaving the fleet"); the
  # deregistration ends as soon as nothing is in flight.
  deregistration_delay = var.deregistration_delay_s
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
# The load balancer's own web ACL (the API Gateway stage has another). Requests from
# inside the VPC are API Gateway's, arriving from the VPC link's few addresses: the
# per-IP limit leaves them to the stage's web ACL, which sees each client's address.

module "waf" {
  source                  = "../waf"
  name                    = "${var.name}-alb"
  rate_limit_per_ip       = var.rate_limit_per_ip
  rate_limit_exempt_cidrs = [var.vpc_cidr]
  log_retention_days      = var.log_retention_days
}

resource "aws_wafv2_web_acl_association" "alb" {
  resource_arn = aws_lb.this.arn
  web_acl_arn  = module.waf.web_acl_arn
}

# The web ACL moved into the waf module (shared with the API Gateway stage's).
moved {
  from = aws_wafv2_web_acl.this
  to   = module.waf.aws_wafv2_web_acl.this
}

moved {
  from = aws_wafv2_web_acl_logging_configuration.this
  to   = module.waf.aws_wafv2_web_acl_logging_configuration.this
}

# The access-log bucket moved into the bucket module (shared with the artifacts and
# the demo site's): the same bucket and settings, at new addresses.
moved {
  from = aws_s3_bucket.logs
  to   = module.logs_bucket.aws_s3_bucket.this
}

moved {
  from = aws_s3_bucket_public_access_block.logs
  to   = module.logs_bucket.aws_s3_bucket_public_access_block.this
}

moved {
  from = aws_s3_bucket_server_side_encryption_configuration.logs
  to   = module.logs_bucket.aws_s3_bucket_server_side_encryption_configuration.this
}

moved {
  from = aws_s3_bucket_lifecycle_configuration.logs
  to   = module.logs_bucket.aws_s3_bucket_lifecycle_configuration.this
}

moved {
  from = aws_s3_bucket_policy.logs
  to   = module.logs_bucket.aws_s3_bucket_policy.this
}
