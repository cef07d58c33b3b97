variable "name" {
  description = "Prefix for every resource name, e.g. \"llmfleet-dev\"."
  type        = string
}

variable "vpc_id" {
  description = "VPC the instances run in."
  type        = string
}

variable "private_subnet_ids" {
  description = "Private subnets, one per AZ; the group spreads over all of them."
  type        = list(string)
  validation {
    condition     = length(var.private_subnet_ids) >= 2
    error_message = "Give at least two private subnets (two AZs)."
  }
}

variable "alb_security_group_id" {
  description = "Security group of the load balancer: the only source allowed to reach the router."
  type        = string
}

variable "target_group_arns" {
  description = "Target groups the instances register with (the router's)."
  type        = list(string)
}

variable "instance_type" {
  description = "GPU instance type for on-demand capacity (and the first choice for spot)."
  type        = string
  default     = "g5.xlarge"
  validation {
    condition     = can(regex("^(g5|g6|g6e|g5g|p4d|p4de|p5|p5e)\\.[0-9]*x?large$", var.instance_type))
    error_message = "instance_type must be a GPU type of the g5, g6, g6e, p4d, p4de, p5 or p5e families, e.g. \"g5.xlarge\"."
  }
}

variable "spot" {
  description = "Capacity mix. on_demand_base: instances always on demand; spot_percentage: share of the rest on spot (0 = no spot); extra_instance_types: other types spot may use."
  type = object({
    on_demand_base       = optional(number, 0)
    spot_percentage      = optional(number, 0)
    extra_instance_types = optional(list(string), [])
  })
  default = {}
  validation {
    condition     = var.spot.spot_percentage >= 0 && var.spot.spot_percentage <= 100 && var.spot.on_demand_base >= 0
    error_message = "spot.spot_percentage must be 0-100 and spot.on_demand_base at least 0."
  }
}

variable "capacity" {
  description = "Instance counts: min, max and the desired count at creation (later changed only by scaling, never by apply)."
  type = object({
    min     = number
    max     = number
    desired = number
  })
  validation {
    condition     = var.capacity.min >= 0 && var.capacity.min <= var.capacity.desired && var.capacity.desired <= var.capacity.max && var.capacity.max <= 100
    error_message = "capacity must satisfy 0 <= min <= desired <= max <= 100."
  }
}

variable "scaling" {
  description = "How the group scales. policy = \"gpu\": the agent's GPUUtilization averaged over the group, an instance added above scale_out_pct and removed below scale_in_pct, each after evaluation_minutes, cooldown_s between actions. policy = \"queue-guard\": the engines' queue with a TTFT guardrail (queue_guard; queue_guard.json says how). policy = \"inflight-guard\": target tracking at inflight_per_instance requests (running plus waiting) per instance, its scale-in off, with queue-guard's TTFT guardrail and quiet scale-in. scheduled_minimums: raise the group's minimum to min_size from each window's start to its end (cron, in time_zone); windows must not overlap (each end sets the minimum back to capacity.min)."
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
  validation {
    condition     = contains(["gpu", "queue-guard", "inflight-guard"], var.scaling.policy)
    error_message = "scaling.policy must be \"gpu\", \"queue-guard\" or \"inflight-guard\"."
  }
  validation {
    condition     = var.scaling.policy != "inflight-guard" || coalesce(var.scaling.inflight_per_instance, 0) > 0
    error_message = "scaling.policy = \"inflight-guard\" needs scaling.inflight_per_instance above 0 (requests running plus waiting per instance; about three quarters of what the planner says one instance holds within the SLO)."
  }
  validation {
    condition = (var.scaling.scale_out_pct > 0 && var.scaling.scale_out_pct <= 100 &&
    var.scaling.scale_in_pct >= 0 && var.scaling.scale_in_pct < var.scaling.scale_out_pct)
    error_message = "scaling needs 0 <= scale_in_pct < scale_out_pct <= 100 (defaults 30 and 70)."
  }
  validation {
    condition     = var.scaling.evaluation_minutes >= 1 && var.scaling.cooldown_s >= 60
    error_message = "scaling.evaluation_minutes must be at least 1 and cooldown_s at least 60."
  }
  # An alarm's window is at most a day (evaluation periods x 60 s <= 86,400 s).
  validation {
    condition = (var.scaling.queue_guard.ttft_slo_s > 0 && var.scaling.queue_guard.waiting_per_instance >= 0 &&
      var.scaling.queue_guard.out_minutes >= 1 && var.scaling.queue_guard.out_minutes <= 1440 &&
      var.scaling.queue_guard.quiet_minutes >= 1 && var.scaling.queue_guard.quiet_minutes <= 1440 &&
    var.scaling.queue_guard.cooldown_s >= 60)
    error_message = "scaling.queue_guard needs ttft_slo_s > 0, waiting_per_instance >= 0, out_minutes and quiet_minutes of 1-1440 and cooldown_s of at least 60."
  }
  validation {
    condition = alltrue([for w in var.scaling.scheduled_minimums :
      can(regex("^[a-z0-9-]{1,40}$", w.name)) && w.min_size >= 0 &&
    can(regex("^\\S+( \\S+){4}$", w.start)) && can(regex("^\\S+( \\S+){4}$", w.end))])
    error_message = "Each scheduled minimum needs a name of 1-40 lower-case letters, digits and hyphens, a min_size of at least 0, and start and end as five-field cron expressions (minute hour day month weekday, one space apart)."
  }
  validation {
    condition     = length(distinct([for w in var.scaling.scheduled_minimums : w.name])) == length(var.scaling.scheduled_minimums)
    error_message = "Scheduled minimums need distinct names."
  }
}

