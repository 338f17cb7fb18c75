"""The review's 4.1/4.2, "Also observed": a request in flight on an instance that dies is answered with
ServiceUnavailable (503), which names the instance, not a ModelError that blames the model."""

from __future__ import annotations

import datetime as dt
import os
import signal
import threading
import time
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.e2e.conftest import deploy_echo, instance_pids


def _sum(cw: Any, name: str, metric: str) -> float:
    now = dt.datetime.now(dt.UTC)
    resp = cw.get_metric_statistics(
        Namespace="AWS/SageMaker", MetricName=metric,
        Dimensions=[{"Name": "EndpointName", "Value": name}, {"Name": "VariantName", "Value": "A"}],
        StartTime=now - dt.timedelta(minutes=5), EndTime=now + dt.timedelta(minutes=1), Period=60,
        Statistics=["Sum"],
    )  # fmt: skip
    return float(sum(p["Sum"] for p in resp["Datapoints"]))


def test_review_4_2_in_flight_request_on_a_killed_instance_is_not_a_model_error(
    server_factory: Any, echo_image: str
) -> None:
    server = server_factory()
    sm, cw = server.client("sagemaker"), server.client("cloudwatch")
    # One attempt: botocore retries a 503 (legacy max_attempts=1 is one retry), which is the point of a 503 but
    # would hide the answer to the request that was in flight.
    rt = boto3.client(
        "sagemaker-runtime", endpoint_url=server.url, region_name="us-east-1", aws_access_key_id="test",
        aws_secret_access_key="test", config=Config(retries={"total_max_attempts": 1}, read_timeout=60),
    )  # fmt: skip
    deploy_echo(sm, echo_image, "dies", [("A", 1.0, 1)])
    ((iid, pid),) = instance_pids(server).items()
    answers: list[Any] = []

    def slow() -> None:
        try:
            answers.append(rt.invoke_endpoint(EndpointName="dies", Body=b"sleep:10"))
        except ClientError as e:
            answers.append(e.response)

    caller = threading.Thread(target=slow)
    caller.start()
    time.sleep(1.0)  # the request is in flight
    os.kill(pid, signal.SIGKILL)
    caller.join(15)
    (err,) = answers
    assert err["Error"]["Code"] == "ServiceUnavailable"
    assert err["ResponseMetadata"]["HTTPStatusCode"] == 503
    assert "OriginalStatusCode" not in err
    # The cause in parentheses: the connection lost, or refused when the resend on a new connection found
    # the instance gone (runtime/client.py resends once when a kept-alive connection breaks before any answer).
    assert err["Error"]["Message"].startswith(f"Instance {iid} of production variant A stopped before answering (")
    assert err["Error"]["Message"].endswith("the model did not answer this request, which can be retried.")
    # Counted as a 5XX of the variant, as before; and the instance is replaced.
    deadline = time.monotonic() + 10
    while _sum(cw, "dies", "Invocation5XXErrors") < 1 and time.monotonic() < deadline:
        time.sleep(0.3)
    assert _sum(cw, "dies", "Invocation5XXErrors") == 1
    deadline = time.monotonic() + 15
    while True:
        try:
            assert rt.invoke_endpoint(EndpointName="dies", Body=b"x")["Body"].read() == b"A|-|x"
            break
        except ClientError as e:
            assert e.response["Error"]["Code"] == "ServiceUnavailable"  # no instance yet: retry
            assert time.monotonic() < deadline
            time.sleep(0.2)
