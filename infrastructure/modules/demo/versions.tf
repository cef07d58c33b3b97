terraform {
  required_version = ">= 1.8"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.80, < 7.0"
      # CloudFront's web ACL (scope CLOUDFRONT) and its log group must live in us-east-1.
      configuration_aliases = [aws.us_east_1]
    }
  }
}
