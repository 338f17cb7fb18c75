"""Endpoint metrics through the real server, read back with boto3's cloudwatch client."""

from __future__ import annotations

import datetime as dt
import time
import urllib.request
from typing import Any

from botocore.exceptions import ClientError

from tests.e2e.conftest import ServerProcess, deploy_echo


def _sum(cw: Any, name: str, variant: str, metric: str) -> float:
    now = dt.datetime.now(dt.UTC)
    resp = cw.get_metric_statistics(
        Namespace="AWS/SageMaker", MetricName=metric,
        Dimensions=[{"Name": "EndpointName", "Value": name}, {"Name": "VariantName", "Value": variant}],
        StartTime=now - dt.timedelta(minutes=5), EndTime=now + dt.timedelta(minutes=1), Period=60,
        Statistics=["Sum"],
    )
    return float(sum(p["Sum"] for p in resp["Datapoints"]))


def test_invocations_and_errors_per_variant(server: ServerProcess, echo_image: str) -> None:
    sm, rt, cw = server.client("sagemaker"), server.client("sagemaker-runtime"), server.client("cloudwatch")
    deploy_echo(sm, echo_image, "metered", [("A", 1.0, 1), ("B", 1.0, 1)])
    for _ in range(30):
        rt.invoke_endpoint(EndpointName="metered", Body=b"x", TargetVariant="A")
    for _ in range(12):
        rt.invoke_endpoint(EndpointName="metered", Body=b"x", TargetVariant="B")
    for _ in range(5):
        try:
            rt.invoke_endpoint(EndpointName="metered", Body=b"status:500", TargetVariant="B")
        except ClientError as e:
            assert e.response["Error"]["Code"] == "ModelError"
    deadline = time.monotonic() + 10
    while _sum(cw, "metered", "A", "Invocations") < 30 and time.monotonic() < deadline:
        time.sleep(0.3)
    assert _sum(cw, "metered", "A", "Invocations") == 30
    assert _sum(cw, "metered", "B", "Invocations") == 17
    assert _sum(cw, "metered", "B", "Invocation5XXErrors") == 5
    assert _sum(cw, "metered", "A", "Invocation5XXErrors") == 0
    with urllib.request.urlopen(server.url + "/metrics", timeout=5) as r:
        text = r.read().decode()
    assert "metered" in text
