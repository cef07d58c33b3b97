# Remote state in S3 with DynamoDB locking, configured per environment at init:
#   tofu init -backend-config=../environments/dev.s3.tfbackend
# (a partial configuration: bucket, key, region and lock table live there, so the
# same code serves every environment). DynamoDB locking works on OpenTofu >= 1.8
# and Terraform >= 1.8 alike.
terraform {
  backend "s3" {}
}
