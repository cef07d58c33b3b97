variable "name" {
  description = "Prefix for every resource name, e.g. \"llmfleet-prod\"."
  type        = string
}

variable "pools" {
  description = "The deployment's pool names (two or more): one target group and listener rule each."
  type        = list(string)
  validation {
    condition     = length(var.pools) >= 2 && length(distinct(var.pools)) == length(var.pools) && alltrue([for p in var.pools : can(regex("^[a-z][a-z0-9-]{0,19}$", p))])
    error_message = "pools must be two or more distinct names of 1-20 lower-case letters, digits and dashes, starting with a letter."
  }
  # Each pool's listener rule priority is a hash of its name (main.tf).
  validation {
    condition     = length(distinct([for p in var.pools : parseint(substr(md5(p), 0, 4), 16) % 50000])) == length(var.pools)
    error_message = "Two pool names hash to the same listener rule priority: rename one of them."
  }
}

variable "vpc_id" {
  description = "VPC of the load balancer and the pools' instances."
  type        = string
}

variable "vpc_cidr" {
  description = "CIDR of the VPC (where the routers are)."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets for the load balancer, one per AZ the pools run in."
  type        = list(string)
  validation {
    condition     = length(var.subnet_ids) >= 2
    error_message = "Give at least two private subnets (two AZs)."
  }
}

variable "router_port" {
  description = "Port the routers listen on."
  type        = number
  default     = 8000
}

variable "idle_timeout_s" {
  description = "Seconds a connection may sit idle: as long as the public entry's, for streamed generations."
  type        = number
  default     = 600
}

variable "deregistration_delay_s" {
  description = "How long a leaving instance keeps the requests it holds (the deployment's drain_timeout_s)."
  type        = number
  default     = 300
}

variable "access_logs_bucket" {
  description = "The public entry's access-log bucket, whose policy lets the load balancers write under alb/."
  type        = string
}
