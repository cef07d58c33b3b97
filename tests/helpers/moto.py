"""A real CloudWatch-compatible endpoint for tests (moto in server mode) and reading it back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import httpx
from botocore.config import Config
from moto.server import ThreadedMotoServer


def cloudwatch(endpoint: str) -> Any:
    # botocore's own retries off: the publisher's backoff decides.
    return boto3.client("cloudwatch", endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing",
                        config=Config(retries={"max_attempts": 1, "mode": "standard"},
                                      connect_timeout=1, read_timeout=5))


def start_moto(port: int) -> ThreadedMotoServer:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    # moto keeps one in-memory AWS per process: start every test from an empty one.
    httpx.post(f"http://127.0.0.1:{port}/moto-api/reset", timeout=10).raise_for_status()
    return server


def statistic(port: int, name: str, stat: str = "SampleCount",
              dims: list[dict[str, str]] | None = None) -> float | None:
    now = datetime.now(UTC)
    found = cloudwatch(f"http://127.0.0.1:{port}").get_metric_statistics(
        Namespace="LLMFleet/Test", MetricName=name, Dimensions=dims or INSTANCE_DIMS,
        StartTime=now - timedelta(hours=1), EndTime=now + timedelta(minutes=1), Period=3600,
        Statistics=[stat])["Datapoints"]
    return float(sum(d[stat] for d in found)) if found else None


INSTANCE_DIMS = [{"Name": "AutoScalingGroupName", "Value": "fleet-test"},
                 {"Name": "InstanceId", "Value": "i-0test"},
                 {"Name": "InstanceType", "Value": "g5.xlarge"}]
