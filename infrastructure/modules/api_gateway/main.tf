# API Gateway: the managed front door. A regional REST API, because it is the
# API Gateway type that takes a WAF web ACL, API keys with usage plans, and
# (since November 2025) both private integrations to an Application Load
# Balancer through a VPC link V2 and response streaming, which streamed
# completions need (HTTP APIs have none of WAF, usage plans or streaming).
# The API is described in OpenAPI so that those integration settings work with
# any AWS provider version that can import a REST API.

data "aws_region" "current" {}

locals {
  stage  = "api"
  scheme = var.alb_https ? "https" : "http"
  # Every method goes to the load balancer unchanged: the routers answer it.
  integration = {
    type                 = "http_proxy"
    httpMethod           = "ANY"
    uri                  = "${local.scheme}://${var.alb_dns_name}/{proxy}"
    connectionType       = "VPC_LINK"
    connectionId         = aws_apigatewayv2_vpc_link.this.id
    integrationTarget    = var.alb_arn
    responseTransferMode = "STREAM" # tokens reach the client as vLLM produces them
    timeoutInMillis      = 900000   # 15 min, the streaming maximum
    passthroughBehavior  = "when_no_match"
    requestParameters    = { "integration.request.path.proxy" = "method.request.path.proxy" }
  }
  proxy_parameter = [{ name = "proxy", in = "path", required = true, schema = { type = "string" } }]
  openapi = {
    openapi                              = "3.0.1"
    info                                 = { title = "${var.name}-api", version = "1" }
    "x-amazon-apigateway-api-key-source" = "HEADER"
    components = {
      securitySchemes = {
        api_key = { type = "apiKey", name = "x-api-key", in = "header" }
      }
    }
    paths = {
      "/{proxy+}" = {
        "x-amazon-apigateway-any-method" = {
          parameters                        = local.proxy_parameter
          security                          = [{ api_key = [] }]
          "x-amazon-apigateway-integration" = local.integration
        }
        # CORS preflights carry no keys (browsers never send them on OPTIONS), so this
        # method needs none; the routers answer it, allowing only their configured
        # origins, and it reaches no model.
        options = {
          parameters                        = local.proxy_parameter
          "x-amazon-apigateway-integration" = local.integration
        }
      }
    }
  }
}

# --- VPC link ------------------------------------------------------------------

resource "aws_security_group" "vpc_link" {
  name        = "${var.name}-vpc-link"
  description = "API Gateway VPC link: to the load balancer only"
  vpc_id      = var.vpc_id
}

resource "aws_vpc_security_group_egress_rule" "to_alb" {
  security_group_id            = aws_security_group.vpc_link.id
  description                  = "To the load balancer"
  referenced_security_group_id = var.alb_security_group_id
  ip_protocol                  = "tcp"
  from_port                    = var.alb_https ? 443 : 80
  to_port                      = var.alb_https ? 443 : 80
}

resource "aws_apigatewayv2_vpc_link" "this" {
  name               = "${var.name}-alb"
  subnet_ids         = var.subnet_ids
  security_group_ids = [aws_security_group.vpc_link.id]
}

# --- REST API, deployment, stage ----------------------------------------------

resource "aws_api_gateway_rest_api" "this" {
  name = "${var.name}-api"
  body = jsonencode(local.openapi)
  endpoint_configuration {
    types = ["REGIONAL"]
  }
  lifecycle {
    create_before_destroy = true # a replaced API serves until the new one exists
  }
}

resource "aws_api_gateway_deployment" "this" {
  rest_api_id = aws_api_gateway_rest_api.this.id
  triggers = {
    redeployment = sha1(aws_api_gateway_rest_api.this.body)
  }
  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_cloudwatch_log_group" "access" {
  #checkov:skip=CKV_AWS_158:CloudWatch Logs encrypts every log group at rest with a service key; access records carry key ids, never keys or bodies.
  #checkov:skip=CKV_AWS_338:Retention is log_retention_days, 30 days by default; a year is a per-environment cost choice.
  name              = "/llmfleet/${var.name}/api-gateway"
  retention_in_days = var.log_retention_days
}

