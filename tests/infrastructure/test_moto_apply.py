"""The dev stack applied and destroyed against a local AWS (moto in server mode on the loopback).

`infrastructure/tests/moto/apply.tftest.hcl` does the work with the real AWS
provider: it applies the root module with environments/dev.tfvars, reads the
result back through the APIs and asserts on it, turns it into two pools and reads
that back, then destroys everything;
`warm_pool.tftest.hcl` then does the same for the GPU group alone, with a warm
pool. This test starts moto on a free port, points the provider at it, runs both
files and then asks moto itself whether the destroys left anything behind.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from llmfleet.core.net import free_port
from llmfleet.core.process import ChildProcess
from tests.helpers import tf

MOTO_KEYS = {"AWS_ACCESS_KEY_ID": "llmfleet-test", "AWS_SECRET_ACCESS_KEY": "llmfleet-test"}


@pytest.fixture
def moto(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    server = ChildProcess(
        "moto", [sys.executable, "-m", "tests.helpers.moto_server",
                 "-H", "127.0.0.1", "-p", str(port)],
        tmp_path / "moto.log", f"http://127.0.0.1:{port}/moto-api/",
        # AWS's managed IAM policies (SSM core, API Gateway logging) exist in every
        # account; moto loads them only when asked.
        {"MOTO_IAM_LOAD_MANAGED_POLICIES": "true"})
    server.start()
    try:
        server.wait_ready(timeout_s=60, poll_s=0.2)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def client(service: str, endpoint: str) -> Any:
    return boto3.client(service, endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id="llmfleet-test", aws_secret_access_key="llmfleet-test")


@pytest.mark.timeout(900)
def test_the_dev_stack_applies_reads_back_and_destroys(moto: str, tmp_path: Path) -> None:
    env = tf.environment(tf.cli_config(tmp_path), AWS_ENDPOINT_URL=moto, **MOTO_KEYS)
    init = subprocess.run([tf.binary(), "init", "-backend=false", "-input=false", "-no-color",
                           "-test-directory=tests/moto"], cwd=tf.INFRA, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert init.returncode == 0, init.stdout + init.stderr
    run = subprocess.run([tf.binary(), "test", "-no-color", "-test-directory=tests/moto",
                          "-var-file=../environments/dev.tfvars"], cwd=tf.INFRA, env=env,
                         capture_output=True, text=True, timeout=900, check=False)
    print(run.stdout[-4000:])
    # A failed run's first error comes before the teardown's list of what it left: both.
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[:6000]
    assert "9 passed, 0 failed" in run.stdout

    # The destroy really emptied the account (not just the state file).
    ec2, asg, elb = client("ec2", moto), client("autoscaling", moto), client("elbv2", moto)
    vpcs = ec2.describe_vpcs(Filters=[{"Name": "tag:Project", "Values": ["llmfleet"]}])["Vpcs"]
    assert vpcs == []
    assert asg.describe_auto_scaling_groups()["AutoScalingGroups"] == []
    assert elb.describe_load_balancers()["LoadBalancers"] == []
    assert client("s3", moto).list_buckets()["Buckets"] == []
    assert client("wafv2", moto).list_web_acls(Scope="REGIONAL")["WebACLs"] == []
    assert client("apigateway", moto).get_rest_apis()["items"] == []
    assert client("cloudwatch", moto).describe_alarms()["MetricAlarms"] == []
    assert client("ssm", moto).describe_parameters()["Parameters"] == []
