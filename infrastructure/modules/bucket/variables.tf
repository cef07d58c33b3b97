variable "name_prefix" {
  description = "Prefix of the bucket's name (S3 adds a unique suffix), e.g. \"llmfleet-dev-artifacts-\"."
  type        = string
  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9-]{1,35}-$", var.name_prefix))
    error_message = "name_prefix must be 3-37 characters: lower-case letters, digits and dashes, starting with a letter or digit and ending with a dash, e.g. \"llmfleet-dev-artifacts-\"."
  }
}

variable "force_destroy" {
  description = "Let destroy delete the bucket with its objects: true where the content is rebuilt by apply (wheels, the web page) or is disposable (dev's logs)."
  type        = bool
  default     = false
  nullable    = false
}

variable "sse_algorithm" {
  description = "Default encryption: \"aws:kms\" (the AWS managed key, with an S3 bucket key), or \"AES256\" (SSE-S3) where the reader or writer cannot use KMS (ALB log delivery; CloudFront origin access control without a key grant)."
  type        = string
  default     = "aws:kms"
  validation {
    condition     = contains(["aws:kms", "AES256"], var.sse_algorithm)
    error_message = "sse_algorithm must be \"aws:kms\" or \"AES256\"."
  }
}

variable "versioned" {
  description = "Keep previous versions of overwritten or deleted objects for noncurrent_version_days (a rollback window); false for write-once data such as access logs."
  type        = bool
  default     = true
  nullable    = false
}

variable "noncurrent_version_days" {
  description = "Days a previous version is kept before it is deleted (versioned buckets only)."
  type        = number
  default     = 30
  nullable    = false
  validation {
    condition     = var.noncurrent_version_days >= 1 && floor(var.noncurrent_version_days) == var.noncurrent_version_days
    error_message = "noncurrent_version_days must be a whole number of days, 1 or more."
  }
}

variable "expiration_days" {
  description = "Days after which objects are deleted (write-once data such as access logs); null keeps them until overwritten or deleted."
  type        = number
  default     = null
  validation {
    condition     = var.expiration_days == null ? true : (var.expiration_days >= 1 && floor(var.expiration_days) == var.expiration_days)
    error_message = "expiration_days must be null or a whole number of days, 1 or more."
  }
}

variable "policy_json" {
  description = "The bucket's own policy statements (a policy document's JSON, e.g. CloudFront's origin access or ELB log delivery); the module adds the deny of every request without TLS. null: that deny alone."
  type        = string
  default     = null
  validation {
    condition     = var.policy_json == null ? true : can(jsondecode(var.policy_json).Statement)
    error_message = "policy_json must be a policy document with a Statement list, or null."
  }
}