variable "model" {
  description = "What vLLM serves: a Hugging Face id or an S3/local path, the name clients use, extra vLLM arguments, and the SSM parameter holding a Hugging Face token for gated models (never put the token itself here)."
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
  validation {
    condition     = var.model.root_volume_gb >= 100 && var.model.root_volume_gb <= 4000
    error_message = "model.root_volume_gb must be 100-4000 (the Deep Learning AMI alone takes ~75 GB)."
  }
  validation {
    condition     = var.model.model_load_seconds >= 30 && var.model.model_load_seconds <= 3600 && floor(var.model.model_load_seconds) == var.model.model_load_seconds
    error_message = "model.model_load_seconds must be whole seconds from 30 to 3600 (the group's instance warm-up allows no more)."
  }
  validation {
    condition     = var.model.root_volume_mbps >= 125 && var.model.root_volume_mbps <= 750
    error_message = "model.root_volume_mbps must be 125-750 MiB/s (gp3 at its 3,000 baseline IOPS)."
  }
  validation {
    condition     = contains(["hub", "s3"], var.model.source)
    error_message = "model.source must be \"hub\" (download at boot) or \"s3\" (fetch what make stage-model copied into the artifacts bucket)."
  }
  validation {
    condition     = can(regex("^[A-Za-z0-9][A-Za-z0-9._-]*$", var.model.revision))
    error_message = "model.revision must be a revision name (main) or a staged revision (a commit, or sha256-...)."
  }
  validation {
    condition     = var.model.source == "hub" || can(regex("^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$", var.model.id))
    error_message = "With model.source = \"s3\", model.id must be a hub id (ORG/NAME), the name it is staged under."
  }
}

variable "api_keys_parameter" {
  description = "Name of the SSM SecureString parameter holding the router's API keys file (lines of name:key); read at boot, never in user data."
  type        = string
}

variable "package_path" {
  description = "Local path of the llmfleet wheel (make wheel) uploaded to the artifacts bucket and installed on each instance."
  type        = string
}

variable "ami_ssm_parameter" {
  description = "Public SSM parameter with the GPU AMI id (AWS Deep Learning Base AMI with the NVIDIA driver, Ubuntu 24.04: its Python 3.12 is the one requirements/instance.txt is locked for)."
  type        = string
  default     = "/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-ubuntu-24.04/latest/ami-id"
}

