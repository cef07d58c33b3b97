variable "bucket_arn" {
  description = "ARN of the bucket the policy protects (arn:aws:s3:::NAME)."
  type        = string
  validation {
    condition     = can(regex("^arn:aws[a-z-]*:s3:::[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.bucket_arn))
    error_message = "bucket_arn must be an S3 bucket ARN such as \"arn:aws:s3:::my-bucket\"."
  }
}

variable "policy_json" {
  description = "The bucket's own policy document (JSON, e.g. an aws_iam_policy_document's json), whose statements are kept; null for none."
  type        = string
  default     = null
  validation {
    condition     = var.policy_json == null || can(jsondecode(var.policy_json).Statement)
    error_message = "policy_json must be a policy document with a Statement list, or null."
  }
}
