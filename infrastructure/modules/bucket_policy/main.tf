# A bucket policy that refuses every request not made over TLS, merged with the
# bucket's own statements (CloudFront's origin access, ELB log delivery). No
# provider: the policy is plain JSON, so every bucket module gets the same deny
# from one place and tests can read the policy at plan time.

locals {
  own_statements = var.policy_json == null ? [] : jsondecode(var.policy_json).Statement

  deny_insecure_transport = {
    Sid       = "DenyInsecureTransport"
    Effect    = "Deny"
    Principal = "*"
    Action    = "s3:*"
    Resource  = [var.bucket_arn, "${var.bucket_arn}/*"]
    Condition = { Bool = { "aws:SecureTransport" = "false" } }
  }

  policy = jsonencode({
    Version   = "2012-10-17"
    Statement = concat(local.own_statements, [local.deny_insecure_transport])
  })
}
