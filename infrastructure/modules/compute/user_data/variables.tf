variable "model" {
  description = "What vLLM serves (the compute module's model object; only the serving fields are read here)."
  type = object({
    id                 = string
    served_name        = optional(string)
    vllm_args          = optional(string, "")
    hf_token_parameter = optional(string)
    max_model_len      = optional(number)
  })
}

variable "router_port" {
  description = "Port the router listens on (the ALB's target port)."
  type        = number
}

variable "engine_port" {
  description = "Loopback port vLLM listens on behind the router."
  type        = number
  default     = 8001
}

variable "metrics_namespace" {
  description = "CloudWatch namespace the agent publishes to."
  type        = string
}

variable "asg_name" {
  description = "Auto Scaling group name (the agent's AutoScalingGroupName dimension)."
  type        = string
}

variable "vllm_version" {
  description = "vLLM release installed on the instance (the version `make install` pins)."
  type        = string
}

variable "api_keys_parameter" {
  description = "SSM SecureString parameter holding the router's API keys file."
  type        = string
}

variable "artifact_bucket" {
  description = "Bucket holding the llmfleet wheel."
  type        = string
}

variable "artifact_key" {
  description = "Object key of the llmfleet wheel in the artifacts bucket."
  type        = string
}

variable "log_group_names" {
  description = "CloudWatch log group names for vllm, router and agent."
  type        = map(string)
  validation {
    condition     = alltrue([for k in ["vllm", "router", "agent"] : contains(keys(var.log_group_names), k)])
    error_message = "log_group_names needs the keys vllm, router and agent."
  }
}

variable "cors_allowed_origins" {
  description = "Origins (scheme://host[:port]) whose pages may call the router from a browser: the demo site's, for the web console."
  type        = list(string)
  default     = []
  validation {
    condition     = alltrue([for o in var.cors_allowed_origins : can(regex("^https?://[^/?#\\s]+$", o))])
    error_message = "Each CORS origin must be scheme://host[:port], e.g. \"https://d1234.cloudfront.net\", with no path or trailing slash."
  }
}