resource "aws_api_gateway_stage" "this" {
  #checkov:skip=CKV2_AWS_51:Client certificates authenticate API Gateway to public HTTP backends; this integration is private (VPC link to the load balancer, which admits only the link's security group).
  #checkov:skip=CKV2_AWS_77:The stage's web ACL comes from the waf module, which runs AWSManagedRulesKnownBadInputsRuleSet and AWSManagedRulesAnonymousIpList in a dynamic block checkov cannot read (tests/waf.tftest.hcl checks the rules).
  #checkov:skip=CKV_AWS_120:Completions are POSTs whose answers differ per request: a response cache would serve nothing and bills from $0.02 an hour.
  rest_api_id          = aws_api_gateway_rest_api.this.id
  deployment_id        = aws_api_gateway_deployment.this.id
  stage_name           = local.stage
  xray_tracing_enabled = true

  access_log_settings {
    destination_arn = aws_cloudwatch_log_group.access.arn
    format = jsonencode({
      requestId = "$context.requestId", ip = "$context.identity.sourceIp",
      method    = "$context.httpMethod", path = "$context.path", status = "$context.status",
      latencyMs = "$context.responseLatency", apiKeyId = "$context.identity.apiKeyId",
      waf       = "$context.wafResponseCode"
    })
  }

  depends_on = [aws_api_gateway_account.this]
}

resource "aws_api_gateway_method_settings" "all" {
  #checkov:skip=CKV_AWS_225:Completions are POSTs whose answers differ per request: caching them would be wrong, not merely useless.
  rest_api_id = aws_api_gateway_rest_api.this.id
  stage_name  = aws_api_gateway_stage.this.stage_name
  method_path = "*/*"
  settings {
    metrics_enabled        = true
    logging_level          = "ERROR"
    throttling_rate_limit  = var.throttle.rate_per_s * max(length(var.api_clients), 1)
    throttling_burst_limit = var.throttle.burst * max(length(var.api_clients), 1)
  }
}

# --- WAF -----------------------------------------------------------------------
# The stage's own web ACL: here WAF sees each client's address, so the per-IP limit
# is per client. (At the load balancer all gateway traffic comes from the VPC link's
# few addresses; that web ACL leaves it to this one.)

module "waf" {
  source             = "../waf"
  name               = "${var.name}-api"
  rate_limit_per_ip  = var.rate_limit_per_ip
  log_retention_days = var.log_retention_days
}

resource "aws_wafv2_web_acl_association" "stage" {
  resource_arn = aws_api_gateway_stage.this.arn
  web_acl_arn  = module.waf.web_acl_arn
}

# --- Keys and usage plan -------------------------------------------------------

resource "aws_api_gateway_usage_plan" "this" {
  name = "${var.name}-default"
  api_stages {
    api_id = aws_api_gateway_rest_api.this.id
    stage  = aws_api_gateway_stage.this.stage_name
  }
  throttle_settings {
    rate_limit  = var.throttle.rate_per_s
    burst_limit = var.throttle.burst
  }
  dynamic "quota_settings" {
    for_each = var.throttle.quota_per_month > 0 ? [1] : []
    content {
      limit  = var.throttle.quota_per_month
      period = "MONTH"
    }
  }
}

resource "aws_api_gateway_api_key" "client" {
  for_each = toset(var.api_clients)
  name     = "${var.name}-${each.key}"
}

resource "aws_api_gateway_usage_plan_key" "client" {
  for_each      = aws_api_gateway_api_key.client
  key_id        = each.value.id
  key_type      = "API_KEY"
  usage_plan_id = aws_api_gateway_usage_plan.this.id
}

# --- Account-level logging role -----------------------------------------------
# API Gateway writes execution logs through one role per account and region.

data "aws_iam_policy_document" "apigw_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["apigateway.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "apigw_logs" {
  count              = var.manage_account_logging_role ? 1 : 0
  name               = "${var.name}-apigw-logs"
  assume_role_policy = data.aws_iam_policy_document.apigw_assume.json
}

resource "aws_iam_role_policy_attachment" "apigw_logs" {
  count      = var.manage_account_logging_role ? 1 : 0
  role       = aws_iam_role.apigw_logs[0].name
  policy_arn = "arn:aws:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs"
}

resource "aws_api_gateway_account" "this" {
  count               = var.manage_account_logging_role ? 1 : 0
  cloudwatch_role_arn = aws_iam_role.apigw_logs[0].arn
}
