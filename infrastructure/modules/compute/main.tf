# Compute: the GPU fleet. A launch template (Deep Learning AMI, IMDSv2 only,
# encrypted gp3 root, cloud-init that installs llmfleet and starts vLLM, the
# router and the agent), a least-privilege instance profile, and a multi-AZ
# Auto Scaling Group in private subnets that scales on the agent's metrics
# (var.scaling.policy) and lets each leaving instance drain through a
# termination lifecycle hook.

data "aws_region" "current" {}
data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

data "aws_ssm_parameter" "ami" {
  name = var.ami_ssm_parameter
}

locals {
  asg_name      = "${var.name}-gpu"
  artifact_file = basename(var.package_path)
  artifact_key  = "packages/${filemd5(var.package_path)}/${local.artifact_file}"
  # vLLM and every dependency, pinned with their hashes (make instance-lock).
  requirements_path = "${path.module}/requirements/instance.txt"
  requirements_key  = "packages/${filemd5(local.requirements_path)}/requirements.txt"
  # The hub token only where vLLM downloads at boot: a staged model needs none there.
  boot_token = var.model.source == "hub" ? var.model.hf_token_parameter : null
  parameter_arns = [for p in compact([var.api_keys_parameter, local.boot_token]) :
  "arn:${data.aws_partition.current.partition}:ssm:${data.aws_region.current.name}:${data.aws_caller_identity.current.account_id}:parameter/${trimprefix(p, "/")}"]
  served_name = module.user_data.served_name
  user_data   = module.user_data.cloud_init
  drain_hook  = "${local.asg_name}-drain"
  launch_hook = "${local.asg_name}-launch"
  # How long a new instance is given before its health checks count and its metrics join
  # the group's: the model's load time; with a warm pool a minute, as every instance then
  # goes in service only once its router serves (the launch hook).
  serving_after_s = var.warm_pool == null ? var.model.model_load_seconds : 60
  # The group's ARN by name (its id is only known once it exists, and the role comes first).
  asg_arn = "arn:${data.aws_partition.current.partition}:autoscaling:${data.aws_region.current.name}:${data.aws_caller_identity.current.account_id}:autoScalingGroup:*:autoScalingGroupName/${local.asg_name}"
}

module "user_data" {
  source = "./user_data"

  model              = var.model
  router_port        = var.router_port
  metrics_namespace  = var.metrics_namespace
  asg_name           = local.asg_name
  api_keys_parameter = var.api_keys_parameter
  artifact_bucket    = module.artifacts_bucket.name
  artifact_key       = local.artifact_key
  artifact_sha256    = filesha256(var.package_path)
  log_group_names    = var.log_group_names

  requirements_key    = local.requirements_key
  requirements_sha256 = filesha256(local.requirements_path)

  cors_allowed_origins = var.cors_allowed_origins
  router_keepalive_s   = var.router_keepalive_s
  drain_hook_name      = local.drain_hook
  drain_timeout_s      = var.drain_timeout_s
  launch_hook_name     = var.warm_pool == null ? "" : local.launch_hook
  # A stop blanks an instance store: a pooled instance keeps its copy on the root volume.
  model_on_instance_store = var.warm_pool == null
  region                  = data.aws_region.current.name
  pool                    = var.pool
  routing                 = var.routing
  archive = var.archive == null ? null : {
    bucket = var.archive.bucket, prefix = var.archive.prefix, content = var.archive.content
  }
}

# --- Artifacts -----------------------------------------------------------------
# The llmfleet wheel and the hash-locked requirements the instances install:
# private, encrypted, versioned, only readable by the instance role. Keyed by
# content hash so a new build or lock rolls the fleet; the user data carries both
# files' SHA-256, so a swapped object is refused at boot.

module "artifacts_bucket" {
  source        = "../bucket"
  name_prefix   = "${substr(var.name, 0, 26)}-artifacts-" # S3 allows a prefix of 37
  force_destroy = true                                    # only build outputs live here
  # KMS-encrypted, versioned: overwritten or deleted wheels are kept 30 days (a
  # rollback window), then removed. The policy refuses requests without TLS,
  # whoever signs them; the instance role reads through its own IAM policy.
}

resource "aws_s3_object" "package" {
  bucket = module.artifacts_bucket.name
  key    = local.artifact_key
  source = var.package_path
  etag   = filemd5(var.package_path)
}

