# Pools: the internal Application Load Balancer between a deployment's pools (one model
# each, its own Auto Scaling group). Every router takes any request from the public entry;
# one for a model another pool serves goes here with the header x-llmfleet-pool naming that
# pool, and a listener rule per pool forwards it to that pool's target group. The routers
# send on at most once (a request carrying the header is served by its router's own engine
# or refused; server/service.py), so no request loops. Made only with two pools or more.
#
# Why a load balancer and not a router tier: each request for another pool crosses one more
# router, on a GPU instance that is there anyway, instead of every request crossing a CPU
# fleet that would need its own scaling, health and failure modes. It costs one internal
# load balancer (about $16 a month and LCUs) and a hop only for requests whose model lives
# elsewhere. A pool with no healthy instance makes this load balancer answer 503 for it:
# the routers take the pool out (auto moves to the next model) until their checks of its
# /ready pass again.

locals {
  # Target group names are at most 32 characters: the pool's name, cut, and a hash of it
  # that keeps two long names apart.
  target_group_names = { for pool in var.pools :
  pool => "${substr("${var.name}-${pool}", 0, 25)}-${substr(md5(pool), 0, 6)}" }
  # A rule's priority from its pool's name alone, so that adding or removing a pool moves no
  # other rule (AWS refuses a priority still in use, and an apply updates rules in no set
  # order). 1 to 50,000, AWS's range; variables.tf refuses two names that meet.
  priorities = { for pool in var.pools : pool => 1 + parseint(substr(md5(pool), 0, 4), 16) % 50000 }
}

# --- Security group ------------------------------------------------------------
# In: HTTP from the pools' instances only (the root module adds one rule per pool, as the
# instances' groups are made after this one). Out: the routers' port.

resource "aws_security_group" "this" {
  name        = "${var.name}-pools"
  description = "llmfleet load balancer between pools"
  vpc_id      = var.vpc_id
}

resource "aws_vpc_security_group_egress_rule" "to_routers" {
  security_group_id = aws_security_group.this.id
  description       = "To the routers"
  cidr_ipv4         = var.vpc_cidr
  ip_protocol       = "tcp"
  from_port         = var.router_port
  to_port           = var.router_port
}

# --- Load balancer, target groups, listener --------------------------------------

resource "aws_lb" "this" {
  #checkov:skip=CKV_AWS_150:Only the routers reach it and it holds no state: it is made again with the pools, and deletion protection would stop make destroy.
  #checkov:skip=CKV2_AWS_20:Internal, reached only by the routers' security groups inside the VPC; TLS ends at the public entry (docs/security.md).
  #checkov:skip=CKV2_AWS_28:Internal, reached only by the routers, which have already passed the public entry's WAF; a web ACL here would inspect every request twice.
  name                       = substr("${var.name}-pools", 0, 32)
  load_balancer_type         = "application"
  internal                   = true
  subnets                    = var.subnet_ids
  security_groups            = [aws_security_group.this.id]
  idle_timeout               = var.idle_timeout_s
  drop_invalid_header_fields = true
  enable_deletion_protection = false

  access_logs {
    bucket  = var.access_logs_bucket
    prefix  = "alb/pools"
    enabled = true
  }
}

resource "aws_lb_target_group" "pool" {
  #checkov:skip=CKV_AWS_378:The hop from the routers to a pool's routers stays inside the VPC, between security groups that admit only each other.
  for_each = toset(var.pools)
  name     = local.target_group_names[each.key]
  port     = var.router_port
  protocol = "HTTP"
  vpc_id   = var.vpc_id
  # As the public entry's: a leaving instance finishes the generations it holds.
  deregistration_delay          = var.deregistration_delay_s
  load_balancing_algorithm_type = "least_outstanding_requests"

  # /ready answers for the router's own engine: the pool's routers that serve.
  health_check {
    path                = "/ready"
    matcher             = "200"
    interval            = 15
    timeout             = 5
    healthy_threshold   = 2
    unhealthy_threshold = 3
  }

  tags = { Pool = each.key }
}

resource "aws_lb_listener" "http" {
  #checkov:skip=CKV_AWS_2:Internal, between the routers' security groups inside the VPC; clients' TLS ends at the public entry.
  #checkov:skip=CKV_AWS_103:No TLS on this internal listener (as above).
  load_balancer_arn = aws_lb.this.arn
  port              = 80
  protocol          = "HTTP"

  # A request naming no pool this deployment has: OpenAI's error shape, as the router's.
  default_action {
    type = "fixed-response"
    fixed_response {
      content_type = "application/json"
      status_code  = "404"
      message_body = jsonencode({ error = {
        message = "no pool of this deployment is named in the x-llmfleet-pool header"
        type    = "invalid_request_error", param = null, code = "pool_not_found"
      } })
    }
  }
}

resource "aws_lb_listener_rule" "pool" {
  for_each     = toset(var.pools)
  listener_arn = aws_lb_listener.http.arn
  priority     = local.priorities[each.key]

  condition {
    http_header {
      http_header_name = "x-llmfleet-pool"
      values           = [each.key]
    }
  }

  action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.pool[each.key].arn
  }
}
