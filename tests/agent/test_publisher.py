"""Publishing to CloudWatch: moto in server mode over HTTP, outages and throttling."""

from __future__ import annotations

import math
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError
from botocore.stub import Stubber

from agent.buffer import Datapoint, DatapointBuffer
from agent.publisher import Publisher, batches
from llmfleet.core.net import free_port
from tests.helpers.moto import cloudwatch, start_moto

NAMESPACE = "LLMFleet/Test"
DIMS = (("AutoScalingGroupName", "fleet-dev"), ("InstanceType", "g5.xlarge"))


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def points(n: int, name: str = "GPUUtilization", start: datetime | None = None) -> list[Datapoint]:
    base = (start or datetime.now(UTC) - timedelta(minutes=5)).timestamp()
    return [Datapoint(name, float(i % 100), "Percent", base + i * 0.01, DIMS, 1)
            for i in range(n)]


def sample_count(client: Any, name: str = "GPUUtilization") -> float:
    now = datetime.now(UTC)
    stats = client.get_metric_statistics(
        Namespace=NAMESPACE, MetricName=name, Dimensions=[{"Name": k, "Value": v}
                                                          for k, v in DIMS],
        StartTime=now - timedelta(hours=1), EndTime=now + timedelta(minutes=1), Period=3600,
        Statistics=["SampleCount", "Sum", "Maximum"])
    return float(sum(d["SampleCount"] for d in stats["Datapoints"]))


def test_datapoints_arrive_with_names_units_dimensions_values(
        moto_port: int, tmp_path: Path) -> None:
    client = cloudwatch(f"http://127.0.0.1:{moto_port}")
    buffer = DatapointBuffer(tmp_path / "b.sqlite", 10_000)
    buffer.add(points(10))
    assert Publisher(client, NAMESPACE, buffer).publish() == 10
    assert len(buffer) == 0
    now = datetime.now(UTC)
    stats = client.get_metric_statistics(
        Namespace=NAMESPACE, MetricName="GPUUtilization",
        Dimensions=[{"Name": k, "Value": v} for k, v in DIMS],
        StartTime=now - timedelta(hours=1), EndTime=now + timedelta(minutes=1), Period=3600,
        Statistics=["SampleCount", "Sum", "Maximum"], Unit="Percent")
    (datapoint,) = stats["Datapoints"]
    assert (datapoint["SampleCount"], datapoint["Sum"], datapoint["Maximum"]) == (10, 45, 9)
    assert datapoint["Unit"] == "Percent"
    buffer.close()


def test_large_backlogs_go_in_calls_within_the_api_limits(moto_port: int,
                                                          tmp_path: Path) -> None:
    many = points(2500)
    assert [len(b) for b in batches(list(enumerate(many)))] == [1000, 1000, 500]
    client = cloudwatch(f"http://127.0.0.1:{moto_port}")
    buffer = DatapointBuffer(tmp_path / "b.sqlite", 10_000)
    buffer.add(many)
    publisher = Publisher(client, NAMESPACE, buffer)
    assert publisher.publish(max_calls=2) == 2000  # a bounded go leaves the rest queued
    assert len(buffer) == 500
    assert publisher.publish() == 500
    assert sample_count(client) == 2500
    buffer.close()


def test_an_outage_loses_nothing_and_delivers_each_point_once(tmp_path: Path) -> None:
    """CloudWatch unreachable, the agent restarted mid-outage, then CloudWatch back."""
    port = free_port()
    path = tmp_path / "b.sqlite"
    clock = Clock()
    buffer = DatapointBuffer(path, 10_000)
    buffer.add(points(300))
    down = Publisher(cloudwatch(f"http://127.0.0.1:{port}"), NAMESPACE, buffer, clock=clock)
    assert down.publish() == 0
    assert down.backing_off and down.stats.failed_calls_total == 1
    assert down.publish() == 0  # still backing off: no call at all
    assert down.stats.failed_calls_total == 1
    buffer.add(points(200, start=datetime.now(UTC) - timedelta(minutes=2)))
    buffer.close()  # the agent stops mid-outage
    server = start_moto(port)
    try:
        restarted = DatapointBuffer(path, 10_000)  # and starts again with its spilled file
        client = cloudwatch(f"http://127.0.0.1:{port}")
        assert Publisher(client, NAMESPACE, restarted).publish() == 500
        assert len(restarted) == 0
        assert sample_count(client) == 500  # each exactly once
        restarted.close()
    finally:
        server.stop()


