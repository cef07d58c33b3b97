"""The dashboards and alarms read the metrics the agent actually publishes."""

from __future__ import annotations

import json
import re

from agent.settings import AgentSettings
from agent.specs import ALL
from tests.helpers import tf

INFRA = tf.INFRA


def published_names() -> set[str]:
    """The agent's metric table (tests/agent/test_datapoints.py: a full round publishes it)."""
    return {spec.name for spec in ALL}


def names_read_by_infrastructure() -> set[str]:
    """Metric names in our namespace that alarms, scaling and the dashboard read."""
    text = "\n".join(p.read_text() for p in INFRA.rglob("*.tf"))
    alarm_names = set(re.findall(r'namespace\s*=\s*(?:local\.ns|var\.metrics_namespace)\s*\n'
                                 r'\s*metric_name\s*=\s*"(\w+)"', text))
    alarm_map = set(re.findall(r'namespace = local\.ns, metric = "(\w+)"', text))
    # Each group's serving alarms (monitoring's group_alarms): our namespace, set on the resource.
    group_alarms = set(re.findall(r'name = "[\w-]+", metric = "(\w+)"', text))
    dashboard = set(re.findall(r'\[local\.ns, "(\w+)"', text))
    listed = {name for group in re.findall(r'for m in \[([^\]]+)\]', text)
              for name in re.findall(r'"(\w+)"', group)}
    search = set(re.findall(r'MetricName=\\"(\w+)\\"', text))
    return (alarm_names | alarm_map | group_alarms | dashboard | listed | search
            | policy_file_names())


def policy_file_names() -> set[str]:
    """Every metric_name in the scaling policies' files (main.tf reads them with file())."""
    def names(node: object) -> set[str]:
        if isinstance(node, dict):
            found = {node["metric_name"]} if isinstance(node.get("metric_name"), str) else set()
            return found.union(*(names(v) for v in node.values()))
        return set()

    return set().union(*(names(json.loads(p.read_text()))
                          for p in (INFRA / "modules/compute").glob("*.json")))


def test_every_metric_the_infrastructure_reads_is_published() -> None:
    read = names_read_by_infrastructure()
    assert {"GPUUtilization", "LatencyP99", "ErrorRate", "CostPerHourUSD",
            "TTFTP99", "GenerationTokensPerSecond"} <= read  # the parse found them
    assert {"GPUUtilization", "RequestsWaiting", "TTFTP95"} <= policy_file_names()
    assert read <= published_names(), read - published_names()


def test_the_scaling_alarms_read_the_group_dimension() -> None:
    compute = (INFRA / "modules/compute/main.tf").read_text()
    alarm = compute[compute.index('resource "aws_cloudwatch_metric_alarm" "gpu"'):]
    alarm = alarm[:alarm.index("\n}\n")]
    assert "for_each            = local.scaling_steps" in alarm  # the high and the low alarm
    assert "dimensions          = { AutoScalingGroupName = aws_autoscaling_group.this.name }" \
        in alarm


def test_the_oversampling_alarm_expects_the_agents_real_rate() -> None:
    """The forged-metric alarm counts GPUUtilization samples at the agents' default interval."""
    monitoring = (INFRA / "modules/monitoring/main.tf").read_text()
    match = re.search(r"agent_samples_per_minute = (\d+)", monitoring)
    assert match
    assert int(match.group(1)) == round(60 / AgentSettings().interval_s)
    template = (INFRA / "modules/compute/user_data/templates/cloud-init.yaml.tftpl").read_text()
    assert "LLMFLEET_AGENT_INTERVAL" not in template  # the instances keep that default
