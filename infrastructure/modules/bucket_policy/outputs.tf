output "json" {
  description = "The bucket policy: the given statements plus a deny of every request without TLS (aws:SecureTransport false)."
  value       = local.policy
}
