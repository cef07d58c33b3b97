# Networking: a VPC over 2-3 AZs with public subnets (load balancer, NAT) and
# private subnets (GPU instances), NAT for egress, gateway endpoints for S3, and
# interface endpoints so the instances reach SSM, CloudWatch and CloudWatch Logs
# without NAT. No SSH anywhere: operators use Session Manager.

data "aws_availability_zones" "available" {
  #checkov:skip=CKV_AWS_394:The module takes the first az_count zones of the provider's name-sorted list and keys subnets "a", "b", "c" by position; AWS gives new zones later letters, so they do not move built subnets, and pinning names would tie the module to one region.
  state = "available"
  filter {
    name   = "opt-in-status"
    values = ["opt-in-not-required"]
  }
}

locals {
  # Stable keys ("a", "b", "c") so that adding an AZ never renumbers the others.
  az_keys = slice(["a", "b", "c"], 0, var.az_count)
  azs     = { for i, k in local.az_keys : k => data.aws_availability_zones.available.names[i] }
  # /16 -> /20 subnets: public on netnums 0-2, private on 8-10.
  newbits    = 20 - tonumber(split("/", var.cidr)[1])
  public_net = { for i, k in local.az_keys : k => cidrsubnet(var.cidr, local.newbits, i) }
  private_net = {
    for i, k in local.az_keys : k => cidrsubnet(var.cidr, local.newbits, i + 8)
  }
  nat_keys = var.single_nat_gateway ? ["a"] : local.az_keys
}

# --- VPC and subnets -----------------------------------------------------------
# DNS support is on so that interface endpoints resolve to private addresses.

resource "aws_vpc" "this" {
  cidr_block           = var.cidr
  enable_dns_support   = true
  enable_dns_hostnames = true
  tags                 = { Name = var.name }
}

# The default security group is left with no rules, so nothing can use it by accident.
resource "aws_default_security_group" "this" {
  vpc_id = aws_vpc.this.id
  tags   = { Name = "${var.name}-default-unused" }
}

resource "aws_subnet" "public" {
  for_each          = local.azs
  vpc_id            = aws_vpc.this.id
  availability_zone = each.value
  cidr_block        = local.public_net[each.key]
  # Nothing launched here gets a public IP by default: only load balancers and NAT live here.
  map_public_ip_on_launch = false
  tags                    = { Name = "${var.name}-public-${each.key}", Tier = "public" }
}

resource "aws_subnet" "private" {
  for_each          = local.azs
  vpc_id            = aws_vpc.this.id
  availability_zone = each.value
  cidr_block        = local.private_net[each.key]
  tags              = { Name = "${var.name}-private-${each.key}", Tier = "private" }
}

# --- Internet and NAT ----------------------------------------------------------
# Instances download packages and model weights through NAT; one NAT in dev to
# save ~$32/month each, one per AZ in prod so an AZ failure stays contained.

resource "aws_internet_gateway" "this" {
  vpc_id = aws_vpc.this.id
  tags   = { Name = var.name }
}

resource "aws_eip" "nat" {
  for_each = toset(local.nat_keys)
  domain   = "vpc"
  tags     = { Name = "${var.name}-nat-${each.key}" }
}

resource "aws_nat_gateway" "this" {
  for_each      = toset(local.nat_keys)
  allocation_id = aws_eip.nat[each.key].id
  subnet_id     = aws_subnet.public[each.key].id
  tags          = { Name = "${var.name}-${each.key}" }
  depends_on    = [aws_internet_gateway.this]
}

resource "aws_route_table" "public" {
  vpc_id = aws_vpc.this.id
  tags   = { Name = "${var.name}-public" }
}

resource "aws_route" "public_internet" {
  route_table_id         = aws_route_table.public.id
  destination_cidr_block = "0.0.0.0/0"
  gateway_id             = aws_internet_gateway.this.id
}

resource "aws_route_table_association" "public" {
  for_each       = aws_subnet.public
  subnet_id      = each.value.id
  route_table_id = aws_route_table.public.id
}

resource "aws_route_table" "private" {
  for_each = local.azs
  vpc_id   = aws_vpc.this.id
  tags     = { Name = "${var.name}-private-${each.key}" }
}

