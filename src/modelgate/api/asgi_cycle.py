"""One ASGI HTTP request/response cycle on a connection of the HTTP front (api/front.py).

The front answers InvokeEndpoint from its parser callbacks; every other request (the control plane,
CloudWatch, the A/B API, health) runs the App through this cycle. It was uvicorn's
``RequestResponseCycle`` (uvicorn 0.54, ``protocols/http/httptools_impl.py``), a private class whose
import pulled all of uvicorn and click into the gateway (2.6 MB of resident memory). This is the same
state machine, written out so that the gateway no longer imports uvicorn, with the same semantics:

* ``receive()``: ``http.request`` messages with the body parsed so far and ``more_body``; ``http.disconnect``
  once the client is gone or the response is complete; ``100 Continue`` written on the first call when
  the client asked for it; reading resumes on each call (the front pauses it above ``HIGH_WATER_LIMIT``
  bytes of unread body).
* ``send()``: status line and headers (invalid names or values refused; written with the first body
  message, so that a response with one body message is one ``write``, as the InvokeEndpoint path's:
  a separate write of the head cost a second send and a second wake-up of the client), ``connection: close`` when the
  connection will not be kept alive, chunked transfer-encoding when the app gives neither Content-Length
  nor Transfer-Encoding (not for HEAD, 204, 304), no body for HEAD, a RuntimeError when the body is
  longer or shorter than its Content-Length, and a wait while the transport has paused writing.
* ``run_asgi()``: a 500 if the app fails (or returns) before starting its response; the connection is
  closed if it fails after.

Not kept from uvicorn: its access log (the gateway ran with ``access_log=False``) and ``server: uvicorn``
(the default headers are ``date`` and ``server: modelgate``, from :class:`front.ServerState`).
"""

from __future__ import annotations

import asyncio
import http
import logging
import re
from collections.abc import Callable

from modelgate.api.app import ASGIApp
from modelgate.api.http import Message, Scope

log = logging.getLogger(__name__)

# Above this many bytes of request body not yet received by the app, the connection stops reading.
HIGH_WATER_LIMIT = 65536

_HEADER_NAME = re.compile(b'[\x00-\x1f\x7f()<>@,;:\\[\\]={} \t\\\\"]')
_HEADER_VALUE = re.compile(b"[\x00-\x08\x0a-\x1f\x7f]")
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


def _status_line(status: int) -> bytes:
    try:
        phrase = http.HTTPStatus(status).phrase.encode()
    except ValueError:
        phrase = b""
    return b"HTTP/1.1 %d %s\r\n" % (status, phrase)


STATUS_LINE = {status: _status_line(status) for status in range(100, 600)}


class FlowControl:
    """Read and write pauses of one connection: reading pauses while the app is behind on the body,
    and ``send`` waits while the transport's write buffer is above its high-water mark."""

    __slots__ = ("_transport", "_writable", "read_paused", "write_paused")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self.read_paused = False
        self.write_paused = False
        self._writable = asyncio.Event()
        self._writable.set()

    async def drain(self) -> None:
        await self._writable.wait()

    def pause_reading(self) -> None:
        if not self.read_paused:
            self.read_paused = True
            self._transport.pause_reading()

    def resume_reading(self) -> None:
        if self.read_paused:
            self.read_paused = False
            self._transport.resume_reading()

    def pause_writing(self) -> None:
        if not self.write_paused:
            self.write_paused = True
            self._writable.clear()

    def resume_writing(self) -> None:
        if self.write_paused:
            self.write_paused = False
            self._writable.set()


