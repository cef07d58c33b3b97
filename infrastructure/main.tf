# llmfleet on AWS: a GPU fleet running vLLM, the router and the metrics agent,
# behind an Application Load Balancer, API Gateway and WAF, with CloudWatch
# dashboards and alarms and a static demo site. See docs/deploy.md for the picture.

provider "aws" {
  region = var.region
  default_tags {
    tags = local.tags
  }
}

# CloudFront's web ACL and its logs exist only in us-east-1, whatever the region.
provider "aws" {
  alias  = "us_east_1"
  region = "us-east-1"
  default_tags {
    tags = local.tags
  }
}

locals {
  metrics_namespace = "LLMFleet"
  # The pools: those given, or one ("main") from the single pool's variables.
  pools = var.pools != null ? var.pools : var.model == null ? {} : {
    main = {
      instance_type = var.instance_type, capacity = var.capacity, spot = var.spot,
      scaling       = var.scaling, model = var.model, warm_pool = var.warm_pool
    }
  }
  # The single pool keeps the deployment's name (its group stays "<name>-gpu"); given pools
  # are "<name>-<pool>".
  pool_names = { for key in keys(local.pools) : key => var.pools == null ? var.name : "${var.name}-${key}" }
  # With two pools or more, the internal load balancer between them.
  several = length(local.pools) > 1
  # Where every instance's agent writes the archive's objects (the only prefix it may).
  archive_prefix = "archive/"
  # The first pool by name: what the output autoscaling_group_name names. Neither model
  # nor pools: that output's precondition says so.
  first_pool = try(sort(keys(local.pools))[0], null)
  tags = merge({
    Project     = "llmfleet"
    Environment = var.environment
    Deployment  = var.name
    ManagedBy   = "opentofu"
  }, var.tags)
}

module "networking" {
  source                  = "./modules/networking"
  name                    = var.name
  cidr                    = var.vpc_cidr
  az_count                = var.az_count
  single_nat_gateway      = var.single_nat_gateway
  flow_log_retention_days = var.log_retention_days
}

module "load_balancer" {
  source                 = "./modules/load_balancer"
  name                   = var.name
  vpc_id                 = module.networking.vpc_id
  vpc_cidr               = module.networking.vpc_cidr
  subnet_ids             = var.alb.internet_facing ? module.networking.public_subnet_ids : module.networking.private_subnet_ids
  internet_facing        = var.alb.internet_facing
  certificate_arn        = var.alb.certificate_arn
  idle_timeout_s         = var.alb.idle_timeout_s
  deregistration_delay_s = var.drain_timeout_s
  deletion_protection    = var.alb.deletion_protection
  rate_limit_per_ip      = var.rate_limit_per_ip
  log_retention_days     = var.log_retention_days
}

module "monitoring" {
  source            = "./modules/monitoring"
  name              = var.name
  metrics_namespace = local.metrics_namespace
  groups = { for key, pool in local.pools : key => {
    autoscaling_group_name = module.compute[key].autoscaling_group_name
    alarm_prefix           = local.pool_names[key]
    max_instances          = pool.capacity.max
    scale_out_pct          = pool.scaling.scale_out_pct
    # A pool kept at zero on purpose has no healthy host by design.
    alarm_when_down         = local.several && pool.capacity.min > 0
    target_group_arn_suffix = local.several ? module.pools[0].target_group_arn_suffixes[key] : null
  } }
  pools_alb_arn_suffix    = one(module.pools[*].arn_suffix)
  alb_arn_suffix          = module.load_balancer.alb_arn_suffix
  target_group_arn_suffix = module.load_balancer.target_group_arn_suffix
  alarm_email             = var.alarm_email
  log_retention_days      = var.log_retention_days
}

# One per pool: every pool's instances register with the public entry's target group (any
# router takes any request) and, with several pools, with their own target group on the
# load balancer between pools.
module "compute" {
  source                = "./modules/compute"
  for_each              = local.pools
  name                  = local.pool_names[each.key]
  vpc_id                = module.networking.vpc_id
  private_subnet_ids    = module.networking.private_subnet_ids
  alb_security_group_id = module.load_balancer.security_group_id
  target_group_arns = concat([module.load_balancer.target_group_arn],
  local.several ? [module.pools[0].target_group_arns[each.key]] : [])
  instance_type   = each.value.instance_type
  spot            = each.value.spot
  capacity        = each.value.capacity
  scaling         = each.value.scaling
  drain_timeout_s = var.drain_timeout_s
  warm_pool       = each.value.warm_pool
  model           = each.value.model
  pool = local.several ? {
    name  = each.key
    peers = { for key in keys(local.pools) : key => module.pools[0].url }
  } : null
  peer_security_group_id = local.several ? module.pools[0].security_group_id : null
  routing                = var.routing
  archive = var.archive == null ? null : {
    bucket = module.archive_bucket[0].name, bucket_arn = module.archive_bucket[0].arn
    prefix = local.archive_prefix, content = var.archive.content
  }
  api_keys_parameter = var.api_keys_parameter
  ami_ssm_parameter  = var.ami_ssm_parameter
  package_path       = var.package_path
  metrics_namespace  = local.metrics_namespace
  log_group_arns     = module.monitoring.log_group_arns
  log_group_names    = module.monitoring.log_group_names
  # The demo site's console calls the API from its own origin.
  cors_allowed_origins = concat(var.cors_allowed_origins, module.demo[*].url)
  # The routers keep idle connections open longer than the load balancer does, or it sends
  # requests on connections they are closing (a 502 to its client).
  router_keepalive_s = module.load_balancer.idle_timeout_s + 20
}

