"""The HTTP front under attack and faults (the review's D9, D10, D12, D13, D14), over raw sockets.

D9: a Host naming another server (DNS rebinding) and a browser's cross-origin state-changing request
(CSRF: a form post of PutMetricData, a ``text/plain`` POST) are refused and not executed; real SDK
clients (boto3 over every CloudWatch protocol, signed or not, and the AWS CLI) keep working; CORS only
for configured origins. D10: header block, header count and URL limits, a header deadline for slow and
silent connections, a connection limit. D12: CONNECT and an overlong URL get 400/414, no traceback.
D13: a body cut short by a disconnect is not executed. D14: pipelined requests before a malformed one
are answered, and a half-closed connection gets its answers.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
from typing import Any

import boto3
import botocore.model
import pytest
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.e2e.conftest import ServerProcess, deploy_echo
from tests.e2e.test_http_front import _Responses, exchange, invocation

Answer = tuple[int, dict[bytes, list[bytes]], bytes]


def _one(port: int, raw: bytes) -> tuple[Answer, bool]:
    answers, closed = exchange(port, raw, 1)
    return answers[0], closed


def _error(answer: Answer) -> tuple[int, str, str]:
    """Status, ``__type`` and message of a JSON error answer (its text, if it is not one)."""
    status, headers, body = answer
    try:
        payload = json.loads(body)
        code, message = payload["__type"], payload["message"]
    except (ValueError, KeyError, TypeError):
        return status, "", body[:300].decode("latin-1")
    assert headers.get(b"x-amzn-errortype") == [code.encode()], headers
    return status, code, message


def _healthz(port: int, timeout: float = 5) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=timeout) as r:
        return int(r.status)


def _control(target: str, body: dict[str, Any], host: bytes = b"localhost", extra: bytes = b"") -> bytes:
    data = json.dumps(body).encode()
    return (
        b"POST / HTTP/1.1\r\nHost: " + host + b"\r\nX-Amz-Target: SageMaker." + target.encode() + b"\r\n"
        b"Content-Type: application/x-amz-json-1.1\r\n" + extra + b"Content-Length: %d\r\n\r\n" % len(data) + data
    )


_FORM = (
    b"Action=PutMetricData&Version=2010-08-01&Namespace=CSRF&MetricData.member.1.MetricName=x"
    b"&MetricData.member.1.Value=1"
)


def _form_post(extra: bytes) -> bytes:
    return (
        b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        + extra
        + b"Content-Length: %d\r\n\r\n" % len(_FORM)
        + _FORM
    )


# --------------------------------------------------------------------------------------------- D9


def test_d9_a_foreign_host_is_refused_and_nothing_runs(server: ServerProcess, sm: Any) -> None:
    model = {"ModelName": "rebound", "PrimaryContainer": {"Image": "xgboost", "ModelDataUrl": "file:///tmp"}}
    for host in (b"attacker.example", b"attacker.example:%d" % server.port, b"127.1", b"localhost:x"):
        answer, closed = _one(server.port, _control("CreateModel", model, host=host))
        status, code, message = _error(answer)
        assert (status, code) == (400, "HostNotAllowed") and closed, answer
        assert "is not a name of this server" in message and "MODELGATE_ALLOWED_HOSTS" in message
    answer, _ = _one(server.port, invocation(b"x").replace(b"Host: localhost", b"Host: attacker.example"))
    assert _error(answer)[:2] == (400, "HostNotAllowed")
    answer, _ = _one(server.port, _control("ListModels", {}, host=b"a.example", extra=b"Host: localhost\r\n"))
    assert _error(answer)[:2] == (400, "BadRequest")  # two Host headers
    assert sm.list_models()["Models"] == []
    # localhost, IP literals (a rebinding page cannot have one as its origin) and no Host at all are served
    for host in (b"localhost", b"LOCALHOST:%d" % server.port, b"127.0.0.1:%d" % server.port, b"[::1]:1", b"10.1.2.3"):
        answer, _ = _one(server.port, _control("ListModels", {}, host=host))
        assert answer[0] == 200, (host, answer)
    answer, _ = _one(server.port, b"GET /healthz HTTP/1.0\r\n\r\n")
    assert answer[0] == 200


def test_d9_allowed_hosts_and_cors_origins_are_settings(server_factory: Any) -> None:
    server = server_factory(
        MODELGATE_ALLOWED_HOSTS='["mg.example"]', MODELGATE_CORS_ALLOWED_ORIGINS='["http://localhost:3000"]'
    )
    answer, _ = _one(server.port, _control("ListModels", {}, host=b"mg.example:8080"))
    assert answer[0] == 200
    preflight = (
        b"OPTIONS / HTTP/1.1\r\nHost: localhost\r\nOrigin: http://localhost:3000\r\n"
        b"Access-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: x-amz-target, content-type\r\n\r\n"
    )
    allowed = _control("ListModels", {}, extra=b"Origin: http://localhost:3000\r\n")
    answers, closed = exchange(server.port, preflight + allowed, 2)
    (status, headers, _), (status2, headers2, body2) = answers
    assert status == 204 and headers[b"access-control-allow-origin"] == [b"http://localhost:3000"]
    assert headers[b"access-control-allow-headers"] == [b"x-amz-target, content-type"]
    assert b"POST" in headers[b"access-control-allow-methods"][0]
    assert status2 == 200 and headers2[b"access-control-allow-origin"] == [b"http://localhost:3000"]
    assert b"x-amzn-requestid" in headers2[b"access-control-expose-headers"][0] and not closed
    assert json.loads(body2) == {"Models": []}
    answer, _ = _one(server.port, preflight.replace(b"localhost:3000", b"attacker.example"))
    status, code, message = _error(answer)
    assert (status, code) == (403, "AccessDeniedException") and "MODELGATE_CORS_ALLOWED_ORIGINS" in message


def test_d9_browser_requests_that_change_state_are_refused(server: ServerProcess) -> None:
    cw = server.client("cloudwatch")
    # A form post from a page of another origin: CORS-simple, so the browser sends it without asking.
    answer, closed = _one(server.port, _form_post(b"Origin: http://attacker.example\r\n"))
    status, code, message = _error(answer)
    assert (status, code) == (403, "AccessDeniedException") and closed
    assert message.startswith("A browser page of origin http://attacker.example may not send POST requests")
    answer, _ = _one(server.port, _form_post(b"Origin: null\r\n"))  # a sandboxed page or a file
    assert answer[0] == 403
    answer, _ = _one(server.port, _form_post(b"Sec-Fetch-Site: cross-site\r\n"))  # a browser that left Origin out
    assert _error(answer)[:2] == (403, "AccessDeniedException")
    # Without any browser header, a form still lacks every header an AWS SDK sends.
    answer, _ = _one(server.port, _form_post(b""))
    assert answer[0] == 403 and b"<Code>MissingAuthenticationToken</Code>" in answer[2]
    assert b"amz-sdk-invocation-id" in answer[2]
    # text/plain POSTs: InvokeEndpoint, the A/B API; and CBOR posted as text/plain.
    plain = invocation(b"0.5,0.5").replace(
        b"Content-Type: text/plain\r\n", b"Content-Type: text/plain\r\nOrigin: http://a.example\r\n"
    )
    answer, _ = _one(server.port, plain)
    assert _error(answer)[:2] == (403, "AccessDeniedException")
    promote = b'{"endpoint_name":"e","variant_name":"v"}'
    answer, _ = _one(
        server.port,
        b"POST /promote HTTP/1.1\r\nHost: localhost\r\nOrigin: http://a.example\r\nContent-Type: text/plain\r\n"
        b"Content-Length: %d\r\n\r\n" % len(promote) + promote,
    )
    assert _error(answer)[:2] == (403, "AccessDeniedException")
    cbor = b"\xa1iNamespacedCSRF"
    answer, _ = _one(
        server.port,
        b"POST /service/GraniteServiceVersion20100801/operation/PutMetricData HTTP/1.1\r\nHost: localhost\r\n"
        b"Content-Type: text/plain\r\nContent-Length: %d\r\n\r\n" % len(cbor) + cbor,
    )
    assert answer[0] == 400 and b"smithy-protocol: rpc-v2-cbor" in answer[2]
    # Reads are not refused (a page cannot read the answer without CORS), and same-origin is fine.
    answer, _ = _one(server.port, b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nOrigin: http://a.example\r\n\r\n")
    assert answer[0] == 200 and b"access-control-allow-origin" not in answer[1]
    answer, _ = _one(server.port, _control("ListModels", {}, extra=b"Sec-Fetch-Site: same-origin\r\n"))
    assert answer[0] == 200
    assert cw.list_metrics(Namespace="CSRF")["Metrics"] == []


@pytest.mark.parametrize("protocol", ["query", "json", "smithy-rpc-v2-cbor"])
def test_d9_sdk_clients_still_work(server: ServerProcess, protocol: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(botocore.model, "PRIORITY_ORDERED_SUPPORTED_PROTOCOLS", (protocol,))
    for signed in (True, False):
        cw = boto3.client(
            "cloudwatch", endpoint_url=server.url, region_name="us-east-1", aws_access_key_id="x",
            aws_secret_access_key="x", config=Config(signature_version=None if signed else UNSIGNED),
        )  # fmt: skip
        assert cw.meta.service_model.resolved_protocol == protocol
        cw.put_metric_data(Namespace=f"SDK/{signed}", MetricData=[{"MetricName": "m", "Value": 1.0}])
        assert [m["MetricName"] for m in cw.list_metrics(Namespace=f"SDK/{signed}")["Metrics"]] == ["m"]
        with pytest.raises(ClientError) as caught:
            cw.describe_alarms(MaxRecords=500)
        assert caught.value.response["Error"]["Code"] == "ValidationError"  # errors still parse
    if protocol == "json" and shutil.which("aws"):  # the AWS CLI (it speaks JSON to CloudWatch)
        env = {**os.environ, "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x", "AWS_DEFAULT_REGION": "us-east-1"}
        env.pop("PYTHONPATH", None)
        base = ["aws", "--endpoint-url", server.url, "cloudwatch"]
        put = [*base, "put-metric-data", "--namespace", "CLI", "--metric-name", "m", "--value", "2"]
        subprocess.run(put, env=env, check=True, capture_output=True, timeout=60)
        listing = [*base, "list-metrics", "--namespace", "CLI"]
        listed = subprocess.run(listing, env=env, check=True, capture_output=True, timeout=60)
        assert json.loads(listed.stdout)["Metrics"][0]["MetricName"] == "m"


# --------------------------------------------------------------------------------------------- D10


def test_d10_a_64_mb_header_is_refused_at_once_while_others_are_served(server: ServerProcess) -> None:
    result: dict[str, Any] = {}

    def send_big_header() -> None:
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
            started = time.monotonic()
            try:
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Big: " + b"a" * (64 << 20) + b"\r\n\r\n")
            except OSError as exc:  # the server may close once the refusal is out
                result["send_error"] = repr(exc)
            r = _Responses()
            try:
                while not r.done and (data := s.recv(65536)):
                    r.parser.feed_data(data)
            except OSError as exc:
                result["recv_error"] = repr(exc)
            result["answers"] = r.done
            result["seconds"] = time.monotonic() - started

    thread = threading.Thread(target=send_big_header)
    thread.start()
    worst = 0.0
    while thread.is_alive():
        started = time.monotonic()
        assert _healthz(server.port, timeout=30) == 200
        worst = max(worst, time.monotonic() - started)
        time.sleep(0.05)
    thread.join()
    [answer] = result["answers"]
    status, code, message = _error(answer)
    assert (status, code) == (431, "RequestHeaderFieldsTooLarge"), result
    assert "more than 65536 bytes" in message and "MODELGATE_MAX_HEADER_BYTES" in message
    assert result["seconds"] < 5.0 and worst < 1.5, result  # sending 64 MB takes most of it; the machine is shared


def test_d10_header_count_and_url_limits(server: ServerProcess) -> None:
    many = b"".join(b"X-H%d: v\r\n" % i for i in range(101))
    answer, closed = _one(server.port, b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n" + many + b"\r\n")
    status, code, message = _error(answer)
    assert (status, code) == (431, "RequestHeaderFieldsTooLarge") and closed
    assert "more than 100 header fields" in message
    answer, _ = _one(server.port, b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n" + many)  # the head not ended
    assert _error(answer)[:2] == (431, "RequestHeaderFieldsTooLarge")
    big = b"X-Big: " + b"a" * 70_000 + b"\r\n"  # one read: counted once the headers are complete
    answer, _ = _one(server.port, b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n" + big + b"\r\n")
    assert _error(answer)[:2] == (431, "RequestHeaderFieldsTooLarge")
    answer, _ = _one(server.port, b"GET /healthz?" + b"a" * 9000 + b" HTTP/1.1\r\nHost: localhost\r\n\r\n")
    status, code, message = _error(answer)
    assert (status, code) == (414, "UriTooLong") and "longer than 8192 bytes" in message
    # Just under the limits is served.
    ok = b"".join(b"X-H%d: v\r\n" % i for i in range(98))
    answer, _ = _one(server.port, b"GET /healthz?" + b"a" * 8000 + b" HTTP/1.1\r\nHost: localhost\r\n" + ok + b"\r\n")
    assert answer[0] == 200


def test_d10_slow_and_silent_connections_are_closed_after_the_header_timeout(server_factory: Any) -> None:
    server = server_factory(MODELGATE_HEADER_TIMEOUT_SECONDS="2")
    slow = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(200)]
    silent = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(200)]
    for s in slow:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n")
    answers: dict[socket.socket, bytes] = {s: b"" for s in slow + silent}
    open_ = set(answers)
    started = time.monotonic()
    while open_ and time.monotonic() - started < 8:
        for s in list(open_):
            if s in slow:
                with contextlib.suppress(OSError):
                    s.send(b"X")  # slowloris: one header byte at a time
        readable, _, _ = select.select(list(open_), [], [], 0.5)
        for s in readable:
            try:
                data = s.recv(4096)
            except OSError:
                data = b""
            answers[s] += data
            if not data:
                open_.discard(s)
        assert _healthz(server.port) == 200  # others are served all along
    elapsed = time.monotonic() - started
    for s in answers:
        s.close()
    assert not open_, f"{len(open_)} connections still open after {elapsed:.1f} s"
    assert 1.5 < elapsed < 6
    assert all(answers[s].startswith(b"HTTP/1.1 408 Request Timeout\r\n") for s in slow)
    assert b"MODELGATE_HEADER_TIMEOUT_SECONDS" in answers[slow[0]]
    assert all(answers[s] == b"" for s in silent)  # nothing was asked: closed without an answer


def test_d10_connections_beyond_the_limit_get_503(server_factory: Any) -> None:
    server = server_factory(MODELGATE_MAX_CONNECTIONS="10")
    held = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(10)]
    time.sleep(0.5)  # accepted and counted
    answer, closed = _one(server.port, b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
    status, code, message = _error(answer)
    assert (status, code) == (503, "ServiceUnavailable") and closed
    assert "10 connections open, its limit (MODELGATE_MAX_CONNECTIONS)" in message
    for s in held[:5]:
        s.close()
    time.sleep(0.5)
    assert _healthz(server.port) == 200
    for s in held[5:]:
        s.close()


# --------------------------------------------------------------------------------------------- D12


def test_d12_connect_and_an_overlong_url_get_400_and_414_without_a_traceback(server: ServerProcess) -> None:
    answer, closed = _one(server.port, b"CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: localhost\r\n\r\n")
    status, code, message = _error(answer)
    assert (status, code) == (400, "BadRequest") and closed and "CONNECT is not supported" in message
    answer, _ = _one(server.port, b"GET /healthz?" + b"a" * 70_000 + b" HTTP/1.1\r\nHost: localhost\r\n\r\n")
    assert _error(answer)[:2] == (414, "UriTooLong")
    answer, _ = _one(server.port, b"GET 127.0.0.1:22 HTTP/1.1\r\nHost: localhost\r\n\r\n")  # authority form
    assert answer[0] == 400
    time.sleep(0.2)
    assert "Traceback" not in server.log() and " ERROR " not in server.log()


# --------------------------------------------------------------------------------------------- D13


def test_d13_a_create_model_cut_short_by_a_disconnect_is_not_executed(server: ServerProcess, sm: Any) -> None:
    body = json.dumps({"ModelName": "trunc", "PrimaryContainer": {"Image": "xgboost"}})
    head = b"POST / HTTP/1.1\r\nHost: localhost\r\nX-Amz-Target: SageMaker.CreateModel\r\nContent-Length: %d\r\n\r\n"
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        s.sendall(head % (len(body) + 500) + body.encode())  # a valid JSON prefix, 500 bytes short
        time.sleep(0.5)
    time.sleep(0.5)
    with pytest.raises(ClientError) as caught:
        sm.describe_model(ModelName="trunc")
    assert caught.value.response["Error"]["Code"] == "ValidationException"
    # Half-closed after a part of the body: not executed either; after the whole body: executed and answered.
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(head % (len(body) + 500) + body.encode())
        s.shutdown(socket.SHUT_WR)
        assert s.recv(100) == b""
    assert sm.list_models()["Models"] == []
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(head % len(body) + body.encode())
        s.shutdown(socket.SHUT_WR)
        assert s.recv(100).startswith(b"HTTP/1.1 200 OK")
    assert [m["ModelName"] for m in sm.list_models()["Models"]] == ["trunc"]


# --------------------------------------------------------------------------------------------- D14


def test_d14_pipelined_requests_before_a_malformed_one_are_answered_then_400(
    server: ServerProcess, sm: Any, echo_image: str
) -> None:
    deploy_echo(sm, echo_image, "front", [("v1", 1.0, 1)])
    health = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"
    bad = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nBad Header\r\n\r\n"
    answers, closed = exchange(server.port, health + bad + health, 2)
    assert [a[0] for a in answers] == [200, 400] and closed
    assert answers[0][2] == b'{"status":"ok"}'
    assert _error(answers[1])[1:] == ("BadRequest", "Invalid HTTP request received: Invalid header token.")
    answers, closed = exchange(server.port, invocation(b"sleep:0.3") + invocation(b"two") + bad, 3)
    assert [a[0] for a in answers] == [200, 200, 400] and closed
    assert [a[2] for a in answers[:2]] == [b"v1|-|sleep:0.3", b"v1|-|two"]
    # A limit refusal behind a complete request: the same order.
    answers, closed = exchange(server.port, invocation(b"one") + b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n", 2)
    assert [a[0] for a in answers] == [200, 414] and closed


def test_d14_a_half_closed_connection_gets_its_answers(server: ServerProcess, sm: Any, echo_image: str) -> None:
    deploy_echo(sm, echo_image, "front", [("v1", 1.0, 1)])
    health = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"
    for raw, bodies in (
        (invocation(b"sleep:0.3"), [b"v1|-|sleep:0.3"]),
        (invocation(b"one") + health + invocation(b"sleep:0.2"), [b"v1|-|one", b'{"status":"ok"}', b"v1|-|sleep:0.2"]),
    ):
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
            s.sendall(raw)
            s.shutdown(socket.SHUT_WR)  # the client is done sending, and waits for its answers
            r = _Responses()
            while data := s.recv(65536):
                r.parser.feed_data(data)
        assert [a[0] for a in r.done] == [200] * len(bodies)
        assert [a[2] for a in r.done] == bodies  # and then the server closed