class AsgiCycle:
    """One request served through ASGI. The connection feeds ``body``, ``more_body`` and
    ``disconnected`` from its parser callbacks and sets ``message_event``; the app's task reads them
    through ``receive``; ``on_response`` tells the connection the answer is complete."""

    __slots__ = (
        "body",
        "chunked_encoding",
        "default_headers",
        "disconnected",
        "expected_content_length",
        "flow",
        "head",
        "keep_alive",
        "message_event",
        "more_body",
        "on_response",
        "response_complete",
        "response_started",
        "scope",
        "transport",
        "waiting_for_100_continue",
    )

    def __init__(
        self,
        scope: Scope,
        transport: asyncio.Transport,
        flow: FlowControl,
        default_headers: list[tuple[bytes, bytes]],
        message_event: asyncio.Event,
        expect_100_continue: bool,
        keep_alive: bool,
        on_response: Callable[[], None],
    ) -> None:
        self.scope = scope
        self.transport = transport
        self.flow = flow
        self.default_headers = default_headers
        self.message_event = message_event
        self.on_response = on_response
        # Connection
        self.disconnected = False
        self.keep_alive = keep_alive
        self.waiting_for_100_continue = expect_100_continue
        # Request
        self.body = bytearray()
        self.more_body = True
        # Response
        self.response_started = False
        self.head = b""  # the status line and headers, written with the first body message
        self.response_complete = False
        self.chunked_encoding: bool | None = None
        self.expected_content_length = 0

    async def run_asgi(self, app: ASGIApp) -> None:
        try:
            result = await app(self.scope, self.receive, self.send)  # type: ignore[func-returns-value]
        except BaseException as exc:  # as uvicorn: even a cancellation at shutdown gets its 500
            log.error("Exception in ASGI application\n", exc_info=exc)
            if not self.response_started:
                await self._send_500()
            else:
                self.transport.close()
        else:
            if result is not None:
                log.error("ASGI callable should return None, but returned '%s'.", result)
                self.transport.close()
            elif not self.response_started and not self.disconnected:
                log.error("ASGI callable returned without starting response.")
                await self._send_500()
            elif not self.response_complete and not self.disconnected:
                log.error("ASGI callable returned without completing response.")
                self.transport.close()
        finally:
            self.on_response = _nothing  # the connection may have moved on: no second call

    async def _send_500(self) -> None:
        headers = [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", b"21"),
            (b"connection", b"close"),
        ]
        await self.send({"type": "http.response.start", "status": 500, "headers": headers})
        await self.send({"type": "http.response.body", "body": b"Internal Server Error", "more_body": False})

    async def send(self, message: Message) -> None:
        if self.flow.write_paused and not self.disconnected:
            await self.flow.drain()
        if self.disconnected:
            return
        kind = message["type"]
        if not self.response_started:
            if kind != "http.response.start":
                raise RuntimeError(f"Expected ASGI message 'http.response.start', but got '{kind}'.")
            self._start(message)
        elif not self.response_complete:
            if kind != "http.response.body":
                raise RuntimeError(f"Expected ASGI message 'http.response.body', but got '{kind}'.")
            self._body(message.get("body", b""), message.get("more_body", False))
        else:
            raise RuntimeError(f"Unexpected ASGI message '{kind}' sent, after response already completed.")

    def _start(self, message: Message) -> None:
        self.response_started = True
        self.waiting_for_100_continue = False
        status: int = message["status"]
        content = [STATUS_LINE[status]]
        has_connection_close = False
        for name, value in [*self.default_headers, *message.get("headers", ())]:
            if _HEADER_NAME.search(name):
                raise RuntimeError("Invalid HTTP header name.")
            if _HEADER_VALUE.search(value):
                raise RuntimeError("Invalid HTTP header value.")
            name = name.lower()
            if name == b"content-length" and self.chunked_encoding is None:
                self.expected_content_length = int(value.decode())
                self.chunked_encoding = False
            elif name == b"transfer-encoding" and value.lower() == b"chunked":
                self.expected_content_length = 0
                self.chunked_encoding = True
            elif name == b"connection" and b"close" in [t.lower().strip() for t in value.split(b",")]:
                self.keep_alive = False
                has_connection_close = True
            content += (name, b": ", value, b"\r\n")
        if not self.keep_alive and not has_connection_close:
            content.append(b"connection: close\r\n")
        if self.chunked_encoding is None and self.scope["method"] != "HEAD" and status not in (204, 304):
            self.chunked_encoding = True
            content.append(b"transfer-encoding: chunked\r\n")
        content.append(b"\r\n")
        self.head = b"".join(content)

    def _body(self, body: bytes, more_body: bool) -> None:
        head, self.head = self.head, b""
        if self.scope["method"] == "HEAD":
            self.expected_content_length = 0
            if head:
                self.transport.write(head)
        elif self.chunked_encoding:
            content = [head, b"%x\r\n" % len(body), body, b"\r\n"] if body else [head]
            if not more_body:
                content.append(b"0\r\n\r\n")
            self.transport.write(b"".join(content))
        else:
            if len(body) > self.expected_content_length:
                raise RuntimeError("Response content longer than Content-Length")
            self.expected_content_length -= len(body)
            self.transport.write(head + body if head else body)
        if not more_body:
            if self.expected_content_length != 0:
                raise RuntimeError("Response content shorter than Content-Length")
            self.response_complete = True
            self.message_event.set()
            if not self.keep_alive:
                self.transport.close()
            self.on_response()

    async def receive(self) -> Message:
        if self.waiting_for_100_continue and not self.transport.is_closing():
            self.transport.write(CONTINUE)
            self.waiting_for_100_continue = False
        if not self.disconnected and not self.response_complete:
            self.flow.resume_reading()
            await self.message_event.wait()
            self.message_event.clear()
        if self.disconnected or self.response_complete:
            return {"type": "http.disconnect"}
        message = {"type": "http.request", "body": bytes(self.body), "more_body": self.more_body}
        self.body = bytearray()
        return message


def _nothing() -> None:
    pass
