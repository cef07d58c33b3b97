output "name" {
  description = "Name of the bucket (S3's unique name from name_prefix)."
  value       = aws_s3_bucket.this.bucket
}

output "arn" {
  description = "ARN of the bucket (arn:aws:s3:::NAME), for policies that name it."
  value       = aws_s3_bucket.this.arn
}

output "regional_domain_name" {
  description = "The bucket's regional endpoint (NAME.s3.REGION.amazonaws.com), e.g. for a CloudFront origin."
  value       = aws_s3_bucket.this.bucket_regional_domain_name
}

output "policy" {
  description = "The bucket policy as written: policy_json's statements plus the deny of every request without TLS."
  value       = module.policy.json
}

output "force_destroy" {
  description = "Whether destroy deletes the bucket with the objects it holds."
  value       = aws_s3_bucket.this.force_destroy
}
