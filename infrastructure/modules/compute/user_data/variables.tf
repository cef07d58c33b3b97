variable "model" {
  description = "What vLLM serves (the compute module's model object; only the serving fields are read here)."
  type = object({
    id                 = string
    source             = optional(string, "hub")
    revision           = optional(string, "main")
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

variable "cloudwatch_agent_version" {
  description = "CloudWatch agent release installed where the AMI has none (its Debian package is checked against AWS's signing key before it is installed)."
  type        = string
  default     = "1.300072.0b1766"
  validation {
    condition     = can(regex("^[0-9]+\\.[0-9]+\\.[0-9]+(b[0-9]+)?$", var.cloudwatch_agent_version))
    error_message = "cloudwatch_agent_version must be a release such as \"1.300072.0b1766\" (never \"latest\")."
  }
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

variable "artifact_sha256" {
  description = "SHA-256 of the llmfleet wheel: the instance installs nothing whose hash differs."
  type        = string
  validation {
    condition     = can(regex("^[0-9a-f]{64}$", var.artifact_sha256))
    error_message = "artifact_sha256 must be a SHA-256 in lower-case hex (filesha256 of the wheel)."
  }
}

variable "requirements_key" {
  description = "Object key, in the artifacts bucket, of the hash-locked requirements (vLLM and every dependency; make instance-lock)."
  type        = string
}

variable "requirements_sha256" {
  description = "SHA-256 of the hash-locked requirements file."
  type        = string
  validation {
    condition     = can(regex("^[0-9a-f]{64}$", var.requirements_sha256))
    error_message = "requirements_sha256 must be a SHA-256 in lower-case hex (filesha256 of the lock file)."
  }
}

variable "log_group_names" {
  description = "CloudWatch log group names for vllm, router and agent."
  type        = map(string)
  validation {
    condition     = alltrue([for k in ["vllm", "router", "agent"] : contains(keys(var.log_group_names), k)])
    error_message = "log_group_names needs the keys vllm, router and agent."
  }
}

variable "router_keepalive_s" {
  description = "Seconds the router keeps an idle client connection open (LLMFLEET_KEEPALIVE_S); above the load balancer's idle timeout."
  type        = number
  default     = 620
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

variable "drain_hook_name" {
  description = "The group's termination lifecycle hook, which the agent completes once the router has drained."
  type        = string
}

variable "launch_hook_name" {
  description = "The group's launch lifecycle hook (with a warm pool), which the agent completes once the router first says ready; empty: none."
  type        = string
  default     = ""
}

variable "model_on_instance_store" {
  description = "Put a staged model's copy on the instance's NVMe instance store where it has one (false with a warm pool: a stop blanks the store, and a pooled instance's copy must survive it)."
  type        = bool
  default     = true
}

variable "drain_timeout_s" {
  description = "Longest the agent waits for the router's requests in flight when the instance is leaving."
  type        = number
  validation {
    condition     = var.drain_timeout_s >= 0
    error_message = "drain_timeout_s must be 0 or more seconds."
  }
}

variable "region" {
  description = "The region the instances run in (the staged model's bucket is there)."
  type        = string
  default     = "us-east-1"
}

variable "pool" {
  description = "With several pools in the deployment: this pool's name and every pool's URL (the internal load balancer the routers send other pools' requests to, by the x-llmfleet-pool header); null: the only pool."
  type = object({
    name  = string
    peers = map(string)
  })
  default = null
}

variable "routing" {
  description = "How the router resolves the alias model (auto): its policy and the policy's settings, written to /etc/llmfleet/router.toml (docs/router.md)."
  type = object({
    policy = optional(string, "prompt_length")
    length_rules = optional(list(object({
      model             = string
      max_prompt_tokens = optional(number)
    })), [])
    scored_models = optional(list(object({
      model   = string
      quality = number
      runtime_s = object({
        intercept        = optional(number, 0)
        per_input_token  = optional(number, 0)
        per_output_token = number
      })
      energy_j = object({
        intercept        = optional(number, 0)
        per_input_token  = optional(number, 0)
        per_output_token = number
      })
    })), [])
    score_weights = optional(object({
      accuracy = optional(number, 1)
      energy   = optional(number, 1)
      time     = optional(number, 1)
    }), {})
  })
  default = {}
}

variable "archive" {
  description = "The router's archive (docs/router.md \"Archive\"): the bucket and key prefix the agent sends it to, and what a record keeps (\"metadata\" or \"full\": also the prompt and the generated text); null: off."
  type = object({
    bucket  = string
    prefix  = string
    content = string
  })
  default = null
  validation {
    condition     = var.archive == null ? true : contains(["metadata", "full"], var.archive.content)
    error_message = "archive.content must be \"metadata\" or \"full\"."
  }
}
