# What the compute module is given by the rest of the stack, and no more: a VPC with two
# private subnets, the load balancer's security group and target group, and the three log
# groups. warm_pool.tftest.hcl applies the GPU group alone on it (the whole stack is
# apply.tftest.hcl's), so that the second apply costs seconds, not minutes.

terraform {
  required_providers {
    aws = {
      source = "hashicorp/aws"
    }
  }
}

variable "name" {
  description = "Name prefix."
  type        = string
}

resource "aws_vpc" "this" {
  #checkov:skip=CKV2_AWS_11:Test fixture on a local AWS (moto); the stack's own VPC has flow logs.
  #checkov:skip=CKV2_AWS_12:Test fixture on a local AWS (moto); the stack's own VPC restricts its default security group.
  cidr_block = "10.99.0.0/16"
}

resource "aws_subnet" "private" {
  for_each          = { a = "10.99.1.0/24", b = "10.99.2.0/24" }
  vpc_id            = aws_vpc.this.id
  cidr_block        = each.value
  availability_zone = "us-east-1${each.key}"
}

resource "aws_security_group" "alb" {
  #checkov:skip=CKV2_AWS_5:Test fixture: the group the compute module lets reach its routers, attached to nothing here.
  name        = "${var.name}-alb"
  description = "Stands for the load balancer's security group."
  vpc_id      = aws_vpc.this.id
}

resource "aws_lb_target_group" "routers" {
  #checkov:skip=CKV_AWS_378:Test fixture on a local AWS (moto); the stack's target group is behind the TLS-terminating load balancer.
  name     = "${var.name}-routers"
  port     = 8000
  protocol = "HTTP"
  vpc_id   = aws_vpc.this.id
  health_check {
    path = "/ready"
  }
}

resource "aws_cloudwatch_log_group" "services" {
  #checkov:skip=CKV_AWS_158:Test fixture on a local AWS (moto); the stack's log groups are KMS-encrypted.
  #checkov:skip=CKV_AWS_338:Test fixture on a local AWS (moto), destroyed with the test.
  for_each          = toset(["vllm", "router", "agent"])
  name              = "/${var.name}/${each.key}"
  retention_in_days = 1
}

output "vpc_id" {
  description = "The VPC."
  value       = aws_vpc.this.id
}

output "private_subnet_ids" {
  description = "Its two subnets."
  value       = [for s in aws_subnet.private : s.id]
}

output "alb_security_group_id" {
  description = "The load balancer's stand-in security group."
  value       = aws_security_group.alb.id
}

output "target_group_arns" {
  description = "The routers' target group."
  value       = [aws_lb_target_group.routers.arn]
}

output "log_group_arns" {
  description = "The services' log groups."
  value       = [for g in aws_cloudwatch_log_group.services : g.arn]
}

output "log_group_names" {
  description = "The services' log group names by service."
  value       = { for k, g in aws_cloudwatch_log_group.services : k => g.name }
}
