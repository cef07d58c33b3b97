# Reads a two-pool stack back through AWS's APIs (moto here): each pool's group and what it
# registers with, the load balancer between pools and its rule per pool, and what each
# pool's routers are told.

terraform {
  required_providers {
    aws = {
      source = "hashicorp/aws"
    }
  }
}

variable "name" {
  description = "The deployment's name prefix."
  type        = string
}

variable "groups" {
  description = "Each pool's GPU group name, by pool."
  type        = map(string)
}

data "aws_autoscaling_group" "pool" {
  for_each = var.groups
  name     = each.value
}

data "aws_launch_template" "pool" {
  for_each = var.groups
  id       = one(data.aws_autoscaling_group.pool[each.key].mixed_instances_policy[0].launch_template[0].launch_template_specification).launch_template_id
}

data "aws_lb" "entry" {
  name = "${var.name}-alb"
}

data "aws_lb" "pools" {
  name = "${var.name}-pools"
}

data "aws_lb_listener" "pools" {
  load_balancer_arn = data.aws_lb.pools.arn
  port              = 80
}

# Each rule's priority is a hash of its pool's name (modules/pools/main.tf, the same formula).
data "aws_lb_listener_rule" "pool" {
  for_each     = { for pool in keys(var.groups) : pool => 1 + parseint(substr(md5(pool), 0, 4), 16) % 50000 }
  listener_arn = data.aws_lb_listener.pools.arn
  priority     = each.value
}

# Each pool's target group, by its Pool tag (moto answers a rule's forward action without
# the forward block the provider reads its target group from).
data "aws_lb_target_group" "pool" {
  for_each = var.groups
  tags     = { Pool = each.key }
}

data "aws_lb_target_group" "entry" {
  name = "${var.name}-router"
}

output "pools_internal" {
  description = "Whether the load balancer between pools is internal."
  value       = data.aws_lb.pools.internal
}

output "groups" {
  description = "Each pool's group: its target groups, and what its routers are told."
  value = { for pool, group in data.aws_autoscaling_group.pool : pool => {
    target_groups = group.target_group_arns
    user_data     = base64decode(data.aws_launch_template.pool[pool].user_data)
  } }
}

output "rules" {
  description = "Each pool's rule: the header value it matches and the target group it forwards to."
  value = { for pool, rule in data.aws_lb_listener_rule.pool : pool => {
    header       = one([for c in rule.condition : c.http_header if c.http_header != null])
    action       = one(rule.action[*].type)
    target_group = data.aws_lb_target_group.pool[pool].arn
    health_path  = data.aws_lb_target_group.pool[pool].health_check[0].path
  } }
}

output "entry_target_group" {
  description = "The public entry's target group, which every pool's instances register with."
  value       = data.aws_lb_target_group.entry.arn
}
