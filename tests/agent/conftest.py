"""Fixtures for the agent's tests: a real CloudWatch- and S3-compatible endpoint (moto server),
and stand-ins for instance metadata and the Auto Scaling endpoint (tests.helpers.imds)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from llmfleet.core.net import free_port
from tests.helpers.imds import FakeImds, FakeLifecycle
from tests.helpers.moto import start_moto
from tests.helpers.servers import ServerThread


@pytest.fixture
def moto_port() -> Iterator[int]:
    port = free_port()
    server = start_moto(port)
    yield port
    server.stop()


@pytest.fixture
def imds() -> Iterator[tuple[FakeImds, str]]:
    fake = FakeImds({"autoscaling/target-lifecycle-state": "InService"})
    with ServerThread(fake.app()) as server:
        yield fake, server.url


@pytest.fixture
def lifecycle(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[FakeLifecycle, str]]:
    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing")):
        monkeypatch.setenv(name, value)
    fake = FakeLifecycle()
    with ServerThread(fake.app()) as server:
        yield fake, server.url
