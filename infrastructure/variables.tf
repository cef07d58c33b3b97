variable "name" {
  description = "Name of this deployment, the prefix of every resource, e.g. \"llmfleet-dev\"."
  type        = string
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,20}$", var.name))
    error_message = "name must be 3-21 characters: lower-case letters, digits and dashes, starting with a letter."
  }
}

variable "environment" {
  description = "Which environment this is: dev or prod (tags, and prod-only protections)."
  type        = string
  validation {
    condition     = contains(["dev", "prod"], var.environment)
    error_message = "environment must be \"dev\" or \"prod\"."
  }
}

variable "region" {
  description = "AWS region to deploy to."
  type        = string
  default     = "us-east-1"
  validation {
    condition     = can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", var.region))
    error_message = "region must be an AWS region name such as \"us-east-1\"."
  }
}

variable "vpc_cidr" {
  description = "IPv4 CIDR of the VPC (/20 or larger)."
  type        = string
  default     = "10.20.0.0/16"
  validation {
    condition     = try(cidrhost(var.vpc_cidr, 0) != "" && tonumber(split("/", var.vpc_cidr)[1]) <= 20, false)
    error_message = "vpc_cidr must be an IPv4 CIDR of size /20 or larger, e.g. \"10.20.0.0/16\"."
  }
}

variable "az_count" {
  description = "Availability zones to spread over (2 or 3)."
  type        = number
  default     = 2
}

variable "single_nat_gateway" {
  description = "One NAT gateway for all AZs (dev) instead of one per AZ (prod)."
  type        = bool
  default     = true
}

variable "instance_type" {
  description = "GPU instance type, e.g. g5.xlarge (one A10G, 24 GB)."
  type        = string
  default     = "g5.xlarge"
}

variable "capacity" {
  description = "GPU instance counts: min <= desired <= max (desired only at creation; scaling owns it after)."
  type = object({
    min     = number
    max     = number
    desired = number
  })
  default = { min = 1, max = 1, desired = 1 }
}

variable "spot" {
  description = "Capacity mix: instances always on demand, the spot share of the rest (0 = none), other types spot may use."
  type = object({
    on_demand_base       = optional(number, 0)
    spot_percentage      = optional(number, 0)
    extra_instance_types = optional(list(string), [])
  })
  default = {}
}

variable "scaling" {
  description = "How the group scales: policy \"gpu\" (GPU-utilisation thresholds in %, evaluation minutes, cooldown in s) or \"queue-guard\" (queue_guard: the TTFT SLO in s, requests waiting per instance, minutes out and quiet, cooldown in s) or \"inflight-guard\" (target tracking at inflight_per_instance requests per instance, with queue_guard's guardrail and quiet scale-in), and scheduled minimums (cron windows raising the group's minimum). The compute module checks the values."
  type = object({
    policy             = optional(string, "gpu")
    scale_out_pct      = optional(number, 70)
    scale_in_pct       = optional(number, 30)
    evaluation_minutes = optional(number, 3)
    cooldown_s         = optional(number, 300)
    # inflight-guard's target: requests running plus waiting per instance (no default:
    # it depends on the model and the GPU; llmfleet simulate prints what the planner says).
    inflight_per_instance = optional(number)
    queue_guard = optional(object({
      ttft_slo_s           = optional(number, 2)
      waiting_per_instance = optional(number, 1)
      out_minutes          = optional(number, 2)
      quiet_minutes        = optional(number, 15)
      cooldown_s           = optional(number, 300)
    }), {})
    scheduled_minimums = optional(list(object({
      name      = string
      start     = string
      end       = string
      min_size  = number
      time_zone = optional(string, "UTC")
    })), [])
  })
  default = {}
}

variable "model" {
  description = "The served model (one pool; null when pools are given): Hugging Face id, where instances load it from (hub, or s3 once make stage-model copied it into the platform's bucket) and its revision, served name, extra vLLM arguments, SSM parameter with a Hugging Face token (gated models), max model length, root volume size (GB) and write speed (MiB/s), and expected load time (s)."
  default     = null
  type = object({
    id                 = string
    source             = optional(string, "hub")
    revision           = optional(string, "main")
    served_name        = optional(string)
    vllm_args          = optional(string, "")
    hf_token_parameter = optional(string)
    max_model_len      = optional(number)
    root_volume_gb     = optional(number, 200)
    root_volume_mbps   = optional(number, 500)
    model_load_seconds = optional(number, 900)
  })
}

