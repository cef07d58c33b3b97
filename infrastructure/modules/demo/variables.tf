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

variable "web_acl_arn" {
  description = "ARN of the CloudFront-scoped web ACL in front of the distribution (the waf module's web_acl_arn, made with scope CLOUDFRONT through a us-east-1 provider)."
  type        = string
  nullable    = false
  validation {
    condition     = can(regex("^arn:aws[a-z-]*:wafv2:us-east-1:[0-9]{12}:global/webacl/[A-Za-z0-9_-]+/[A-Za-z0-9-]+$", var.web_acl_arn))
    error_message = "web_acl_arn must be a CloudFront-scoped WAFv2 web ACL ARN (arn:aws:wafv2:us-east-1:ACCOUNT:global/webacl/NAME/ID); a regional ACL cannot protect a distribution."
  }
}

variable "response_headers_policy_id" {
  description = "An existing CloudFront response headers policy to attach instead of creating this module's (HSTS with preload, nosniff, DENY framing, same-origin referrer)."
  type        = string
  default     = null
}