resource "aws_s3_object" "requirements" {
  bucket = module.artifacts_bucket.name
  key    = local.requirements_key
  source = local.requirements_path
  etag   = filemd5(local.requirements_path)
}

# --- Instance role -------------------------------------------------------------
# Least privilege: Session Manager (no SSH), PutMetricData only into our
# namespace, write only our log groups, read only our parameters and our wheel.
# No AWS managed policy: AmazonSSMManagedInstanceCore also grants ssm:GetParameter
# and ssm:GetParameters on "*" (every parameter in the account, SecureStrings under
# the aws/ssm key included) along with State Manager, inventory and patching calls
# the fleet never makes. Session Manager needs only the calls listed below.

data "aws_iam_policy_document" "assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "instance" {
  name               = "${var.name}-instance"
  assume_role_policy = data.aws_iam_policy_document.assume.json
}

# The role holds no managed policy, and one attached by hand is detached at the next apply.
resource "aws_iam_role_policy_attachments_exclusive" "instance" {
  role_name   = aws_iam_role.instance.name
  policy_arns = []
}

locals {
  # What the SSM agent needs for Session Manager besides registering the instance
  # (ssm:UpdateInstanceInformation, scoped below): open the session channels
  # (ssmmessages), and receive and answer agent messages (ec2messages).
  session_manager_channels = [
    "ssmmessages:CreateControlChannel", "ssmmessages:CreateDataChannel",
    "ssmmessages:OpenControlChannel", "ssmmessages:OpenDataChannel",
    "ec2messages:AcknowledgeMessage", "ec2messages:DeleteMessage", "ec2messages:FailMessage",
    "ec2messages:GetEndpoint", "ec2messages:GetMessages", "ec2messages:SendReply",
  ]
  parameter_reads = ["ssm:GetParameter", "ssm:GetParameters", "ssm:GetParametersByPath", "ssm:GetParameterHistory"]
}

data "aws_iam_policy_document" "instance" {
  statement {
    sid       = "SessionManagerRegistration"
    actions   = ["ssm:UpdateInstanceInformation"]
    resources = ["arn:${data.aws_partition.current.partition}:ec2:${data.aws_region.current.name}:${data.aws_caller_identity.current.account_id}:instance/*"]
  }
  statement {
    sid       = "SessionManagerChannels"
    actions   = local.session_manager_channels
    resources = ["*"] # ssmmessages and ec2messages calls take no resource
  }
  statement {
    sid       = "PublishFleetMetrics"
    actions   = ["cloudwatch:PutMetricData"]
    resources = ["*"] # PutMetricData has no resource type; the condition scopes it
    condition {
      test     = "StringEquals"
      variable = "cloudwatch:namespace"
      values   = [var.metrics_namespace]
    }
  }
  statement {
    sid       = "WriteOwnLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"]
    resources = [for arn in var.log_group_arns : "${arn}:*"]
  }
  statement {
    sid       = "ReadOwnParameters"
    actions   = ["ssm:GetParameter"]
    resources = local.parameter_arns
  }
  # Whatever else is attached to this role later (a managed policy, an organisation's
  # baseline), it cannot open another parameter: an explicit deny wins over any allow.
  statement {
    sid           = "DenyOtherParameters"
    effect        = "Deny"
    actions       = local.parameter_reads
    not_resources = local.parameter_arns
  }
  # The agent lets the group terminate its instance once the router has drained. IAM has
  # no condition key for the instance, so any instance of this group could complete
  # another's action (terminate it sooner): the same group, the same code; no other group.
  statement {
    sid       = "CompleteOwnGroupsLifecycleActions"
    actions   = ["autoscaling:CompleteLifecycleAction"]
    resources = [local.asg_arn]
  }
  statement {
    sid       = "ReadPackage"
    actions   = ["s3:GetObject"]
    resources = ["${module.artifacts_bucket.arn}/packages/*"]
  }
  # The staged model's files, its manifest and refs: this model only, read only.
  dynamic "statement" {
    for_each = var.model.source == "s3" ? [1] : []
    content {
      sid       = "ReadStagedModel"
      actions   = ["s3:GetObject"]
      resources = ["${module.artifacts_bucket.arn}/models/${var.model.id}/*"]
    }
  }
  # The router's archive, sent by the agent: new objects under the archive's prefix, and
  # nothing else: no read, no list, no delete (what an instance wrote is not its to read
  # back or erase; a segment sent again overwrites its own keys). The bucket's default key
  # is AWS managed, which S3 uses for the role without a KMS grant.
  dynamic "statement" {
    for_each = var.archive == null ? [] : [var.archive]
    content {
      sid       = "WriteArchive"
      actions   = ["s3:PutObject"]
      resources = ["${statement.value.bucket_arn}/${statement.value.prefix}*"]
    }
  }
}

