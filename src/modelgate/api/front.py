"""The HTTP front: our own HTTP/1.1 connection protocol, InvokeEndpoint answered from callbacks.

api/serve_http.py runs the server (socket, signals, lifespan, graceful shutdown) with this protocol.
It parses with httptools, as uvicorn's httptools protocol did before it, and serves requests two ways:

* ``POST /endpoints/{name}/{action}`` (InvokeEndpoint) never becomes an ASGI request: the parser
  callbacks collect the body and call :meth:`RuntimeApi.begin`; the router forwards to an instance; the
  instance connection's parser callback hands the answer back, and status line, headers and body go out
  in one ``transport.write``. No task, no future, no ASGI scope or messages. Measured with per-step
  timestamps at concurrency 1 on the 2-vCPU VM: uvicorn's protocol spent about 52 us from a request's
  first byte to the end of its body and 10 us after the answer (scope, request cycle, event, keep-alive
  timer per request); see bench/RESULTS.md for what this protocol spends.
* Every other request (the control plane, CloudWatch, the A/B API, health) runs the App in a task
  through an :class:`AsgiCycle` (api/asgi_cycle.py): uvicorn's ASGI semantics (100-continue, chunked
  answers, HEAD, 500 on an exception before the answer started, default headers ``date`` and
  ``server``), without importing uvicorn (2.6 MB of the gateway's memory).

What the connection does is what uvicorn's did: keep-alive with its timeout (5 s), ``Connection: close``
and HTTP/1.0, pipelined requests answered in order (reading pauses while one waits), a 400 and close on
malformed HTTP, flow control, ``shutdown()`` closing idle connections and the others after their answer.
``ARRIVED`` is stamped when a request's first byte is parsed: ``OverheadLatency`` starts there.
tests/e2e/test_http_front.py drives both paths over raw sockets.
"""

from __future__ import annotations

import asyncio
import logging
import time
import urllib.parse
from collections import deque
from email.utils import formatdate
from typing import Any, cast

import httptools

from modelgate.api.app import ASGIApp
from modelgate.api.asgi_cycle import CONTINUE, HIGH_WATER_LIMIT, STATUS_LINE, AsgiCycle, FlowControl
from modelgate.api.runtime import ARRIVED, Answer, RuntimeApi, error_response
from modelgate.errors import RequestTooLarge

log = logging.getLogger(__name__)

KEEP_ALIVE_SECONDS = 5.0  # uvicorn's default, which the gateway had; tests/e2e/test_http_front.py relies on it
_SERVER = (b"server", b"modelgate")
_INVALID = b"Invalid HTTP request received."
_BAD_REQUEST = (  # with an AWS error code, as every refusal has one (tests/fuzz): a client's error parser finds it
    b"HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain; charset=utf-8\r\nx-amzn-errortype: BadRequest\r\n"
    b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(_INVALID), _INVALID)
)
_SERVER_ERROR = (
    b"HTTP/1.1 500 Internal Server Error\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 21\r\nconnection: close\r\n\r\nInternal Server Error"
)


class ServerState:
    """What the connections of one server share: the server waits on ``connections`` and ``tasks`` at
    graceful shutdown; ``default_headers`` go on every ASGI answer."""

    def __init__(self) -> None:
        self.total_requests = 0
        self.connections: set[FrontProtocol] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self._second = -1
        self._default_headers: list[tuple[bytes, bytes]] = []

    def default_headers(self) -> list[tuple[bytes, bytes]]:
        """``date`` and ``server``; the date is formatted once a second at most."""
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._default_headers = [(b"date", formatdate(now, usegmt=True).encode()), _SERVER]
        return self._default_headers


class _Invoke:
    """An InvokeEndpoint request: its headers, its body as it arrives, and where it is."""

    __slots__ = (
        "action",
        "chunks",
        "complete",
        "disconnected",
        "expect_continue",
        "keep_alive",
        "name",
        "running",
        "scope",
        "size",
        "started",
        "too_large",
    )

    def __init__(self, name: str, action: str, scope: dict[str, object], keep_alive: bool, expect: bool) -> None:
        self.name = name
        self.action = action
        self.scope = scope
        self.keep_alive = keep_alive
        self.expect_continue = expect
        self.chunks: list[bytes] = []
        self.size = 0
        self.complete = False  # the whole body was parsed
        self.started = False  # at the head of the connection's queue
        self.running = False
        self.too_large = False
        self.disconnected = False


_Request = _Invoke | AsgiCycle


