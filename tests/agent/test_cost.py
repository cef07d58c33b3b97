"""Instance identity from a (local, fake) IMDSv2, prices, cost and energy per token."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from agent.cost import CostModel, imds_identity, joules_per_output_token
from llmfleet.core.instances import Market, instances
from llmfleet.core.net import free_port
from tests.helpers.imds import FakeImds
from tests.helpers.servers import ServerThread

IDENTITY = {"instance-id": "i-0abc", "instance-type": "g5.xlarge",
            "instance-life-cycle": "spot", "placement/region": "eu-west-1"}


@pytest.fixture
def imds() -> Iterator[str]:
    # Instance tags are not exposed here (the launch template's default): 404, as on EC2.
    with ServerThread(FakeImds(dict(IDENTITY)).app()) as server:
        yield server.url


def test_identity_with_the_token_flow(imds: str) -> None:
    identity = imds_identity(imds)
    assert (identity.instance_id, identity.instance_type) == ("i-0abc", "g5.xlarge")
    assert identity.market is Market.SPOT and identity.region == "eu-west-1"
    assert identity.asg_name is None  # tags not exposed: that field alone is missing


def test_no_metadata_service_means_no_identity_quickly() -> None:
    identity = imds_identity(f"http://127.0.0.1:{free_port()}", timeout_s=0.2)
    assert identity.instance_type is None and identity.instance_id is None


def test_catalogue_has_the_g5_family_with_sources() -> None:
    g5 = instances()["g5.xlarge"]
    assert (g5.gpu, g5.gpu_count, g5.ondemand_usd_hr) == ("A10G", 1, 1.006)
    assert "skypilot" in g5.source.lower()
    assert all(i.ondemand_usd_hr > 0 for i in instances().values())


def test_cost_per_million_tokens() -> None:
    on_demand = CostModel.for_instance_type("g5.xlarge", Market.ON_DEMAND)
    assert on_demand.usd_per_hour == 1.006
    # 1,000 tokens/s is 3.6 M tokens an hour: 1.006 / 3.6 dollars per million.
    assert on_demand.usd_per_million_output_tokens(1000) == pytest.approx(1.006 / 3.6)
    assert on_demand.usd_per_million_output_tokens(0) is None
    spot = CostModel.for_instance_type("g5.xlarge", Market.SPOT)
    assert spot.usd_per_hour == pytest.approx((0.4246 + 0.4507) / 2)
    assert CostModel.for_instance_type("p5.4xlarge", Market.SPOT).usd_per_hour is None
    assert CostModel.for_instance_type("m7i.large", Market.ON_DEMAND).usd_per_hour is None


def test_joules_per_token() -> None:
    assert joules_per_output_token(3000.0, 1500) == 2.0
    assert joules_per_output_token(None, 10) is None
    assert joules_per_output_token(5.0, 0) is None