variable "pools" {
  description = "Several models in one deployment, each in a pool of its own (its own instance type, capacity, spot mix, scaling, model and warm pool: the same fields as the single pool's variables, which are ignored when this is set). Keys are the pools' names (1-20 lower-case letters, digits and dashes); every router takes any request and sends another pool's model to that pool. null: one pool from instance_type, capacity, spot, scaling, model and warm_pool."
  default     = null
  type = map(object({
    instance_type = optional(string, "g5.xlarge")
    capacity      = optional(object({ min = number, max = number, desired = number }), { min = 1, max = 1, desired = 1 })
    spot = optional(object({
      on_demand_base       = optional(number, 0)
      spot_percentage      = optional(number, 0)
      extra_instance_types = optional(list(string), [])
    }), {})
    scaling = optional(object({
      policy                = optional(string, "gpu")
      scale_out_pct         = optional(number, 70)
      scale_in_pct          = optional(number, 30)
      evaluation_minutes    = optional(number, 3)
      cooldown_s            = optional(number, 300)
      inflight_per_instance = optional(number)
      queue_guard = optional(object({
        ttft_slo_s           = optional(number, 2)
        waiting_per_instance = optional(number, 1)
        out_minutes          = optional(number, 2)
        quiet_minutes        = optional(number, 15)
        cooldown_s           = optional(number, 300)
      }), {})
      scheduled_minimums = optional(list(object({
        name      = string
        start     = string
        end       = string
        min_size  = number
        time_zone = optional(string, "UTC")
      })), [])
    }), {})
    model = object({
      id                 = string
      source             = optional(string, "hub")
      revision           = optional(string, "main")
      served_name        = optional(string)
      vllm_args          = optional(string, "")
      hf_token_parameter = optional(string)
      max_model_len      = optional(number)
      root_volume_gb     = optional(number, 200)
      root_volume_mbps   = optional(number, 500)
      model_load_seconds = optional(number, 900)
    })
    warm_pool = optional(object({
      min_size     = optional(number, 1)
      max_prepared = optional(number)
    }))
  }))
  validation {
    condition     = var.pools == null || try(length(var.pools) >= 1 && alltrue([for name in keys(var.pools) : can(regex("^[a-z][a-z0-9-]{0,19}$", name))]), false)
    error_message = "pools needs at least one pool, each named with 1-20 lower-case letters, digits and dashes, starting with a letter (the name is its Auto Scaling group's suffix and the x-llmfleet-pool header's value)."
  }
  validation {
    condition     = var.pools == null || try(length(distinct([for p in values(var.pools) : coalesce(p.model.served_name, p.model.id)])) == length(var.pools), false)
    error_message = "Each pool serves a model of its own: two pools serve the same served name (one model, one pool; raise its capacity instead)."
  }
}

variable "ami_ssm_parameter" {
  description = "SSM parameter holding the GPU instances' AMI id; the default is AWS's public parameter for the latest Deep Learning Base AMI (Ubuntu 24.04, NVIDIA driver), whose Python 3.12 the instances' package lock is made for."
  type        = string
  default     = "/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-ubuntu-24.04/latest/ami-id"
}

variable "api_keys_parameter" {
  description = "SSM SecureString parameter holding the router's API keys (lines of name:key)."
  type        = string
  validation {
    condition     = can(regex("^/[A-Za-z0-9_./-]+$", var.api_keys_parameter))
    error_message = "api_keys_parameter must be an SSM parameter name starting with \"/\", e.g. \"/llmfleet/dev/api-keys\"."
  }
}

variable "package_path" {
  description = "Path of the llmfleet wheel to install on the instances (built by `make wheel`)."
  type        = string
  default     = "../dist/llmfleet-0.1.0-py3-none-any.whl"
}

variable "alb" {
  description = "Load balancer: public HTTPS (needs certificate_arn) or internal behind API Gateway; idle timeout (s); deletion protection."
  type = object({
    internet_facing     = optional(bool, false)
    certificate_arn     = optional(string)
    idle_timeout_s      = optional(number, 600)
    deletion_protection = optional(bool, false)
  })
  default = {}
}

variable "warm_pool" {
  description = "Optional pool of stopped, pre-initialised instances a scale-out starts instead of launching new ones: min_size kept in the pool; max_prepared, when set, lets it grow to max_prepared less the group's desired capacity. On-demand only (no spot). null: none."
  type = object({
    min_size     = optional(number, 1)
    max_prepared = optional(number)
  })
  default = null
}

variable "drain_timeout_s" {
  description = "Longest an instance leaving the group waits for its generations in flight: the load balancer's deregistration delay and the agent's drain bound; the termination hook waits a minute longer."
  type        = number
  default     = 300
  validation {
    condition     = var.drain_timeout_s >= 0 && var.drain_timeout_s <= 3600 && floor(var.drain_timeout_s) == var.drain_timeout_s
    error_message = "drain_timeout_s must be whole seconds from 0 to 3600 (the load balancer's deregistration delay allows no more)."
  }
}

variable "rate_limit_per_ip" {
  description = "Requests per client IP per minute before WAF blocks it, on every public entry (each entry has its own web ACL)."
  type        = number
  default     = 100
}

