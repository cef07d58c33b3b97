variable "name" {
  description = "Prefix for every resource name, e.g. \"llmfleet-dev\"."
  type        = string
}

variable "metrics_namespace" {
  description = "CloudWatch namespace the agent publishes to."
  type        = string
  default     = "LLMFleet"
}

variable "groups" {
  description = "The deployment's GPU Auto Scaling groups by pool (one each): the group's name (the agent's AutoScalingGroupName dimension), the prefix of its alarms' names, its maximum size (the pinned-at-capacity alarm) and the GPU utilisation (%) above which it scales out (busy GPUs above it with no traffic raise the forged-metric alarm)."
  type = map(object({
    autoscaling_group_name = string
    alarm_prefix           = string
    max_instances          = number
    scale_out_pct          = optional(number, 70)
    # With several pools: alarm when the group's target group on the load balancer between
    # pools has no healthy host (the pool cannot serve at all), that target group's suffix.
    alarm_when_down         = optional(bool, false)
    target_group_arn_suffix = optional(string)
  }))
  validation {
    condition     = length(var.groups) >= 1
    error_message = "groups needs at least one Auto Scaling group."
  }
  validation {
    condition     = alltrue([for g in values(var.groups) : g.scale_out_pct > 0 && g.scale_out_pct <= 100])
    error_message = "Each group's scale_out_pct must be above 0 and at most 100 (the compute module's scaling.scale_out_pct)."
  }
}

variable "pools_alb_arn_suffix" {
  description = "The load balancer between pools' ARN suffix (with several pools; null without)."
  type        = string
  default     = null
}

variable "alb_arn_suffix" {
  description = "Load balancer ARN suffix (CloudWatch's LoadBalancer dimension)."
  type        = string
}

variable "target_group_arn_suffix" {
  description = "Target group ARN suffix (CloudWatch's TargetGroup dimension)."
  type        = string
}

variable "alarm_email" {
  description = "E-mail address subscribed to the alarm topic (confirm the subscription mail); null for none."
  type        = string
  default     = null
  validation {
    condition     = var.alarm_email == null || can(regex("^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$", var.alarm_email))
    error_message = "alarm_email must be an e-mail address or null."
  }
}

variable "log_retention_days" {
  description = "Days to keep the vLLM, router and agent logs."
  type        = number
  default     = 30
  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a value CloudWatch Logs accepts: 1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288 or 3653."
  }
}

variable "alarm_thresholds" {
  description = "p99 latency (s), router error rate (%), and GPU utilisation (%) that counts as pinned when the group is at its maximum."
  type = object({
    latency_p99_s  = optional(number, 5)
    error_rate_pct = optional(number, 5)
    gpu_pinned_pct = optional(number, 90)
  })
  default = {}
}
