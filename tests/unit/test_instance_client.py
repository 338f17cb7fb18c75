"""The instance client's deadlines: one lazily re-armed timer per connection (runtime/client.py).

A tiny HTTP server on loopback answers ``POST /invocations`` at once and never answers ``GET /ping``,
so a ping after an invocation runs on the same kept-alive connection, whose timer was armed for the
invocation's longer timeout: the ping must still fail after its own 2 s, not the invocation's 30.
"""

from __future__ import annotations

import asyncio
import time

from modelgate.runtime.client import InstanceClient, InstanceTimeout


class _Server(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if data.startswith(b"POST"):
            self.transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-type: text/plain\r\n\r\nok")  # type: ignore[attr-defined]


async def _serve() -> tuple[asyncio.AbstractServer, str]:
    server = await asyncio.get_running_loop().create_server(_Server, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}"


def test_a_short_deadline_after_a_long_one_on_the_same_connection_fires_on_time() -> None:
    async def main() -> tuple[bytes, bool, float]:
        server, url = await _serve()
        client = InstanceClient(invocation_timeout=30.0)
        try:
            reply = await client.invoke(url, b"x", {})
            started = time.monotonic()
            alive = await client.ping(url)  # same connection, 2 s deadline
            return reply.body, alive, time.monotonic() - started
        finally:
            await client.close()
            server.close()

    body, alive, waited = asyncio.run(main())
    assert body == b"ok" and alive is False
    assert 1.5 < waited < 5.0


def test_an_invocation_without_an_answer_times_out() -> None:
    async def main() -> float:
        server, url = await _serve()
        client = InstanceClient(invocation_timeout=0.5)
        started = time.monotonic()
        try:
            await client._request(url, "GET /ping", b"", {}, 0.5)  # never answered
        except InstanceTimeout:
            return time.monotonic() - started
        finally:
            await client.close()
            server.close()
        raise AssertionError("no timeout")

    assert 0.4 < asyncio.run(main()) < 3.0


class _SlowServer(asyncio.Protocol):
    """Answers 0.2 s after the request, the headers first and the body 0.1 s later."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        loop = asyncio.get_running_loop()
        write = self.transport.write  # type: ignore[attr-defined]
        loop.call_later(0.2, write, b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
        loop.call_later(0.3, write, b"ok")


def test_the_reply_is_timed_from_the_write_to_the_chunk_that_completes_it() -> None:
    """ModelLatency's two stamps (client.Reply): ``sent`` when the request is handed to the kernel,
    ``received`` when the last chunk of the answer is read, before it is parsed; not the first chunk."""

    async def main() -> tuple[float, float, float, float]:
        server = await asyncio.get_running_loop().create_server(_SlowServer, "127.0.0.1", 0)
        url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        client = InstanceClient(invocation_timeout=5.0)
        try:
            before = time.perf_counter()
            reply = await client.invoke(url, b"x", {})
            after = time.perf_counter()
            return before, reply.sent, reply.received, after
        finally:
            await client.close()
            server.close()

    before, sent, received, after = asyncio.run(main())
    assert before <= sent <= received <= after
    assert received - sent >= 0.29  # the body's chunk, 0.3 s after the request, not the headers' at 0.2 s
