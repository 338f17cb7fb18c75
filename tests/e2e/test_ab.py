"""A/B experiments through the running server: the anchor's REST API over a tagged endpoint."""

from __future__ import annotations

import http.client
import json
import random
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from typing import Any

import pytest

from tests.e2e.conftest import ServerProcess, deploy_echo, wait_in_service


class Api:
    def __init__(self, server: ServerProcess) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)

    def post(self, path: str, payload: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        # X-Amz-Date: /register and /promote are administrative and take requests of the AWS protocols only.
        headers = {"Content-Type": "application/json", "X-Amz-Date": "20260101T000000Z"}
        self.conn.request("POST", path, json.dumps(payload), headers)
        resp = self.conn.getresponse()
        return resp.status, json.loads(resp.read() or b"{}")


def _tagged(sm: Any, name: str, strategy: str) -> None:
    arn = sm.describe_endpoint(EndpointName=name)["EndpointArn"]
    sm.add_tags(
        ResourceArn=arn,
        Tags=[{"Key": "ab-testing:enabled", "Value": "true"}, {"Key": "ab-testing:strategy", "Value": strategy}],
    )


def _wait_registered(api: Api, name: str) -> dict[str, Any]:
    deadline = time.monotonic() + 15
    while True:
        status, body = api.post("/stats", {"endpoint_name": name})
        if status == 200:
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"not registered: {status} {body}")
        time.sleep(0.2)


