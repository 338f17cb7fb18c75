"""Endpoint metrics through the real server, read back with boto3's cloudwatch client."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest
from botocore.exceptions import ClientError

from tests.e2e.conftest import ServerProcess, deploy_echo, free_port


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


class _Hook(BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, Any]]] = []

    def log_message(self, format: str, *args: object) -> None:
        return

    def do_POST(self) -> None:
        n = int(self.headers.get("Content-Length", "0"))
        _Hook.received.append(json.loads(self.rfile.read(n)))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()


def _state(cw: Any, name: str) -> str:
    return str(cw.describe_alarms(AlarmNames=[name])["MetricAlarms"][0]["StateValue"])


@pytest.mark.slow
def test_alarm_on_5xx_goes_alarm_then_ok_with_history_and_webhook(server_factory: Any, echo_image: str) -> None:
    server = server_factory(MODELGATE_EGRESS_ALLOWLIST='["127.0.0.1"]')  # the webhook listens on loopback
    sm, rt, cw = server.client("sagemaker"), server.client("sagemaker-runtime"), server.client("cloudwatch")
    hook = ThreadingHTTPServer(("127.0.0.1", free_port()), _Hook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    _Hook.received = []
    try:
        deploy_echo(sm, echo_image, "alarmed", [("A", 1.0, 1)])
        url = f"http://127.0.0.1:{hook.server_address[1]}/hook"
        cw.put_metric_alarm(
            AlarmName="alarmed-5xx", Namespace="AWS/SageMaker", MetricName="Invocation5XXErrors",
            Dimensions=[{"Name": "EndpointName", "Value": "alarmed"}, {"Name": "VariantName", "Value": "A"}],
            Statistic="Sum", Period=10, EvaluationPeriods=1, Threshold=0, ComparisonOperator="GreaterThanThreshold",
            TreatMissingData="notBreaching", AlarmActions=[url], OKActions=[url],
        )
        assert _state(cw, "alarmed-5xx") == "INSUFFICIENT_DATA"
        started = time.monotonic()
        while _state(cw, "alarmed-5xx") != "ALARM":
            with pytest.raises(ClientError):
                rt.invoke_endpoint(EndpointName="alarmed", Body=b"status:500")
            assert time.monotonic() - started < 10 + 10, "no ALARM within one period plus 10 s"
            time.sleep(0.2)
        stopped = time.monotonic()
        while _state(cw, "alarmed-5xx") != "OK":
            rt.invoke_endpoint(EndpointName="alarmed", Body=b"fine")
            assert time.monotonic() - stopped < 2 * 10 + 10, "no OK after the errors stopped"
            time.sleep(0.2)
        history = cw.describe_alarm_history(AlarmName="alarmed-5xx", HistoryItemType="StateUpdate")["AlarmHistoryItems"]
        summaries = [h["HistorySummary"] for h in history]
        assert any("to ALARM" in s for s in summaries) and any("ALARM to OK" in s for s in summaries), summaries
        # The first evaluation may already move INSUFFICIENT_DATA -> OK (missing data is notBreaching),
        # which is an OK notification too; what matters is ALARM, then OK after it.
        deadline = time.monotonic() + 10

        def transitions() -> list[tuple[str, str]]:
            return [(json.loads(m["Message"])["OldStateValue"], json.loads(m["Message"])["NewStateValue"])
                    for m in _Hook.received]

        while ("ALARM", "OK") not in transitions() and time.monotonic() < deadline:
            time.sleep(0.1)
        got = transitions()
        assert ("ALARM", "OK") in got and got.index(("ALARM", "OK")) > [n for _, n in got].index("ALARM"), got
    finally:
        hook.shutdown()