resource "aws_route" "private_nat" {
  for_each               = local.azs
  route_table_id         = aws_route_table.private[each.key].id
  destination_cidr_block = "0.0.0.0/0"
  nat_gateway_id         = aws_nat_gateway.this[var.single_nat_gateway ? "a" : each.key].id
}

resource "aws_route_table_association" "private" {
  for_each       = aws_subnet.private
  subnet_id      = each.value.id
  route_table_id = aws_route_table.private[each.key].id
}

# --- VPC endpoints -------------------------------------------------------------
# S3 through a free gateway endpoint (the model wheel, package mirrors on S3).
# SSM (Session Manager, parameters), CloudWatch and Logs through interface
# endpoints: the agent publishes every 10 s, which would otherwise cross NAT.

data "aws_region" "current" {}

resource "aws_vpc_endpoint" "s3" {
  vpc_id            = aws_vpc.this.id
  service_name      = "com.amazonaws.${data.aws_region.current.name}.s3"
  vpc_endpoint_type = "Gateway"
  route_table_ids   = [for k in local.az_keys : aws_route_table.private[k].id]
  tags              = { Name = "${var.name}-s3" }
}

resource "aws_security_group" "endpoints" {
  name        = "${var.name}-endpoints"
  description = "Interface endpoints: HTTPS from inside the VPC only"
  vpc_id      = aws_vpc.this.id
  tags        = { Name = "${var.name}-endpoints" }
}

resource "aws_vpc_security_group_ingress_rule" "endpoints_https" {
  security_group_id = aws_security_group.endpoints.id
  description       = "HTTPS from the VPC"
  cidr_ipv4         = var.cidr
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
}

resource "aws_vpc_endpoint" "interface" {
  for_each            = toset(["ssm", "ssmmessages", "ec2messages", "monitoring", "logs"])
  vpc_id              = aws_vpc.this.id
  service_name        = "com.amazonaws.${data.aws_region.current.name}.${each.key}"
  vpc_endpoint_type   = "Interface"
  private_dns_enabled = true
  subnet_ids          = [for k in local.az_keys : aws_subnet.private[k].id]
  security_group_ids  = [aws_security_group.endpoints.id]
  tags                = { Name = "${var.name}-${each.key}" }
}

# --- Flow logs -----------------------------------------------------------------
# Rejected and accepted traffic metadata for incident response.

resource "aws_cloudwatch_log_group" "flow" {
  #checkov:skip=CKV_AWS_158:CloudWatch Logs encrypts every log group at rest with a service key; flow records hold addresses and ports, no payloads.
  #checkov:skip=CKV_AWS_338:Retention is flow_log_retention_days per environment; a year of flow records is a cost choice, not a default.
  name              = "/llmfleet/${var.name}/vpc-flow"
  retention_in_days = var.flow_log_retention_days
}

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

# Confused-deputy protection: the flow-logs service may assume this role only on
# behalf of a flow log in this account, so no other account's flow log can be
# pointed at it to write into this log group.
data "aws_iam_policy_document" "flow_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["vpc-flow-logs.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [data.aws_caller_identity.current.account_id]
    }
    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = ["arn:${data.aws_partition.current.partition}:ec2:${data.aws_region.current.name}:${data.aws_caller_identity.current.account_id}:vpc-flow-log/*"]
    }
  }
}

resource "aws_iam_role" "flow" {
  name               = "${var.name}-vpc-flow"
  assume_role_policy = data.aws_iam_policy_document.flow_assume.json
}

data "aws_iam_policy_document" "flow" {
  statement {
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"]
    resources = ["${aws_cloudwatch_log_group.flow.arn}:*"]
  }
}

resource "aws_iam_role_policy" "flow" {
  name   = "write-flow-logs"
  role   = aws_iam_role.flow.id
  policy = data.aws_iam_policy_document.flow.json
}

resource "aws_flow_log" "this" {
  vpc_id          = aws_vpc.this.id
  traffic_type    = "ALL"
  log_destination = aws_cloudwatch_log_group.flow.arn
  iam_role_arn    = aws_iam_role.flow.arn
}
