# Bucket: one private S3 bucket as every bucket of the platform is made (the
# artifacts, the demo site, the load balancer's access logs, the archive): no public access
# at all, encrypted by default, a policy that refuses requests without TLS, a
# lifecycle that cleans up after it, and optionally versioning. What differs
# between them is the variables; written once so that no bucket drifts from the others.

# --- Bucket ----------------------------------------------------------------------
# S3 picks the unique suffix, so deployments and accounts never collide on a name.

resource "aws_s3_bucket" "this" {
  #checkov:skip=CKV_AWS_18:No bucket here keeps server access logs: the artifacts and site buckets are read only by the instance role or CloudFront (CloudTrail and the web ACL log those), the archive is written only by the instances' role (CloudTrail data events log its reads where an operator turns them on), and the access-log bucket would log into itself.
  #checkov:skip=CKV_AWS_144:Content is rebuilt by apply (wheels, the web page), is diagnostics (access logs) or is the archive, whose records S3 already keeps across three zones; a replica in a second region would double its cost for a regional outage only (docs/security.md says how to add one).
  #checkov:skip=CKV_AWS_145:sse_algorithm is aws:kms by default; AES256 (SSE-S3) only where AWS requires it: ALB log delivery, and CloudFront's origin access control without a key grant.
  #checkov:skip=CKV_AWS_21:versioned is true by default; false only for write-once data that expires (the access logs, the archive's records), where versions would only keep deleted data longer.
  #checkov:skip=CKV2_AWS_62:Nothing consumes new-object events: apply uploads wheels and pages, the instances, CloudFront or nobody read them, and logs have no subscriber.
  bucket_prefix = var.name_prefix
  force_destroy = var.force_destroy
}

# --- Access --------------------------------------------------------------------
# No ACL or policy can ever make the bucket or an object public; readers are named
# in the bucket policy (the instance role reads through its own IAM policy).

resource "aws_s3_bucket_public_access_block" "this" {
  bucket                  = aws_s3_bucket.this.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

# The bucket's own statements plus the deny of every request without TLS, whoever signs it.
module "policy" {
  source      = "../bucket_policy"
  bucket_arn  = aws_s3_bucket.this.arn
  policy_json = var.policy_json
}

resource "aws_s3_bucket_policy" "this" {
  bucket = aws_s3_bucket.this.id
  policy = module.policy.json
  # One after the other: S3 can abort concurrent changes to one bucket's access settings.
  depends_on = [aws_s3_bucket_public_access_block.this]
}

# --- Encryption ----------------------------------------------------------------
# KMS (AWS managed key) with a bucket key, which cuts KMS requests, unless a reader
# or writer cannot use KMS: then SSE-S3.

resource "aws_s3_bucket_server_side_encryption_configuration" "this" {
  bucket = aws_s3_bucket.this.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = var.sse_algorithm
    }
    bucket_key_enabled = var.sse_algorithm == "aws:kms" ? true : null
  }
}

# --- Versions and lifecycle ----------------------------------------------------
# Versioning keeps the previous wheel or page through a bad upload; old versions go
# after noncurrent_version_days. Logs and the archive's records are written once and
# expire after expiration_days instead. Unfinished multipart uploads are dropped after a day.

resource "aws_s3_bucket_versioning" "this" {
  count  = var.versioned ? 1 : 0
  bucket = aws_s3_bucket.this.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "this" {
  bucket = aws_s3_bucket.this.id
  rule {
    # Named after what it mainly does; existing buckets keep their rule's id.
    id     = var.expiration_days != null ? "expire" : (var.versioned ? "old-versions" : "abort-uploads")
    status = "Enabled"
    filter {}
    dynamic "expiration" {
      for_each = var.expiration_days != null ? [var.expiration_days] : []
      content {
        days = expiration.value
      }
    }
    dynamic "noncurrent_version_expiration" {
      for_each = var.versioned ? [var.noncurrent_version_days] : []
      content {
        noncurrent_days = noncurrent_version_expiration.value
      }
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }
  depends_on = [aws_s3_bucket_versioning.this]
}
