"""Runs the gateway's HTTP server: the part of ``uvicorn.Server`` the gateway used, without uvicorn.

Importing uvicorn cost the gateway 2.6 MB of resident memory (its package pulls click, its reload and
multiprocess supervisors, multiprocessing, logging.config, configparser, ssl), for a server loop of
which the gateway used one path: one TCP socket, uvloop, the protocol of api/front.py, the ASGI
lifespan, signals and a graceful shutdown. That path, in the same order as uvicorn 0.54:

1. the App's lifespan startup; if it fails, exit with status 3 (uvicorn's ``STARTUP_FAILURE``);
2. listen on ``host:port`` (``SO_REUSEADDR``, backlog 2048); if that fails, lifespan shutdown and 3;
3. serve until SIGINT or SIGTERM, then: stop accepting, ``shutdown()`` every connection (idle ones
   close, busy ones after their answer), wait up to ``graceful_timeout`` seconds for the connections
   and the ASGI tasks to finish, cancel and close what is left, run the lifespan shutdown, exit 0.
   A second SIGINT skips the wait and the lifespan shutdown (uvicorn's force exit).

Unlike uvicorn, the process exits 0 after a graceful stop instead of re-raising the signal against
itself, and nothing polls: uvicorn woke every 0.1 s to refresh its date header and look for a signal;
here signals come through the event loop and the date is formatted when a response needs it.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Coroutine
from typing import Any

from modelgate.api.app import ASGIApp
from modelgate.api.browsers import BrowserGuard
from modelgate.api.front import FrontProtocol, ServerState
from modelgate.api.front_limits import FrontLimits

log = logging.getLogger(__name__)

STARTUP_FAILURE = 3
BACKLOG = 2048
GRACEFUL_SECONDS = 10.0


class Lifespan:
    """The ASGI lifespan protocol from the server's side: startup before serving, shutdown after."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.state: dict[str, Any] = {}
        self._messages: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._started = asyncio.Event()
        self._stopped = asyncio.Event()
        self._task: asyncio.Task[None] | None = None  # held: the loop keeps only weak references to tasks
        self.failed = False  # startup failed, or the app raised
        self._raised = False

    async def startup(self) -> bool:
        """Run the app's startup; False when it failed (logged)."""
        log.info("Waiting for application startup.")
        self._task = asyncio.create_task(self._main())
        await self._messages.put({"type": "lifespan.startup"})
        await self._started.wait()
        if self.failed:
            log.error("Application startup failed. Exiting.")
            return False
        log.info("Application startup complete.")
        return True

    async def shutdown(self) -> None:
        if self._raised:
            return  # the app's lifespan is over: nobody would answer
        log.info("Waiting for application shutdown.")
        await self._messages.put({"type": "lifespan.shutdown"})
        await self._stopped.wait()
        if self.failed:
            log.error("Application shutdown failed.")
        else:
            log.info("Application shutdown complete.")

    async def _main(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": self.state}
        try:
            await self.app(scope, self._messages.get, self._send)
        except BaseException as exc:
            self._raised = True
            if not self.failed:  # a failure the app reported itself is logged already
                self.failed = True
                log.error("Exception in 'lifespan' protocol\n", exc_info=exc)
        finally:
            self._started.set()
            self._stopped.set()

    async def _send(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind in ("lifespan.startup.failed", "lifespan.shutdown.failed"):
            self.failed = True
            if message.get("message"):
                log.error("%s", message["message"])
        if kind.startswith("lifespan.startup."):
            self._started.set()
        elif kind.startswith("lifespan.shutdown."):
            self._stopped.set()


class HttpServer:
    """One listening socket serving ``app`` through :class:`FrontProtocol` until told to stop.

    ``limits`` are the front's (api/front_limits.py); ``guard`` says which Host names and browser origins
    are accepted (api/browsers.py; by default the names of ``host`` and localhost, no origins)."""

    def __init__(
        self,
        app: ASGIApp,
        host: str,
        port: int,
        *,
        limits: FrontLimits | None = None,
        guard: BrowserGuard | None = None,
        graceful_timeout: float = GRACEFUL_SECONDS,
    ) -> None:
        self.app = app
        self.host = host
        self.port = port  # the bound port once listening (``port=0`` picks one)
        self.graceful_timeout = graceful_timeout
        self.state = ServerState(limits, guard or BrowserGuard.for_server(host))
        self.listening = asyncio.Event()
        self._stop = asyncio.Event()
        self._force = asyncio.Event()

    def run(self) -> int:
        """Serve on a new uvloop event loop; the process's exit status."""
        import uvloop

        return uvloop.run(self.serve())

    def stop(self, force: bool = False) -> None:
        """Begin the graceful shutdown (``force``: skip waiting for connections and the lifespan shutdown)."""
        if force:
            self._force.set()
        self._stop.set()

    def _on_signal(self, sig: signal.Signals) -> None:
        self.stop(force=self._stop.is_set() and sig == signal.SIGINT)

    async def serve(self) -> int:
        loop = asyncio.get_running_loop()
        handled = (signal.SIGINT, signal.SIGTERM)
        for sig in handled:
            loop.add_signal_handler(sig, self._on_signal, sig)
        try:
            return await self._serve(loop)
        finally:
            for sig in handled:
                loop.remove_signal_handler(sig)

    async def _serve(self, loop: asyncio.AbstractEventLoop) -> int:
        lifespan = Lifespan(self.app)
        if not await lifespan.startup():
            return STARTUP_FAILURE

        def connection() -> FrontProtocol:
            return FrontProtocol(self.app, self.state, lifespan.state, loop)

        try:
            server = await loop.create_server(connection, self.host, self.port, reuse_address=True, backlog=BACKLOG)
        except OSError as exc:
            log.error("%s", exc)
            await lifespan.shutdown()
            return STARTUP_FAILURE
        if server.sockets:
            self.port = server.sockets[0].getsockname()[1]
        log.info("accepting connections on %s:%d", self.host, self.port)
        self.listening.set()
        await self._stop.wait()
        await self._shutdown(server)
        await self._unless_forced(lifespan.shutdown())
        return 0

    async def _shutdown(self, server: asyncio.AbstractServer) -> None:
        log.info("Shutting down")
        server.close()  # no new connections
        state = self.state
        for conn in list(state.connections):
            conn.shutdown()
        finished = await self._unless_forced(self._finished(server), self.graceful_timeout)
        if finished:
            return
        if not self._force.is_set():
            log.error("Cancel %d running task(s), timeout graceful shutdown exceeded", len(state.tasks))
        tasks = list(state.tasks)
        for task in tasks:
            task.cancel()
        if tasks:  # a cancelled request answers its 500 if it had not started (AsgiCycle.run_asgi)
            await asyncio.wait(tasks, timeout=1)
        for conn in list(state.connections):
            conn.transport.close()

    async def _unless_forced(self, work: Coroutine[Any, Any, None], timeout: float | None = None) -> bool:
        """Run ``work`` unless a forced stop comes first or ``timeout`` passes; did it finish?"""
        if self._force.is_set():
            work.close()
            return False
        task = asyncio.create_task(work)
        forced = asyncio.create_task(self._force.wait())
        done, _ = await asyncio.wait((task, forced), timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        task.cancel()
        forced.cancel()
        if task not in done:
            return False
        if task.exception() is not None:
            log.error("shutdown failed", exc_info=task.exception())
        return True

    async def _finished(self, server: asyncio.AbstractServer) -> None:
        """Until every connection has closed and every ASGI task has ended."""
        state = self.state
        if state.connections:
            log.info("Waiting for connections to close.")
        while state.connections:
            await asyncio.sleep(0.05)
        if state.tasks:
            log.info("Waiting for background tasks to complete.")
        while state.tasks:
            await asyncio.sleep(0.05)
        await server.wait_closed()
