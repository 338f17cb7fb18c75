"""The ASGI request/response cycle of the HTTP front (api/asgi_cycle.py), on a transport that records.

It replaced uvicorn's ``RequestResponseCycle``; these are the rules it kept: chunked answers when the app
gives no length (not for HEAD, 204, 304), no body for HEAD, ``connection: close`` when not kept alive,
a body that disagrees with its Content-Length is an error, invalid headers are refused, a 500 when the
app fails before answering, the request body in messages, ``100 Continue`` on the first receive, and
``send`` waiting while the transport has paused writing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from modelgate.api.asgi_cycle import AsgiCycle, FlowControl
from modelgate.api.front import ServerState
from modelgate.api.http import Message, Receive, Send


class _Transport:
    def __init__(self) -> None:
        self.written = bytearray()
        self.closed = False
        self.reading = True

    def write(self, data: bytes) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def head(self) -> bytes:
        return bytes(self.written).partition(b"\r\n\r\n")[0]

    def body(self) -> bytes:
        return bytes(self.written).partition(b"\r\n\r\n")[2]


App = Callable[[dict[str, Any], Receive, Send], Awaitable[None]]


Served = tuple[AsgiCycle, _Transport, list[int]]


def _cycle(method: str = "GET", keep_alive: bool = True, expect: bool = False) -> Served:
    transport = _Transport()
    answered: list[int] = []
    cycle = AsgiCycle(
        scope={"type": "http", "method": method, "path": "/", "headers": []},
        transport=transport,  # type: ignore[arg-type]
        flow=FlowControl(transport),  # type: ignore[arg-type]
        default_headers=ServerState().default_headers(),
        message_event=asyncio.Event(),
        expect_100_continue=expect,
        keep_alive=keep_alive,
        on_response=lambda: answered.append(1),
    )
    return cycle, transport, answered


def _serve(app: App, method: str = "GET", keep_alive: bool = True) -> Served:
    cycle, transport, answered = _cycle(method, keep_alive)
    cycle.more_body = False
    asyncio.run(cycle.run_asgi(app))
    return cycle, transport, answered


def _answer(status: int, headers: list[tuple[bytes, bytes]], *bodies: bytes) -> App:
    async def app(_scope: dict[str, Any], _receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": status, "headers": headers})
        for i, body in enumerate(bodies):
            await send({"type": "http.response.body", "body": body, "more_body": i < len(bodies) - 1})

    return app


def test_without_a_length_the_answer_is_chunked_with_the_default_headers() -> None:
    _, transport, answered = _serve(_answer(200, [(b"content-type", b"text/plain")], b"ab", b"", b"cde", b""))
    head = transport.head().split(b"\r\n")
    assert head[0] == b"HTTP/1.1 200 OK"
    assert head[1].startswith(b"date: ") and head[1].endswith(b" GMT") and head[2] == b"server: modelgate"
    assert b"transfer-encoding: chunked" in head and b"connection: close" not in head
    assert transport.body() == b"2\r\nab\r\n3\r\ncde\r\n0\r\n\r\n"
    assert answered == [1] and not transport.closed


@pytest.mark.parametrize("status", [204, 304])
def test_no_chunks_for_204_and_304(status: int) -> None:
    _, transport, _ = _serve(_answer(status, [], b""))
    assert b"transfer-encoding" not in transport.head() and transport.body() == b""


def test_head_sends_no_body() -> None:
    _, transport, answered = _serve(_answer(200, [(b"content-length", b"5")], b"hello"), method="HEAD")
    assert b"content-length: 5" in transport.head() and transport.body() == b"" and answered == [1]


def test_connection_close_when_not_kept_alive() -> None:
    _, transport, _ = _serve(_answer(200, [(b"content-length", b"2")], b"ok"), keep_alive=False)
    assert transport.head().endswith(b"connection: close") and transport.body() == b"ok" and transport.closed


def test_the_apps_connection_close_ends_keep_alive_once() -> None:
    cycle, transport, _ = _serve(_answer(200, [(b"content-length", b"0"), (b"Connection", b"close")], b""))
    assert transport.head().count(b"connection: close") == 1 and not cycle.keep_alive and transport.closed


@pytest.mark.parametrize("body", [b"toolong", b"s"])
def test_a_body_other_than_its_length_fails_and_closes(body: bytes) -> None:
    cycle, transport, answered = _serve(_answer(200, [(b"content-length", b"3")], body))
    assert transport.closed and not cycle.response_complete and answered == []


@pytest.mark.parametrize("header", [(b"bad name", b"x"), (b"x-ok", b"line\nbreak")])
def test_invalid_headers_are_refused(header: tuple[bytes, bytes]) -> None:
    _, transport, _ = _serve(_answer(200, [header], b""))
    assert transport.written == b"" and transport.closed


def test_a_failure_before_the_answer_is_a_500() -> None:
    async def app(_scope: dict[str, Any], _receive: Receive, _send: Send) -> None:
        raise ValueError("bug")

    _, transport, answered = _serve(app)
    assert transport.head().startswith(b"HTTP/1.1 500 Internal Server Error")
    assert b"connection: close" in transport.head() and transport.body() == b"Internal Server Error"
    assert transport.closed and answered == [1]


def test_returning_without_an_answer_is_a_500() -> None:
    async def app(_scope: dict[str, Any], _receive: Receive, _send: Send) -> None:
        return None

    _, transport, _ = _serve(app)
    assert transport.head().startswith(b"HTTP/1.1 500 ")


def test_the_body_arrives_in_messages_then_disconnect_after_the_answer() -> None:
    async def main() -> list[Message]:
        cycle, transport, _ = _cycle(method="POST", expect=True)
        got: list[Message] = []

        async def app(_scope: dict[str, Any], receive: Receive, send: Send) -> None:
            got.append(await receive())
            assert transport.written == b"HTTP/1.1 100 Continue\r\n\r\n"
            got.append(await receive())
            await _answer(200, [(b"content-length", b"0")], b"")(_scope, receive, send)
            got.append(await receive())

        task = asyncio.create_task(cycle.run_asgi(app))
        await asyncio.sleep(0)
        cycle.body += b"first"  # what the connection's parser callbacks do
        cycle.message_event.set()
        await asyncio.sleep(0)
        cycle.body += b"last"
        cycle.more_body = False
        cycle.message_event.set()
        await task
        return got

    assert asyncio.run(main()) == [
        {"type": "http.request", "body": b"first", "more_body": True},
        {"type": "http.request", "body": b"last", "more_body": False},
        {"type": "http.disconnect"},
    ]


def test_receive_resumes_reading_and_send_waits_for_the_transport() -> None:
    async def main() -> None:
        cycle, transport, _ = _cycle()
        cycle.flow.pause_reading()
        cycle.more_body = False
        cycle.message_event.set()
        await cycle.receive()
        assert transport.reading
        cycle.flow.pause_writing()
        sending = asyncio.create_task(cycle.send({"type": "http.response.start", "status": 200, "headers": []}))
        await asyncio.sleep(0.01)
        assert not sending.done() and transport.written == b""
        cycle.flow.resume_writing()
        await sending
        assert transport.written == b""  # the head goes out with the first body message, in one write
        await cycle.send({"type": "http.response.body", "body": b"", "more_body": True})
        assert transport.written.startswith(b"HTTP/1.1 200 OK\r\n")

    asyncio.run(main())
