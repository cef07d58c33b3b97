# The bucket module: every bucket of the platform is private (public access blocked),
# encrypted by default, refuses requests without TLS and cleans up after itself; the
# variables choose KMS or SSE-S3, versions kept for a while, or objects that expire.

mock_provider "aws" {
  mock_resource "aws_s3_bucket" {
    defaults = { arn = "arn:aws:s3:::t-bucket", id = "t-bucket", bucket = "t-bucket", bucket_regional_domain_name = "t-bucket.s3.us-east-1.amazonaws.com" }
  }
}

variables {
  name_prefix = "llmfleet-test-artifacts-"
}

run "private_kms_encrypted_versioned_and_tls_only_by_default" {
  command = apply
  module {
    source = "./modules/bucket"
  }

  assert {
    condition = (aws_s3_bucket_public_access_block.this.block_public_acls && aws_s3_bucket_public_access_block.this.block_public_policy &&
    aws_s3_bucket_public_access_block.this.ignore_public_acls && aws_s3_bucket_public_access_block.this.restrict_public_buckets)
    error_message = "No ACL or policy can make the bucket or an object public."
  }
  assert {
    condition     = aws_s3_bucket.this.bucket_prefix == "llmfleet-test-artifacts-" && !aws_s3_bucket.this.force_destroy
    error_message = "The bucket is named from name_prefix and keeps its objects on destroy unless asked."
  }
  assert {
    condition = (one(one(aws_s3_bucket_server_side_encryption_configuration.this.rule).apply_server_side_encryption_by_default).sse_algorithm == "aws:kms" &&
    one(aws_s3_bucket_server_side_encryption_configuration.this.rule).bucket_key_enabled == true)
    error_message = "Objects are encrypted with KMS by default, through a bucket key."
  }
  assert {
    condition     = length(aws_s3_bucket_versioning.this) == 1 && aws_s3_bucket_versioning.this[0].versioning_configuration[0].status == "Enabled"
    error_message = "Versioning is on by default (a rollback window)."
  }
  assert {
    condition = (aws_s3_bucket_lifecycle_configuration.this.rule[0].id == "old-versions" &&
      aws_s3_bucket_lifecycle_configuration.this.rule[0].noncurrent_version_expiration[0].noncurrent_days == 30 &&
      length(aws_s3_bucket_lifecycle_configuration.this.rule[0].expiration) == 0 &&
    aws_s3_bucket_lifecycle_configuration.this.rule[0].abort_incomplete_multipart_upload[0].days_after_initiation == 1)
    error_message = "Old versions go after 30 days, current objects stay, unfinished uploads go after a day."
  }
  assert {
    condition = anytrue([for s in jsondecode(aws_s3_bucket_policy.this.policy).Statement :
      s.Effect == "Deny" && s.Action == "s3:*" && s.Condition == { Bool = { "aws:SecureTransport" = "false" } } &&
    s.Resource == ["arn:aws:s3:::t-bucket", "arn:aws:s3:::t-bucket/*"]]) && aws_s3_bucket_policy.this.policy == output.policy
    error_message = "The bucket denies every request made without TLS."
  }
}

# The access-log bucket's settings: ALB log delivery writes only to SSE-S3 buckets, and
# logs are written once and expire.
run "write_once_logs_expire_unversioned_with_sse_s3" {
  command = apply
  module {
    source = "./modules/bucket"
  }
  variables {
    name_prefix     = "llmfleet-test-alb-logs-"
    force_destroy   = true
    sse_algorithm   = "AES256"
    versioned       = false
    expiration_days = 14
    policy_json = jsonencode({ Version = "2012-10-17", Statement = [{
      Sid = "ElbWritesAccessLogs", Effect = "Allow", Action = "s3:PutObject", Resource = "arn:aws:s3:::t-bucket/alb/*",
    Principal = { AWS = "arn:aws:iam::127311923021:root" } }] })
  }

  assert {
    condition = (one(one(aws_s3_bucket_server_side_encryption_configuration.this.rule).apply_server_side_encryption_by_default).sse_algorithm == "AES256" &&
    !coalesce(one(aws_s3_bucket_server_side_encryption_configuration.this.rule).bucket_key_enabled, false))
    error_message = "SSE-S3 when asked, without a bucket key (a KMS setting)."
  }
  assert {
    condition     = length(aws_s3_bucket_versioning.this) == 0 && aws_s3_bucket.this.force_destroy
    error_message = "No versioning for write-once logs; force_destroy as given."
  }
  assert {
    condition = (aws_s3_bucket_lifecycle_configuration.this.rule[0].id == "expire" &&
      aws_s3_bucket_lifecycle_configuration.this.rule[0].expiration[0].days == 14 &&
    length(aws_s3_bucket_lifecycle_configuration.this.rule[0].noncurrent_version_expiration) == 0)
    error_message = "Objects expire after expiration_days; there are no old versions to expire."
  }
  assert {
    condition     = [for s in jsondecode(output.policy).Statement : s.Sid] == ["ElbWritesAccessLogs", "DenyInsecureTransport"]
    error_message = "The bucket's own statements are kept, with the deny of requests without TLS added."
  }
}

run "rejects_a_name_prefix_s3_cannot_use" {
  command = plan
  module {
    source = "./modules/bucket"
  }
  variables {
    name_prefix = "LLMFleet_artifacts"
  }
  expect_failures = [var.name_prefix]
}

# bucket_prefix is at most 37 characters (S3 adds 26).
run "rejects_a_name_prefix_too_long_for_s3" {
  command = plan
  module {
    source = "./modules/bucket"
  }
  variables {
    name_prefix = "llmfleet-production-eu-west-artifacts-"
  }
  expect_failures = [var.name_prefix]
}

run "rejects_an_unknown_encryption" {
  command = plan
  module {
    source = "./modules/bucket"
  }
  variables {
    sse_algorithm = "aws:kms:dsse"
  }
  expect_failures = [var.sse_algorithm]
}

run "rejects_versions_kept_for_no_days" {
  command = plan
  module {
    source = "./modules/bucket"
  }
  variables {
    noncurrent_version_days = 0
  }
  expect_failures = [var.noncurrent_version_days]
}

run "rejects_a_fractional_expiry" {
  command = plan
  module {
    source = "./modules/bucket"
  }
  variables {
    expiration_days = 1.5
  }
  expect_failures = [var.expiration_days]
}

run "rejects_a_policy_without_statements" {
  command = plan
  module {
    source = "./modules/bucket"
  }
  variables {
    policy_json = "{\"Version\":\"2012-10-17\"}"
  }
  expect_failures = [var.policy_json]
}
