# The instance's cloud-init, rendered from its template. A module of its own with
# no provider so that checks can render it offline exactly as the fleet gets it
# (tests/infrastructure/test_user_data.py: YAML, cloud-init schema, shell syntax,
# systemd units and their sandboxing, and the same commands `make up` runs).

locals {
  served_name = coalesce(var.model.served_name, var.model.id)
  vllm_args = trimspace(join(" ", compact([
    var.model.vllm_args,
    # A hub revision other than main is vLLM's to download; a staged one is fetched first.
    var.model.source == "hub" && var.model.revision != "main" ? "--revision ${var.model.revision}" : "",
    var.model.max_model_len == null ? "" : "--max-model-len ${var.model.max_model_len}",
  ])))
  artifact_file = basename(var.artifact_key)

  # The router's policy for the alias model, as TOML (server/settings.py reads it): strings
  # through jsonencode, whose escapes TOML's basic strings share.
  weights = var.routing.score_weights
  costs   = { for m in var.routing.scored_models : m.model => { for k in ["runtime_s", "energy_j"] : k => m[k] } }
  router_toml = join("\n", concat(
    ["policy = ${jsonencode(var.routing.policy)}",
    "score_weights = { accuracy = ${local.weights.accuracy}, energy = ${local.weights.energy}, time = ${local.weights.time} }"],
    flatten([for rule in var.routing.length_rules : concat(["", "[[length_rules]]", "model = ${jsonencode(rule.model)}"],
    rule.max_prompt_tokens == null ? [] : ["max_prompt_tokens = ${rule.max_prompt_tokens}"])]),
    flatten([for m in var.routing.scored_models : concat(
      ["", "[[scored_models]]", "model = ${jsonencode(m.model)}", "quality = ${m.quality}"],
      [for k, c in local.costs[m.model] : "${k} = { intercept = ${c.intercept}, per_input_token = ${c.per_input_token}, per_output_token = ${c.per_output_token} }"]
    )]),
  ))

  # --- Service sandboxes ---------------------------------------------------------
  # Each service runs as its own system user (created by cloud-init, home and state
  # in /var/lib/llmfleet/NAME) with no capabilities, a read-only system, no access to
  # /home, private /tmp, and the kernel, hostname and other users' processes out of
  # reach. What each needs beyond that is listed with it. No service writes outside
  # its state directory: systemd opens the log files before it drops privileges.
  # ProtectClock and PrivateDevices only where no GPU is opened: both close the
  # device policy (ProtectClock implies DeviceAllow=char-rtc), hiding /dev/nvidia*.
  sandbox = [
    "NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes",
    "ProtectKernelTunables=yes", "ProtectKernelModules=yes", "ProtectKernelLogs=yes",
    "ProtectControlGroups=yes", "ProtectHostname=yes", "ProtectProc=invisible",
    "RestrictNamespaces=yes", "RestrictRealtime=yes", "RestrictSUIDSGID=yes", "LockPersonality=yes",
    "RemoveIPC=yes", "SystemCallArchitectures=native", "CapabilityBoundingSet=", "UMask=0077",
  ]
  # The archive's spool: the router writes it and the agent sends it (the router cannot
  # reach the role's credentials). Made at boot (systemd-tmpfiles) owned by the router,
  # group llmfleet-archive (the agent's) with the setgid bit, so the files the router makes
  # (0640) are the group's to read and, the directory being group-writable, to delete once
  # sent.
  archive_dir   = "/var/lib/llmfleet/archive"
  archive_paths = var.archive == null ? [] : ["ReadWritePaths=${local.archive_dir}"]
  services = {
    # vLLM needs the GPU's device nodes (no PrivateDevices), netlink (NCCL lists the
    # network interfaces for tensor parallelism), unlimited locked memory (NCCL and EFA
    # pin buffers) and writable, executable memory (Triton and torch.compile JIT, so
    # no MemoryDenyWriteExecute or system-call filter). Its model cache is its state.
    vllm = concat(local.sandbox, [
      "StateDirectory=llmfleet/vllm", "StateDirectoryMode=0700", "LimitMEMLOCK=infinity",
      "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK",
    ])
    # The router needs no device and no state: sockets and Python only, and with the
    # archive on, its spool (below).
    router = concat(local.sandbox, [
      "PrivateDevices=yes", "ProtectClock=yes", "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
      "SystemCallFilter=@system-service", "SystemCallErrorNumber=EPERM",
    ], local.archive_paths)
    # The agent reads the GPUs through NVML (their device nodes) and buffers datapoints
    # in its state directory while CloudWatch is unreachable.
    agent = concat(local.sandbox, [
      "StateDirectory=llmfleet/agent", "StateDirectoryMode=0700",
      "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
      "SystemCallFilter=@system-service", "SystemCallErrorNumber=EPERM",
    ], local.archive_paths)
  }

  cloud_init = templatefile("${path.module}/templates/cloud-init.yaml.tftpl", {
    router_port       = var.router_port
    engine_port       = var.engine_port
    metrics_namespace = var.metrics_namespace
    asg_name          = var.asg_name
    served_name       = local.served_name
    model_id          = var.model.id
    model_source      = var.model.source
    model_revision    = var.model.revision
    # root's, outside the engine's writable state directory (llmfleet/core/weights.py)
    model_dir                = "/var/lib/llmfleet/models/${var.model.id}"
    region                   = var.region
    vllm_args                = local.vllm_args
    hf_token_parameter       = var.model.hf_token_parameter == null ? "" : var.model.hf_token_parameter
    api_keys_parameter       = var.api_keys_parameter
    artifact_bucket          = var.artifact_bucket
    artifact_key             = var.artifact_key
    artifact_file            = local.artifact_file
    artifact_sha256          = var.artifact_sha256
    requirements_key         = var.requirements_key
    requirements_sha256      = var.requirements_sha256
    cloudwatch_agent_version = var.cloudwatch_agent_version
    services                 = local.services
    log_group_vllm           = var.log_group_names["vllm"]
    log_group_router         = var.log_group_names["router"]
    log_group_agent          = var.log_group_names["agent"]
    cors_origins             = join(",", var.cors_allowed_origins)
    router_keepalive_s       = var.router_keepalive_s
    drain_hook_name          = var.drain_hook_name
    drain_timeout_s          = var.drain_timeout_s
    launch_hook_name         = var.launch_hook_name
    model_on_instance_store  = var.model_on_instance_store
    router_toml              = local.router_toml
    pool_name                = var.pool == null ? "" : var.pool.name
    archive                  = var.archive
    archive_dir              = local.archive_dir
    # name=url pairs: systemd's environment files would unquote JSON.
    peers = var.pool == null ? "" : join(",", [for name, url in var.pool.peers : "${name}=${url}"])
  })
}
