# Reads the applied dev stack back through AWS's APIs (moto here), so the test
# checks what the API holds, not what the plan said.

terraform {
  required_providers {
    aws = {
      source = "hashicorp/aws"
    }
  }
}

variable "name" {
  description = "The deployment's name prefix (dev.tfvars' name)."
  type        = string
}

variable "autoscaling_group_name" {
  description = "The GPU group the stack created."
  type        = string
}

data "aws_autoscaling_group" "gpu" {
  name = var.autoscaling_group_name
}

locals {
  template = one(data.aws_autoscaling_group.gpu.mixed_instances_policy[0].launch_template[0].launch_template_specification)
}

data "aws_launch_template" "gpu" {
  id = local.template.launch_template_id
}

data "aws_lb" "alb" {
  name = "${var.name}-alb"
}

data "aws_wafv2_web_acl" "alb" {
  name  = "${var.name}-alb"
  scope = "REGIONAL"
}

data "aws_cloudwatch_log_groups" "services" {
  log_group_name_prefix = "/llmfleet/${var.name}/"
}

data "aws_api_gateway_rest_api" "api" {
  name = "${var.name}-api"
}

output "asg" {
  description = "The group's size, health check type, target groups and subnets as the API reports them."
  value = {
    min               = data.aws_autoscaling_group.gpu.min_size
    max               = data.aws_autoscaling_group.gpu.max_size
    health_check_type = data.aws_autoscaling_group.gpu.health_check_type
    target_groups     = data.aws_autoscaling_group.gpu.target_group_arns
    subnets           = split(",", data.aws_autoscaling_group.gpu.vpc_zone_identifier)
  }
}

output "launch_template" {
  description = "IMDSv2 setting, volume encryption and user data of the group's launch template."
  value = {
    http_tokens = data.aws_launch_template.gpu.metadata_options[0].http_tokens
    encrypted   = [for b in data.aws_launch_template.gpu.block_device_mappings : b.ebs[0].encrypted]
    user_data   = data.aws_launch_template.gpu.user_data
  }
}

output "alb_internal" {
  description = "Whether the load balancer is internal."
  value       = data.aws_lb.alb.internal
}

output "web_acl_arn" {
  description = "The load balancer's web ACL, found by name."
  value       = data.aws_wafv2_web_acl.alb.arn
}

output "log_groups" {
  description = "Log groups under the deployment's prefix."
  value       = data.aws_cloudwatch_log_groups.services.log_group_names
}

output "rest_api_id" {
  description = "The REST API, found by name."
  value       = data.aws_api_gateway_rest_api.api.id
}