variable "api_throttle" {
  description = "API Gateway usage plan per key: steady requests/s, burst, requests per month (0 = no quota)."
  type = object({
    rate_per_s      = optional(number, 10)
    burst           = optional(number, 20)
    quota_per_month = optional(number, 0)
  })
  default = {}
}

variable "api_clients" {
  description = "Clients that get an API Gateway key."
  type        = list(string)
  default     = ["default"]
}

variable "alarm_email" {
  description = "E-mail for alarm notifications; null for none."
  type        = string
  default     = null
}

variable "archive" {
  description = "Keep a record of every request the fleet serves in an S3 bucket of its own, as gzip JSON lines partitioned by date and model (docs/router.md \"Archive\"): content \"metadata\" (ids, key id, model, status, tokens, timings; no prompt, no text) or \"full\" (also the prompt and the generated text: personal data, see docs/security.md), kept retention_days. destroy stops at the bucket while it holds records unless force_destroy is true (a disposable deployment: destroy deletes the records too). null: off."
  type = object({
    content        = optional(string, "metadata")
    retention_days = optional(number, 90)
    force_destroy  = optional(bool, false)
  })
  default = null
  validation {
    condition     = var.archive == null ? true : contains(["metadata", "full"], var.archive.content)
    error_message = "archive.content must be \"metadata\" or \"full\"."
  }
  validation {
    condition     = var.archive == null ? true : (var.archive.retention_days >= 1 && floor(var.archive.retention_days) == var.archive.retention_days)
    error_message = "archive.retention_days must be a whole number of days, 1 or more."
  }
}

variable "log_retention_days" {
  description = "Days to keep logs (services, API access, flow logs, load balancer access logs)."
  type        = number
  default     = 30
}

variable "demo_site" {
  description = "Deploy the static demo site (S3 + CloudFront)."
  type        = bool
  default     = true
}

variable "cors_allowed_origins" {
  description = "More origins (scheme://host[:port]) whose pages may call the API from a browser; the demo site's is added when it is deployed."
  type        = list(string)
  default     = []
  validation {
    condition     = alltrue([for o in var.cors_allowed_origins : can(regex("^https://[^/?#\\s]+$", o))])
    error_message = "Each origin must be https://host[:port], e.g. \"https://console.example.com\", with no path or trailing slash."
  }
}

variable "demo_response_headers_policy_id" {
  description = "Attach this existing CloudFront response headers policy to the demo site instead of creating one."
  type        = string
  default     = null
}

variable "tags" {
  description = "Extra tags for every resource."
  type        = map(string)
  default     = {}
}

variable "routing" {
  description = "How every router resolves the alias model (auto) among the deployment's models: policy \"prompt_length\" (length_rules, smallest bound first; a rule without max_prompt_tokens takes the rest) or \"scored\" (scored_models: each model's fitted runtime and energy and its quality, weighed by score_weights). Models are served names. Default: prompt_length without rules (auto goes to the first model by name). docs/router.md."
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
  validation {
    condition     = contains(["prompt_length", "scored"], var.routing.policy) && (var.routing.policy != "scored" || length(var.routing.scored_models) > 0)
    error_message = "routing.policy must be \"prompt_length\" or \"scored\", and \"scored\" needs scored_models."
  }
  # What the router refuses at start (server/settings.py, llmfleet/core/routing.py): refused
  # here, or every instance would fail its health check and be replaced in turn.
  validation {
    condition = alltrue([for r in var.routing.length_rules :
      r.model != "auto" && (r.max_prompt_tokens == null || try(r.max_prompt_tokens >= 1 && floor(r.max_prompt_tokens) == r.max_prompt_tokens, false))]) && (
    length(distinct([for r in var.routing.length_rules : r.model])) == length(var.routing.length_rules))
    error_message = "routing.length_rules: one rule per model (not the alias \"auto\"), each max_prompt_tokens a whole number of at least 1 or left out."
  }
  validation {
    condition = alltrue([for m in var.routing.scored_models :
      m.model != "auto" && m.quality >= 0 && m.quality <= 1 && alltrue([for c in [m.runtime_s, m.energy_j] :
    c.per_input_token >= 0 && c.per_output_token >= 0])]) && length(distinct([for m in var.routing.scored_models : m.model])) == length(var.routing.scored_models)
    error_message = "routing.scored_models: one entry per model (not the alias \"auto\"), quality 0-1, per-token costs of at least 0."
  }
  validation {
    condition     = min(var.routing.score_weights.accuracy, var.routing.score_weights.energy, var.routing.score_weights.time) >= 0 && max(var.routing.score_weights.accuracy, var.routing.score_weights.energy, var.routing.score_weights.time) > 0
    error_message = "routing.score_weights: each at least 0, one above 0."
  }
}