# --- The archive ------------------------------------------------------------------
# Opt-in (var.archive): a record of every request served, written by each instance's
# agent under one prefix of a bucket of its own (one per deployment, every pool's
# instances writing there), so that its retention, encryption and access are the
# archive's alone. Write-once records that expire: no versions. Records are data, not
# build outputs: destroy stops at a bucket that holds them unless the tfvars say the
# deployment is disposable (archive.force_destroy). Such a destroy first deletes the
# bucket's lifecycle and policy, so the records it leaves behind no longer expire: empty
# the bucket before. No Standard-IA step: the objects are a minute of one instance's
# records, a few KB, which S3 does not move below 128 KB and bills as 128 KB there.

module "archive_bucket" {
  count           = var.archive == null ? 0 : 1
  source          = "./modules/bucket"
  name_prefix     = "${substr(var.name, 0, 28)}-archive-"
  versioned       = false
  expiration_days = var.archive.retention_days
  force_destroy   = var.archive.force_destroy
}

# --- Between pools ----------------------------------------------------------------
# With two pools or more: an internal load balancer that the routers send other pools'
# requests to (modules/pools says why, and what it costs), reachable from the pools'
# instances only.

module "pools" {
  count                  = local.several ? 1 : 0
  source                 = "./modules/pools"
  name                   = var.name
  pools                  = keys(local.pools)
  vpc_id                 = module.networking.vpc_id
  vpc_cidr               = module.networking.vpc_cidr
  subnet_ids             = module.networking.private_subnet_ids
  idle_timeout_s         = module.load_balancer.idle_timeout_s
  deregistration_delay_s = var.drain_timeout_s
  access_logs_bucket     = module.load_balancer.access_logs_bucket
}

resource "aws_vpc_security_group_ingress_rule" "pools_from_instances" {
  #checkov:skip=CKV_AWS_260:The rule admits one security group (a pool's instances), no address range; checkov reads a rule without cidr_ipv4 as open to all.
  for_each                     = local.several ? local.pools : {}
  security_group_id            = module.pools[0].security_group_id
  description                  = "From pool ${each.key}'s routers"
  referenced_security_group_id = module.compute[each.key].instance_security_group_id
  ip_protocol                  = "tcp"
  from_port                    = 80
  to_port                      = 80
}

# The single pool's module became the "main" instance of one per pool.
moved {
  from = module.compute
  to   = module.compute["main"]
}

module "api_gateway" {
  source                = "./modules/api_gateway"
  name                  = var.name
  vpc_id                = module.networking.vpc_id
  subnet_ids            = module.networking.private_subnet_ids
  alb_arn               = module.load_balancer.alb_arn
  alb_security_group_id = module.load_balancer.security_group_id
  alb_dns_name          = module.load_balancer.alb_dns_name
  alb_https             = var.alb.certificate_arn != null
  rate_limit_per_ip     = var.rate_limit_per_ip
  throttle              = var.api_throttle
  api_clients           = var.api_clients
  log_retention_days    = var.log_retention_days
}

module "demo" {
  count        = var.demo_site ? 1 : 0
  source       = "./modules/demo"
  name         = var.name
  site_dir     = "${path.module}/../server/web"
  api_base_url = module.api_gateway.base_url
  web_acl_arn  = module.demo_waf[0].web_acl_arn

  response_headers_policy_id = var.demo_response_headers_policy_id
}

# The demo site's web ACL: the same module as the API's, scoped to CloudFront, so it
# is made through the us-east-1 provider (and the demo module needs only one provider).
# The site differs from the API entries in two settings, kept as they were: it serves a
# static page (GET and HEAD, no prompts, no API clients on cloud servers), so every
# managed rule blocks; and its requests carry no credentials (the console sends its key
# to API Gateway, another origin), so its logs have nothing to redact.
module "demo_waf" {
  count              = var.demo_site ? 1 : 0
  source             = "./modules/waf"
  name               = "${var.name}-site"
  scope              = "CLOUDFRONT"
  rate_limit_per_ip  = 300 # a static page needs few requests
  serves_api         = false
  redacted_headers   = []
  log_retention_days = var.log_retention_days
  providers = {
    aws = aws.us_east_1
  }
}

# The demo's web ACL, its log group and its logging moved from the demo module into
# module.demo_waf (the waf module): the same objects, at new addresses. The demo's
# bucket moved within the demo module (its moved blocks are there).
moved {
  from = module.demo[0].aws_wafv2_web_acl.site
  to   = module.demo_waf[0].aws_wafv2_web_acl.this
}

moved {
  from = module.demo[0].aws_cloudwatch_log_group.waf
  to   = module.demo_waf[0].aws_cloudwatch_log_group.this
}

moved {
  from = module.demo[0].aws_wafv2_web_acl_logging_configuration.site
  to   = module.demo_waf[0].aws_wafv2_web_acl_logging_configuration.this
}