def test_throttling_backs_off_then_sends_everything(tmp_path: Path) -> None:
    client = cloudwatch("http://127.0.0.1:1")  # never reached: the stubber answers
    clock = Clock()
    buffer = DatapointBuffer(tmp_path / "b.sqlite", 10_000)
    buffer.add(points(5))
    publisher = Publisher(client, NAMESPACE, buffer, clock=clock, base_backoff_s=2)
    with Stubber(client) as stub:
        for _ in range(2):
            stub.add_client_error("put_metric_data", service_error_code="Throttling",
                                  http_status_code=400)
        stub.add_response("put_metric_data", {})
        assert publisher.publish() == 0 and len(buffer) == 5
        clock.now += 2.0  # first pause: at most 2 s
        assert publisher.publish() == 0
        waits = []
        while publisher.backing_off and len(waits) < 100:
            clock.now += 0.5
            waits.append(clock.now)
        assert 1.0 <= len(waits) * 0.5 <= 4.0  # second pause: 2-4 s, it doubled
        assert publisher.publish() == 5
        stub.assert_no_pending_responses()
    assert len(buffer) == 0 and publisher.stats.sent_total == 5
    buffer.close()


def test_an_invalid_batch_is_dropped_and_counted_not_retried_forever(tmp_path: Path) -> None:
    client = cloudwatch("http://127.0.0.1:1")
    buffer = DatapointBuffer(tmp_path / "b.sqlite", 10_000)
    buffer.add(points(3))
    publisher = Publisher(client, NAMESPACE, buffer)
    with Stubber(client) as stub:
        for _ in range(5):  # the batch of 3, then halves until each point is alone: 5 calls
            stub.add_client_error("put_metric_data", service_error_code="InvalidParameterValue",
                                  http_status_code=400)
        assert publisher.publish() == 0
        stub.assert_no_pending_responses()
    assert len(buffer) == 0 and publisher.stats.rejected_total == 3
    buffer.close()


def test_publishing_is_quick_when_cloudwatch_is_down(tmp_path: Path) -> None:
    buffer = DatapointBuffer(tmp_path / "b.sqlite", 10_000)
    buffer.add(points(1))
    started = time.monotonic()
    Publisher(cloudwatch(f"http://127.0.0.1:{free_port()}"), NAMESPACE, buffer).publish()
    assert time.monotonic() - started < 5  # a refused connection, not a hang
    buffer.close()


def test_a_nan_in_the_backlog_does_not_take_the_good_points_with_it(
        moto_port: int, tmp_path: Path) -> None:
    """A NaN buffered by an older agent: CloudWatch (moto too) rejects the whole call."""
    client = cloudwatch(f"http://127.0.0.1:{moto_port}")
    buffer = DatapointBuffer(tmp_path / "b.sqlite", 10_000)
    good = points(10)
    buffer.add([*good[:5], replace(good[0], value=math.nan), *good[5:]])
    publisher = Publisher(client, NAMESPACE, buffer)
    assert publisher.publish() == 10
    assert sample_count(client) == 10
    assert len(buffer) == 0 and publisher.stats.rejected_total == 1
    buffer.close()


class Picky:
    """CloudWatch (moto) behind a check it does not make itself: any datapoint named
    "Bad" makes the whole call fail with InvalidParameterValue, as CloudWatch does."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.calls = 0

    def put_metric_data(self, **kwargs: Any) -> Any:
        self.calls += 1
        if any(d["MetricName"] == "Bad" for d in kwargs["MetricData"]):
            raise ClientError({"Error": {"Code": "InvalidParameterValue",
                                         "Message": "The value for Bad is invalid."}},
                              "PutMetricData")
        return self.client.put_metric_data(**kwargs)


def test_a_rejected_batch_is_split_until_only_the_invalid_point_is_dropped(
        moto_port: int, tmp_path: Path) -> None:
    picky = Picky(cloudwatch(f"http://127.0.0.1:{moto_port}"))
    buffer = DatapointBuffer(tmp_path / "b.sqlite", 10_000)
    good = points(999)
    buffer.add([*good[:700], replace(good[0], name="Bad"), *good[700:]])
    publisher = Publisher(picky, NAMESPACE, buffer)
    assert publisher.publish() == 999
    assert sample_count(picky.client) == 999
    assert len(buffer) == 0 and publisher.stats.rejected_total == 1
    assert picky.calls <= 2 * 10 + 1  # halving 1,000 isolates one point in ~20 calls
    buffer.close()


def test_a_datapoint_botocore_refuses_is_dropped_not_retried_forever(
        moto_port: int, tmp_path: Path) -> None:
    """botocore's own validation (an empty dimension value) is no outage to wait out."""
    client = cloudwatch(f"http://127.0.0.1:{moto_port}")
    buffer = DatapointBuffer(tmp_path / "b.sqlite", 10_000)
    good = points(4)
    buffer.add([*good, replace(good[0], dimensions=(("AutoScalingGroupName", ""),))])
    publisher = Publisher(client, NAMESPACE, buffer)
    assert publisher.publish() == 4
    assert not publisher.backing_off and len(buffer) == 0
    assert publisher.stats.rejected_total == 1
    buffer.close()
