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
and HTTP/1.0, pipelined requests answered in order (reading pauses while one waits), flow control,
``shutdown()`` closing idle connections and the others after their answer. Beyond uvicorn:

* Limits (api/front_limits.py): URL (414), header block size and count (431), counted as the head
  arrives so that an oversized one is never buffered; a deadline for the headers of every request and
  for a new connection's first request (408, or a quiet close when nothing came); a connection limit
  (503). The deadlines share one lazily re-armed timer per connection with keep-alive.
* Browsers (api/browsers.py): a Host that names another server, and a browser's cross-origin
  state-changing request, are refused before anything runs; CORS only for configured origins.
* Refusals, malformed HTTP (400, with llhttp's reason), ``CONNECT`` and an unparseable target (400)
  are answered after the complete requests before them in the same connection, then the connection
  closes; the request the refusal cut short is never run. The client's further data is read and dropped
  for a moment (``LINGER_SECONDS``) so that closing does not reset the connection under the answer.
* A client that closes its side after a complete request (``shutdown(SHUT_WR)``) still gets the answers;
  a request whose body was cut short by a close is never run.

``ARRIVED`` is stamped when a request's first byte is parsed: ``OverheadLatency`` starts there.
tests/e2e/test_http_front.py and test_http_hardening.py drive both paths over raw sockets.
"""

from __future__ import annotations

import asyncio
import logging
import time
import urllib.parse
from collections import deque
from typing import Any, cast

import httptools

from modelgate.api.app import ASGIApp
from modelgate.api.asgi_cycle import CONTINUE, HIGH_WATER_LIMIT, STATUS_LINE, AsgiCycle, FlowControl
from modelgate.api.front_lifetime import Lifetime
from modelgate.api.front_limits import header_block_size
from modelgate.api.front_requests import Canned, Invoke, Request, ServerState
from modelgate.api.runtime import ARRIVED, Answer, RuntimeApi, error_response
from modelgate.errors import InvalidHttpRequest, ModelgateError, RequestHeadersTooLarge, RequestTooLarge, UriTooLong

__all__ = ["FrontProtocol", "ServerState"]

log = logging.getLogger(__name__)

_SERVER_ERROR = (
    b"HTTP/1.1 500 Internal Server Error\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 21\r\nconnection: close\r\n\r\nInternal Server Error"
)
_NOTED = frozenset({b"host", b"expect", b"origin", b"sec-fetch-site"})  # looked at as they are parsed


class _Refused(Exception):
    """Raised in a parser callback to stop parsing; the refusal is in ``FrontProtocol.refusal``."""


class FrontProtocol(Lifetime, asyncio.Protocol):
    def __init__(
        self,
        app: ASGIApp,
        server_state: ServerState,
        app_state: dict[str, Any] | None = None,
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.app = app
        runtime = getattr(app, "runtime", None)
        self.runtime: RuntimeApi | None = runtime if isinstance(runtime, RuntimeApi) else None
        self.loop = _loop or asyncio.get_event_loop()
        self.parser = httptools.HttpRequestParser(self)
        # Answer the first of pipelined requests even when the client closed its side after sending.
        self.parser.set_dangerous_leniencies(lenient_data_after_close=True)
        self.server_state = server_state
        self.app_state = app_state if app_state is not None else {}  # the lifespan's state, copied per request
        limits = server_state.limits
        self.timeout_keep_alive = limits.keep_alive_seconds
        self.header_timeout = limits.header_timeout_seconds
        self.max_url = limits.max_url_bytes
        self.max_header_bytes = limits.max_header_bytes
        self.max_header_count = limits.max_header_count
        self.guard = server_state.guard
        self.ok_hosts = self.guard.ok_hosts

        self.transport: asyncio.Transport = cast(asyncio.Transport, None)
        self.flow: FlowControl = cast(FlowControl, None)
        self.server: tuple[str, int | None] | None = None
        self.client: tuple[str, int] | None = None
        self.scheme = "http"
        self.queue: deque[Request] = deque()  # requests not answered yet, oldest (the one served) first
        # When (loop time) the connection closes if it stays idle: no request by then after connecting
        # or after the last answer (keep-alive), or the end of the linger after a refusal. A head being
        # read has header_timeout from head_since instead. One timer per connection looks at them when
        # the queue is empty and re-arms itself, instead of a timer made and cancelled per request.
        self.deadline = 0.0
        self.head_since = 0.0  # perf_counter() when the head being read began (or reading of it resumed)
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = 0.0
        self.failed = False  # a refusal ended the reading of requests
        self.eof = False  # the client sends nothing more
        self.after_last: bytes | None = None  # written once the queue is answered, then close (b"": just close)
        self.refusal: ModelgateError | None = None  # set by a parser callback that raises _Refused

        # The request being parsed.
        self.current: Request | None = None
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.expect_continue = False
        self.host: bytes | None = None
        self.browser = False  # Origin or Sec-Fetch-Site seen
        self.reading_head = False
        # Bytes of reads that ended inside the current head: -1 while the head began in the read being
        # parsed; then that whole read (head_begin: partly earlier requests), plus each further read.
        self.head_fed = -1
        self.head_begin = 0
        self.chunk_len = 0  # the size of the read being parsed
        self.arrived = 0.0
        self.chunk_at = 0.0  # perf_counter() when the chunk being parsed was read

    # ------------------------------------------------------------------------------------ asyncio protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass, but is one
        self.flow = FlowControl(self.transport)
        state = self.server_state
        if len(state.connections) >= state.limits.max_connections:
            self._refuse_connection()
            return
        state.connections.add(self)
        self.server = _address(self.transport, "sockname")
        self.client = _address(self.transport, "peername")
        self._set_deadline(self.loop.time() + self.header_timeout)  # for the first request's headers

    def connection_lost(self, exc: Exception | None) -> None:
        self.server_state.connections.discard(self)
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.queue:
            head = self.queue[0]
            if isinstance(head, Invoke):
                head.disconnected = True
            elif isinstance(head, AsgiCycle):
                if not head.response_complete:
                    head.disconnected = True
                head.message_event.set()
        self.queue.clear()  # the pipelined requests behind it will never be answered
        if self.flow is not None:
            self.flow.resume_writing()
        if exc is None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self.failed:
            return  # after a refusal: read and dropped
        self.chunk_at = time.perf_counter()  # a request beginning in this chunk arrived now
        self.chunk_len = len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError:
            refused = self.refusal
            if refused is None:  # one of our callbacks raised: a bug, not the client's doing
                log.exception("the HTTP front failed on a request")
                self.transport.write(_SERVER_ERROR)
                self.transport.close()
                return
            self._fail(refused)
            return
        except httptools.HttpParserError as exc:
            self._fail(InvalidHttpRequest(f"Invalid HTTP request received: {exc}."))
            return
        except httptools.HttpParserUpgrade:
            log.warning("Unsupported upgrade request.")
            return
        if self.reading_head:  # the read ended inside a head: count it, so that a huge head is never kept
            fed = self.head_fed
            if fed < 0:
                self.head_fed = self.head_begin = len(data)
            else:
                fed += len(data)
                self.head_fed = fed
                if fed - self.head_begin > self.max_header_bytes:
                    self._fail(self._headers_too_large(fed - self.head_begin))
                    return
            if len(self.headers) > self.max_header_count:
                self._fail(self._too_many_headers())

    def pause_writing(self) -> None:
        self.flow.pause_writing()

    def resume_writing(self) -> None:
        self.flow.resume_writing()

    # ------------------------------------------------------------------------------------ parser callbacks

    def on_message_begin(self) -> None:
        self.arrived = self.head_since = self.chunk_at
        self.url = b""
        self.headers = []
        self.expect_continue = False
        self.host = None
        self.browser = False
        self.reading_head = True
        self.head_fed = -1

    def on_url(self, url: bytes) -> None:
        self.url += url
        if len(self.url) > self.max_url:
            self.refusal = UriTooLong(
                f"The request target is longer than {self.max_url} bytes (MODELGATE_MAX_URL_BYTES)."
            )
            raise _Refused

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name in _NOTED:
            if name == b"host":
                if self.host is not None:
                    self.refusal = InvalidHttpRequest("The request has more than one Host header.")
                    raise _Refused
                self.host = value
            elif name == b"expect":
                if value.lower() == b"100-continue":
                    self.expect_continue = True
            else:
                self.browser = True
        self.headers.append((name, value))  # counted once the head or the read ends: not per header

    def on_headers_complete(self) -> None:
        self.reading_head = False
        headers = self.headers
        # An upper bound of the head's size: the reads while it was incomplete, and this one.
        if self.chunk_len + self.head_fed >= self.max_header_bytes or len(headers) > self.max_header_count:
            self.refusal = self._head_too_large()
            if self.refusal is not None:
                raise _Refused
        parser = self.parser
        method = parser.get_method().decode("ascii")
        if method == "CONNECT":
            self.refusal = InvalidHttpRequest("CONNECT is not supported: modelgate is not a proxy.")
            raise _Refused
        try:
            parsed = httptools.parse_url(self.url)
        except httptools.HttpParserInvalidURLError:
            self.refusal = InvalidHttpRequest(f"Invalid request target {self.url[:200].decode('latin-1')!r}.")
            raise _Refused from None
        host = self.host
        if host is not None and host not in self.ok_hosts and not self.guard.host_ok(host):
            self.refusal = self.guard.host_refusal(host)
            raise _Refused
        cors = None
        request: Request | None = None
        http_version = parser.get_http_version()
        keep_alive = http_version != "1.0" and parser.should_keep_alive()
        if self.browser:
            verdict = self.guard.check(method, headers)
            if verdict.refusal is not None:
                self.refusal = verdict.refusal
                raise _Refused
            if verdict.preflight is not None:
                request = Canned(verdict.preflight, keep_alive)
            cors = verdict.cors
        raw_path = parsed.path
        path = raw_path.decode("ascii")
        if "%" in path:
            path = urllib.parse.unquote(path)
        if request is None and method == "POST" and self.runtime is not None and path.startswith("/endpoints/"):
            parts = path.split("/")
            if len(parts) == 4:
                scope: dict[str, object] = {"headers": headers, ARRIVED: self.arrived}
                request = Invoke(parts[2], parts[3], scope, keep_alive, self.expect_continue, cors)
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
                "headers": headers,
                "state": self.app_state.copy(),
                ARRIVED: self.arrived,
            }
            default_headers = self.server_state.default_headers()
            request = AsgiCycle(
                scope=asgi_scope,
                transport=self.transport,
                flow=self.flow,
                default_headers=default_headers if cors is None else [*default_headers, *cors],
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
        if isinstance(request, Invoke):
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
        elif isinstance(request, AsgiCycle) and not request.response_complete:
            request.body += body
            if len(request.body) > HIGH_WATER_LIMIT:
                self.flow.pause_reading()
            request.message_event.set()

    def on_message_complete(self) -> None:
        request = self.current
        if isinstance(request, Invoke):
            request.complete = True
            if request.started and not request.running:
                self._run(request)
        elif isinstance(request, AsgiCycle):
            request.more_body = False
            request.message_event.set()
        elif request is not None:
            request.complete = True

    # ------------------------------------------------------------------------------------ requests

    def _start(self, request: Request) -> None:
        """``request`` reached the head of the queue: it may be answered now."""
        if isinstance(request, Invoke):
            request.started = True
            if request.expect_continue and not request.complete and not self.transport.is_closing():
                self.transport.write(CONTINUE)
            if request.complete or request.too_large:
                self._run(request)
            return
        if isinstance(request, Canned):
            answer = request.answer
            if not request.keep_alive:
                answer = answer[:-2] + b"connection: close\r\n\r\n"
            self.transport.write(answer)
            if not request.keep_alive:
                self.transport.close()
            self._on_response_complete()
            return
        task = self.loop.create_task(request.run_asgi(self.app))
        tasks = self.server_state.tasks
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    def _run(self, request: Invoke) -> None:
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

    def _answer(self, request: Invoke, out: Answer) -> None:
        status, headers, body, result = out
        runtime = self.runtime
        assert runtime is not None
        try:
            if not request.disconnected:
                parts = [STATUS_LINE[status], b"content-length: %d\r\n" % len(body)]
                for k, v in headers:
                    parts += (k, b": ", v, b"\r\n")
                if request.cors is not None:
                    for k, v in request.cors:
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
        queue = self.queue
        if queue:
            queue.popleft()
        if self.transport.is_closing():
            return
        if queue:
            if not self.failed:
                self.flow.resume_reading()
            self._start(queue[0])
        elif self.after_last is not None:
            self._write_last()
        else:
            self.flow.resume_reading()
            if self.reading_head:  # a pipelined head, not read on while busy: its header time starts now
                self.head_since = time.perf_counter()
            deadline = self.deadline = self.loop.time() + self.timeout_keep_alive
            if self.timer is None or self.timer_at > deadline:
                self._arm(deadline)

    def _head_too_large(self) -> ModelgateError | None:
        """The exact checks of a complete head that may be over a limit (the rare path)."""
        if len(self.headers) > self.max_header_count:
            return self._too_many_headers()
        size = header_block_size(self.headers)
        return self._headers_too_large(size) if size > self.max_header_bytes else None

    def _too_many_headers(self) -> ModelgateError:
        return RequestHeadersTooLarge(
            f"The request has more than {self.max_header_count} header fields (MODELGATE_MAX_HEADER_COUNT)."
        )

    def _headers_too_large(self, size: int) -> ModelgateError:
        return RequestHeadersTooLarge(
            f"The request's header fields take more than {self.max_header_bytes} bytes ({size} so far; "
            "MODELGATE_MAX_HEADER_BYTES)."
        )


def _address(transport: asyncio.Transport, which: str) -> tuple[str, int] | None:
    """The connection's local (``sockname``) or remote (``peername``) host and port for the ASGI scope."""
    info = transport.get_extra_info(which)
    if isinstance(info, tuple | list) and len(info) >= 2:
        return (str(info[0]), int(info[1]))
    return None
