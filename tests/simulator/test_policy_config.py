"""The environments' scaling settings read here equal what OpenTofu/Terraform plans with.

The oracle is `console` on the root variables (tests/helpers/tf_variables.py); the module's
literals around `var.scaling` are checked against main.tf's text.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from simulator.cloudwatch import Comparison, MetricStream, MissingData, Statistic
from simulator.policy_config import (
    MODULE,
    Environment,
    build_group,
    gpu_policies,
    load_environment,
    read_environment,
    read_values,
)
from simulator.tfvars import TfvarsError, read_variables
from tests.helpers import tf, tf_variables

VARIABLES = tf.INFRA / "variables.tf"
NAMES = list(Environment.model_fields)
MAIN_TF = tf.INFRA / "modules" / "compute" / "main.tf"
REQUIRED_VARS = 'name = "llmfleet-x"\nenvironment = "dev"\napi_keys_parameter = "/k"\n' \
                'model = { id = "org/model" }\n'


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_each_environment_reads_as_terraform_resolves_it(env: str, tmp_path: Path) -> None:
    tfvars = tf.REPO / "environments" / f"{env}.tfvars"
    assert read_values(VARIABLES, tfvars, NAMES) == tf_variables.values(tfvars, NAMES, tmp_path)


def test_the_environments_scaling_settings() -> None:
    dev, prod = (load_environment(tf.REPO, env) for env in ("dev", "prod"))
    assert (dev.scaling.scale_out_pct, dev.scaling.scale_in_pct) == (70, 30)
    assert (dev.scaling.evaluation_minutes, dev.scaling.cooldown_s) == (3, 300)  # defaults
    assert prod.scaling.cooldown_s == 600
    assert (dev.capacity.min, dev.capacity.max, prod.capacity.min, prod.capacity.max) == \
        (1, 1, 2, 6)
    assert dev.model.model_load_seconds == prod.model.model_load_seconds == 900
    assert prod.spot.extra_instance_types == ("g6.2xlarge",)


@pytest.mark.parametrize("scaling", [
    "",  # left out: the variable's default, then every optional() default
    "scaling = { cooldown_s = null, evaluation_minutes = 5 }",  # null takes the default
    "scaling = { scale_out_pct = 80, cooldown = 900 }",  # misspelt: dropped, by both
])
def test_defaults_and_conversions_match_terraform(scaling: str, tmp_path: Path) -> None:
    tfvars = tmp_path / "x.tfvars"
    tfvars.write_text(REQUIRED_VARS + scaling + "\n")
    assert read_values(VARIABLES, tfvars, NAMES) == \
        tf_variables.values(tfvars, NAMES, tmp_path / "tf")


@pytest.mark.parametrize(("line", "message"), [
    ("capacity = { min = 1, max = 3 }", "attribute 'desired' is required"),
    ('scaling = { scale_out_pct = "high" }', "expected a number"),
    ("spot = { extra_instance_types = \"g6.xlarge\" }", "expected a list"),
    ("tags = [1]", "expected a map"),
    ("capacity = 2", "expected an object"),
])
def test_values_terraform_refuses_are_refused(line: str, message: str, tmp_path: Path) -> None:
    tfvars = tmp_path / "x.tfvars"
    tfvars.write_text(REQUIRED_VARS + line + "\n")
    names = [*NAMES, "tags"]
    assert tf_variables.console(tfvars, names, tmp_path / "tf").returncode != 0
    with pytest.raises(TfvarsError, match=message):
        read_values(VARIABLES, tfvars, names)


def test_scalars_are_never_converted_where_terraform_would(tmp_path: Path) -> None:
    """Terraform reads `{ a = 1 }` as map(string) {"a" = "1"}; these files never need that,
    so the reader refuses it rather than guess."""
    tfvars = tmp_path / "x.tfvars"
    tfvars.write_text(REQUIRED_VARS + "tags = { a = 1 }\n")
    assert tf_variables.values(tfvars, ["tags"], tmp_path / "tf") == {"tags": {"a": "1"}}
    with pytest.raises(TfvarsError, match=r"tags\.a: expected a string, got 1"):
        read_values(VARIABLES, tfvars, ["tags"])


def test_a_required_variable_left_unset_is_refused(tmp_path: Path) -> None:
    tfvars = tmp_path / "x.tfvars"
    tfvars.write_text('name = "llmfleet-x"\n')
    with pytest.raises(TfvarsError, match="'environment' has no default"):
        read_environment(tfvars, VARIABLES)


@pytest.mark.parametrize(("line", "message"), [
    ("scaling = { cooldown_s = 30 }", "cooldown_s"),
    ("scaling = { scale_in_pct = 80 }", "scale_in_pct < scale_out_pct"),
    ("capacity = { min = 2, max = 3, desired = 1 }", "min <= desired <= max"),
])
def test_values_the_module_validation_refuses_are_refused(line: str, message: str,
                                                          tmp_path: Path) -> None:
    tfvars = tmp_path / "x.tfvars"
    tfvars.write_text(REQUIRED_VARS + line + "\n")
    with pytest.raises(TfvarsError, match=message):
        read_environment(tfvars, VARIABLES)


def test_an_undeclared_variable_is_refused() -> None:
    with pytest.raises(TfvarsError, match="no variable 'scaling_policy' is declared"):
        read_values(VARIABLES, tf.REPO / "environments" / "dev.tfvars", ["scaling_policy"])


def test_the_compute_module_declares_the_same_scaling_defaults() -> None:
    """The root's defaults are the ones that apply; the module's must not say otherwise."""
    module = read_variables(tf.INFRA / "modules" / "compute" / "variables.tf")
    assert module["scaling"] == read_variables(VARIABLES)["scaling"]


def _attribute(block: str, name: str) -> str:
    match = re.search(rf"^\s*{name}\s*=\s*(.+?)\s*$", block, re.M)
    assert match, f"main.tf sets no {name}"
    return match.group(1)


def test_module_literals_equal_main_tf() -> None:
    text = MAIN_TF.read_text()
    policy = text[text.index('resource "aws_autoscaling_policy" "gpu"'):]
    alarm = text[text.index('resource "aws_cloudwatch_metric_alarm" "gpu"'):]
    alarm = alarm[:alarm.index("\n}\n")]
    assert _attribute(policy, "policy_type") == '"SimpleScaling"'
    assert _attribute(policy, "adjustment_type") == '"ChangeInCapacity"'
    assert _attribute(policy, "cooldown") == "var.scaling.cooldown_s"
    assert _attribute(alarm, "metric_name") == f'"{MODULE.metric_name}"'
    assert _attribute(alarm, "statistic") == f'"{MODULE.statistic}"'
    assert _attribute(alarm, "period") == str(MODULE.period_s)
    assert _attribute(alarm, "evaluation_periods") == "var.scaling.evaluation_minutes"
    assert _attribute(alarm, "treat_missing_data") == f'"{MODULE.treat_missing_data}"'
    assert "datapoints_to_alarm" not in alarm and "default_cooldown" not in text
    assert _attribute(text, "default_instance_warmup") == "var.model.model_load_seconds"
    for key, (adjustment, comparison), pct in [("high", MODULE.scale_out, "scale_out_pct"),
                                               ("low", MODULE.scale_in, "scale_in_pct")]:
        step = re.search(rf"^\s*{key}\s*=\s*\{{(.*)\}}\s*$", text, re.M)
        assert step, f"main.tf has no {key} step"
        assert f"adjustment = {adjustment}," in step.group(1)
        assert f"threshold = var.scaling.{pct}," in step.group(1)
        assert f'operator = "{comparison}"' in step.group(1)


def test_the_module_policies_built_from_prod() -> None:
    prod = load_environment(tf.REPO, "prod")
    metric = MetricStream()
    high, low = gpu_policies(prod.scaling, metric)
    assert (high.adjustment, low.adjustment) == (1, -1)
    assert (high.cooldown_s, low.cooldown_s) == (600, 600)
    assert (high.alarm.config.threshold, high.alarm.config.comparison) == (70, Comparison.GREATER)
    assert (low.alarm.config.threshold, low.alarm.config.comparison) == (30, Comparison.LESS)
    for policy in (high, low):
        config = policy.alarm.config
        assert (config.evaluation_periods, config.alarm_datapoints, config.period_s) == (3, 3, 60)
        assert config.statistic is Statistic.AVERAGE
        assert config.treat_missing_data is MissingData.NOT_BREACHING
        assert policy.metric is metric
    group = build_group(prod)
    assert (group.min_size, group.desired, group.max_size, group.warmup_s) == (2, 2, 6, 900)
