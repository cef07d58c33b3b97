variable "name" {
  description = "Name of the web ACL, its metrics and its log group (aws-waf-logs-NAME), e.g. \"llmfleet-dev-api\"."
  type        = string
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,100}$", var.name))
    error_message = "name must be lower-case letters, digits and dashes, starting with a letter, e.g. \"llmfleet-dev-api\"."
  }
}

variable "rate_limit_per_ip" {
  description = "Requests per client IP per minute before the web ACL blocks it (rate-based rule)."
  type        = number
  default     = 100
  validation {
    condition     = var.rate_limit_per_ip >= 10 && var.rate_limit_per_ip <= 2000000000
    error_message = "rate_limit_per_ip must be at least 10 (the WAF minimum)."
  }
}

variable "rate_limit_exempt_cidrs" {
  description = "IPv4 ranges the per-IP limit leaves alone because another web ACL limits their clients already: the VPC, for the load balancer (API Gateway's VPC link); none for the stage."
  type        = list(string)
  default     = []
  validation {
    condition     = alltrue([for c in var.rate_limit_exempt_cidrs : can(cidrhost(c, 0)) && strcontains(c, ".")])
    error_message = "rate_limit_exempt_cidrs must be IPv4 CIDRs such as \"10.20.0.0/16\"."
  }
}

variable "log_retention_days" {
  description = "Days to keep the web ACL's request logs."
  type        = number
  default     = 30
}

variable "scope" {
  description = "Where the web ACL applies: \"REGIONAL\" (a load balancer or API Gateway stage, in the deployment's region) or \"CLOUDFRONT\" (a distribution; pass a us-east-1 provider, the only region CloudFront's web ACLs live in)."
  type        = string
  default     = "REGIONAL"
  validation {
    condition     = contains(["REGIONAL", "CLOUDFRONT"], var.scope)
    error_message = "scope must be \"REGIONAL\" or \"CLOUDFRONT\"."
  }
}

variable "serves_api" {
  description = "The entry serves the API: the managed rules that inspect request bodies (prompts quote code) and the hosting-provider list (clients on cloud servers) only count. false lets every managed rule block (the demo site: a static page, GET and HEAD only)."
  type        = bool
  default     = true
  nullable    = false
}

variable "redacted_headers" {
  description = "Request headers (lower case) whose values the request logs redact: the credentials the entry receives."
  type        = list(string)
  default     = ["authorization", "x-api-key"]
  nullable    = false
  validation {
    condition     = alltrue([for h in var.redacted_headers : can(regex("^[a-z0-9!#$%&'*+.^_`|~-]+$", h))]) && length(var.redacted_headers) == length(distinct(var.redacted_headers))
    error_message = "redacted_headers must be distinct header names in lower case (WAF matches single headers in lower case), e.g. [\"authorization\", \"x-api-key\"]."
  }
}