resource "aws_iam_role_policy" "instance" {
  name   = "llmfleet-instance"
  role   = aws_iam_role.instance.id
  policy = data.aws_iam_policy_document.instance.json
}

resource "aws_iam_instance_profile" "this" {
  name = "${var.name}-instance"
  role = aws_iam_role.instance.name
}

# --- Network access ------------------------------------------------------------
# The router port from the load balancer only; no SSH. Egress for packages and
# model downloads (through NAT) and AWS APIs (through endpoints).

resource "aws_security_group" "instance" {
  name        = "${var.name}-instances"
  description = "GPU instances: router port from the load balancer only"
  vpc_id      = var.vpc_id
}

resource "aws_vpc_security_group_ingress_rule" "router_from_alb" {
  security_group_id            = aws_security_group.instance.id
  description                  = "Router from the load balancer"
  referenced_security_group_id = var.alb_security_group_id
  ip_protocol                  = "tcp"
  from_port                    = var.router_port
  to_port                      = var.router_port
}

# With several pools, the internal load balancer between them forwards other pools'
# requests to this router too.
resource "aws_vpc_security_group_ingress_rule" "router_from_pools" {
  count                        = var.pool == null ? 0 : 1
  security_group_id            = aws_security_group.instance.id
  description                  = "Router from the load balancer between pools"
  referenced_security_group_id = var.peer_security_group_id
  ip_protocol                  = "tcp"
  from_port                    = var.router_port
  to_port                      = var.router_port
}

resource "aws_vpc_security_group_egress_rule" "to_pools" {
  count                        = var.pool == null ? 0 : 1
  security_group_id            = aws_security_group.instance.id
  description                  = "Other pools' requests, to the load balancer between pools"
  referenced_security_group_id = var.peer_security_group_id
  ip_protocol                  = "tcp"
  from_port                    = 80
  to_port                      = 80
}

resource "aws_vpc_security_group_egress_rule" "https" {
  security_group_id = aws_security_group.instance.id
  description       = "HTTPS out: packages, model weights, AWS APIs"
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
}

# --- Launch template -----------------------------------------------------------

resource "aws_launch_template" "this" {
  name_prefix   = "${var.name}-gpu-"
  image_id      = data.aws_ssm_parameter.ami.value
  instance_type = var.instance_type
  user_data     = base64encode(local.user_data)
  ebs_optimized = true

  iam_instance_profile {
    arn = aws_iam_instance_profile.this.arn
  }

  vpc_security_group_ids = [aws_security_group.instance.id]

  # IMDSv2 only (no token, no metadata), one hop (no container on the host can reach
  # it), and instance tags exposed so the agent reads its Auto Scaling group name.
  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
    instance_metadata_tags      = "enabled"
  }

  block_device_mappings {
    device_name = "/dev/sda1"
    ebs {
      volume_type = "gp3"
      volume_size = var.model.root_volume_gb
      # The model is written here on a type without an instance store, and with a warm pool:
      # gp3's default 125 MiB/s would take two minutes for 16 GB however fast S3 serves it;
      # 500 MiB/s costs about $15 a month more.
      throughput            = var.model.root_volume_mbps
      encrypted             = true
      delete_on_termination = true
    }
  }

  monitoring {
    enabled = true
  }

  tag_specifications {
    resource_type = "instance"
    tags          = { Name = local.asg_name }
  }

  lifecycle {
    create_before_destroy = true
  }
}

# --- Auto Scaling group --------------------------------------------------------
# ELB health checks with a grace period and warm-up long enough for the model to
# load; a template change rolls the fleet; desired capacity belongs to scaling
# after creation, so an apply never resets it.

