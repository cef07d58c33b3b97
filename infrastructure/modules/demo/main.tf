# Demo site: the platform's static web page in a private S3 bucket, served
# only through CloudFront with origin access control (the bucket has no public
# access at all; CloudFront signs its requests), HTTPS only, behind its own web
# ACL (per-IP rate limit and AWS managed rules) like every public entry. The web
# ACL is the waf module's, made by the caller in us-east-1 (web_acl_arn), so this
# module needs no second provider.

locals {
  site_dir = var.site_dir
  files    = fileset(local.site_dir, "**")
  types = {
    html = "text/html; charset=utf-8", css = "text/css", js = "text/javascript",
    json = "application/json", png = "image/png", svg = "image/svg+xml", ico = "image/x-icon"
  }
}

# SSE-S3: CloudFront's origin access control reads it without a KMS key grant, and the
# content is a public web page. Versioning keeps the previous page through a bad upload;
# old versions go after 30 days. The content is rebuilt from the repository by apply.
module "site_bucket" {
  source        = "../bucket"
  name_prefix   = "${var.name}-site-"
  force_destroy = true
  sse_algorithm = "AES256"
  # CloudFront's read; the module adds the deny of every request without TLS (CloudFront
  # fetches from S3 over HTTPS: viewers are redirected to HTTPS before the origin is asked).
  policy_json = data.aws_iam_policy_document.site.json
}

resource "aws_s3_object" "file" {
  for_each     = local.files
  bucket       = module.site_bucket.name
  key          = each.value
  source       = "${local.site_dir}/${each.value}"
  etag         = filemd5("${local.site_dir}/${each.value}")
  content_type = lookup(local.types, reverse(split(".", each.value))[0], "application/octet-stream")
  # The edge revalidates (a 304 for a few small files) instead of serving yesterday's
  # app.js beside today's index.html for a day after an apply.
  cache_control = "no-cache"
}

# The page's one setting: where the API is. Served from CloudFront, the console calls
# API Gateway on another origin, which the routers admit through their CORS setting.
# (Always written: a count on the API's URL, unknown until it exists, could not be planned.)
resource "aws_s3_object" "config" {
  bucket        = module.site_bucket.name
  key           = "config.json"
  content       = jsonencode({ api_base = var.api_base_url }) # null: the page's own origin
  content_type  = "application/json"
  cache_control = "no-cache" # a redeployed API shows at once, not after the edge's TTL
}

resource "aws_cloudfront_origin_access_control" "site" {
  name                              = "${var.name}-site"
  origin_access_control_origin_type = "s3"
  signing_behavior                  = "always"
  signing_protocol                  = "sigv4"
}

# Security headers: ours unless a policy id is given (an organisation-wide one, or
# AWS's managed SecurityHeadersPolicy where the API lacks CreateResponseHeadersPolicy).
resource "aws_cloudfront_response_headers_policy" "site" {
  count = var.response_headers_policy_id == null ? 1 : 0
  name  = "${var.name}-site"
  security_headers_config {
    content_type_options {
      override = true
    }
    frame_options {
      frame_option = "DENY"
      override     = true
    }
    strict_transport_security {
      access_control_max_age_sec = 31536000
      include_subdomains         = true
      preload                    = true
      override                   = true
    }
    referrer_policy {
      referrer_policy = "same-origin"
      override        = true
    }
  }
}

locals {
  # AWS's managed "Managed-CachingOptimized" cache policy: its id is fixed and
  # published in the CloudFront developer guide (managed cache policies), so no
  # lookup is needed (and the plan works where ListCachePolicies does not, moto).
  caching_optimized_policy_id = "658327ea-f89d-4fab-a63d-7e88639e58f6"
}

resource "aws_cloudfront_distribution" "site" {
  #checkov:skip=CKV2_AWS_42:Served on its *.cloudfront.net name with CloudFront's certificate; a custom domain needs a certificate and DNS the platform does not own.
  #checkov:skip=CKV_AWS_174:CloudFront's default certificate fixes the minimum protocol itself (TLS 1.2 can only be required with a custom certificate).
  #checkov:skip=CKV_AWS_86:Standard CloudFront logging needs an S3 bucket with ACLs enabled, and every bucket here keeps ACLs off; requests are logged by the web ACL instead.
  #checkov:skip=CKV_AWS_310:One static origin in S3 (99.99% availability); failover would need a second bucket in another region for a demo page.
  #checkov:skip=CKV2_AWS_47:The web ACL (web_acl_arn, the waf module's) runs the known-bad-inputs (Log4j) and anonymous-IP groups from a dynamic block checkov cannot read; tests/waf.tftest.hcl asserts them.
  #checkov:skip=CKV_AWS_374:A public console for a public API: no country is excluded by default.
  enabled             = true
  comment             = "${var.name} web console"
  default_root_object = "index.html"
  price_class         = var.price_class
  http_version        = "http2and3"
  web_acl_id          = var.web_acl_arn

  origin {
    origin_id                = "site"
    domain_name              = module.site_bucket.regional_domain_name
    origin_access_control_id = aws_cloudfront_origin_access_control.site.id
  }

  default_cache_behavior {
    target_origin_id           = "site"
    viewer_protocol_policy     = "redirect-to-https"
    allowed_methods            = ["GET", "HEAD"]
    cached_methods             = ["GET", "HEAD"]
    cache_policy_id            = local.caching_optimized_policy_id
    response_headers_policy_id = coalesce(var.response_headers_policy_id, one(aws_cloudfront_response_headers_policy.site[*].id))
    compress                   = true
  }

  restrictions {
    geo_restriction {
      restriction_type = "none"
    }
  }

  viewer_certificate {
    cloudfront_default_certificate = true
  }
}

data "aws_iam_policy_document" "site" {
  statement {
    sid       = "CloudFrontReadsThroughOAC"
    actions   = ["s3:GetObject"]
    resources = ["${module.site_bucket.arn}/*"]
    principals {
      type        = "Service"
      identifiers = ["cloudfront.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "AWS:SourceArn"
      values   = [aws_cloudfront_distribution.site.arn]
    }
  }
}

# The bucket moved into the bucket module (shared with the artifacts and the access
# logs'), and the web ACL, its log group and logging into the waf module, which the
# root module calls with the us-east-1 provider (module.demo_waf; its moved blocks are
# there, since they cross modules): the same bucket and settings, at new addresses.
moved {
  from = aws_s3_bucket.site
  to   = module.site_bucket.aws_s3_bucket.this
}

moved {
  from = aws_s3_bucket_public_access_block.site
  to   = module.site_bucket.aws_s3_bucket_public_access_block.this
}

moved {
  from = aws_s3_bucket_server_side_encryption_configuration.site
  to   = module.site_bucket.aws_s3_bucket_server_side_encryption_configuration.this
}

moved {
  from = aws_s3_bucket_versioning.site
  to   = module.site_bucket.aws_s3_bucket_versioning.this[0]
}

moved {
  from = aws_s3_bucket_lifecycle_configuration.site
  to   = module.site_bucket.aws_s3_bucket_lifecycle_configuration.this
}

moved {
  from = aws_s3_bucket_policy.site
  to   = module.site_bucket.aws_s3_bucket_policy.this
}
