variable "name" {
  description = "Prefix for every resource name, e.g. \"llmfleet-dev\"."
  type        = string
}

variable "vpc_id" {
  description = "VPC of the load balancer and its targets."
  type        = string
}

variable "vpc_cidr" {
  description = "CIDR of the VPC (an internal load balancer accepts traffic from here: the API Gateway VPC link)."
  type        = string
}

variable "subnet_ids" {
  description = "Subnets for the load balancer: public ones when internet_facing, else private ones."
  type        = list(string)
}

variable "internet_facing" {
  description = "Give the load balancer a public HTTPS endpoint (needs certificate_arn); false keeps it internal, reachable only through API Gateway."
  type        = bool
  default     = false
}

variable "certificate_arn" {
  description = "ACM certificate for the HTTPS listener; required when internet_facing."
  type        = string
  default     = null
  validation {
    condition     = var.certificate_arn == null || can(regex("^arn:aws[a-z-]*:acm:[a-z0-9-]+:[0-9]{12}:certificate/.+$", var.certificate_arn))
    error_message = "certificate_arn must be an ACM certificate ARN (arn:aws:acm:REGION:ACCOUNT:certificate/ID) or null."
  }
}

variable "router_port" {
  description = "Port the router listens on."
  type        = number
  default     = 8000
}

variable "idle_timeout_s" {
  description = "Seconds a connection may stay silent: long enough for a slow first token of a long generation."
  type        = number
  default     = 600
  validation {
    condition     = var.idle_timeout_s >= 60 && var.idle_timeout_s <= 4000
    error_message = "idle_timeout_s must be 60-4000 (the ALB maximum)."
  }
}

variable "deletion_protection" {
  description = "Protect the load balancer from deletion (prod)."
  type        = bool
  default     = false
}

variable "rate_limit_per_ip" {
  description = "Requests per client IP per minute before WAF blocks it (rate-based rule; requests from inside the VPC, API Gateway's, are limited at the stage)."
  type        = number
  default     = 100
  validation {
    condition     = var.rate_limit_per_ip >= 10 && var.rate_limit_per_ip <= 2000000000
    error_message = "rate_limit_per_ip must be at least 10 (the WAF minimum)."
  }
}

variable "log_retention_days" {
  description = "Days to keep access logs in S3 and the web ACL's request logs."
  type        = number
  default     = 30
}

variable "deregistration_delay_s" {
  description = "Seconds a deregistering target keeps its requests in flight before the load balancer closes them."
  type        = number
  default     = 300
  validation {
    condition     = var.deregistration_delay_s >= 0 && var.deregistration_delay_s <= 3600 && floor(var.deregistration_delay_s) == var.deregistration_delay_s
    error_message = "deregistration_delay_s must be whole seconds from 0 to 3600."
  }
}
