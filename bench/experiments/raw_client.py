"""Prototype (not in src/): the instance client on a raw asyncio protocol with httptools, no aiohttp.

Same interface as ``modelgate.runtime.client.InstanceClient`` (``invoke``, ``ping``, ``close``; the same
``Reply`` and exceptions), so ``serve_patched.py`` can swap it in and the suite can measure the gain.
Per instance: a stack of idle kept-alive connections; a request is one ``transport.write`` of a head
prepared once per instance plus the body; the answer is parsed by httptools' response parser.
What it leaves out (fine for the measurement, needed before it goes to src/): retrying a request
that met a connection the instance had just closed, ``Expect: 100-continue``, a cap on body size.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import httptools

from modelgate.runtime.client import InstanceTimeout, InstanceUnreachable, Reply

_KEPT = (b"content-type", b"x-amzn-sagemaker-custom-attributes")


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[Reply] | None = None
        self.headers: dict[bytes, bytes] = {}
        self.body: list[bytes] = []
        self.closed = False
        self.keep_alive = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.fail(InstanceUnreachable(f"bad HTTP from the instance: {exc}"))
            self.close()

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name in _KEPT:
            self.headers[name] = value

    def on_body(self, body: bytes) -> None:
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
        self.headers, self.body = {}, []
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.fail(InstanceUnreachable(f"connection lost: {exc or 'closed by the instance'}"))

    def fail(self, exc: Exception) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class RawInstanceClient:
    def __init__(self, invocation_timeout: float) -> None:
        self._timeout = invocation_timeout
        self._idle: dict[str, list[_Connection]] = {}
        self._heads: dict[tuple[str, str, str], bytes] = {}

    def _head(self, base_url: str, method: str, path: str) -> bytes:
        key = (base_url, method, path)
        head = self._heads.get(key)
        if head is None:
            netloc = urlsplit(base_url).netloc
            head = self._heads[key] = f"{method} {path} HTTP/1.1\r\nHost: {netloc}\r\n".encode("latin-1")
        return head

    async def _connection(self, base_url: str) -> _Connection:
        idle = self._idle.setdefault(base_url, [])
        while idle:
            conn = idle.pop()
            if not conn.closed:
                return conn
        url = urlsplit(base_url)
        try:
            _, conn = await asyncio.get_running_loop().create_connection(_Connection, url.hostname, url.port)
        except OSError as exc:
            raise InstanceUnreachable(f"{type(exc).__name__}: {exc}") from exc
        return conn

    async def _request(
        self, base_url: str, method: str, path: str, body: bytes, headers: dict[str, str], timeout: float
    ) -> Reply:
        conn = await self._connection(base_url)
        parts = [self._head(base_url, method, path), b"Content-Length: %d\r\n" % len(body)]
        for name, value in headers.items():
            parts.append(f"{name}: {value}\r\n".encode("latin-1"))
        parts += [b"\r\n", body]
        loop = asyncio.get_running_loop()
        waiter = conn.waiter = loop.create_future()
        assert conn.transport is not None
        conn.transport.write(b"".join(parts))
        timer = loop.call_later(timeout, conn.fail, InstanceTimeout(f"no answer within {timeout:g} s"))
        try:
            reply = await waiter
        except BaseException:
            conn.close()  # a late answer must not meet the next request
            raise
        finally:
            timer.cancel()
        if conn.keep_alive and not conn.closed:
            self._idle[base_url].append(conn)
        else:
            conn.close()
        return reply

    async def invoke(self, base_url: str, body: bytes, headers: dict[str, str]) -> Reply:
        return await self._request(base_url, "POST", "/invocations", body, headers, self._timeout)

    async def ping(self, base_url: str) -> bool:
        try:
            return (await self._request(base_url, "GET", "/ping", b"", {}, 2.0)).status == 200
        except (InstanceUnreachable, InstanceTimeout):
            return False

    async def close(self) -> None:
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()