class FrontProtocol(asyncio.Protocol):
    def __init__(
        self,
        app: ASGIApp,
        server_state: ServerState,
        app_state: dict[str, Any] | None = None,
        timeout_keep_alive: float = KEEP_ALIVE_SECONDS,
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.app = app
        runtime = getattr(app, "runtime", None)
        self.runtime: RuntimeApi | None = runtime if isinstance(runtime, RuntimeApi) else None
        self.loop = _loop or asyncio.get_event_loop()
        self.parser = httptools.HttpRequestParser(self)
        # Answer the first of pipelined requests even when the client closed its side after sending.
        self.parser.set_dangerous_leniencies(lenient_data_after_close=True)
        self.timeout_keep_alive = timeout_keep_alive
        self.server_state = server_state
        self.app_state = app_state if app_state is not None else {}  # the lifespan's state, copied per request

        self.transport: asyncio.Transport = cast(asyncio.Transport, None)
        self.flow: FlowControl = cast(FlowControl, None)
        self.server: tuple[str, int | None] | None = None
        self.client: tuple[str, int] | None = None
        self.scheme = "http"
        self.queue: deque[_Request] = deque()  # requests not answered yet, oldest (the one served) first
        # Idle since (loop time), None while a request is being read or answered. One timer per
        # connection looks at it and re-arms itself, instead of a timer made and cancelled per request.
        self.idle_since: float | None = None
        self.keep_alive_timer: asyncio.TimerHandle | None = None

        # The request being parsed.
        self.current: _Request | None = None
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.expect_continue = False
        self.arrived = 0.0
        self.chunk_at = 0.0  # perf_counter() when the chunk being parsed was read

    # ------------------------------------------------------------------------------------ asyncio protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass, but is one
        self.server_state.connections.add(self)
        self.flow = FlowControl(self.transport)
        self.server = _address(self.transport, "sockname")
        self.client = _address(self.transport, "peername")

    def connection_lost(self, exc: Exception | None) -> None:
        self.server_state.connections.discard(self)
        self._cancel_keep_alive()
        if self.queue:
            head = self.queue[0]
            if isinstance(head, _Invoke):
                head.disconnected = True
            else:
                if not head.response_complete:
                    head.disconnected = True
                head.message_event.set()
        self.queue.clear()  # the pipelined requests behind it will never be answered
        if self.flow is not None:
            self.flow.resume_writing()
        if exc is None:
            self.transport.close()

    def eof_received(self) -> None:
        pass

    def data_received(self, data: bytes) -> None:
        self.idle_since = None
        self.chunk_at = time.perf_counter()  # a request beginning in this chunk arrived now
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError:  # one of our callbacks raised: a bug, not the client's
            log.exception("the HTTP front failed on a request")
            self.transport.write(_SERVER_ERROR)
            self.transport.close()
        except httptools.HttpParserError:
            log.warning("Invalid HTTP request received.")
            self.transport.write(_BAD_REQUEST)
            self.transport.close()
        except httptools.HttpParserUpgrade:
            log.warning("Unsupported upgrade request.")

    def pause_writing(self) -> None:
        self.flow.pause_writing()

    def resume_writing(self) -> None:
        self.flow.resume_writing()

    def shutdown(self) -> None:
        """Called by the server (api/serve_http.py) at graceful shutdown: close now if idle, else after the answer."""
        if not self.queue:
            self.transport.close()
            return
        head = self.queue[0]
        head.keep_alive = False
        while len(self.queue) > 1:
            self.queue.pop()

    # ------------------------------------------------------------------------------------ parser callbacks

    def on_message_begin(self) -> None:
        self.arrived = self.chunk_at
        self.url = b""
        self.headers = []
        self.expect_continue = False

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"expect" and value.lower() == b"100-continue":
            self.expect_continue = True
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        parser = self.parser
        http_version = parser.get_http_version()
        keep_alive = http_version != "1.0" and parser.should_keep_alive()
        method = parser.get_method().decode("ascii")
        parsed = httptools.parse_url(self.url)
        raw_path = parsed.path
        path = raw_path.decode("ascii")
        if "%" in path:
            path = urllib.parse.unquote(path)
        request: _Request | None = None
        if method == "POST" and self.runtime is not None and path.startswith("/endpoints/"):
            parts = path.split("/")
            if len(parts) == 4:
                scope: dict[str, object] = {"headers": self.headers, ARRIVED: self.arrived}
                request = _Invoke(parts[2], parts[3], scope, keep_alive, self.expect_continue)
        if request is None:
            asgi_scope = {
                "type": "http",
                "asgi": {"version": "3.0", "spec_version": "2.3"},
                "http_version": http_version,
                "server": self.server,
                "client": self.client,
                "scheme": self.scheme,
                "method": method,
                "root_path": "",
                "path": path,
                "raw_path": raw_path,
                "query_string": parsed.query or b"",
                "headers": self.headers,
                "state": self.app_state.copy(),
                ARRIVED: self.arrived,
            }
            request = AsgiCycle(
                scope=asgi_scope,
                transport=self.transport,
                flow=self.flow,
                default_headers=self.server_state.default_headers(),
                message_event=asyncio.Event(),
                expect_100_continue=self.expect_continue,
                keep_alive=keep_alive,
                on_response=self._on_response_complete,
            )
        self.current = request
        self.queue.append(request)
        if len(self.queue) == 1:
            self._start(request)
        else:
            self.flow.pause_reading()  # pipelined: read on once the ones before it are answered

    def on_body(self, body: bytes) -> None:
        request = self.current
        if isinstance(request, _Invoke):
            if request.too_large:
                return
            request.size += len(body)
            assert self.runtime is not None
            if request.size > self.runtime.max_payload:
                request.too_large = True  # refused now; the rest of the body is read and dropped
                request.chunks = []
                if request.started and not request.running:
                    self._run(request)
                return
            request.chunks.append(body)
        elif request is not None and not request.response_complete:
            request.body += body
            if len(request.body) > HIGH_WATER_LIMIT:
                self.flow.pause_reading()
            request.message_event.set()

    def on_message_complete(self) -> None:
        request = self.current
        if isinstance(request, _Invoke):
            request.complete = True
            if request.started and not request.running:
                self._run(request)
        elif request is not None and not request.response_complete:
            request.more_body = False
            request.message_event.set()

    # ------------------------------------------------------------------------------------ requests

    def _start(self, request: _Request) -> None:
        """``request`` reached the head of the queue: it may be answered now."""
        if isinstance(request, _Invoke):
            request.started = True
            if request.expect_continue and not request.complete and not self.transport.is_closing():
                self.transport.write(CONTINUE)
            if request.complete or request.too_large:
                self._run(request)
            return
        task = self.loop.create_task(request.run_asgi(self.app))
        tasks = self.server_state.tasks
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    def _run(self, request: _Invoke) -> None:
        request.running = True
        runtime = self.runtime
        assert runtime is not None

        def answer(out: Answer) -> None:
            self._answer(request, out)

        if request.too_large:
            answer((*error_response(RequestTooLarge(runtime.too_large_message)), None))
            return
        chunks, request.chunks = request.chunks, []
        body = b"" if not chunks else chunks[0] if len(chunks) == 1 else b"".join(chunks)
        runtime.begin(request.scope, body, request.name, request.action, answer)

    def _answer(self, request: _Invoke, out: Answer) -> None:
        status, headers, body, result = out
        runtime = self.runtime
        assert runtime is not None
        try:
            if not request.disconnected:
                parts = [STATUS_LINE[status], b"content-length: %d\r\n" % len(body)]
                for k, v in headers:
                    parts += (k, b": ", v, b"\r\n")
                if not request.keep_alive:
                    parts.append(b"connection: close\r\n")
                parts += (b"\r\n", body)
                self.transport.write(b"".join(parts))
                if not request.keep_alive:
                    self.transport.close()
                self._on_response_complete()
            if result is not None:
                runtime.router.record(result)
        except Exception:  # begin() answers every error itself: this is a bug, not the client's doing
            log.exception("InvokeEndpoint failed outside the handler")
            self.transport.close()

    def _on_response_complete(self) -> None:
        """The head request is answered: serve the next pipelined one, or wait for one."""
        self.server_state.total_requests += 1
        if self.queue:
            self.queue.popleft()
        if self.transport.is_closing():
            return
        self.flow.resume_reading()
        if self.queue:
            self._start(self.queue[0])
        else:
            self.idle_since = now = self.loop.time()
            if self.keep_alive_timer is None:
                self.keep_alive_timer = self.loop.call_at(now + self.timeout_keep_alive, self._keep_alive_check)

    def _cancel_keep_alive(self) -> None:
        if self.keep_alive_timer is not None:
            self.keep_alive_timer.cancel()
            self.keep_alive_timer = None

    def _keep_alive_check(self) -> None:
        """Close the connection once it has been idle for the keep-alive timeout."""
        self.keep_alive_timer = None
        since = self.idle_since
        if since is None or self.transport.is_closing():
            return  # busy: the next answer re-arms it
        left = since + self.timeout_keep_alive - self.loop.time()
        if left > 0:
            self.keep_alive_timer = self.loop.call_later(left, self._keep_alive_check)
        else:
            self.transport.close()


def _address(transport: asyncio.Transport, which: str) -> tuple[str, int] | None:
    """The connection's local (``sockname``) or remote (``peername``) host and port for the ASGI scope."""
    info = transport.get_extra_info(which)
    if isinstance(info, tuple | list) and len(info) >= 2:
        return (str(info[0]), int(info[1]))
    return None
