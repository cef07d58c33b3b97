# The instance's cloud-init, rendered from its template. A module of its own with
# no provider so that checks can render it offline exactly as the fleet gets it
# (tests/infrastructure/test_user_data.py: YAML, cloud-init schema, shell syntax,
# systemd units, and the same commands `make up` runs).

locals {
  served_name = coalesce(var.model.served_name, var.model.id)
  vllm_args = trimspace(join(" ", compact([
    var.model.vllm_args,
    var.model.max_model_len == null ? "" : "--max-model-len ${var.model.max_model_len}",
  ])))
  artifact_file = basename(var.artifact_key)

  cloud_init = templatefile("${path.module}/templates/cloud-init.yaml.tftpl", {
    router_port        = var.router_port
    engine_port        = var.engine_port
    metrics_namespace  = var.metrics_namespace
    asg_name           = var.asg_name
    served_name        = local.served_name
    model_id           = var.model.id
    vllm_args          = local.vllm_args
    vllm_version       = var.vllm_version
    hf_token_parameter = var.model.hf_token_parameter == null ? "" : var.model.hf_token_parameter
    api_keys_parameter = var.api_keys_parameter
    artifact_bucket    = var.artifact_bucket
    artifact_key       = var.artifact_key
    artifact_file      = local.artifact_file
    log_group_vllm     = var.log_group_names["vllm"]
    log_group_router   = var.log_group_names["router"]
    log_group_agent    = var.log_group_names["agent"]
    cors_origins       = join(",", var.cors_allowed_origins)
  })
}
