# The API Gateway module: streaming private integration to the ALB, API keys
# required, usage-plan throttling, WAF on the stage.

mock_provider "aws" {
  mock_data "aws_region" {
    defaults = { name = "us-east-1" }
  }
  mock_data "aws_iam_policy_document" {
    defaults = { json = "{\"Version\":\"2012-10-17\",\"Statement\":[]}" }
  }
  mock_resource "aws_iam_role" {
    defaults = { arn = "arn:aws:iam::123456789012:role/apigw-logs" }
  }
  mock_resource "aws_cloudwatch_log_group" {
    defaults = { arn = "arn:aws:logs:us-east-1:123456789012:log-group:api" }
  }
  mock_resource "aws_api_gateway_stage" {
    defaults = { arn = "arn:aws:apigateway:us-east-1::/restapis/abc/stages/api", invoke_url = "https://abc.execute-api.us-east-1.amazonaws.com/api" }
  }
  mock_resource "aws_wafv2_web_acl" {
    defaults = { arn = "arn:aws:wafv2:us-east-1:123456789012:regional/webacl/llmfleet-test-api/1" }
  }
  mock_resource "aws_apigatewayv2_vpc_link" {
    defaults = { id = "vl-123" }
  }
}

variables {
  name                  = "llmfleet-test"
  vpc_id                = "vpc-0123"
  subnet_ids            = ["subnet-a", "subnet-b"]
  alb_arn               = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/t/1"
  alb_security_group_id = "sg-alb"
  alb_dns_name          = "internal-t.elb.amazonaws.com"
  alb_https             = false
  throttle              = { rate_per_s = 5, burst = 10, quota_per_month = 1000 }
  api_clients           = ["web", "batch"]
}

run "streams_through_a_private_integration" {
  command = apply
  module {
    source = "./modules/api_gateway"
  }

  assert {
    condition     = (jsondecode(aws_api_gateway_rest_api.this.body).paths["/{proxy+}"]["x-amazon-apigateway-any-method"]["x-amazon-apigateway-integration"].responseTransferMode == "STREAM")
    error_message = "Completions must stream through API Gateway."
  }
  assert {
    condition = (jsondecode(aws_api_gateway_rest_api.this.body).paths["/{proxy+}"]["x-amazon-apigateway-any-method"]["x-amazon-apigateway-integration"].connectionType == "VPC_LINK" &&
    jsondecode(aws_api_gateway_rest_api.this.body).paths["/{proxy+}"]["x-amazon-apigateway-any-method"]["x-amazon-apigateway-integration"].integrationTarget == var.alb_arn)
    error_message = "The integration must be private, through the VPC link to the ALB."
  }
  assert {
    condition     = length(jsondecode(aws_api_gateway_rest_api.this.body).paths["/{proxy+}"]["x-amazon-apigateway-any-method"].security) == 1
    error_message = "Every method but OPTIONS requires an API key."
  }
  assert {
    condition = (!contains(keys(jsondecode(aws_api_gateway_rest_api.this.body).paths["/{proxy+}"].options), "security") &&
      jsondecode(aws_api_gateway_rest_api.this.body).paths["/{proxy+}"].options["x-amazon-apigateway-integration"] ==
    jsondecode(aws_api_gateway_rest_api.this.body).paths["/{proxy+}"]["x-amazon-apigateway-any-method"]["x-amazon-apigateway-integration"])
    error_message = "CORS preflights (OPTIONS, which browsers send without keys) go to the routers, which answer them for their allowed origins."
  }
  assert {
    condition     = aws_api_gateway_usage_plan.this.throttle_settings[0].rate_limit == 5 && aws_api_gateway_usage_plan.this.quota_settings[0].limit == 1000
    error_message = "The usage plan throttles each key and applies the quota."
  }
  assert {
    condition     = length(aws_api_gateway_usage_plan_key.client) == 2
    error_message = "One key per client, each in the usage plan."
  }
  assert {
    condition     = aws_api_gateway_rest_api.this.endpoint_configuration[0].types == tolist(["REGIONAL"])
    error_message = "A regional endpoint (WAF attaches to regional stages; streaming idles 5 min there, 30 s on edge)."
  }
}

# The stage shared the load balancer's web ACL; the load balancer sees all gateway
# traffic from the VPC link's addresses, so its per-IP limit could not tell clients apart.
run "the_stage_has_its_own_web_acl_limiting_each_client" {
  command = apply
  module {
    source = "./modules/api_gateway"
  }
  variables {
    rate_limit_per_ip = 120
  }

  assert {
    condition     = aws_wafv2_web_acl_association.stage.resource_arn == aws_api_gateway_stage.this.arn && aws_wafv2_web_acl_association.stage.web_acl_arn == module.waf.web_acl_arn
    error_message = "The public stage is behind its own web ACL."
  }
  assert {
    condition     = length(module.waf.rate_limit_exempt_cidrs) == 0
    error_message = "At the stage every source address is a client: none is exempt from the per-IP limit."
  }
  assert {
    condition     = output.web_acl_arn == module.waf.web_acl_arn
    error_message = "The module reports its web ACL."
  }
}

run "rejects_bad_client_names" {
  command = plan
  module {
    source = "./modules/api_gateway"
  }
  variables {
    api_clients = ["Bad Name"]
  }
  expect_failures = [var.api_clients]
}

run "rejects_zero_rate" {
  command = plan
  module {
    source = "./modules/api_gateway"
  }
  variables {
    throttle = { rate_per_s = 0 }
  }
  expect_failures = [var.throttle]
}
