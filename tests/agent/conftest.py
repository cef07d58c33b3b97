"""Fixtures for the agent's tests: a real CloudWatch-compatible endpoint (moto server)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from llmfleet.core.net import free_port
from tests.helpers.moto import start_moto


@pytest.fixture
def moto_port() -> Iterator[int]:
    port = free_port()
    server = start_moto(port)
    yield port
    server.stop()
