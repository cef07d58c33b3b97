# The demo module: private bucket read only through CloudFront, HTTPS only, a
# CloudFront-scoped web ACL created through the us-east-1 provider, and the
# response headers policy it creates unless one is given.

mock_provider "aws" {
  mock_data "aws_iam_policy_document" {
    defaults = { json = "{\"Version\":\"2012-10-17\",\"Statement\":[]}" }
  }
  mock_resource "aws_s3_bucket" {
    defaults = { arn = "arn:aws:s3:::t-site", id = "t-site", bucket_regional_domain_name = "t-site.s3.us-east-1.amazonaws.com" }
  }
  mock_resource "aws_cloudfront_distribution" {
    defaults = { arn = "arn:aws:cloudfront::123456789012:distribution/E1", domain_name = "d1.cloudfront.net" }
  }
}

mock_provider "aws" {
  alias = "us_east_1"
  mock_resource "aws_wafv2_web_acl" {
    defaults = { arn = "arn:aws:wafv2:us-east-1:123456789012:global/webacl/t/1" }
  }
  mock_resource "aws_cloudwatch_log_group" {
    defaults = { arn = "arn:aws:logs:us-east-1:123456789012:log-group:aws-waf-logs-t-site" }
  }
}

variables {
  name     = "llmfleet-test"
  site_dir = "../server/web"
}

run "served_only_through_cloudfront_behind_waf" {
  command = apply
  module {
    source = "./modules/demo"
  }
  providers = {
    aws           = aws
    aws.us_east_1 = aws.us_east_1
  }

  assert {
    condition     = aws_s3_bucket_public_access_block.site.block_public_policy && aws_s3_bucket_public_access_block.site.restrict_public_buckets
    error_message = "The bucket admits no public access: CloudFront reads it through origin access control."
  }
  assert {
    condition     = aws_cloudfront_distribution.site.default_cache_behavior[0].viewer_protocol_policy == "redirect-to-https"
    error_message = "Viewers are redirected to HTTPS."
  }
  assert {
    condition     = aws_wafv2_web_acl.site.scope == "CLOUDFRONT" && aws_cloudfront_distribution.site.web_acl_id == aws_wafv2_web_acl.site.arn
    error_message = "The distribution is behind its own CloudFront-scoped web ACL."
  }
  assert {
    condition = toset([for r in aws_wafv2_web_acl.site.rule : one(r.statement[0].managed_rule_group_statement[*].name) if length(r.statement[0].managed_rule_group_statement) > 0]) == toset([
    "AWSManagedRulesCommonRuleSet", "AWSManagedRulesKnownBadInputsRuleSet", "AWSManagedRulesAnonymousIpList"])
    error_message = "The site's web ACL runs AWS's common, known-bad-inputs (Log4j) and anonymous-IP rule groups."
  }
  assert {
    condition     = one([for r in aws_wafv2_web_acl.site.rule : r.statement[0].rate_based_statement[0].limit if length(r.statement[0].rate_based_statement) > 0]) == 300
    error_message = "The site's web ACL limits each IP (300 a minute by default)."
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
  providers = {
    aws           = aws
    aws.us_east_1 = aws.us_east_1
  }

  assert {
    condition = anytrue([for s in jsondecode(aws_s3_bucket_policy.site.policy).Statement :
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
  providers = {
    aws           = aws
    aws.us_east_1 = aws.us_east_1
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
  providers = {
    aws           = aws
    aws.us_east_1 = aws.us_east_1
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
  providers = {
    aws           = aws
    aws.us_east_1 = aws.us_east_1
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
  providers = {
    aws           = aws
    aws.us_east_1 = aws.us_east_1
  }
  variables {
    response_headers_policy_id = "67f7725c-6f97-4210-82d7-5512b31e9d03"
  }

  assert {
    condition     = length(aws_cloudfront_response_headers_policy.site) == 0 && aws_cloudfront_distribution.site.default_cache_behavior[0].response_headers_policy_id == "67f7725c-6f97-4210-82d7-5512b31e9d03"
    error_message = "A given policy is attached and none is created."
  }
}

run "rejects_a_rate_limit_below_the_waf_minimum" {
  command = plan
  module {
    source = "./modules/demo"
  }
  providers = {
    aws           = aws
    aws.us_east_1 = aws.us_east_1
  }
  variables {
    rate_limit_per_ip = 5
  }
  expect_failures = [var.rate_limit_per_ip]
}

run "rejects_an_unknown_price_class" {
  command = plan
  module {
    source = "./modules/demo"
  }
  providers = {
    aws           = aws
    aws.us_east_1 = aws.us_east_1
  }
  variables {
    price_class = "PriceClass_Cheapest"
  }
  expect_failures = [var.price_class]
}
