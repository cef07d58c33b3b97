variable "name" {
  description = "Prefix for every resource name, e.g. \"llmfleet-dev\"."
  type        = string
}

variable "site_dir" {
  description = "Directory whose files are uploaded to the bucket, index.html at its root (the root module passes the web console, server/web)."
  type        = string
  validation {
    condition     = fileexists("${var.site_dir}/index.html") && !fileexists("${var.site_dir}/config.json")
    error_message = "site_dir must hold an index.html and no config.json (the module writes config.json from api_base_url)."
  }
}

variable "api_base_url" {
  description = "Base URL of the API the page calls (API Gateway's stage URL, without /v1), written to config.json; null leaves the page calling its own origin."
  type        = string
  default     = null
  validation {
    condition     = var.api_base_url == null || can(regex("^https://[^/?#]+(/[^?#]*[^/?#])?$", var.api_base_url))
    error_message = "api_base_url must be an https:// URL without a trailing slash, query or fragment."
  }
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