resource "aws_autoscaling_group" "this" {
  name                      = local.asg_name
  vpc_zone_identifier       = var.private_subnet_ids
  min_size                  = var.capacity.min
  max_size                  = var.capacity.max
  desired_capacity          = var.capacity.desired
  health_check_type         = "ELB"
  health_check_grace_period = local.serving_after_s
  default_instance_warmup   = local.serving_after_s
  target_group_arns         = var.target_group_arns
  metrics_granularity       = "1Minute"
  # With a pool every launch waits on the launch hook until it serves (a whole cold start,
  # up to model.model_load_seconds), so an apply does not wait for the group's instances:
  # longer than an apply should block, and than the provider's 10 minutes. The group's
  # activity history shows the launches.
  wait_for_capacity_timeout = var.warm_pool == null ? "10m" : "0"
  enabled_metrics           = ["GroupInServiceInstances", "GroupDesiredCapacity", "GroupPendingInstances"]

  # With spot in the mix, a spot instance at raised risk of interruption is replaced before
  # it is reclaimed: the replacement launches, then this one leaves through the drain hook.
  capacity_rebalance = var.spot.spot_percentage > 0

  mixed_instances_policy {
    instances_distribution {
      on_demand_base_capacity                  = var.spot.spot_percentage == 0 ? var.capacity.max : var.spot.on_demand_base
      on_demand_percentage_above_base_capacity = 100 - var.spot.spot_percentage
      spot_allocation_strategy                 = "price-capacity-optimized"
    }
    launch_template {
      launch_template_specification {
        launch_template_id = aws_launch_template.this.id
        version            = aws_launch_template.this.latest_version
      }
      dynamic "override" {
        for_each = concat([var.instance_type], var.spot.extra_instance_types)
        content {
          instance_type = override.value
        }
      }
    }
  }

  # Stopped instances that booted once: installed, the model on their root volume (not an
  # instance store, which a stop wipes), vLLM's compile cache written. Each waits on the
  # launch hook until its router first says ready, then stops; a scale-out starts it again
  # (boot, engine load from the local copy) instead of launching from scratch. The pool
  # holds min_size; max_prepared, when set, lets it grow to max_prepared less the group's
  # desired capacity (AWS's own default, the group's max, would keep max - desired stopped
  # instances, each a whole cold start to prepare). Scale-in terminates through the drain
  # hook rather than returning instances to the pool, which refills with fresh ones.
  dynamic "warm_pool" {
    for_each = var.warm_pool == null ? [] : [var.warm_pool]
    content {
      pool_state                  = "Stopped"
      min_size                    = warm_pool.value.min_size
      max_group_prepared_capacity = coalesce(warm_pool.value.max_prepared, var.capacity.min)
      instance_reuse_policy {
        reuse_on_scale_in = false
      }
    }
  }

  # The launch hook as the group is created, so that the pool's first instances wait on it
  # (the hook resource below is made only after the group, when the pool has launched
  # them; it stays for a group that exists already, and a change).
  dynamic "initial_lifecycle_hook" {
    for_each = var.warm_pool == null ? [] : [1]
    content {
      name                 = local.launch_hook
      lifecycle_transition = "autoscaling:EC2_INSTANCE_LAUNCHING"
      heartbeat_timeout    = var.model.model_load_seconds
      default_result       = "ABANDON"
    }
  }

  instance_refresh {
    strategy = "Rolling"
    preferences {
      min_healthy_percentage = 50
      instance_warmup        = local.serving_after_s
    }
  }

  tag {
    key                 = "Name"
    value               = local.asg_name
    propagate_at_launch = true
  }

  lifecycle {
    # initial_lifecycle_hook applies only as the group is created, and the provider replaces
    # the group (the whole fleet, deleted first) when it changes: turning the pool on or
    # off, or a new load time, is the hook resource's to carry.
    ignore_changes = [desired_capacity, initial_lifecycle_hook]
    # A stopped spot instance holds no capacity: EC2 may have none to start it with when
    # the scale-out comes, which is when the pool is for.
    precondition {
      condition     = var.warm_pool == null || var.spot.spot_percentage == 0
      error_message = "A warm pool keeps on-demand instances: set spot.spot_percentage to 0, or warm_pool to null."
    }
  }
}

# --- Leaving the group ------------------------------------------------------------
# Every termination (scale-in, instance refresh, a rebalancing replacement, a failed health
# check) holds the instance in Terminating:Wait while its agent drains the router (stops
# taking work, lets the generations in flight finish for up to drain_timeout_s) and then
# completes the action. The timeout is a minute above the agent's bound, so an agent that
# died holds the instance no longer than that; CONTINUE either way: the instance goes.

