variable "name" {
  description = "Prefix for every resource name, e.g. \"llmfleet-dev\"."
  type        = string
}

variable "cidr" {
  description = "IPv4 CIDR of the VPC; split into one public and one private /20 (or smaller) per AZ."
  type        = string
  validation {
    condition     = try(cidrhost(var.cidr, 0) != "" && tonumber(split("/", var.cidr)[1]) <= 20, false)
    error_message = "cidr must be an IPv4 CIDR of size /20 or larger, e.g. \"10.20.0.0/16\"."
  }
}

variable "az_count" {
  description = "How many availability zones to spread over (2 or 3)."
  type        = number
  default     = 2
  validation {
    condition     = contains([2, 3], var.az_count)
    error_message = "az_count must be 2 or 3."
  }
}

variable "single_nat_gateway" {
  description = "One NAT gateway for all AZs (cheaper, dev) instead of one per AZ (prod: an AZ outage does not cut the others off)."
  type        = bool
  default     = true
}

variable "flow_log_retention_days" {
  description = "Days to keep VPC flow logs."
  type        = number
  default     = 30
}
