"""The HTTP front (api/front.py) on the wire: InvokeEndpoint answered outside ASGI keeps HTTP/1.1's rules.

Raw sockets, because boto3 never pipelines or sends HTTP/1.0: pipelined requests are answered in order
(invocations and a control-plane request mixed), ``Connection: close`` and HTTP/1.0 close after the
answer, every answer has exactly one Content-Length, an oversized body is refused with the runtime's
error and the connection goes on, ``Expect: 100-continue`` and chunked request bodies work, malformed
HTTP gets a 400, idle connections close after the keep-alive timeout, and a client that hangs up while
its invocation runs leaves the server serving.
"""

from __future__ import annotations

import socket
import time
from typing import Any

import httptools

from tests.e2e.conftest import deploy_echo


class _Responses:
    def __init__(self) -> None:
        self.done: list[tuple[int, dict[bytes, list[bytes]], bytes]] = []
        self._headers: dict[bytes, list[bytes]] = {}
        self._body = b""
        self.parser = httptools.HttpResponseParser(self)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.setdefault(name.lower(), []).append(value)

    def on_body(self, body: bytes) -> None:
        self._body += body

    def on_message_complete(self) -> None:
        self.done.append((self.parser.get_status_code(), self._headers, self._body))
        self._headers, self._body = {}, b""


def exchange(port: int, raw: bytes, answers: int) -> tuple[list[tuple[int, dict[bytes, list[bytes]], bytes]], bool]:
    """Send ``raw`` at once; read until ``answers`` responses came. Also: did the server then close?"""
    r = _Responses()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(raw)
        while len(r.done) < answers:
            data = s.recv(65536)
            assert data, f"closed after {len(r.done)} answers"
            r.parser.feed_data(data)
        s.settimeout(2)
        try:
            closed = s.recv(1) == b""
        except TimeoutError:
            closed = False
    return r.done, closed


def invocation(body: bytes, extra: bytes = b"", version: bytes = b"1.1") -> bytes:
    return (
        b"POST /endpoints/front/invocations HTTP/" + version + b"\r\nHost: localhost\r\nContent-Type: text/plain\r\n"
        b"Content-Length: %d\r\n" % len(body) + extra + b"\r\n" + body
    )


def test_pipelined_invocations_and_control_calls_are_answered_in_order(server: Any, sm: Any, echo_image: str) -> None:
    deploy_echo(sm, echo_image, "front", [("v1", 1.0, 1)])
    health = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"
    raw = invocation(b"one") + health + invocation(b"status:503") + invocation(b"three")
    answers, closed = exchange(server.port, raw, 4)
    assert [a[0] for a in answers] == [200, 200, 424, 200]
    assert answers[0][2] == b"v1|-|one" and answers[3][2] == b"v1|-|three"
    assert answers[1][2] == b'{"status":"ok"}'
    assert answers[2][1][b"x-amzn-errortype"] == [b"ModelError"]
    for status, headers, body in answers:
        assert headers[b"content-length"] == [str(len(body)).encode()], (status, headers)
    assert answers[0][1][b"x-amzn-invoked-production-variant"] == [b"v1"]
    assert not closed  # kept alive


def test_connection_close_and_http_1_0_close_after_the_answer(server: Any, sm: Any, echo_image: str) -> None:
    deploy_echo(sm, echo_image, "front", [("v1", 1.0, 1)])
    answers, closed = exchange(server.port, invocation(b"bye", b"Connection: close\r\n"), 1)
    assert answers[0][0] == 200 and answers[0][2] == b"v1|-|bye" and closed
    assert answers[0][1][b"connection"] == [b"close"]
    answers, closed = exchange(server.port, invocation(b"old", version=b"1.0"), 1)
    assert answers[0][0] == 200 and answers[0][2] == b"v1|-|old" and closed


def test_an_oversized_body_is_refused_on_the_wire(server_factory: Any, echo_image: str) -> None:
    server = server_factory(MODELGATE_MAX_PAYLOAD_BYTES="1024")
    sm = server.client("sagemaker")
    deploy_echo(sm, echo_image, "front", [("v1", 1.0, 1)])
    answers, _ = exchange(server.port, invocation(b"x" * 2048), 1)
    status, headers, body = answers[0]
    assert status == 413 and headers[b"x-amzn-errortype"] == [b"ValidationError"]  # as SageMaker names it
    assert b"larger than the limit of 1024 bytes" in body


def test_a_refused_oversized_body_leaves_the_connection_usable(server_factory: Any, echo_image: str) -> None:
    server = server_factory(MODELGATE_MAX_PAYLOAD_BYTES="1024")
    deploy_echo(server.client("sagemaker"), echo_image, "front", [("v1", 1.0, 1)])
    answers, closed = exchange(server.port, invocation(b"x" * 4096) + invocation(b"after"), 2)
    assert [a[0] for a in answers] == [413, 200]
    assert answers[1][2] == b"v1|-|after" and not closed


def test_expect_100_continue_then_the_body(server: Any, sm: Any, echo_image: str) -> None:
    deploy_echo(sm, echo_image, "front", [("v1", 1.0, 1)])
    body = b"continued"
    head = invocation(body, b"Expect: 100-continue\r\n").removesuffix(body)
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(head)
        assert s.recv(64) == b"HTTP/1.1 100 Continue\r\n\r\n"
        s.sendall(body)
        r = _Responses()
        while not r.done:
            r.parser.feed_data(s.recv(65536))
    assert r.done[0][0] == 200 and r.done[0][2] == b"v1|-|continued"


def test_a_chunked_request_body_is_invoked_whole(server: Any, sm: Any, echo_image: str) -> None:
    deploy_echo(sm, echo_image, "front", [("v1", 1.0, 1)])
    raw = (
        b"POST /endpoints/front/invocations HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/plain\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n"
    )
    answers, closed = exchange(server.port, raw, 1)
    assert answers[0][0] == 200 and answers[0][2] == b"v1|-|abcdefg" and not closed


def test_malformed_http_gets_400_and_close(server: Any) -> None:
    answers, closed = exchange(server.port, b"POST /endpoints/x/invocations HTTP/1.1\r\nContent-Length: zz\r\n\r\n", 1)
    assert answers[0][0] == 400 and closed


def test_an_idle_connection_closes_after_the_keep_alive_timeout(server: Any, sm: Any, echo_image: str) -> None:
    deploy_echo(sm, echo_image, "front", [("v1", 1.0, 1)])
    with socket.create_connection(("127.0.0.1", server.port), timeout=15) as s:
        s.sendall(invocation(b"idle"))
        r = _Responses()
        while not r.done:
            r.parser.feed_data(s.recv(65536))
        started = time.monotonic()
        assert s.recv(1) == b""  # uvicorn's default keep-alive timeout: 5 s
        assert 4.0 < time.monotonic() - started < 10.0


def test_a_client_hanging_up_during_its_invocation_leaves_the_server_serving(
    server: Any, sm: Any, echo_image: str
) -> None:
    deploy_echo(sm, echo_image, "front", [("v1", 1.0, 1)])
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(invocation(b"sleep:1"))
    time.sleep(1.5)  # its answer arrives for a connection that is gone
    answers, _ = exchange(server.port, invocation(b"next") + invocation(b"and next"), 2)
    assert [a[2] for a in answers] == [b"v1|-|next", b"v1|-|and next"]