resource "aws_autoscaling_lifecycle_hook" "drain" {
  name                   = local.drain_hook
  autoscaling_group_name = aws_autoscaling_group.this.name
  lifecycle_transition   = "autoscaling:EC2_INSTANCE_TERMINATING"
  heartbeat_timeout      = max(30, var.drain_timeout_s + 60)
  default_result         = "CONTINUE"
}

# --- Joining the group (with a warm pool) --------------------------------------------
# Each new instance waits here twice: in Warmed:Pending:Wait while it prepares for the pool
# (the group would otherwise stop it as soon as it runs, before cloud-init has installed
# anything), and in Pending:Wait when a scale-out starts it again, so that it joins the
# load balancer only once it serves. Its agent completes the action when the router first
# says ready. ABANDON when that never comes within the model's load time: an instance
# that cannot serve is terminated (the pool refills) rather than kept. The same hook is in
# the group's initial_lifecycle_hook, so that it exists before a new group's pool launches.

resource "aws_autoscaling_lifecycle_hook" "launch" {
  count                  = var.warm_pool == null ? 0 : 1
  name                   = local.launch_hook
  autoscaling_group_name = aws_autoscaling_group.this.name
  lifecycle_transition   = "autoscaling:EC2_INSTANCE_LAUNCHING"
  heartbeat_timeout      = var.model.model_load_seconds
  default_result         = "ABANDON"
}

# --- Scaling --------------------------------------------------------------------
# var.scaling.policy picks one of two policies; each is defined once, in a JSON file that
# the simulator reads too (simulator/policy_config.py, which also validates both files in
# `make test`): what it simulates is what this applies.
#
# gpu: the agent publishes GPUUtilization under AutoScalingGroupName alone, so CloudWatch
# aggregates it over every instance in the group. Above scale_out_pct for
# evaluation_minutes: the file's scale_out step; below scale_in_pct: its scale_in.
# Everything but var.scaling (the metric, statistic, period, missing-data rule, policy and
# adjustment types, each direction's adjustment and operator) is in scaling_policy.json.

locals {
  scaling_policy = jsondecode(file("${path.module}/scaling_policy.json"))
  # How each operator reads in an alarm's description (any other fails the plan here).
  scaling_compares = {
    GreaterThanThreshold          = "above"
    GreaterThanOrEqualToThreshold = "at or above"
    LessThanThreshold             = "below"
    LessThanOrEqualToThreshold    = "at or below"
  }
  # Keyed by the alarm's suffix; one policy and one alarm per direction (none unless chosen).
  scaling_steps = var.scaling.policy != "gpu" ? {} : {
    high = merge(local.scaling_policy.scale_out, { threshold = var.scaling.scale_out_pct })
    low  = merge(local.scaling_policy.scale_in, { threshold = var.scaling.scale_in_pct })
  }
  # "Average GPU utilisation over the group above 70%: add an instance."
  scaling_descriptions = { for key, step in local.scaling_steps : key => format(
    "%s GPU utilisation over the group %s %s%%: %s %s.",
    local.scaling_policy.statistic, local.scaling_compares[step.comparison_operator], step.threshold,
    step.adjustment > 0 ? "add" : "remove",
    abs(step.adjustment) == 1 ? "an instance" : "${abs(step.adjustment)} instances"
  ) }
}

resource "aws_autoscaling_policy" "gpu" {
  for_each               = local.scaling_steps
  name                   = "${local.asg_name}-gpu-${each.key}"
  autoscaling_group_name = aws_autoscaling_group.this.name
  policy_type            = local.scaling_policy.policy_type
  adjustment_type        = local.scaling_policy.adjustment_type
  scaling_adjustment     = each.value.adjustment
  cooldown               = var.scaling.cooldown_s
}

resource "aws_cloudwatch_metric_alarm" "gpu" {
  for_each            = local.scaling_steps
  alarm_name          = "${local.asg_name}-gpu-${each.key}"
  alarm_description   = local.scaling_descriptions[each.key]
  namespace           = var.metrics_namespace
  metric_name         = local.scaling_policy.metric_name
  dimensions          = { AutoScalingGroupName = aws_autoscaling_group.this.name }
  statistic           = local.scaling_policy.statistic
  period              = local.scaling_policy.period_s
  evaluation_periods  = var.scaling.evaluation_minutes
  threshold           = each.value.threshold
  comparison_operator = each.value.comparison_operator
  treat_missing_data  = local.scaling_policy.treat_missing_data
  alarm_actions       = [aws_autoscaling_policy.gpu[each.key].arn]
}

