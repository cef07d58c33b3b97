# The demo module: private bucket read only through CloudFront, HTTPS only, behind
# the CloudFront-scoped web ACL it is given (the root module makes it with the waf
# module through the us-east-1 provider; tests/waf.tftest.hcl covers its rules), and
# the response headers policy it creates unless one is given. One provider: the
# module needs no aliased one, so `validate` can check it as a test's module.

mock_provider "aws" {
  mock_data "aws_iam_policy_document" {
    defaults = { json = "{\"Version\":\"2012-10-17\",\"Statement\":[]}" }
  }
  mock_resource "aws_s3_bucket" {
    defaults = { arn = "arn:aws:s3:::t-site", id = "t-site", bucket = "t-site", bucket_regional_domain_name = "t-site.s3.us-east-1.amazonaws.com" }
  }
  mock_resource "aws_cloudfront_distribution" {
    defaults = { arn = "arn:aws:cloudfront::123456789012:distribution/E1", domain_name = "d1.cloudfront.net" }
  }
}

variables {
  name        = "llmfleet-test"
  site_dir    = "../server/web"
  web_acl_arn = "arn:aws:wafv2:us-east-1:123456789012:global/webacl/llmfleet-test-site/1"
}

run "served_only_through_cloudfront_behind_waf" {
  command = apply
  module {
    source = "./modules/demo"
  }

  assert {
    condition     = one(aws_cloudfront_distribution.site.origin).domain_name == "t-site.s3.us-east-1.amazonaws.com" && module.site_bucket.name == "t-site"
    error_message = "CloudFront's origin is the site bucket (the bucket module: no public access, encrypted, versioned)."
  }
  assert {
    condition     = aws_cloudfront_distribution.site.default_cache_behavior[0].viewer_protocol_policy == "redirect-to-https"
    error_message = "Viewers are redirected to HTTPS."
  }
  assert {
    condition     = aws_cloudfront_distribution.site.web_acl_id == var.web_acl_arn
    error_message = "The distribution is behind the CloudFront-scoped web ACL it is given."
  }
  assert {
    condition     = length(aws_cloudfront_response_headers_policy.site) == 1 && aws_cloudfront_response_headers_policy.site[0].security_headers_config[0].strict_transport_security[0].preload
    error_message = "Without a given policy the module creates its own, with HSTS preload."
  }
  assert {
    condition = (aws_s3_object.file["index.html"].content_type == "text/html; charset=utf-8" &&
      aws_s3_object.file["app.js"].content_type == "text/javascript" &&
    aws_s3_object.file["style.css"].content_type == "text/css")
    error_message = "The web console's files are uploaded with the content types browsers need to run them."
  }
  assert {
    condition     = jsondecode(aws_s3_object.config.content).api_base == null
    error_message = "Without an API base URL, config.json leaves the page calling its own origin."
  }
}

# The site bucket's policy admitted CloudFront and nothing else was said: a request
# without TLS was served.
run "site_bucket_refuses_requests_without_tls" {
  command = apply
  module {
    source = "./modules/demo"
  }

  assert {
    condition = anytrue([for s in jsondecode(module.site_bucket.policy).Statement :
      s.Effect == "Deny" && s.Action == "s3:*" && s.Condition == { Bool = { "aws:SecureTransport" = "false" } } &&
    s.Resource == ["arn:aws:s3:::t-site", "arn:aws:s3:::t-site/*"]])
    error_message = "The site bucket denies every request made without TLS."
  }
  assert {
    condition     = one(data.aws_iam_policy_document.site.statement).sid == "CloudFrontReadsThroughOAC"
    error_message = "The bucket policy still lets CloudFront read through origin access control."
  }
}

run "points_the_console_at_the_api" {
  command = plan
  module {
    source = "./modules/demo"
  }
  variables {
    api_base_url = "https://abc123.execute-api.eu-west-1.amazonaws.com/api"
  }
  assert {
    condition     = jsondecode(aws_s3_object.config.content).api_base == "https://abc123.execute-api.eu-west-1.amazonaws.com/api"
    error_message = "config.json tells the page where the API is."
  }
}

run "rejects_a_plain_http_api" {
  command = plan
  module {
    source = "./modules/demo"
  }
  variables {
    api_base_url = "http://abc123.execute-api.eu-west-1.amazonaws.com/api/"
  }
  expect_failures = [var.api_base_url]
}

run "rejects_a_site_without_an_index" {
  command = plan
  module {
    source = "./modules/demo"
  }
  variables {
    site_dir = "tests/fixtures"
  }
  expect_failures = [var.site_dir]
}

run "attaches_a_given_headers_policy" {
  command = plan
  module {
    source = "./modules/demo"
  }
  variables {
    response_headers_policy_id = "67f7725c-6f97-4210-82d7-5512b31e9d03"
  }

  assert {
    condition     = length(aws_cloudfront_response_headers_policy.site) == 0 && aws_cloudfront_distribution.site.default_cache_behavior[0].response_headers_policy_id == "67f7725c-6f97-4210-82d7-5512b31e9d03"
    error_message = "A given policy is attached and none is created."
  }
}

# A regional web ACL cannot be attached to a distribution: the apply would fail late.
run "rejects_a_regional_web_acl" {
  command = plan
  module {
    source = "./modules/demo"
  }
  variables {
    web_acl_arn = "arn:aws:wafv2:eu-west-1:123456789012:regional/webacl/llmfleet-test-api/1"
  }
  expect_failures = [var.web_acl_arn]
}

run "rejects_an_unknown_price_class" {
  command = plan
  module {
    source = "./modules/demo"
  }
  variables {
    price_class = "PriceClass_Cheapest"
  }
  expect_failures = [var.price_class]
}
