"""HTTP to instances: kept-alive connections on a raw asyncio protocol, named errors.

The forward is the only I/O on the request path, so it is written for it: per instance a stack of idle
kept-alive connections; a request is one ``transport.write`` (a request line and Host header prepared
once per instance, then the headers and the body); the answer is parsed by httptools and handed to a
callback from the parser's own callback (:meth:`InstanceClient.start`): no task, no future, no extra
turn of the event loop (measured: about 0.05 ms less gateway CPU per request at concurrency 1, with the
front's same change). ``invoke`` and ``ping`` are coroutines over it. Measured with
``bench/run.py`` against aiohttp's client, which this replaces: gateway CPU per request at concurrency 16
went from about 0.36 to 0.18 ms and throughput roughly doubled (bench/RESULTS.md, "prototypes").

``InstanceUnreachable`` (the instance died or could not be reached), its subclass ``InstanceBadReply``
(it answered with broken HTTP) and ``InstanceTimeout`` let the router answer AWS-shaped errors without
knowing the transport. A request that meets a reused connection the instance had already closed (before any
byte of an answer came back) is sent once more on a new connection; a request whose connection breaks
after that fails, since the instance may have run it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast
from urllib.parse import urlsplit

import httptools

log = logging.getLogger(__name__)

MAX_REPLY_BYTES = 64 * 1024 * 1024
_KEPT = (b"content-type", b"x-amzn-sagemaker-custom-attributes")
_LENGTH = (b"content-length", b"transfer-encoding")


class InstanceUnreachable(Exception):
    """The connection to the instance failed or broke before an answer (it died, or is dying)."""


class InstanceBadReply(InstanceUnreachable):
    """The instance answered, but not with an acceptable HTTP answer (malformed, or too large): the
    container's fault, unlike a connection that broke because the instance died."""


class InstanceTimeout(Exception):
    """The instance did not answer within the invocation timeout."""


@dataclass(frozen=True, slots=True)
class Reply:
    """An instance's answer, with when the request was handed to the kernel (``sent``) and when the
    chunk that completed the answer was received, before the gateway parsed it (``received``), both
    ``time.perf_counter()``: ModelLatency is the time between, so the gateway's own work on either side
    (building the request, parsing the answer) counts as overhead."""

    status: int
    body: bytes
    content_type: str | None
    custom_attributes: str | None
    sent: float
    received: float


class _StaleConnection(InstanceUnreachable):
    """A reused connection was closed by the instance before any answer: safe to send again."""