variable "metrics_namespace" {
  description = "CloudWatch namespace the agent publishes to (the instance may write only there)."
  type        = string
  default     = "LLMFleet"
}

variable "log_group_arns" {
  description = "Log groups the instances may write (vLLM, router, agent)."
  type        = list(string)
}

variable "log_group_names" {
  description = "Log group names by stream: keys vllm, router, agent."
  type        = map(string)
}

variable "router_port" {
  description = "Port the router listens on (the target group's port)."
  type        = number
  default     = 8000
}

variable "cors_allowed_origins" {
  description = "Origins (scheme://host[:port]) whose pages may call the routers from a browser: the demo site's, for the web console."
  type        = list(string)
  default     = []
}

variable "router_keepalive_s" {
  description = "Seconds the router keeps an idle client connection open; must exceed the load balancer's idle timeout."
  type        = number
  default     = 620
  validation {
    condition     = var.router_keepalive_s > 0
    error_message = "router_keepalive_s must be above 0 (and above the load balancer's idle timeout)."
  }
}

variable "warm_pool" {
  description = "An optional pool of stopped instances that have booted once (packages installed, the model fetched and loaded, caches written) and start again when the group scales out: min_size kept prepared in the pool; max_prepared, when set, lets the pool grow to max_prepared less the group's desired capacity. On-demand only (spot.spot_percentage 0). null: no pool."
  type = object({
    min_size     = optional(number, 1)
    max_prepared = optional(number)
  })
  default = null
  validation {
    # Terraform's || evaluates both sides: a null max_prepared is compared as 1.
    condition = var.warm_pool == null || try(
      var.warm_pool.min_size >= 0 && var.warm_pool.min_size <= 100 && floor(var.warm_pool.min_size) == var.warm_pool.min_size &&
      coalesce(var.warm_pool.max_prepared, 1) >= 1 && coalesce(var.warm_pool.max_prepared, 1) <= 100 &&
    floor(coalesce(var.warm_pool.max_prepared, 1)) == coalesce(var.warm_pool.max_prepared, 1), false)
    error_message = "warm_pool.min_size must be a whole number 0-100 and warm_pool.max_prepared null or a whole number 1-100."
  }
}

variable "drain_timeout_s" {
  description = "Longest a leaving instance's agent waits for the router's requests in flight (the load balancer's deregistration delay should be the same); the termination hook waits a minute longer."
  type        = number
  default     = 300
  validation {
    condition     = var.drain_timeout_s >= 0 && var.drain_timeout_s <= 3600 && floor(var.drain_timeout_s) == var.drain_timeout_s
    error_message = "drain_timeout_s must be whole seconds from 0 to 3600."
  }
}

variable "pool" {
  description = "With several pools in the deployment: this pool's name and every pool's URL (the internal load balancer the routers send other pools' requests to, by the x-llmfleet-pool header); null: the only pool."
  type = object({
    name  = string
    peers = map(string)
  })
  default = null
}

variable "archive" {
  description = "The router's archive, which the agent sends to S3: the bucket (name and ARN), the key prefix the instance role may put objects under (ending in /), and what a record keeps (\"metadata\", or \"full\": also the prompt and the generated text); null: off."
  type = object({
    bucket     = string
    bucket_arn = string
    prefix     = string
    content    = string
  })
  default = null
  validation {
    condition     = var.archive == null ? true : contains(["metadata", "full"], var.archive.content)
    error_message = "archive.content must be \"metadata\" or \"full\"."
  }
  validation {
    condition     = var.archive == null ? true : can(regex("^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*/$", var.archive.prefix))
    error_message = "archive.prefix must be one or more path segments of letters, digits, '.', '_' or '-', ending in '/', e.g. \"archive/\"."
  }
}

variable "peer_security_group_id" {
  description = "Security group of the internal load balancer between pools, which may reach the router too (with several pools: set with pool); null: none."
  type        = string
  default     = null
}

variable "routing" {
  description = "How the router resolves the alias model (auto): its policy and the policy's settings, the same on every pool's routers (docs/router.md)."
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
