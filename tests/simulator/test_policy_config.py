"""The environments' scaling settings read here equal what OpenTofu/Terraform plans with.

The oracle is `console` on the root variables (tests/helpers/tf_variables.py). The module's
fixed parts come from scaling_policy.json, which main.tf reads too (its plan test checks that
side): here, that the file's values reach the simulated alarms and that bad files are refused.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

import pytest

from simulator import group_policy
from simulator.cloudwatch import Comparison, MetricStream, MissingData, Statistic
from simulator.compare import Fleet, simulation_config
from simulator.fleet import LaunchDelay
from simulator.policy_config import (
    POLICY_FILE,
    PolicyFileError,
    QueueGuardScaling,
    build_group,
    gpu_policies,
    load_environment,
    load_module_scaling,
    module_scaling,
    read_environment,
    read_values,
    variable_names,
)
from simulator.queue_guard_file import QUEUE_GUARD_FILE, load_queue_guard, queue_guard_rules
from simulator.service import RooflineService
from simulator.serving_policies import QueueGuard
from simulator.tfvars import TfvarsError, read_variables
from tests.helpers import tf, tf_variables

VARIABLES = tf.INFRA / "variables.tf"
NAMES = variable_names()
MODULE_POLICY = tf.INFRA / "modules" / "compute" / "scaling_policy.json"
MODULE_GUARD = tf.INFRA / "modules" / "compute" / "queue_guard.json"
REQUIRED_VARS = 'name = "llmfleet-x"\nenvironment = "dev"\napi_keys_parameter = "/k"\n' \
                'model = { id = "org/model" }\n'


@pytest.mark.parametrize("env", ["dev", "prod", "dev-pools", "prod-pools"])
def test_each_environment_reads_as_terraform_resolves_it(env: str, tmp_path: Path) -> None:
    tfvars = tf.REPO / "environments" / f"{env}.tfvars"
    assert read_values(VARIABLES, tfvars, NAMES) == tf_variables.values(tfvars, NAMES, tmp_path)


def test_the_environments_scaling_settings() -> None:
    dev, prod = (load_environment(tf.REPO, env) for env in ("dev", "prod"))
    # What the simulator recommends (README, "Scaling"), in both.
    assert dev.scaling.policy == prod.scaling.policy == "inflight-guard"
    assert dev.scaling.inflight_per_instance == prod.scaling.inflight_per_instance == 48
    assert prod.scaling.queue_guard == QueueGuardScaling(
        ttft_slo_s=2, waiting_per_instance=1, out_minutes=2, quiet_minutes=15, cooldown_s=300)
    assert dev.scaling.queue_guard == prod.scaling.queue_guard  # the defaults, in dev
    assert dev.scaling.scheduled_minimums == prod.scaling.scheduled_minimums == ()
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
    'scaling = { policy = "queue-guard", queue_guard = { quiet_minutes = 30 } }',
    'scaling = { scheduled_minimums = [{ name = "day", start = "0 8 * * *", '
    'end = "0 18 * * *", min_size = 1 }] }',  # time_zone: its optional() default
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
    ('scaling = { policy = "inflight" }', "scaling.policy"),
    ("scaling = { queue_guard = { ttft_slo_s = 0 } }", "ttft_slo_s"),
    ("scaling = { queue_guard = { quiet_minutes = 1441 } }", "quiet_minutes"),
    ('scaling = { scheduled_minimums = [{ name = "day", start = "0 8 * *", end = "0 18 * * *",'
     " min_size = 1 }] }", "five-field cron"),
    ('scaling = { scheduled_minimums = [{ name = "day", start = "0 8 * * *", '
     'end = "0 18 * * *", min_size = 2 }] }', "capacity.min <= min_size <= capacity.max"),
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


def test_the_module_policies_built_from_prod() -> None:
    prod = load_environment(tf.REPO, "prod")
    metric = MetricStream()
    high, low = gpu_policies(prod.scaling, metric)
    assert (high.adjustment, high.alarm.config.comparison) == module_scaling().scale_out
    assert (low.adjustment, low.alarm.config.comparison) == module_scaling().scale_in
    assert (high.cooldown_s, low.cooldown_s) == (600, 600)
    assert (high.alarm.config.threshold, low.alarm.config.threshold) == (70, 30)
    for policy in (high, low):
        config = policy.alarm.config
        assert (config.evaluation_periods, config.alarm_datapoints) == (3, 3)
        module = module_scaling()
        assert (config.period_s, config.statistic, config.treat_missing_data) == \
            (module.period_s, module.statistic, module.treat_missing_data)
        assert policy.metric is metric
    group = build_group(prod)
    assert (group.min_size, group.desired, group.max_size, group.warmup_s) == (2, 2, 6, 900)


# --- The module's fixed policy: scaling_policy.json --------------------------------------


def _changed(module_file: Path, tmp_path: Path, **changes: Any) -> Path:
    """A copy of a module file with `changes` to its top-level fields (None deletes one),
    written to tmp_path under the same name."""
    fields = json.loads(module_file.read_text())
    for name, value in changes.items():
        if value is None:
            del fields[name]
        else:
            fields[name] = value
    path = tmp_path / module_file.name
    path.write_text(json.dumps(fields))
    return path


def _policy(tmp_path: Path, **changes: Any) -> Path:
    return _changed(MODULE_POLICY, tmp_path, **changes)


def test_the_packaged_policy_is_the_module_file() -> None:
    """The package's copy is a link, so the wheel carries the module's file and no other."""
    assert POLICY_FILE.resolve() == MODULE_POLICY.resolve()
    assert load_module_scaling(MODULE_POLICY) == module_scaling()


def test_a_changed_policy_file_changes_the_simulated_policies(tmp_path: Path) -> None:
    out = {"adjustment": 2, "comparison_operator": "GreaterThanOrEqualToThreshold"}
    in_ = {"adjustment": -3, "comparison_operator": "LessThanOrEqualToThreshold"}
    path = _policy(tmp_path, metric_name="GPUBusy", statistic="Maximum", period_s=300,
                   treat_missing_data="breaching", scale_out=out, scale_in=in_)
    module = load_module_scaling(path)
    assert module.metric_name == "GPUBusy"
    high, low = gpu_policies(load_environment(tf.REPO, "prod").scaling, MetricStream(),
                             module=module)
    assert (high.adjustment, high.alarm.config.comparison) == (2, Comparison.GREATER_OR_EQUAL)
    assert (low.adjustment, low.alarm.config.comparison) == (-3, Comparison.LESS_OR_EQUAL)
    for policy in (high, low):
        config = policy.alarm.config
        assert (config.period_s, config.statistic, config.treat_missing_data) == \
            (300, Statistic.MAXIMUM, MissingData.BREACHING)


@pytest.mark.parametrize(("changes", "message"), [
    ({"statistic": None}, "statistic: Field required"),
    ({"statistic": "Mean"}, "statistic: Input should be 'Average'"),
    ({"period_s": 45}, "period_s: Value error, period_s must be 10, 30 or a multiple of 60"),
    ({"period_s": "60"}, "period_s: Input should be a valid integer"),
    ({"treat_missing_data": "NotBreaching"}, "treat_missing_data: Input should be"),
    ({"policy_type": "StepScaling"}, "policy_type: Input should be 'SimpleScaling'"),
    ({"adjustment_type": "ExactCapacity"}, "adjustment_type: Input should be 'ChangeInCapacity'"),
    ({"datapoints_to_alarm": 2}, "datapoints_to_alarm: Extra inputs are not permitted"),
    ({"scale_out": {"adjustment": -1, "comparison_operator": "GreaterThanThreshold"}},
     "scale_out.adjustment: Input should be greater than 0"),
    ({"scale_in": {"adjustment": -1, "comparison_operator": "GreaterThanThreshold"}},
     "scale_in.comparison_operator: Value error, must be LessThanThreshold or "
     "LessThanOrEqualToThreshold, not GreaterThanThreshold"),
    ({"scale_in": {"adjustment": -1}}, "scale_in.comparison_operator: Field required"),
])
def test_a_bad_policy_file_is_refused_naming_the_field(changes: dict[str, Any], message: str,
                                                       tmp_path: Path) -> None:
    path = _policy(tmp_path, **changes)
    with pytest.raises(PolicyFileError) as failure:
        load_module_scaling(path)
    assert str(failure.value).startswith(f"{path}: ")
    assert message in str(failure.value)


def test_a_policy_file_that_is_not_json_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "scaling_policy.json"
    path.write_text('{"metric_name": "GPUUtilization",')
    with pytest.raises(PolicyFileError, match=r"scaling_policy\.json: the file: Invalid JSON"):
        load_module_scaling(path)


def test_a_missing_policy_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PolicyFileError, match=r"absent\.json: cannot read it: No such file"):
        load_module_scaling(tmp_path / "absent.json")


# --- queue-guard's fixed parts: queue_guard.json -------------------------------------------


def _guard(tmp_path: Path, **changes: Any) -> Path:
    return _changed(MODULE_GUARD, tmp_path, **changes)


def test_the_packaged_queue_guard_is_the_module_file() -> None:
    assert QUEUE_GUARD_FILE.resolve() == MODULE_GUARD.resolve()
    rules = queue_guard_rules()
    assert load_queue_guard(MODULE_GUARD) == rules
    assert (rules.guardrail_share, rules.calm_share, rules.period_s) == (0.8, 0.5, 60)
    assert (rules.queue_high.metric_name, rules.queue_high.statistic) == \
        ("RequestsWaiting", Statistic.AVERAGE)
    assert (rules.ttft_guardrail.metric_name, rules.ttft_guardrail.statistic) == \
        ("TTFTP95", Statistic.MAXIMUM)
    assert rules.queue_quiet.treat_missing_data == MissingData.MISSING


def _quiet(**changes: Any) -> dict[str, Any]:
    quiet: dict[str, Any] = json.loads(MODULE_GUARD.read_text())["queue_quiet"]
    return {**quiet, **changes}


@pytest.mark.parametrize(("changes", "message"), [
    ({"guardrail_share": None}, "guardrail_share: Field required"),
    ({"calm_share": 1.5}, "calm_share: Input should be less than or equal to 1"),
    ({"period_s": 300}, "period_s: Input should be 60"),
    ({"policy_type": "TargetTrackingScaling"}, "policy_type: Input should be 'SimpleScaling'"),
    ({"queue_high": {"metric_name": "RequestsWaiting", "statistic": "Average",
                     "comparison_operator": "LessThanThreshold",
                     "treat_missing_data": "notBreaching", "adjustment": 1}},
     "queue_high.comparison_operator: Value error, must be GreaterThanThreshold"),
    ({"queue_quiet": _quiet(adjustment=1)}, "queue_quiet.adjustment: Input should be less than 0"),
    # Metric math the simulator does not evaluate is refused, not approximated.
    ({"queue_quiet": _quiet(expression="IF(waiting <= 1, 1, 0)")},
     "queue_quiet.expression: Value error, the simulator evaluates only"),
])
def test_a_bad_queue_guard_file_is_refused_naming_the_field(
        changes: dict[str, Any], message: str, tmp_path: Path) -> None:
    path = _guard(tmp_path, **changes)
    with pytest.raises(PolicyFileError) as failure:
        load_queue_guard(path)
    assert str(failure.value).startswith(f"{path}: ")
    assert message in str(failure.value)


def test_the_queue_guard_defaults_are_the_modules(tmp_path: Path) -> None:
    """`serving_policies.QueueGuard()` is what an environment without settings applies."""
    tfvars = tmp_path / "x.tfvars"
    tfvars.write_text(REQUIRED_VARS)
    defaults = read_environment(tfvars, VARIABLES).scaling
    assert QueueGuard.of(defaults.queue_guard) == QueueGuard()
    assert defaults.policy == "gpu"  # the design's, unless an environment says otherwise


def test_a_leaving_simulated_instance_drains_for_the_environments_drain_timeout(
        tmp_path: Path) -> None:
    """The simulator cut a leaving instance's requests off after its own fixed 300 s, not
    the environment's drain_timeout_s (the load balancer's delay and the agent's bound)."""
    tfvars = tmp_path / "x.tfvars"
    tfvars.write_text(REQUIRED_VARS + "drain_timeout_s = 45\n")
    env = read_environment(tfvars, VARIABLES)
    fleet = Fleet(env, cast(RooflineService, None), 1.0, 60.0)
    shape = group_policy.GroupShape(env.capacity.min, env.capacity.max, env.capacity.desired,
                                    env.model.model_load_seconds)
    assert simulation_config(fleet, shape, LaunchDelay()).deregistration_delay_s == 45
    assert load_environment(tf.REPO, "prod").drain_timeout_s == 300  # the default
