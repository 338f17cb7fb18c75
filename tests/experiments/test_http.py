"""The REST adapter, driven in-process through its ASGI interface.

httpx (which starlette's TestClient needs) is not installed in this environment, so these tests call
the ASGI app directly with a minimal driver: a real request scope and body in, the real response
messages out. ``test_with_starlette_testclient`` covers the same app through TestClient and is skipped
when httpx is missing.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import numpy as np
import pytest
from starlette.types import ASGIApp, Message

from modelgate.experiments.assignment_cache import AssignmentCache
from modelgate.experiments.http import create_app
from modelgate.experiments.service import ExperimentService

from .fakes import FakeClock, FakeGateway, MemoryAssignmentStore, MemoryExperimentStore, RecordingEventLog

TAGS = {"ab-testing:enabled": "true", "ab-testing:strategy": "ThompsonSampling"}


class Env:
    def __init__(self) -> None:
        self.gateway = FakeGateway({"ep": [("A", 0.5), ("B", 0.5)]}, {"ep": TAGS})
        self.assignments = MemoryAssignmentStore()
        self.experiments = MemoryExperimentStore()
        self.events = RecordingEventLog()
        clock = FakeClock()
        cache = AssignmentCache(self.assignments, clock)  # not loaded: a miss reads the store
        self.service = ExperimentService(
            invoker=self.gateway, catalog=self.gateway, experiments=self.experiments,
            assignments=cache, events=self.events, clock=clock, rng=np.random.default_rng(0),
        )  # fmt: skip
        self.app = create_app(self.service, max_body_bytes=10_000)

    def post(self, path: str, body: Any, *, method: str = "POST", raw: bytes | None = None) -> tuple[int, Any]:
        data = raw if raw is not None else json.dumps(body).encode()
        status, payload = asyncio.run(call(self.app, method, path, data))
        return status, json.loads(payload) if payload else None


async def call(app: ASGIApp, method: str, path: str, body: bytes) -> tuple[int, bytes]:
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
        "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
        "headers": [(b"content-type", b"application/json"), (b"user-agent", b"notebook/1.0")],
        "client": ("10.9.8.7", 50000), "server": ("testserver", 80),
    }  # fmt: skip
    inbox: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]
    sent: list[Message] = []

    async def receive() -> Message:
        return inbox.pop(0) if inbox else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    return start["status"], b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


@pytest.fixture
def env() -> Env:
    e = Env()
    status, _ = e.post("/register", {"endpoint_name": "ep"})
    assert status == 201
    return e


def test_invocation_as_the_notebook_calls_it(env: Env) -> None:
    body = {"endpoint_name": "ep", "data": '{"instances": [1]}', "user_id": 7}  # user id as a number
    status, out = env.post("/invocation", body)
    assert status == 201
    assert set(out) == {
        "strategy", "endpoint_name", "target_variant", "endpoint_variant", "inference_id", "user_id", "predictions",
    }  # fmt: skip
    assert (out["strategy"], out["endpoint_name"], out["user_id"]) == ("ThompsonSampling", "ep", "7")
    assert out["predictions"] == {"variant": out["endpoint_variant"], "echo": '{"instances": [1]}'}
    assert env.gateway.calls[-1].body == b'{"instances": [1]}'
    event = env.events.events[-1]
    assert (event.source_ip, event.user_agent) == ("10.9.8.7", "notebook/1.0")
    status, again = env.post("/invocation", body)
    assert (status, again["endpoint_variant"]) == (200, out["endpoint_variant"])


def test_manual_and_fallback_are_202(env: Env) -> None:
    status, out = env.post("/invocation", {"endpoint_name": "ep", "data": [1, 2], "endpoint_variant": "B"})
    assert (status, out["strategy"], out["endpoint_variant"]) == (202, "Manual", "B")
    assert env.gateway.calls[-1].body == b"[1, 2]"
    env.assignments.fail = True
    status, out = env.post("/invocation", {"endpoint_name": "ep", "data": "x", "user_id": "u1"})
    assert (status, out["strategy"], out["target_variant"]) == (202, "Fallback", None)


def test_conversion_round_trip_and_reward_as_string(env: Env) -> None:
    _, served = env.post("/invocation", {"endpoint_name": "ep", "data": "x", "user_id": "u1"})
    status, out = env.post("/conversion", {"endpoint_name": "ep", "user_id": "u1", "reward": "0.5"})
    assert status == 200
    assert out == {
        "strategy": "ThompsonSampling", "endpoint_name": "ep", "endpoint_variant": served["endpoint_variant"],
        "inference_id": out["inference_id"], "user_id": "u1", "reward": 0.5,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("path", "body", "status", "code", "message"),
    [
        ("/conversion", {"endpoint_name": "ep", "user_id": "u1", "reward": 2}, 400, "InvalidReward", "reward"),
        ("/conversion", {"endpoint_name": "ep", "user_id": "u1", "reward": "lots"}, 400, "InvalidReward", "reward"),
        ("/conversion", {"endpoint_name": "ep", "user_id": "nobody"}, 404, "AssignmentNotFound", "not credited"),
        ("/stats", {"endpoint_name": "other"}, 404, "ExperimentNotFound", "Endpoint other not found"),
        ("/invocation", {"data": "x"}, 400, "InvalidRequest", "Require endpoint name in body"),
        ("/invocation", [1, 2], 400, "InvalidRequest", "Require HTTP POST with json body"),
        ("/invocation", {"endpoint_name": "ep"}, 400, "InvalidRequest", "Require data in body"),
        ("/invocation", {"endpoint_name": "nope", "data": "x"}, 400, "ValidationError", "nope"),
        ("/promote", {"endpoint_name": "ep"}, 409, "NoWinner", "keep_running"),
        ("/register", {"endpoint_name": "ep", "strategy": "Coin"}, 400, "InvalidStrategy", "Coin"),
        ("/register", {"endpoint_name": "ep", "warmup": "x"}, 400, "InvalidParameter", "integers"),
        ("/nowhere", {"endpoint_name": "ep"}, 404, "NotFound", "Not Found"),
    ],
)
def test_errors_are_json_with_a_code_and_a_message(
    env: Env, path: str, body: Any, status: int, code: str, message: str
) -> None:
    env.post("/invocation", {"endpoint_name": "ep", "data": "x", "user_id": "u1"})
    got_status, out = env.post(path, body)
    assert (got_status, out["code"]) == (status, code)
    assert message in out["message"]


def test_malformed_json_wrong_method_and_oversized_bodies(env: Env) -> None:
    assert env.post("/invocation", None, raw=b"{nope") == (
        400, {"code": "InvalidRequest", "message": "Require HTTP POST with json body"},
    )  # fmt: skip
    status, out = env.post("/stats", {"endpoint_name": "ep"}, method="GET")
    assert (status, out["code"]) == (405, "MethodNotAllowed")
    status, out = env.post("/invocation", {"endpoint_name": "ep", "data": "x" * 20_000})
    assert (status, out["code"]) == (413, "ValidationError")


def test_model_errors_keep_their_fields_and_unexpected_errors_become_500(env: Env) -> None:
    env.gateway.model_error = True
    status, out = env.post("/invocation", {"endpoint_name": "ep", "data": "x", "endpoint_variant": "A"})
    assert (status, out["code"], out["OriginalStatusCode"]) == (424, "ModelError", 500)

    async def explode(*_: object, **__: object) -> None:
        raise RuntimeError("secret internals")

    env.gateway.invoke = explode  # type: ignore[method-assign,assignment]
    status, out = env.post("/invocation", {"endpoint_name": "ep", "data": "x"})
    assert (status, out) == (500, {"code": "InternalFailure", "message": "internal error"})


def test_stats_shape(env: Env) -> None:
    env.post("/invocation", {"endpoint_name": "ep", "data": "x", "user_id": "u1"})
    status, out = env.post("/stats", {"endpoint_name": "ep"})
    assert status == 200
    assert {"endpoint_name", "strategy", "epsilon", "warmup", "variant_metrics"} <= set(out)
    assert (out["strategy"], out["epsilon"], out["warmup"], out["verdict"], out["winner"]) == (
        "ThompsonSampling", 0.1, 0, "keep_running", None,
    )  # fmt: skip
    metric = out["variant_metrics"][0]
    assert {
        "endpoint_name", "variant_name", "initial_variant_weight", "invocation_count", "conversion_count", "reward_sum",
    } <= set(metric)  # fmt: skip
    assert metric["credible_interval"] == pytest.approx([0.025, 0.975])
    assert [c["variant_name"] for c in out["comparisons"]] == ["B"]


def test_register_statuses_and_promote(env: Env) -> None:
    status, out = env.post("/register", {"endpoint_name": "ep"})
    assert (status, out["strategy"]) == (200, "ThompsonSampling")
    status, out = env.post("/register", {"endpoint_name": "ep", "strategy": "UCB1", "warmup": 10})
    assert (status, out["strategy"], out["warmup"]) == (201, "UCB1", 10)
    assert [v["variant_name"] for v in out["endpoint_variants"]] == ["A", "B"]
    env.gateway.tag_map["ep"] = {}
    assert env.post("/register", {"endpoint_name": "ep"}) == (304, None)
    status, out = env.post("/promote", {"endpoint_name": "ep", "endpoint_variant": "A"})
    assert (status, out["weights"]) == (200, {"A": 1.0, "B": 0.0})


def test_with_starlette_testclient(env: Env) -> None:
    pytest.importorskip("httpx2", reason="starlette's TestClient needs httpx2, which is not installed")
    from starlette.testclient import TestClient

    with TestClient(env.app) as client:
        response = client.post("/invocation", json={"endpoint_name": "ep", "data": "x", "user_id": "u1"})
        assert response.status_code == 201
        assert client.post("/conversion", json={"endpoint_name": "ep", "user_id": "u1"}).status_code == 200
