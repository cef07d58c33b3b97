variable "name" {
  description = "Prefix for every resource name, e.g. \"llmfleet-dev\"."
  type        = string
}

variable "site_dir" {
  description = "Directory whose files are uploaded to the bucket (index.html at its root)."
  type        = string
  default     = null
}

variable "price_class" {
  description = "CloudFront price class: which edge locations serve the site."
  type        = string
  default     = "PriceClass_100"
  validation {
    condition     = contains(["PriceClass_100", "PriceClass_200", "PriceClass_All"], var.price_class)
    error_message = "price_class must be PriceClass_100, PriceClass_200 or PriceClass_All."
  }
}

variable "rate_limit_per_ip" {
  description = "Requests per IP per minute the site's web ACL allows before blocking (a static page needs few)."
  type        = number
  default     = 300
  validation {
    condition     = var.rate_limit_per_ip >= 10 && var.rate_limit_per_ip <= 2000000000
    error_message = "rate_limit_per_ip must be between 10 (WAF's minimum) and 2e9."
  }
}

variable "log_retention_days" {
  description = "Days to keep the site's WAF logs."
  type        = number
  default     = 30
}

variable "response_headers_policy_id" {
  description = "An existing CloudFront response headers policy to attach instead of creating this module's (HSTS with preload, nosniff, DENY framing, same-origin referrer)."
  type        = string
  default     = null
}