# queue-guard: what the simulator recommends (README, "Scaling"). Three alarms, each
# invoking one simple-scaling policy: queue-high adds an instance when requests wait in
# the engines (RequestsWaiting averaged over the group); ttft-guardrail adds one when the
# worst instance's p95 time to first token nears the SLO; queue-quiet removes one only
# after quiet_minutes with nothing waiting anywhere and TTFT well under the guardrail.
# That last condition needs two metrics at once: an alarm on a metric math expression
# (a composite alarm could say it but cannot invoke Auto Scaling). queue_guard.json holds
# everything but var.scaling.queue_guard.

locals {
  queue_guard  = jsondecode(file("${path.module}/queue_guard.json"))
  guard        = var.scaling.queue_guard
  guardrail_s  = local.queue_guard.guardrail_share * local.guard.ttft_slo_s
  quiet_ttft_s = local.queue_guard.calm_share * local.guardrail_s
  guarded      = contains(["queue-guard", "inflight-guard"], var.scaling.policy)
  inflight     = var.scaling.policy == "inflight-guard"
  # The alarms that add capacity, on one metric each (none unless chosen): queue-guard's
  # two; inflight-guard keeps the guardrail and tracks its target instead of queue-high.
  guard_out = { for key, rule in {
    queue-high = merge(local.queue_guard.queue_high, {
      threshold   = local.guard.waiting_per_instance
      description = "Requests waiting in the engines, averaged over the group, above ${format("%g", local.guard.waiting_per_instance)} for ${local.guard.out_minutes} minutes: add an instance."
    })
    ttft-guardrail = merge(local.queue_guard.ttft_guardrail, {
      threshold   = local.guardrail_s
      description = "The worst instance's p95 time to first token above ${format("%g", local.guardrail_s)} s (${format("%g", local.queue_guard.guardrail_share * 100)}% of the ${format("%g", local.guard.ttft_slo_s)} s SLO) for ${local.guard.out_minutes} minutes: add an instance."
    })
  } : key => rule if local.guarded && !(local.inflight && key == "queue-high") }
  guard_steps = merge(
    { for key, rule in local.guard_out : key => rule.adjustment },
  local.guarded ? { queue-quiet = local.queue_guard.queue_quiet.adjustment } : {})
}

# inflight-guard's target tracking: the requests each instance holds (the group's average
# RequestsRunning plus its average RequestsWaiting, metric math) kept near
# inflight_per_instance. Its own scale-in is off: AWS would remove instances after 15
# minutes below 90% of the target, with requests still waiting; queue-quiet does it only
# when nothing waits anywhere.

resource "aws_autoscaling_policy" "inflight" {
  count                  = local.inflight ? 1 : 0
  name                   = "${local.asg_name}-inflight"
  autoscaling_group_name = aws_autoscaling_group.this.name
  policy_type            = "TargetTrackingScaling"

  target_tracking_configuration {
    target_value     = var.scaling.inflight_per_instance
    disable_scale_in = local.queue_guard.inflight_target.disable_scale_in
    customized_metric_specification {
      dynamic "metrics" {
        for_each = { for key in ["running", "waiting"] : key => local.queue_guard.inflight_target[key] }
        content {
          id          = metrics.key
          return_data = false
          metric_stat {
            metric {
              namespace   = var.metrics_namespace
              metric_name = metrics.value.metric_name
              dimensions {
                name  = "AutoScalingGroupName"
                value = aws_autoscaling_group.this.name
              }
            }
            stat = metrics.value.statistic
          }
        }
      }
      metrics {
        id          = "inflight"
        label       = "Requests running plus waiting, per instance"
        expression  = local.queue_guard.inflight_target.expression
        return_data = true
      }
    }
  }
}

resource "aws_autoscaling_policy" "queue_guard" {
  for_each               = local.guard_steps
  name                   = "${local.asg_name}-${each.key}"
  autoscaling_group_name = aws_autoscaling_group.this.name
  policy_type            = local.queue_guard.policy_type
  adjustment_type        = local.queue_guard.adjustment_type
  scaling_adjustment     = each.value
  cooldown               = local.guard.cooldown_s
}

