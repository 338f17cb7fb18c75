"""The REST adapter, driven in-process through its ASGI interface.

httpx (which starlette's TestClient needs) is not installed in this environment, so these tests call
the ASGI app directly with a minimal driver: a real request scope and body in, the real response
messages out. ``test_with_starlette_testclient`` covers the same app through TestClient and is skipped
when httpx is missing.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import numpy as np
import pytest

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

    def post(
        self,
        path: str,
        body: Any,
        *,
        method: str = "POST",
        raw: bytes | None = None,
        headers: list[tuple[bytes, bytes]] | None = None,
        query: bytes = b"",
    ) -> tuple[int, Any]:
        data = raw if raw is not None else json.dumps(body).encode()
        status, payload = asyncio.run(call(self.app, method, path, data, headers, query))
        return status, json.loads(payload) if payload else None


async def call(
    app: Any,
    method: str,
    path: str,
    body: bytes,
    headers: list[tuple[bytes, bytes]] | None = None,
    query: bytes = b"",
) -> tuple[int, bytes]:
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
        "path": path, "raw_path": path.encode(), "query_string": query, "root_path": "",
        "headers": headers if headers is not None else [
            (b"content-type", b"application/json"), (b"user-agent", b"notebook/1.0"),
            (b"x-amz-date", b"20260101T000000Z"),
        ],
        "client": ("10.9.8.7", 50000), "server": ("testserver", 80),
    }  # fmt: skip
    inbox: list[dict[str, Any]] = [{"type": "http.request", "body": body, "more_body": False}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return inbox.pop(0) if inbox else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
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
    conversion = {"endpoint_name": "ep", "user_id": "u1", "inference_id": served["inference_id"], "reward": "0.5"}
    status, out = env.post("/conversion", conversion)
    assert status == 200
    assert out == {
        "strategy": "ThompsonSampling", "endpoint_name": "ep", "endpoint_variant": served["endpoint_variant"],
        "inference_id": served["inference_id"], "user_id": "u1", "reward": 0.5,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("path", "body", "status", "code", "message"),
    [
        ("/conversion", {"endpoint_name": "ep", "user_id": "u1", "reward": 2}, 400, "InvalidReward", "reward"),
        ("/conversion", {"endpoint_name": "ep", "user_id": "u1", "reward": "lots"}, 400, "InvalidReward", "reward"),
        (
            "/conversion",
            {"endpoint_name": "ep", "user_id": "u1"},
            400,
            "InvalidRequest",
            "inference_id and the user_id",
        ),
        ("/conversion", {"endpoint_name": "ep", "endpoint_variant": "A"}, 400, "InvalidRequest", "any variant"),
        ("/conversion", {"endpoint_name": "ep", "user_id": "u1", "inference_id": "x"}, 404, "InferenceNotFound", "x"),
        ("/stats", {"endpoint_name": "other"}, 404, "ExperimentNotFound", "Endpoint other not found"),
        ("/invocation", {"data": "x"}, 400, "InvalidRequest", "Require endpoint name in body"),
        ("/invocation", [1, 2], 400, "InvalidRequest", "Require HTTP POST with json body"),
        ("/invocation", {"endpoint_name": "ep"}, 400, "InvalidRequest", "Require data in body"),
        ("/invocation", {"endpoint_name": "nope", "data": "x"}, 400, "ValidationError", "nope"),
        ("/promote", {"endpoint_name": "ep"}, 409, "NoWinner", "keep_running"),
        ("/register", {"endpoint_name": "ep", "strategy": "Coin"}, 400, "InvalidStrategy", "Coin"),
        ("/register", {"endpoint_name": "ep", "warmup": "x"}, 400, "InvalidParameter", "integers"),
        # FZ15: beyond the store's 64-bit integers (a 500 when written)
        ("/register", {"endpoint_name": "ep", "warmup": 2**63}, 400, "InvalidParameter", "warmup must be in [0, 1"),
        ("/register", {"endpoint_name": "ep", "horizon": 10**400}, 400, "InvalidParameter", "horizon must be in [1,"),
        # FZ14: a reward beyond the float range (float() raised OverflowError)
        ("/conversion", {"endpoint_name": "ep", "reward": 10**400}, 400, "InvalidReward", "beyond the float range"),
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
    status, out = env.post("/stats", {"endpoint_name": "ep"}, method="DELETE")
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
        inference = response.json()["inference_id"]
        converted = client.post("/conversion", json={"endpoint_name": "ep", "user_id": "u1", "inference_id": inference})
        assert converted.status_code == 200


JSON = (b"content-type", b"application/json")
ADMIN = (b"x-amz-date", b"20260101T000000Z")


@pytest.mark.parametrize("path", ["/invocation", "/conversion", "/register", "/promote"])
@pytest.mark.parametrize(
    "content_type", [b"text/plain", b"application/x-www-form-urlencoded", b"multipart/form-data", None]
)
def test_d9_ab_state_changing_routes_refuse_cors_simple_requests(
    env: Env, path: str, content_type: bytes | None
) -> None:
    """What a web page can send cross-origin without a preflight is refused before anything runs."""
    _, served = env.post("/invocation", {"endpoint_name": "ep", "data": "x", "user_id": "u1"})
    before = len(env.events.events), list(env.gateway.weight_updates)
    body = {"endpoint_name": "ep", "data": "x", "user_id": "u1", "inference_id": served["inference_id"],
            "endpoint_variant": "A"}  # fmt: skip
    headers = [ADMIN, (b"user-agent", b"browser")] + ([(b"content-type", content_type)] if content_type else [])
    status, out = env.post(path, body, headers=headers)
    assert (status, out["code"]) == (415, "UnsupportedMediaType")
    assert "requires Content-Type: application/json" in out["message"]
    assert (len(env.events.events), env.gateway.weight_updates) == before


@pytest.mark.parametrize("path", ["/register", "/promote"])
def test_d5b_administrative_routes_need_an_aws_protocol_header(env: Env, path: str) -> None:
    status, out = env.post(path, {"endpoint_name": "ep", "endpoint_variant": "A"}, headers=[JSON])
    assert (status, out["code"]) == (403, "AccessDenied")
    assert "administrative" in out["message"] and env.gateway.weight_updates == []
    for header in (b"authorization", b"x-amz-date", b"x-amz-target"):
        status, _ = env.post(path, {"endpoint_name": "ep", "endpoint_variant": "A"}, headers=[JSON, (header, b"x")])
        assert status in (200, 201), header
        env.post(
            "/register", {"endpoint_name": "ep", "strategy": "UCB1" if header == b"authorization" else "EpsilonGreedy"}
        )


def test_d9_ab_stats_is_read_only_and_needs_no_json_content_type(env: Env) -> None:
    status, out = env.post("/stats", {"endpoint_name": "ep"}, headers=[(b"content-type", b"text/plain")])
    assert (status, out["endpoint_name"]) == (200, "ep")
    status, out = env.post("/stats", None, method="GET", raw=b"", headers=[], query=b"endpoint_name=ep")
    assert (status, [m["variant_name"] for m in out["variant_metrics"]]) == (200, ["A", "B"])
    status, out = env.post("/stats", None, method="GET", raw=b"", headers=[])
    assert (status, out["code"]) == (400, "InvalidRequest")


def test_d5_stats_show_errors_per_variant(env: Env) -> None:
    _, out = env.post("/stats", {"endpoint_name": "ep"})
    assert [m["error_count"] for m in out["variant_metrics"]] == [0, 0]


def test_d16_a_client_that_disconnects_mid_body_is_logged_once_without_a_traceback(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    scope = {
        "type": "http", "method": "POST", "path": "/invocation", "query_string": b"",
        "headers": [JSON], "client": ("10.9.8.7", 50000),
    }  # fmt: skip
    inbox: list[dict[str, Any]] = [
        {"type": "http.request", "body": b'{"endpoint_name": "ep", "da', "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return inbox.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    with caplog.at_level(logging.DEBUG):
        asyncio.run(env.app(scope, receive, send))
    assert sent == [] and env.gateway.calls == []
    (record,) = [r for r in caplog.records if "experiments" in r.name]
    assert record.levelno == logging.INFO and record.exc_info is None
    assert "went away before its body was complete" in record.getMessage()
