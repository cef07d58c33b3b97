variable "name" {
  description = "Prefix for every resource name, e.g. \"llmfleet-dev\"."
  type        = string
}

variable "vpc_id" {
  description = "VPC of the load balancer."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets for the VPC link's network interfaces."
  type        = list(string)
}

variable "alb_arn" {
  description = "ARN of the load balancer the private integration targets."
  type        = string
}

variable "alb_security_group_id" {
  description = "Security group of the load balancer (the VPC link is allowed to reach it)."
  type        = string
}

variable "alb_dns_name" {
  description = "DNS name of the load balancer (the integration URI's host)."
  type        = string
}

variable "alb_https" {
  description = "Whether the load balancer listens with HTTPS (else the VPC link uses HTTP inside the VPC)."
  type        = bool
}

variable "rate_limit_per_ip" {
  description = "Requests per client IP per minute before the stage's web ACL blocks it."
  type        = number
  default     = 100
  validation {
    condition     = var.rate_limit_per_ip >= 10 && var.rate_limit_per_ip <= 2000000000
    error_message = "rate_limit_per_ip must be at least 10 (the WAF minimum)."
  }
}

variable "throttle" {
  description = "Usage plan limits per API key: steady requests/s, burst, and requests per month (0 = no quota)."
  type = object({
    rate_per_s      = optional(number, 10)
    burst           = optional(number, 20)
    quota_per_month = optional(number, 0)
  })
  default = {}
  validation {
    condition     = var.throttle.rate_per_s > 0 && var.throttle.burst >= 1 && var.throttle.quota_per_month >= 0
    error_message = "throttle needs rate_per_s > 0, burst >= 1 and quota_per_month >= 0."
  }
}

variable "api_clients" {
  description = "Names of the clients that get an API Gateway API key (sent as x-api-key)."
  type        = list(string)
  default     = ["default"]
  validation {
    condition     = alltrue([for c in var.api_clients : can(regex("^[a-z0-9-]{1,40}$", c))])
    error_message = "api_clients must be lower-case names of letters, digits and dashes."
  }
}

variable "log_retention_days" {
  description = "Days to keep API access logs and the stage's web ACL logs."
  type        = number
  default     = 30
}

variable "manage_account_logging_role" {
  description = "Set the region's API Gateway CloudWatch role (an account-wide setting); turn off when another stack owns it."
  type        = bool
  default     = true
}