def test_api_status_codes_and_errors(server_factory: Any, echo_image: str) -> None:
    server = server_factory(MODELGATE_AB_FLUSH_SECONDS="1")
    sm = server.client("sagemaker")
    deploy_echo(sm, echo_image, "ab", [("A", 1.0, 1), ("B", 1.0, 1)])
    _tagged(sm, "ab", "ThompsonSampling")
    # The tag was added after InService: registration happens on an explicit call.
    api = Api(server)
    status, body = api.post("/register", {"endpoint_name": "ab"})
    assert status in (200, 201), body
    status, first = api.post("/invocation", {"endpoint_name": "ab", "user_id": "u1", "data": "1,2",
                                              "content_type": "text/csv"})
    assert status == 201, first
    assert first["endpoint_variant"] in ("A", "B")
    status, again = api.post("/invocation", {"endpoint_name": "ab", "user_id": "u1", "data": "3",
                                              "content_type": "text/csv"})
    assert status == 200 and again["endpoint_variant"] == first["endpoint_variant"]
    status, manual = api.post("/invocation", {"endpoint_name": "ab", "user_id": "u2", "data": "x",
                                               "content_type": "text/csv", "endpoint_variant": "B"})
    assert status == 202 and manual["endpoint_variant"] == "B"
    conversion = {"endpoint_name": "ab", "user_id": "u1", "inference_id": again["inference_id"]}
    status, conv = api.post("/conversion", {**conversion, "reward": 1})
    assert status == 200, conv
    status, err = api.post("/conversion", {**conversion, "reward": 7})
    assert status == 400 and err["code"] and "reward" in err["message"].lower()
    status, err = api.post("/invocation", {"endpoint_name": "nope", "user_id": "u1", "data": "x"})
    assert status >= 400 and "code" in err and "message" in err
    deadline = time.monotonic() + 15
    while True:
        _, stats = api.post("/stats", {"endpoint_name": "ab"})
        text = json.dumps(stats)
        if '"invocation_count": 0' not in text or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert "verdict" in text
    out = subprocess.run(
        [sys.executable, "-m", "modelgate", "ab-stats", "ab", "--url", server.url],
        capture_output=True, text=True, timeout=60, check=True,
    )
    assert "verdict: keep_running" in out.stdout and "A " in out.stdout and "B " in out.stdout, out.stdout
    out = subprocess.run(
        [sys.executable, "-m", "modelgate", "ab-promote", "ab", "--variant", "B", "--url", server.url],
        capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0, out.stderr
    d = wait_in_service(sm, "ab")
    assert {v["VariantName"]: v["CurrentWeight"] for v in d["ProductionVariants"]} == {"A": 0.0, "B": 1.0}


def test_a_tagged_endpoint_is_registered_with_no_ab_call_first(server_factory: Any, echo_image: str) -> None:
    """The A/B subsystem is built when first needed: here, by the tagged endpoint becoming InService."""
    server = server_factory()
    sm = server.client("sagemaker")
    deploy_echo(sm, echo_image, "auto", [("A", 1.0, 1), ("B", 1.0, 1)], wait=False)
    _tagged(sm, "auto", "EpsilonGreedy")  # while Creating: registered when InService
    wait_in_service(sm, "auto")
    deadline = time.monotonic() + 15
    while "A/B experiment on auto: started" not in server.log_path.read_text():
        assert time.monotonic() < deadline, server.log_path.read_text()[-3000:]
        time.sleep(0.2)
    status, body = Api(server).post("/stats", {"endpoint_name": "auto"})
    assert status == 200 and body["strategy"] == "EpsilonGreedy", body


@pytest.mark.slow
def test_thompson_sampling_finds_the_best_variant(server_factory: Any, echo_image: str) -> None:
    server = server_factory(MODELGATE_AB_FLUSH_SECONDS="1")
    sm = server.client("sagemaker")
    deploy_echo(sm, echo_image, "bandit", [("low", 1.0, 1), ("high", 1.0, 1), ("mid", 1.0, 1)])
    _tagged(sm, "bandit", "ThompsonSampling")
    api = Api(server)
    api.post("/register", {"endpoint_name": "bandit"})
    rates = {"low": 0.3, "high": 0.7, "mid": 0.5}
    rng = random.Random(42)
    served: list[str] = []
    for i in range(5000):
        user = f"user-{i}"
        status, body = api.post("/invocation", {"endpoint_name": "bandit", "user_id": user, "data": "1",
                                                 "content_type": "text/csv"})
        assert status in (200, 201), body
        variant = body["endpoint_variant"]
        served.append(variant)
        if rng.random() < rates[variant]:
            status, body = api.post("/conversion", {"endpoint_name": "bandit", "user_id": user,
                                                     "inference_id": body["inference_id"]})
            assert status < 300, body
        if i % 250 == 249:
            time.sleep(1.2)  # let the 1 s flush and fold catch up, as real traffic spread over time would
    last = Counter(served[-1000:])
    assert last["high"] >= 850, last


def test_assignments_survive_a_kill_and_a_graceful_stop_writes_everything(
    server_factory: Any, echo_image: str
) -> None:
    """Assignments and served records are written behind (every 0.1 s): after a wait longer than that, a
    kill -9 loses none of them; a graceful stop writes what is still in memory."""
    server = server_factory(MODELGATE_AB_FLUSH_SECONDS="1")
    sm = server.client("sagemaker")
    deploy_echo(sm, echo_image, "sticky", [("A", 1.0, 1), ("B", 1.0, 1)])
    api = Api(server)
    status, body = api.post("/register", {"endpoint_name": "sticky", "strategy": "WeightedSampling"})
    assert status == 201, body
    served: dict[str, tuple[str, str]] = {}  # user -> (variant, inference id)
    for i in range(20):
        status, body = api.post("/invocation", {"endpoint_name": "sticky", "user_id": f"u{i}", "data": "1",
                                                 "content_type": "text/csv"})  # fmt: skip
        assert status == 201, body
        served[f"u{i}"] = (body["endpoint_variant"], body["inference_id"])
    assert {v for v, _ in served.values()} == {"A", "B"}
    time.sleep(0.5)  # longer than the write-behind interval
    server.kill9()
    server.start()  # the same data directory and port
    wait_in_service(sm, "sticky")
    api = Api(server)
    for user, (variant, _) in served.items():
        status, body = api.post("/invocation", {"endpoint_name": "sticky", "user_id": user, "data": "2",
                                                 "content_type": "text/csv"})  # fmt: skip
        assert (status, body["endpoint_variant"]) == (200, variant), (user, body)
    variant, inference_id = served["u0"]
    # Credited by the served record written before the kill.
    status, body = api.post("/conversion", {"endpoint_name": "sticky", "user_id": "u0", "inference_id": inference_id})
    assert (status, body["endpoint_variant"]) == (200, variant), body
    deadline = time.monotonic() + 15
    while True:  # the conversion is counted for that variant once its event file is folded
        _, stats = api.post("/stats", {"endpoint_name": "sticky"})
        conversions = {m["variant_name"]: m["conversion_count"] for m in stats["variant_metrics"]}
        if conversions[variant] == 1 or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert conversions == {variant: 1, "AB".replace(variant, ""): 0}, stats

    new_users: dict[str, str] = {}
    for i in range(20):
        status, body = api.post("/invocation", {"endpoint_name": "sticky", "user_id": f"n{i}", "data": "3",
                                                 "content_type": "text/csv"})  # fmt: skip
        new_users[f"n{i}"] = body["endpoint_variant"]
    server.stop()  # SIGTERM right after the last answer: the shutdown writes what is left
    db = sqlite3.connect(server.data_dir / "modelgate.db")
    try:
        rows = dict(db.execute("SELECT user_id, variant FROM ab_assignments WHERE user_id LIKE 'n%'").fetchall())
        served_rows = db.execute("SELECT COUNT(*) FROM ab_served WHERE endpoint_name = 'sticky'").fetchone()[0]
    finally:
        db.close()
    assert rows == new_users
    assert served_rows == 20 + 20 + 20  # before the kill, after it, before the stop
