"""HTTP to instances: kept-alive connections on a raw asyncio protocol, named errors.

The forward is the only I/O on the request path, so it is written for it: per instance a stack of idle
kept-alive connections; a request is one ``transport.write`` (a request line and Host header prepared
once per instance, then the headers and the body); the answer is parsed by httptools. Measured with
``bench/run.py`` against aiohttp's client, which this replaces: gateway CPU per request at concurrency 16
went from about 0.36 to 0.18 ms and throughput roughly doubled (bench/RESULTS.md, "prototypes").

``InstanceUnreachable`` and ``InstanceTimeout`` let the router answer AWS-shaped errors without knowing
the transport. A request that meets a reused connection the instance had already closed (before any
byte of an answer came back) is sent once more on a new connection; a request whose connection breaks
after that fails, since the instance may have run it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import cast
from urllib.parse import urlsplit

import httptools

MAX_REPLY_BYTES = 64 * 1024 * 1024
_KEPT = (b"content-type", b"x-amzn-sagemaker-custom-attributes")
_LENGTH = (b"content-length", b"transfer-encoding")


class InstanceUnreachable(Exception):
    """The connection to the instance failed or broke before an answer (it died, or is dying)."""


class InstanceTimeout(Exception):
    """The instance did not answer within the invocation timeout."""


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: bytes
    content_type: str | None
    custom_attributes: str | None


class _StaleConnection(InstanceUnreachable):
    """A reused connection was closed by the instance before any answer: safe to send again."""


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[Reply] | None = None
        self.headers: dict[bytes, bytes] = {}
        self.body: list[bytes] = []
        self.size = 0
        self.closed = False
        self.keep_alive = True
        self.reused = False
        self.got_bytes = False
        self.headers_done = False
        self.has_length = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not asyncio's classes

    def data_received(self, data: bytes) -> None:
        self.got_bytes = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.fail(InstanceUnreachable(f"the instance answered malformed HTTP: {exc}"))
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
            self.fail(InstanceUnreachable(f"the instance's answer is larger than {MAX_REPLY_BYTES} bytes"))
            self.close()
            return
        self.body.append(body)

    def on_message_complete(self) -> None:
        h = self.headers
        ct, ca = h.get(b"content-type"), h.get(b"x-amzn-sagemaker-custom-attributes")
        reply = Reply(
            self.parser.get_status_code(),
            b"".join(self.body),
            ct.decode("latin-1") if ct is not None else None,
            ca.decode("latin-1") if ca is not None else None,
        )
        self.keep_alive = self.parser.should_keep_alive()
        self._reset()
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(reply)

    def _reset(self) -> None:
        self.headers, self.body, self.size = {}, [], 0
        self.got_bytes = self.headers_done = self.has_length = False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is None:
            return
        if self.headers_done and not self.has_length:
            self.keep_alive = False
            self.on_message_complete()  # an answer delimited by closing the connection (HTTP/1.0 style)
            return
        reason = f"connection lost: {exc or 'closed by the instance'}"
        self.fail(_StaleConnection(reason) if self.reused and not self.got_bytes else InstanceUnreachable(reason))

    def fail(self, exc: Exception) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class InstanceClient:
    def __init__(self, invocation_timeout: float) -> None:
        self._timeout = invocation_timeout
        self._idle: dict[str, list[_Connection]] = {}
        self._heads: dict[tuple[str, str], bytes] = {}

    def _head(self, base_url: str, line: str) -> bytes:
        key = (base_url, line)
        head = self._heads.get(key)
        if head is None:
            netloc = urlsplit(base_url).netloc
            head = self._heads[key] = f"{line} HTTP/1.1\r\nHost: {netloc}\r\n".encode("latin-1")
        return head

    async def _connection(self, base_url: str) -> _Connection:
        idle = self._idle.get(base_url)
        while idle:
            conn = idle.pop()
            if not conn.closed:
                conn.reused = True
                return conn
        url = urlsplit(base_url)
        try:
            _, conn = await asyncio.get_running_loop().create_connection(
                _Connection, url.hostname or "127.0.0.1", url.port or 80
            )
        except OSError as exc:
            raise InstanceUnreachable(f"{type(exc).__name__}: {exc}") from exc
        return conn

    async def _send(self, base_url: str, payload: bytes, timeout: float) -> Reply:
        conn = await self._connection(base_url)
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[Reply] = loop.create_future()
        conn.waiter = waiter
        assert conn.transport is not None
        conn.transport.write(payload)
        timer = loop.call_later(timeout, conn.fail, InstanceTimeout(f"no answer within {timeout:g} s"))
        try:
            reply = await waiter
        except BaseException:
            conn.close()  # a late answer must never meet the next request
            raise
        finally:
            timer.cancel()
        if conn.keep_alive and not conn.closed:
            self._idle.setdefault(base_url, []).append(conn)
        else:
            conn.close()
        return reply

    async def _request(self, base_url: str, line: str, body: bytes, headers: dict[str, str], timeout: float) -> Reply:
        parts = [self._head(base_url, line), b"Content-Length: %d\r\n" % len(body)]
        for name, value in headers.items():
            parts.append(f"{name}: {value}\r\n".encode("latin-1"))
        parts += [b"\r\n", body]
        payload = b"".join(parts)
        try:
            return await self._send(base_url, payload, timeout)
        except _StaleConnection:
            self.forget(base_url)  # the others may be stale too: retry once on a new connection
            return await self._send(base_url, payload, timeout)

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
