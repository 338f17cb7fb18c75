"""The gateway's HTTP server runner (api/serve_http.py), in process on a free port, and its import graph.

It replaced ``uvicorn.Server``: lifespan startup before serving (a failed startup is exit status 3),
a graceful stop that closes idle connections at once, answers the requests in flight (with
``connection: close``), waits for them up to its timeout and then runs the lifespan shutdown. And the
reason it exists: the gateway no longer imports uvicorn or click.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from modelgate.api.http import Receive, Send, read_body, send_response
from modelgate.api.serve_http import STARTUP_FAILURE, HttpServer


class _App:
    def __init__(self, fail_startup: bool = False) -> None:
        self.fail_startup = fail_startup
        self.events: list[str] = []
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    if self.fail_startup:
                        await send({"type": "lifespan.startup.failed", "message": "no database"})
                        return
                    self.events.append("startup")
                    await send({"type": "lifespan.startup.complete"})
                else:
                    self.events.append("shutdown")
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        await read_body(receive, 1024, "too large")
        if scope["path"] == "/slow":
            self.entered.set()
            await self.release.wait()
        await send_response(send, 200, b"ok", [(b"content-type", b"text/plain")])


async def _read_answer(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    return head + await reader.readexactly(2)


def test_a_graceful_stop_answers_the_request_in_flight_then_shuts_the_app_down() -> None:
    async def main() -> None:
        app = _App()
        server = HttpServer(app, "127.0.0.1", 0, graceful_timeout=5)
        serving = asyncio.create_task(server.serve())
        await server.listening.wait()
        assert app.events == ["startup"]
        idle_r, idle_w = await asyncio.open_connection("127.0.0.1", server.port)
        idle_w.write(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        first = await _read_answer(idle_r)
        assert first.startswith(b"HTTP/1.1 200 OK\r\n") and b"server: modelgate" in first
        busy_r, busy_w = await asyncio.open_connection("127.0.0.1", server.port)
        busy_w.write(b"GET /slow HTTP/1.1\r\nHost: localhost\r\n\r\n")
        await app.entered.wait()

        server.stop()
        assert await asyncio.wait_for(idle_r.read(), 2) == b""  # the idle connection closes at once
        await asyncio.sleep(0.2)
        assert not serving.done() and app.events == ["startup"]  # waits for the request in flight
        app.release.set()
        answer = await asyncio.wait_for(busy_r.read(), 2)  # answered, then closed
        assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and b"connection: close\r\n" in answer
        assert answer.endswith(b"\r\n\r\nok")
        assert await asyncio.wait_for(serving, 2) == 0
        assert app.events == ["startup", "shutdown"]
        for w in (idle_w, busy_w):
            w.close()

    asyncio.run(main())


def test_a_request_that_outlasts_the_graceful_timeout_is_cut_off() -> None:
    async def main() -> None:
        app = _App()
        server = HttpServer(app, "127.0.0.1", 0, graceful_timeout=0.3)
        serving = asyncio.create_task(server.serve())
        await server.listening.wait()
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /slow HTTP/1.1\r\nHost: localhost\r\n\r\n")
        await app.entered.wait()
        started = time.monotonic()
        server.stop()
        assert await asyncio.wait_for(serving, 3) == 0
        assert 0.25 < time.monotonic() - started < 2
        assert app.events == ["startup", "shutdown"]
        answer = await asyncio.wait_for(reader.read(), 2)
        assert answer == b"" or answer.startswith(b"HTTP/1.1 500 ")  # cancelled in the app: its 500, if it got out
        writer.close()

    asyncio.run(main())


def test_a_failed_startup_is_exit_status_3_without_listening() -> None:
    app = _App(fail_startup=True)
    server = HttpServer(app, "127.0.0.1", 0)
    assert asyncio.run(server.serve()) == STARTUP_FAILURE
    assert not server.listening.is_set()


def test_an_address_in_use_is_exit_status_3_after_the_lifespan_shutdown() -> None:
    async def main() -> None:
        first = _App()
        one = HttpServer(first, "127.0.0.1", 0)
        serving = asyncio.create_task(one.serve())
        await one.listening.wait()
        second = _App()
        assert await HttpServer(second, "127.0.0.1", one.port).serve() == STARTUP_FAILURE
        assert second.events == ["startup", "shutdown"]
        one.stop()
        assert await serving == 0

    asyncio.run(main())
