"""A/B experiments under faults and forgery, through a real server (fault-and-attack review D5, D5b, D7, D9,
D16): a failing variant, forged and repeated conversions, CORS-simple requests, a kill -9 right after a
burst of acknowledged events, and clients that go away mid-body."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from typing import Any

from tests.e2e.conftest import ServerProcess, wait_in_service

JSON = {"Content-Type": "application/json"}
ADMIN = {**JSON, "X-Amz-Date": "20260101T000000Z"}


class Api:
    def __init__(self, server: ServerProcess) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)

    def post(self, path: str, payload: Any, headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
        self.conn.request("POST", path, json.dumps(payload), JSON if headers is None else headers)
        resp = self.conn.getresponse()
        return resp.status, json.loads(resp.read() or b"{}")

    def stats(self, name: str) -> dict[str, dict[str, Any]]:
        status, body = self.post("/stats", {"endpoint_name": name})
        assert status == 200, body
        return {m["variant_name"]: m for m in body["variant_metrics"]}


def deploy(sm: Any, image: str, name: str, variants: dict[str, dict[str, str]]) -> None:
    """One echo model per variant, each with its own environment (``ECHO_ALWAYS_STATUS`` makes one fail)."""
    pvs = []
    for variant, env in variants.items():
        sm.create_model(
            ModelName=f"{name}-{variant}",
            PrimaryContainer={"Image": image, "Environment": {"ECHO_TAG": variant, **env}},
        )
        pvs.append({"VariantName": variant, "ModelName": f"{name}-{variant}", "InitialInstanceCount": 1,
                    "InstanceType": "ml.m5.large", "InitialVariantWeight": 1.0})  # fmt: skip
    sm.create_endpoint_config(EndpointConfigName=f"{name}-config", ProductionVariants=pvs)
    sm.create_endpoint(EndpointName=name, EndpointConfigName=f"{name}-config")
    wait_in_service(sm, name)


def weights(sm: Any, name: str) -> dict[str, float]:
    return {v["VariantName"]: v["CurrentWeight"] for v in sm.describe_endpoint(EndpointName=name)["ProductionVariants"]}


def register(api: Api, name: str, strategy: str) -> None:
    status, body = api.post("/register", {"endpoint_name": name, "strategy": strategy}, ADMIN)
    assert status in (200, 201), body


def wait_counts(api: Api, name: str, done: Any, timeout: float = 30) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        stats = api.stats(name)
        if done(stats) or time.monotonic() > deadline:
            return stats
        time.sleep(0.3)


def invoke(api: Api, name: str, user: str) -> tuple[int, dict[str, Any]]:
    return api.post("/invocation", {"endpoint_name": name, "user_id": user, "data": "1", "content_type": "text/csv"})


def test_d5_a_variant_that_always_fails_is_counted_and_loses(server_factory: Any, echo_image: str) -> None:
    server = server_factory(MODELGATE_AB_FLUSH_SECONDS="1")
    sm = server.client("sagemaker")
    deploy(sm, echo_image, "ep-ab", {"good": {}, "bad": {"ECHO_ALWAYS_STATUS": "500"}})
    api = Api(server)
    register(api, "ep-ab", "ThompsonSampling")
    failed = answered = forged = converted = 0
    for i in range(120):
        status, body = invoke(api, "ep-ab", f"u{i}")
        conversion = {"endpoint_name": "ep-ab", "user_id": f"u{i}", "inference_id": body.get("inference_id")}
        if status == 424:  # the failing variant: ModelError, passed through
            assert body["code"] == "ModelError", body
            failed += 1
            continue
        assert status in (200, 201), body
        answered += 1
        if i % 2 == 0:
            status, out = api.post("/conversion", conversion)
            assert (status, out["endpoint_variant"]) == (200, "good"), out
            converted += 1
    assert failed > 0 and answered > 0
    # A conversion for a user who only ever got errors: the review's forgery (credited to "bad" before).
    for i in range(120):
        status, body = invoke(api, "ep-ab", f"u{i}")  # sticky: the same variant as before
        if status == 424:
            # the server does not return the failed inference's id; the caller may have sent one of its own
            own = {"endpoint_name": "ep-ab", "user_id": f"u{i}", "data": "1", "inference_id": f"mine-{i}"}
            status, body = api.post("/invocation", own)
            assert status == 424
            status, out = api.post("/conversion", {"endpoint_name": "ep-ab", "user_id": f"u{i}",
                                                   "inference_id": f"mine-{i}"})  # fmt: skip
            assert (status, out.get("code")) == (409, "InferenceFailed"), out
            forged += 1
    failures = failed + 2 * forged
    stats = wait_counts(api, "ep-ab", lambda s: s["bad"]["invocation_count"] >= failures)
    bad, good = stats["bad"], stats["good"]
    assert (bad["invocation_count"], bad["error_count"], bad["conversion_count"]) == (failures, failures, 0), stats
    assert (good["error_count"], good["conversion_count"]) == (0, converted), stats
    assert bad["prob_best"] < 0.05, stats
    sent_to_bad = sum(invoke(api, "ep-ab", f"new{i}")[0] == 424 for i in range(100))
    assert sent_to_bad < 20, sent_to_bad  # 61-68 % before the fix


def test_d5b_conversions_cannot_be_forged_repeated_or_id_less(server_factory: Any, echo_image: str) -> None:
    server = server_factory(MODELGATE_AB_FLUSH_SECONDS="1")
    sm = server.client("sagemaker")
    deploy(sm, echo_image, "ep-ab", {"a": {}, "b": {}})
    api = Api(server)
    register(api, "ep-ab", "WeightedSampling")
    _, alice = invoke(api, "ep-ab", "alice")
    _, bob = invoke(api, "ep-ab", "bob")
    mine = {"endpoint_name": "ep-ab", "user_id": "alice", "inference_id": alice["inference_id"]}
    cases = [
        ({"endpoint_name": "ep-ab", "user_id": "alice", "inference_id": bob["inference_id"]}, 403,
         "InferenceUserMismatch"),
        ({"endpoint_name": "ep-ab", "user_id": "bob", "reward": 1}, 400, "InvalidRequest"),
        ({"endpoint_name": "ep-ab", "endpoint_variant": "b", "reward": 1}, 400, "InvalidRequest"),
        ({"endpoint_name": "ep-ab", "user_id": "alice", "inference_id": "made-up"}, 404, "InferenceNotFound"),
    ]  # fmt: skip
    for body, status, code in cases:
        got, out = api.post("/conversion", body)
        assert (got, out.get("code")) == (status, code), (body, out)
    assert api.post("/conversion", mine)[0] == 200
    for _ in range(5):
        got, out = api.post("/conversion", mine)
        assert (got, out.get("code")) == (409, "AlreadyConverted"), out
    got, out = api.post("/promote", {"endpoint_name": "ep-ab", "endpoint_variant": "b"})  # JSON, no AWS header
    assert (got, out.get("code")) == (403, "AccessDenied"), out
    stats = wait_counts(api, "ep-ab", lambda s: sum(m["invocation_count"] for m in s.values()) == 2)
    assert {v: m["conversion_count"] for v, m in stats.items()} == {
        alice["endpoint_variant"]: 1, "ab".replace(alice["endpoint_variant"], ""): 0,
    }, stats  # fmt: skip
    weights = {
        v["VariantName"]: v["CurrentWeight"] for v in sm.describe_endpoint(EndpointName="ep-ab")["ProductionVariants"]
    }
    assert weights == {"a": 1.0, "b": 1.0}


def test_d9_ab_cors_simple_requests_change_nothing(server_factory: Any, echo_image: str) -> None:
    server = server_factory(MODELGATE_AB_FLUSH_SECONDS="1")
    sm = server.client("sagemaker")
    deploy(sm, echo_image, "ep-ab", {"a": {}, "b": {}})
    api = Api(server)
    register(api, "ep-ab", "WeightedSampling")
    _, served = invoke(api, "ep-ab", "u1")
    forms = {"Content-Type": "text/plain", "X-Amz-Date": "20260101T000000Z"}
    conversion = {"endpoint_name": "ep-ab", "user_id": "u1", "inference_id": served["inference_id"]}
    for path, body in (("/conversion", conversion), ("/promote", {"endpoint_name": "ep-ab", "endpoint_variant": "b"}),
                       ("/invocation", {"endpoint_name": "ep-ab", "data": "1", "user_id": "u2"})):  # fmt: skip
        got, out = api.post(path, body, forms)
        assert (got, out.get("code")) == (415, "UnsupportedMediaType"), (path, out)
        assert "application/json" in out["message"]
        # From a browser page (an Origin) the HTTP front refuses it before the A/B API sees it (D9).
        got, out = api.post(path, body, {**forms, "Origin": "http://attacker.example"})
        assert (got, out.get("__type")) == (403, "AccessDeniedException"), (path, out)
    stats = wait_counts(api, "ep-ab", lambda s: sum(m["invocation_count"] for m in s.values()) == 1, timeout=10)
    assert sum(m["invocation_count"] for m in stats.values()) == 1
    assert sum(m["conversion_count"] for m in stats.values()) == 0
    weights = {
        v["VariantName"]: v["CurrentWeight"] for v in sm.describe_endpoint(EndpointName="ep-ab")["ProductionVariants"]
    }
    assert weights == {"a": 1.0, "b": 1.0}
    assert api.post("/conversion", conversion)[0] == 200  # the same conversion, as JSON


def test_d7_acknowledged_events_survive_a_kill_9_and_count_exactly_once(server_factory: Any, echo_image: str) -> None:
    server = server_factory()  # the default flush: 60 s, so every event of the burst is still unflushed
    sm = server.client("sagemaker")
    deploy(sm, echo_image, "ep-ab2", {"a": {}, "b": {}})
    register(Api(server), "ep-ab2", "ThompsonSampling")
    acked: dict[str, list[int]] = {"a": [0, 0], "b": [0, 0]}  # variant -> [invocations, conversions]
    lock = threading.Lock()
    stop = time.monotonic() + 3

    def burst(worker: int) -> None:
        api = Api(server)
        i = 0
        while time.monotonic() < stop:
            user = f"w{worker}-u{i}"
            status, body = invoke(api, "ep-ab2", user)
            assert status in (200, 201), body
            with lock:
                acked[body["endpoint_variant"]][0] += 1
            status, out = api.post("/conversion", {"endpoint_name": "ep-ab2", "user_id": user,
                                                   "inference_id": body["inference_id"]})  # fmt: skip
            assert status == 200, out
            with lock:
                acked[out["endpoint_variant"]][1] += 1
            i += 1

    threads = [threading.Thread(target=burst, args=(w,)) for w in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    server.kill9()  # right after the last acknowledged answer
    total = sum(n for n, _ in acked.values())
    assert total > 30
    for _ in range(2):  # and after a second restart: nothing counted twice
        server.start()
        api = Api(server)
        stats = wait_counts(api, "ep-ab2", lambda s: sum(m["invocation_count"] for m in s.values()) >= total)
        got = {v: [m["invocation_count"], m["conversion_count"]] for v, m in stats.items()}
        assert got == acked, (got, acked)
        server.stop()


def test_d16_a_client_gone_mid_body_is_logged_once_at_info_without_a_traceback(
    server_factory: Any, echo_image: str
) -> None:
    server = server_factory()
    sm = server.client("sagemaker")
    deploy(sm, echo_image, "ep-ab", {"a": {}})
    register(Api(server), "ep-ab", "WeightedSampling")
    for path in ("/invocation", "/conversion", "/promote"):
        with socket.create_connection(("127.0.0.1", server.port)) as s:
            head = f"POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            s.sendall(f'{head}X-Amz-Date: 20260101T000000Z\r\nContent-Length: 1000\r\n\r\n{{"endpoint_name": '.encode())
            time.sleep(0.2)
    time.sleep(0.5)
    assert invoke(Api(server), "ep-ab", "u1")[0] in (200, 201)  # still serving
    log = server.log_path.read_text()
    assert "Traceback" not in log and "ClientDisconnect" not in log and " ERROR " not in log, log[-3000:]
    gone = [line for line in log.splitlines() if "went away before its body was complete" in line]
    assert len(gone) == 3 and all(" INFO " in line for line in gone), gone
