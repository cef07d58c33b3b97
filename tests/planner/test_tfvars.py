"""The tfvars snippet `llmfleet plan` prints is what the deployment takes.

Rendered through the compute module's cloud-init (OpenTofu/Terraform `console`, as the
user-data tests do) and the engine's command line read by vLLM's own argument parser.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import yaml

from llmfleet.core.instances import Market
from planner import catalog
from planner.memory import Precision
from planner.report import tfvars
from planner.sizing import Question, Slo, search
from tests.helpers.user_data import render, unit
from tests.helpers.vllm_args import vllm_parses


def _engine_args(snippet: str, tmp_path: Path) -> dict[str, object]:
    var_file = tmp_path / "plan.tfvars"
    var_file.write_text(snippet + '\napi_keys_parameter = "/llmfleet/test/api-keys"\n')
    document = yaml.safe_load(render(var_file))
    (exec_start,) = unit(document, "llmfleet-vllm")["ExecStart"]
    return vllm_parses(shlex.split(exec_start)[3:])


@pytest.mark.parametrize(("precision", "replicas"), [(Precision.FP8, 1), (Precision.FP16, 4)])
def test_the_snippet_deploys_what_was_planned(precision: Precision, replicas: int,
                                              tmp_path: Path) -> None:
    q = Question(catalog.model("Llama-3.1-8B"), 512, 256, Slo(tpot_ms=80), request_rate=5,
                 precisions=(precision,), market=Market.SPOT)
    chosen = next(c for c in search(q) if c.feasible and c.replicas_per_instance == replicas)
    args = _engine_args(tfvars(q, chosen, "meta-llama/Llama-3.1-8B"), tmp_path)
    assert args["model"] == "meta-llama/Llama-3.1-8B"
    assert args["tensor_parallel_size"] == chosen.tensor_parallel
    assert args["data_parallel_size"] == replicas
    assert args["max_num_seqs"] == chosen.concurrency
    assert args["max_model_len"] == 768
    assert args["quantization"] == ("fp8" if precision is Precision.FP8 else None)
