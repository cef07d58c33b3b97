"""Readings to datapoints, and what CloudWatch makes of them (moto in server mode)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

from agent.buffer import DatapointBuffer
from agent.datapoints import Where, build, datapoints
from agent.publisher import Publisher
from agent.specs import (
    ALL,
    COST_AND_ENERGY,
    COST_PER_HOUR,
    COST_PER_MILLION_OUTPUT_TOKENS,
    GPU_UTILIZATION,
    JOULES_PER_OUTPUT_TOKEN,
    SERVING,
    TIME_TO_SERVING,
)
from llmfleet.core.gpu import GpuReading
from llmfleet.core.net import free_port
from llmfleet.core.serving import ServingStats
from tests.helpers.moto import cloudwatch, start_moto

WHERE = Where("fleet-dev", "i-0abc", "g5.xlarge", interval_s=10)


def gpu(index: int, util: float | None, power: float | None = 150.0) -> GpuReading:
    return GpuReading(index, util, 1e9, 24e9, power, 10.0, "counter", 60.0, 1700.0)


def test_units_scales_and_dimension_sets() -> None:
    serving = ServingStats(latency_p99_s=2.5, error_rate=0.02, kv_cache_usage=0.5,
                           generation_tokens_per_s=900.0)
    points = build(WHERE, 1_700_000_000.0, serving, [gpu(0, 80), gpu(1, 40)],
                   {COST_PER_HOUR: 1.006, JOULES_PER_OUTPUT_TOKEN: None})
    by_name = {(p.name, p.dimensions): p for p in points}
    group = (("AutoScalingGroupName", "fleet-dev"),)
    instance = (*group, ("InstanceId", "i-0abc"), ("InstanceType", "g5.xlarge"))
    assert by_name[("GPUUtilization", group)].value == 60  # averaged over the GPUs
    assert by_name[("GPUUtilization", instance)].unit == "Percent"
    assert by_name[("GPUPowerWatts", group)].value == 300  # summed
    assert by_name[("ErrorRate", group)].value == 2.0  # a percentage
    assert by_name[("KVCacheUsage", group)].value == 50.0
    assert by_name[("LatencyP99", group)].unit == "Seconds"
    assert by_name[("CostPerHourUSD", instance)].value == 1.006
    assert not any(p.name == "JoulesPerOutputToken" for p in points)  # no value, not sent
    assert not any(p.name == "TTFTP50" for p in points)
    assert by_name[("GPUSMClockMHz", group)].value == 1700.0
    assert {p.storage_resolution for p in points} == {1}  # 10 s interval: high resolution


def test_serving_figures_also_go_out_per_model() -> None:
    where = Where("fleet-dev", "i-0abc", "g5.xlarge", interval_s=10, model="llama-8b")
    points = build(where, 0.0, ServingStats(latency_p50_s=0.5), [gpu(0, 10)],
                   {JOULES_PER_OUTPUT_TOKEN: 0.4, COST_PER_HOUR: 1.0})
    per_model = {p.name for p in points if ("Model", "llama-8b") in p.dimensions}
    assert per_model == {"LatencyP50", "JoulesPerOutputToken"}  # not the machine's figures


def test_no_instance_identity_means_group_dimension_only() -> None:
    where = Where("fleet-dev", None, None, interval_s=60)
    points = build(where, 0.0, ServingStats(requests_per_s=3.0), [], {})
    assert [(p.name, p.dimensions, p.storage_resolution) for p in points] == [
        ("RequestsPerSecond", (("AutoScalingGroupName", "fleet-dev"),), 60)]


def test_the_scaling_metric_aggregates_across_the_group(tmp_path: Path) -> None:
    """Two instances publish; the group-level series averages them, as the policy reads it."""
    port = free_port()
    server = start_moto(port)
    try:
        client = cloudwatch(f"http://127.0.0.1:{port}")
        buffer = DatapointBuffer(tmp_path / "b.sqlite", 1000)
        now = (datetime.now(UTC) - timedelta(minutes=1)).timestamp()
        for instance, util in (("i-1", 90.0), ("i-2", 50.0)):
            where = Where("fleet-dev", instance, "g5.xlarge", interval_s=10)
            buffer.add(build(where, now, ServingStats(), [gpu(0, util)], {}))
        Publisher(client, "LLMFleet/Test", buffer).publish()
        stats = client.get_metric_statistics(
            Namespace="LLMFleet/Test", MetricName="GPUUtilization",
            Dimensions=[{"Name": "AutoScalingGroupName", "Value": "fleet-dev"}],
            StartTime=datetime.now(UTC) - timedelta(hours=1),
            EndTime=datetime.now(UTC) + timedelta(minutes=1), Period=3600,
            Statistics=["Average", "SampleCount"])
        (point,) = stats["Datapoints"]
        assert point["Average"] == 70.0
        # CloudWatch matches the exact dimension set (2 samples here); moto also counts the
        # per-instance series that include the group dimension, so it reports 4.
        assert point["SampleCount"] in (2, 4)
        buffer.close()
    finally:
        server.stop()


def test_nan_and_infinite_values_are_not_published() -> None:
    """CloudWatch rejects a whole call of up to 1,000 datapoints for one NaN or Inf."""
    serving = ServingStats(kv_cache_usage=math.nan, requests_running=math.inf,
                           requests_waiting=2.0)
    points = build(WHERE, 0.0, serving, [gpu(0, 50, power=-math.inf)],
                   {COST_PER_HOUR: 1.0, COST_PER_MILLION_OUTPUT_TOKENS: math.nan})
    names = {p.name for p in points}
    assert all(math.isfinite(p.value) for p in points)
    assert {"RequestsWaiting", "GPUUtilization", "CostPerHourUSD"} <= names
    assert not names & {"KVCacheUsage", "RequestsRunning", "GPUPowerWatts",
                        "CostPerMillionOutputTokensUSD"}


def test_a_round_with_every_figure_publishes_every_metric_in_the_table_once() -> None:
    serving = ServingStats(**dict.fromkeys(SERVING, 0.5))
    points = build(WHERE, 0.0, serving, [gpu(0, 50)],
                   {**dict.fromkeys(COST_AND_ENERGY, 1.0), TIME_TO_SERVING: 40.0})
    group = (("AutoScalingGroupName", "fleet-dev"),)
    published = [(p.name, p.unit) for p in points if p.dimensions == group]
    assert published == [(spec.name, spec.unit) for spec in ALL]


def test_an_instance_outside_the_group_publishes_only_under_its_own_dimensions() -> None:
    pooled = Where("fleet-dev", "i-0abc", "g5.xlarge", interval_s=10, model="m", in_group=False)
    assert pooled.dimension_sets(per_model=True) == [
        (("AutoScalingGroupName", "fleet-dev"), ("InstanceId", "i-0abc"),
         ("InstanceType", "g5.xlarge"))]
    assert Where("fleet-dev", None, None, interval_s=10, in_group=False).dimension_sets() == []
    # What the fleet spends and how long its starts take still count for the group.
    points = datapoints(pooled, 0.0, {GPU_UTILIZATION: 0.0, COST_PER_HOUR: 1.006,
                                      TIME_TO_SERVING: 611.0})
    assert {p.name for p in points if p.dimensions == (("AutoScalingGroupName", "fleet-dev"),)} \
        == {"CostPerHourUSD", "TimeToServingSeconds"}
