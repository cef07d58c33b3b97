# The networking module: subnets per AZ with stable keys, NAT per environment,
# nothing public by default, and the CIDR validation.

mock_provider "aws" {
  mock_data "aws_availability_zones" {
    defaults = { names = ["us-east-1a", "us-east-1b", "us-east-1c"] }
  }
  mock_data "aws_region" {
    defaults = { name = "us-east-1" }
  }
  mock_data "aws_caller_identity" {
    defaults = { account_id = "123456789012" }
  }
  mock_data "aws_partition" {
    defaults = { partition = "aws" }
  }
  mock_data "aws_iam_policy_document" {
    defaults = { json = "{\"Version\":\"2012-10-17\",\"Statement\":[]}" }
  }
  mock_resource "aws_cloudwatch_log_group" {
    defaults = { arn = "arn:aws:logs:us-east-1:123456789012:log-group:flow" }
  }
  mock_resource "aws_iam_role" {
    defaults = { arn = "arn:aws:iam::123456789012:role/flow" }
  }
}

variables {
  name = "llmfleet-test"
  cidr = "10.20.0.0/16"
}

run "dev_two_azs_one_nat" {
  command = apply
  module {
    source = "./modules/networking"
  }

  assert {
    condition     = length(aws_subnet.private) == 2 && length(aws_nat_gateway.this) == 1
    error_message = "Two AZs and a single NAT gateway by default."
  }
  assert {
    condition     = alltrue([for s in aws_subnet.public : !s.map_public_ip_on_launch])
    error_message = "Nothing launched in a public subnet gets a public IP by default."
  }
  assert {
    condition     = aws_subnet.private["a"].cidr_block == "10.20.128.0/20" && aws_subnet.public["a"].cidr_block == "10.20.0.0/20"
    error_message = "Subnet layout: public /20s from the bottom, private from 8."
  }
  assert {
    condition     = length(aws_default_security_group.this.ingress) == 0 && length(aws_default_security_group.this.egress) == 0
    error_message = "The default security group allows nothing."
  }
}

# Without aws:SourceAccount and aws:SourceArn, any account's flow log could be
# configured with this role and write into this account's log group.
run "flow_log_role_cannot_be_assumed_for_another_accounts_flow_log" {
  command = plan
  module {
    source = "./modules/networking"
  }

  assert {
    condition = anytrue([for s in data.aws_iam_policy_document.flow_assume.statement : anytrue([for c in s.condition :
    c.test == "StringEquals" && c.variable == "aws:SourceAccount" && c.values == tolist(["123456789012"])])])
    error_message = "The flow-log role trusts the service only for this account (aws:SourceAccount)."
  }
  assert {
    condition = anytrue([for s in data.aws_iam_policy_document.flow_assume.statement : anytrue([for c in s.condition :
    c.test == "ArnLike" && c.variable == "aws:SourceArn" && c.values == tolist(["arn:aws:ec2:us-east-1:123456789012:vpc-flow-log/*"])])])
    error_message = "The flow-log role trusts the service only for this account's flow logs (aws:SourceArn)."
  }
}

run "prod_three_azs_nat_per_az" {
  command = apply
  module {
    source = "./modules/networking"
  }
  variables {
    az_count           = 3
    single_nat_gateway = false
  }

  assert {
    condition     = length(aws_nat_gateway.this) == 3 && length(aws_route.private_nat) == 3
    error_message = "One NAT gateway per AZ, each AZ routed to its own."
  }
}

run "rejects_small_cidr" {
  command = plan
  module {
    source = "./modules/networking"
  }
  variables {
    cidr = "10.20.0.0/24"
  }
  expect_failures = [var.cidr]
}

run "rejects_non_cidr" {
  command = plan
  module {
    source = "./modules/networking"
  }
  variables {
    cidr = "10.20.0.0"
  }
  expect_failures = [var.cidr]
}

run "rejects_one_az" {
  command = plan
  module {
    source = "./modules/networking"
  }
  variables {
    az_count = 1
  }
  expect_failures = [var.az_count]
}
