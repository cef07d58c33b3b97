"""Fixtures for the agent's tests: a real CloudWatch-compatible endpoint (moto server)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config
from moto.server import ThreadedMotoServer

from llmfleet.testing import free_port


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


@pytest.fixture
def moto_port() -> Iterator[int]:
    port = free_port()
    server = start_moto(port)
    yield port
    server.stop()
