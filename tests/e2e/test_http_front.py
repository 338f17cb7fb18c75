"""The HTTP front (api/front.py) on the wire: InvokeEndpoint answered outside ASGI keeps HTTP/1.1's rules.

Raw sockets, because boto3 never pipelines or sends HTTP/1.0: pipelined requests are answered in order
(invocations and a control-plane request mixed), ``Connection: close`` and HTTP/1.0 close after the
answer, every answer has exactly one Content-Length, and an oversized body is refused with the
runtime's error.
"""

from __future__ import annotations

import socket
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
        b"POST /endpoints/front/invocations HTTP/" + version + b"\r\nHost: x\r\nContent-Type: text/plain\r\n"
        b"Content-Length: %d\r\n" % len(body) + extra + b"\r\n" + body
    )


def test_pipelined_invocations_and_control_calls_are_answered_in_order(
    server: Any, sm: Any, echo_image: str
) -> None:
    deploy_echo(sm, echo_image, "front", [("v1", 1.0, 1)])
    health = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
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