Done = Callable[[Reply | None, Exception | None], None]
"""What an exchange ends with: ``(reply, None)`` or ``(None, error)``."""


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.exchange: _Exchange | None = None
        self.headers: dict[bytes, bytes] = {}
        self.body: list[bytes] = []
        self.size = 0
        self.closed = False
        self.keep_alive = True
        self.reused = False
        self.got_bytes = False
        self.headers_done = False
        self.has_length = False
        self.chunk_at = 0.0  # perf_counter() when the last chunk of the answer was received
        # The exchange's deadline, checked by one lazily re-armed timer per connection rather than a
        # timer made and cancelled per request (call_later + cancel cost more than the rest of a send).
        self.deadline = 0.0
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not asyncio's classes

    def watch(self, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        """Fail the exchange in flight if no answer comes within ``timeout`` seconds from now."""
        self.deadline = deadline = loop.time() + timeout
        timer = self.timer
        if timer is not None and timer.when() <= deadline:
            return  # it will look again then (an earlier, shorter exchange's timer)
        if timer is not None:
            timer.cancel()
        self.timer = loop.call_at(deadline, self._check_deadline, loop)

    def _check_deadline(self, loop: asyncio.AbstractEventLoop) -> None:
        self.timer = None
        exchange = self.exchange
        if exchange is None or self.closed:
            return
        left = self.deadline - loop.time()
        if left > 0:
            self.timer = loop.call_later(left, self._check_deadline, loop)
            return
        self.fail(InstanceTimeout(f"no answer within {exchange.timeout:g} s"))

    def data_received(self, data: bytes) -> None:
        self.chunk_at = time.perf_counter()
        self.got_bytes = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.fail(InstanceBadReply(f"the instance answered malformed HTTP: {exc}"))
            self.close()

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name in _KEPT:
            self.headers[name] = value
        elif name in _LENGTH:
            self.has_length = True

    def on_headers_complete(self) -> None:
        self.headers_done = True

    def on_body(self, body: bytes) -> None:
        self.size += len(body)
        if self.size > MAX_REPLY_BYTES:
            self.fail(InstanceBadReply(f"the instance's answer is larger than {MAX_REPLY_BYTES} bytes"))
            self.close()
            return
        self.body.append(body)

    def on_message_complete(self) -> None:
        h = self.headers
        ct, ca = h.get(b"content-type"), h.get(b"x-amzn-sagemaker-custom-attributes")
        body = self.body
        exchange = self.exchange
        reply = Reply(
            self.parser.get_status_code(),
            body[0] if len(body) == 1 else b"".join(body),
            ct.decode("latin-1") if ct is not None else None,
            ca.decode("latin-1") if ca is not None else None,
            exchange.sent if exchange is not None else self.chunk_at,
            self.chunk_at,
        )
        self.keep_alive = self.parser.should_keep_alive()
        self._reset()
        self.exchange = None
        if exchange is not None:
            exchange.finish(reply, None)

    def _reset(self) -> None:
        self.headers, self.body, self.size = {}, [], 0
        self.got_bytes = self.headers_done = self.has_length = False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.exchange is None:
            return
        if self.headers_done and not self.has_length:
            self.keep_alive = False
            self.on_message_complete()  # an answer delimited by closing the connection (HTTP/1.0 style)
            return
        reason = f"connection lost: {exc or 'closed by the instance'}"
        self.fail(_StaleConnection(reason) if self.reused and not self.got_bytes else InstanceUnreachable(reason))

    def fail(self, exc: Exception) -> None:
        exchange, self.exchange = self.exchange, None
        if exchange is not None:
            exchange.finish(None, exc)

    def close(self) -> None:
        self.closed = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.transport is not None:
            self.transport.close()


class _Exchange:
    """One request to an instance and its answer: sent on a connection, timed out, retried once on a
    new connection when the reused one turns out to be stale; ``done`` is called exactly once."""

    __slots__ = ("base_url", "client", "conn", "done", "payload", "retried", "sent", "timeout")

    def __init__(self, client: InstanceClient, base_url: str, payload: bytes, timeout: float, done: Done) -> None:
        self.client = client
        self.base_url = base_url
        self.payload = payload
        self.timeout = timeout
        self.done: Done | None = done
        self.conn: _Connection | None = None
        self.retried = False
        self.sent = 0.0

    def send(self, conn: _Connection) -> None:
        self.conn = conn
        conn.exchange = self
        assert conn.transport is not None
        self.sent = time.perf_counter()
        conn.transport.write(self.payload)
        conn.watch(self.client.loop, self.timeout)

    def finish(self, reply: Reply | None, exc: Exception | None) -> None:
        conn = self.conn
        if conn is not None:
            if exc is None and conn.keep_alive and not conn.closed:
                self.client.idle_connection(self.base_url, conn)
            else:
                conn.close()  # a late answer must never meet the next request
        if isinstance(exc, _StaleConnection) and not self.retried:
            self.retried = True  # the other idle connections may be stale too: retry once on a new one
            self.client.forget(self.base_url)
            self.client.connect_and_send(self)
            return
        self._call(reply, exc)

    def abort(self) -> None:
        """The caller gave up (cancelled): close the connection so that no late answer is read."""
        self.done = None
        if self.conn is not None:
            self.conn.exchange = None
            self.conn.close()

    def _call(self, reply: Reply | None, exc: Exception | None) -> None:
        done, self.done = self.done, None
        if done is None:
            return
        try:
            done(reply, exc)
        except Exception:  # the caller's bug must not break the instance connection it was called from
            log.exception("the handler of an instance answer failed")


class InstanceClient:
    def __init__(self, invocation_timeout: float) -> None:
        self._timeout = invocation_timeout
        self._idle: dict[str, list[_Connection]] = {}
        self._heads: dict[tuple[str, str], bytes] = {}
        self._connecting: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    def _head(self, base_url: str, line: str) -> bytes:
        key = (base_url, line)
        head = self._heads.get(key)
        if head is None:
            netloc = urlsplit(base_url).netloc
            head = self._heads[key] = f"{line} HTTP/1.1\r\nHost: {netloc}\r\n".encode("latin-1")
        return head

    def _payload(self, base_url: str, line: str, body: bytes, headers: dict[str, str]) -> bytes:
        parts = [self._head(base_url, line), b"Content-Length: %d\r\n" % len(body)]
        for name, value in headers.items():
            parts.append(f"{name}: {value}\r\n".encode("latin-1"))
        parts += [b"\r\n", body]
        return b"".join(parts)

    def idle_connection(self, base_url: str, conn: _Connection) -> None:
        idle = self._idle.get(base_url)
        if idle is None:
            self._idle[base_url] = [conn]
        else:
            idle.append(conn)

    def start(
        self, base_url: str, line: str, body: bytes, headers: dict[str, str], timeout: float, done: Done
    ) -> _Exchange:
        """Send a request without waiting: on a kept-alive idle connection at once (the request path:
        no task, no future), else on a new connection from a task. ``done`` is called once, later."""
        exchange = _Exchange(self, base_url, self._payload(base_url, line, body, headers), timeout, done)
        idle = self._idle.get(base_url)
        while idle:
            conn = idle.pop()
            if not conn.closed:
                conn.reused = True
                exchange.send(conn)
                return exchange
        self.connect_and_send(exchange)
        return exchange

    def connect_and_send(self, exchange: _Exchange) -> None:
        task = self.loop.create_task(self._connect_and_send(exchange))
        self._connecting.add(task)
        task.add_done_callback(self._connecting.discard)

    async def _connect_and_send(self, exchange: _Exchange) -> None:
        url = urlsplit(exchange.base_url)
        try:
            _, conn = await self.loop.create_connection(_Connection, url.hostname or "127.0.0.1", url.port or 80)
        except OSError as exc:
            exchange.finish(None, InstanceUnreachable(f"{type(exc).__name__}: {exc}"))
            return
        except asyncio.CancelledError:
            exchange.finish(None, InstanceUnreachable("the gateway is shutting down"))
            raise
        if exchange.done is None:  # aborted while connecting
            conn.close()
            return
        exchange.send(conn)

    def start_invoke(self, base_url: str, body: bytes, headers: dict[str, str], done: Done) -> _Exchange:
        return self.start(base_url, "POST /invocations", body, headers, self._timeout, done)

    async def _request(self, base_url: str, line: str, body: bytes, headers: dict[str, str], timeout: float) -> Reply:
        future: asyncio.Future[Reply] = self.loop.create_future()

        def done(reply: Reply | None, exc: Exception | None) -> None:
            if future.done():
                return
            if exc is not None:
                future.set_exception(exc)
            else:
                assert reply is not None
                future.set_result(reply)

        exchange = self.start(base_url, line, body, headers, timeout, done)
        try:
            return await future
        except asyncio.CancelledError:
            exchange.abort()
            raise

    async def invoke(self, base_url: str, body: bytes, headers: dict[str, str]) -> Reply:
        return await self._request(base_url, "POST /invocations", body, headers, self._timeout)

    async def ping(self, base_url: str) -> bool:
        try:
            reply: Reply = await self._request(base_url, "GET /ping", b"", {}, 2.0)
        except (InstanceUnreachable, InstanceTimeout):
            return False
        return reply.status == 200

    def forget(self, base_url: str) -> None:
        """Close the idle connections to an instance that has stopped."""
        for conn in self._idle.pop(base_url, []):
            conn.close()

    async def close(self) -> None:
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()
        for task in list(self._connecting):
            task.cancel()
