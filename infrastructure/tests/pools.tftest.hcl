# The load balancer between pools: internal, a target group and a header rule per pool,
# target group names within 32 characters and apart, an OpenAI-shaped 404 for a request
# naming no pool, and refusal of fewer than two pools or a bad name.

mock_provider "aws" {
  mock_resource "aws_lb" {
    defaults = { arn = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/p/1", arn_suffix = "app/p/1", dns_name = "internal-p.elb.amazonaws.com" }
  }
  mock_resource "aws_lb_target_group" {
    defaults = { arn = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/p/1", arn_suffix = "targetgroup/p/1" }
  }
  mock_resource "aws_lb_listener" {
    defaults = { arn = "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/p/1/1" }
  }
}

variables {
  name               = "llmfleet-longest-name"
  pools              = ["small", "a-pool-name-twenty-1", "a-pool-name-twenty-2"]
  vpc_id             = "vpc-0123"
  vpc_cidr           = "10.20.0.0/16"
  subnet_ids         = ["subnet-a", "subnet-b"]
  access_logs_bucket = "llmfleet-logs"
}

run "a_rule_and_a_target_group_per_pool" {
  command = apply
  module {
    source = "./modules/pools"
  }

  assert {
    condition     = aws_lb.this.internal && aws_lb.this.drop_invalid_header_fields && aws_lb.this.access_logs[0].prefix == "alb/pools"
    error_message = "The load balancer between pools is internal, drops invalid headers and logs under alb/ of the entry's bucket."
  }
  assert {
    condition = alltrue([for pool in var.pools :
      one([for c in aws_lb_listener_rule.pool[pool].condition : one(c.http_header)]) == { http_header_name = "x-llmfleet-pool", values = toset([pool]) } &&
    aws_lb_listener_rule.pool[pool].action[0].target_group_arn == aws_lb_target_group.pool[pool].arn])
    error_message = "Each pool's header value forwards to its own target group."
  }
  assert {
    condition     = length(distinct([for r in aws_lb_listener_rule.pool : r.priority])) == 3
    error_message = "Every rule has a priority of its own."
  }
  # Two 20-character names that share their first 19: cut to 32, they would collide.
  assert {
    condition     = alltrue([for g in aws_lb_target_group.pool : length(g.name) <= 32]) && length(distinct([for g in aws_lb_target_group.pool : g.name])) == 3
    error_message = "Target group names fit 32 characters and stay apart."
  }
  assert {
    condition     = alltrue([for g in aws_lb_target_group.pool : g.health_check[0].path == "/ready" && g.deregistration_delay == "300"])
    error_message = "A pool's target group checks /ready and keeps a leaving instance's requests for the drain bound."
  }
  assert {
    condition = (aws_lb_listener.http.default_action[0].fixed_response[0].status_code == "404" &&
    jsondecode(aws_lb_listener.http.default_action[0].fixed_response[0].message_body).error.code == "pool_not_found")
    error_message = "A request naming no pool gets 404 in OpenAI's error shape."
  }
  assert {
    condition     = output.url == "http://internal-p.elb.amazonaws.com" && toset(keys(output.target_group_arns)) == toset(var.pools)
    error_message = "The URL the routers send to, and each pool's target group."
  }
}

run "one_pool_needs_no_load_balancer_between_pools" {
  command = plan
  module {
    source = "./modules/pools"
  }
  variables {
    pools = ["small"]
  }
  expect_failures = [var.pools]
}

run "pool_names_are_header_values" {
  command = plan
  module {
    source = "./modules/pools"
  }
  variables {
    pools = ["small", "Large_Model"]
  }
  expect_failures = [var.pools]
}
