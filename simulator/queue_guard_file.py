"""queue-guard's fixed parts, read from the file OpenTofu reads.

`infrastructure/modules/compute/queue_guard.json` holds what main.tf applies around
var.scaling.queue_guard when var.scaling.policy is queue-guard or inflight-guard (which
replaces queue_high by target tracking on `inflight_target`): each alarm's metric,
statistic, operator and missing-data rule, the policies' type and adjustments, the
guardrail's and the calm limit's shares of the TTFT SLO, and the scale-in alarm's metric math
expression. main.tf reads it with jsondecode(file()); `queue_guard_rules()` reads it here:
one definition, which `simulator.serving_policies.queue_guard` builds. The package carries
it as `simulator/data/queue_guard.json`, a symlink to the module's file (the wheel build
copies its target). It is validated when first needed: a value the module could not apply,
a period other than a minute (the settings count minutes), or an expression other than
`QUIET_EXPRESSION`, the one the simulator evaluates, is refused naming the file and the
field.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator

from simulator.cloudwatch import Comparison, MissingData, Statistic
from simulator.policy_config import PolicyFileModel, one_of, read_policy_file

QUEUE_GUARD_FILE = Path(__file__).parent / "data" / "queue_guard.json"

# The scale-in expression, a printf format taking the quiet TTFT limit in seconds: the one
# `simulator.serving_policies` evaluates (any other text in the file is refused, not guessed).
QUIET_EXPRESSION = "IF(waiting == 0 AND FILL(ttft, 0) < %.3f, 1, 0)"


class _GuardOut(PolicyFileModel):
    metric_name: str = Field(min_length=1, max_length=255)
    statistic: Statistic
    comparison_operator: Annotated[
        Comparison, one_of(Comparison.GREATER, Comparison.GREATER_OR_EQUAL)]
    treat_missing_data: MissingData
    adjustment: int = Field(gt=0)


class _GuardInput(PolicyFileModel):
    metric_name: str = Field(min_length=1, max_length=255)
    statistic: Statistic


class _GuardQuiet(PolicyFileModel):
    waiting: _GuardInput
    ttft: _GuardInput
    expression: str
    threshold: float
    comparison_operator: Annotated[
        Comparison, one_of(Comparison.GREATER, Comparison.GREATER_OR_EQUAL)]
    treat_missing_data: MissingData
    adjustment: int = Field(lt=0)

    @field_validator("expression")
    @classmethod
    def _known(cls, value: str) -> str:
        if value != QUIET_EXPRESSION:
            raise ValueError(f"the simulator evaluates only {QUIET_EXPRESSION!r}")
        return value


class _InflightTarget(PolicyFileModel):
    running: _GuardInput
    waiting: _GuardInput
    expression: Literal["running + waiting"]  # the sum the simulator evaluates
    disable_scale_in: Literal[True]  # queue_quiet scales in, never the target


class _QueueGuardFile(PolicyFileModel):
    description: str = ""
    period_s: Literal[60]  # the settings count minutes: out_minutes, quiet_minutes
    policy_type: Literal["SimpleScaling"]
    adjustment_type: Literal["ChangeInCapacity"]
    guardrail_share: float = Field(gt=0, le=1)
    calm_share: float = Field(gt=0, le=1)
    queue_high: _GuardOut
    ttft_guardrail: _GuardOut
    queue_quiet: _GuardQuiet
    inflight_target: _InflightTarget


@dataclass(frozen=True)
class GuardAlarm:
    """One of queue-guard's one-metric alarms and its policy's adjustment."""

    metric_name: str
    statistic: Statistic
    comparison: Comparison
    treat_missing_data: MissingData
    adjustment: int


@dataclass(frozen=True)
class QuietAlarm:
    """queue-guard's scale-in alarm on `QUIET_EXPRESSION` over two metrics."""

    waiting: tuple[str, Statistic]  # (metric name, statistic)
    ttft: tuple[str, Statistic]
    threshold: float
    comparison: Comparison
    treat_missing_data: MissingData
    adjustment: int


@dataclass(frozen=True)
class QueueGuardRules:
    """queue-guard's fixed parts, as queue_guard.json states them."""

    period_s: int
    guardrail_share: float  # the TTFT guardrail, as a share of the TTFT SLO
    calm_share: float  # scale-in needs TTFT under this share of the guardrail
    queue_high: GuardAlarm
    ttft_guardrail: GuardAlarm
    queue_quiet: QuietAlarm
    # inflight-guard's target tracking: the sum of these two, each over the group; it never
    # scales in (queue_quiet does).
    inflight: tuple[tuple[str, Statistic], tuple[str, Statistic]]


def _guard_alarm(rule: _GuardOut) -> GuardAlarm:
    return GuardAlarm(rule.metric_name, rule.statistic, rule.comparison_operator,
                      rule.treat_missing_data, rule.adjustment)


def load_queue_guard(path: Path = QUEUE_GUARD_FILE) -> QueueGuardRules:
    """queue-guard's rules in `path` (by default the module's own file).

    Raises:
        PolicyFileError: the file is unreadable or not JSON, a field is missing or unknown, or
            a value is one the module or the simulator cannot apply (an expression other than
            `QUIET_EXPRESSION` among them); the message names the file and each field at fault.
    """
    rules = read_policy_file(path, _QueueGuardFile)
    quiet = rules.queue_quiet
    return QueueGuardRules(
        rules.period_s, rules.guardrail_share, rules.calm_share,
        _guard_alarm(rules.queue_high), _guard_alarm(rules.ttft_guardrail),
        QuietAlarm((quiet.waiting.metric_name, quiet.waiting.statistic),
                   (quiet.ttft.metric_name, quiet.ttft.statistic), quiet.threshold,
                   quiet.comparison_operator, quiet.treat_missing_data, quiet.adjustment),
        (_input(rules.inflight_target.running), _input(rules.inflight_target.waiting)))


def _input(part: _GuardInput) -> tuple[str, Statistic]:
    return part.metric_name, part.statistic


@functools.cache
def queue_guard_rules() -> QueueGuardRules:
    """The module's queue_guard.json, read once, when first needed.

    Raises:
        PolicyFileError: as `load_queue_guard`.
    """
    return load_queue_guard()
