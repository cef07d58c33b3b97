output "url" {
  description = "HTTPS URL of the demo site: also its origin, which the routers' CORS setting allows."
  value       = "https://${aws_cloudfront_distribution.site.domain_name}"
}

output "bucket" {
  description = "Bucket holding the site's files."
  value       = module.site_bucket.name
}

output "distribution_id" {
  description = "CloudFront distribution id (for cache invalidations)."
  value       = aws_cloudfront_distribution.site.id
}