resource "aws_cloudwatch_metric_alarm" "queue_guard" {
  for_each            = local.guard_out
  alarm_name          = "${local.asg_name}-${each.key}"
  alarm_description   = each.value.description
  namespace           = var.metrics_namespace
  metric_name         = each.value.metric_name
  dimensions          = { AutoScalingGroupName = aws_autoscaling_group.this.name }
  statistic           = each.value.statistic
  period              = local.queue_guard.period_s
  evaluation_periods  = local.guard.out_minutes
  threshold           = each.value.threshold
  comparison_operator = each.value.comparison_operator
  treat_missing_data  = each.value.treat_missing_data
  alarm_actions       = [aws_autoscaling_policy.queue_guard[each.key].arn]
}

resource "aws_cloudwatch_metric_alarm" "queue_quiet" {
  count               = local.guarded ? 1 : 0
  alarm_name          = "${local.asg_name}-queue-quiet"
  alarm_description   = "No request waiting in any engine and the worst p95 time to first token under ${format("%.3f", local.quiet_ttft_s)} s for ${local.guard.quiet_minutes} minutes: remove an instance."
  evaluation_periods  = local.guard.quiet_minutes
  threshold           = local.queue_guard.queue_quiet.threshold
  comparison_operator = local.queue_guard.queue_quiet.comparison_operator
  treat_missing_data  = local.queue_guard.queue_quiet.treat_missing_data
  alarm_actions       = [aws_autoscaling_policy.queue_guard["queue-quiet"].arn]

  metric_query {
    id          = "quiet"
    expression  = format(local.queue_guard.queue_quiet.expression, local.quiet_ttft_s)
    label       = "queue-quiet"
    return_data = true
  }
  dynamic "metric_query" {
    for_each = { for id in ["waiting", "ttft"] : id => local.queue_guard.queue_quiet[id] }
    content {
      id = metric_query.key
      metric {
        namespace   = var.metrics_namespace
        metric_name = metric_query.value.metric_name
        dimensions  = { AutoScalingGroupName = aws_autoscaling_group.this.name }
        stat        = metric_query.value.statistic
        period      = local.queue_guard.period_s
      }
    }
  }
}

# Scheduled minimums: from each window's start the group keeps at least min_size
# instances (desired rises with it), from its end capacity.min again; the maximum and
# the desired count are left as they are (-1). An apply inside a window sets the minimum
# back to capacity.min until the window's next start (the group's min_size is managed
# here); scaling in still waits for its own alarm.

locals {
  schedule_actions = merge([for w in var.scaling.scheduled_minimums : {
    "${w.name}-start" = { recurrence = w.start, min_size = w.min_size, time_zone = w.time_zone }
    "${w.name}-end"   = { recurrence = w.end, min_size = var.capacity.min, time_zone = w.time_zone }
  }]...)
}

resource "aws_autoscaling_schedule" "minimum" {
  for_each               = local.schedule_actions
  scheduled_action_name  = "${local.asg_name}-${each.key}"
  autoscaling_group_name = aws_autoscaling_group.this.name
  recurrence             = each.value.recurrence
  time_zone              = each.value.time_zone
  min_size               = each.value.min_size
  max_size               = -1
  desired_capacity       = -1

  lifecycle {
    precondition {
      condition     = each.value.min_size >= var.capacity.min && each.value.min_size <= var.capacity.max
      error_message = "Scheduled minimum ${each.key}: min_size ${each.value.min_size} is outside capacity.min ${var.capacity.min} to capacity.max ${var.capacity.max}."
    }
  }
}

# The artifacts bucket moved into the bucket module (shared with the demo site's and
# the access logs'): the same bucket and settings, at new addresses.
moved {
  from = aws_s3_bucket.artifacts
  to   = module.artifacts_bucket.aws_s3_bucket.this
}

moved {
  from = aws_s3_bucket_public_access_block.artifacts
  to   = module.artifacts_bucket.aws_s3_bucket_public_access_block.this
}

moved {
  from = aws_s3_bucket_server_side_encryption_configuration.artifacts
  to   = module.artifacts_bucket.aws_s3_bucket_server_side_encryption_configuration.this
}

moved {
  from = aws_s3_bucket_policy.artifacts
  to   = module.artifacts_bucket.aws_s3_bucket_policy.this
}

moved {
  from = aws_s3_bucket_versioning.artifacts
  to   = module.artifacts_bucket.aws_s3_bucket_versioning.this[0]
}

moved {
  from = aws_s3_bucket_lifecycle_configuration.artifacts
  to   = module.artifacts_bucket.aws_s3_bucket_lifecycle_configuration.this
}
