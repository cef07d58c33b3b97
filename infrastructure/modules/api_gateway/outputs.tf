output "url" {
  description = "OpenAI-compatible base URL through API Gateway (send x-api-key and Authorization: Bearer)."
  value       = "${aws_api_gateway_stage.this.invoke_url}/v1"
}

output "base_url" {
  description = "The stage's URL without /v1: the API base the web console calls (/v1/..., /console/...)."
  value       = aws_api_gateway_stage.this.invoke_url
}

output "rest_api_id" {
  description = "ID of the REST API."
  value       = aws_api_gateway_rest_api.this.id
}

output "stage_arn" {
  description = "ARN of the stage (WAF is attached here)."
  value       = aws_api_gateway_stage.this.arn
}

output "api_key_ids" {
  description = "API Gateway key ids by client (read the values with `aws apigateway get-api-key --include-value`)."
  value       = { for k, v in aws_api_gateway_api_key.client : k => v.id }
}

output "web_acl_arn" {
  description = "ARN of the stage's own WAF web ACL."
  value       = module.waf.web_acl_arn
}
