"""The HTTP front: uvicorn's httptools protocol, with InvokeEndpoint answered without ASGI.

uvicorn parses every request (httptools) and keeps what a server must: keep-alive and its timeout,
pipelining, flow control, graceful shutdown. Two things are added:

* ``on_message_begin`` stamps ``time.perf_counter()`` into the scope (``ARRIVED``) when the request's
  first bytes are parsed, the earliest moment the process knows of it: ``OverheadLatency`` starts
  there (what the kernel and the event loop's queue added before is invisible to any server).
* ``POST /endpoints/{name}/{action}`` does not go through the ASGI app: its task reads the body from
  uvicorn's request cycle as the app would, calls :meth:`RuntimeApi.process`, and writes the status
  line, headers and body with *one* ``transport.write`` (uvicorn's ASGI ``send`` writes headers and
  body separately and checks each header against a regular expression: two syscalls and two TCP
  segments per answer). Our headers need no check: names are constants, values come from the
  instance's answer as httptools parsed it (no CR or LF) or from validated names.
  Every other request (the control plane, CloudWatch, A/B, health) takes uvicorn's ASGI path.

The override relies on uvicorn's ``HttpToolsProtocol._start_asgi_task`` and ``RequestResponseCycle``
attributes, which is why uvicorn is pinned exactly (pyproject.toml); tests/e2e exercise both paths.
"""

from __future__ import annotations

import logging
import time
from typing import Any, cast

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol, RequestResponseCycle

from modelgate.api.http import Receive
from modelgate.api.runtime import ARRIVED, RuntimeApi

log = logging.getLogger(__name__)


class FrontProtocol(HttpToolsProtocol):
    def on_message_begin(self) -> None:
        super().on_message_begin()
        cast(dict[str, object], self.scope)[ARRIVED] = time.perf_counter()

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
        scope = cycle.scope
        path = scope["path"]
        runtime = getattr(app, "runtime", None)  # None: not our App (e.g. uvicorn's 503 for over-limit)
        if scope["method"] == "POST" and path.startswith("/endpoints/") and isinstance(runtime, RuntimeApi):
            parts = path.split("/")
            if len(parts) == 4:
                task = self.loop.create_task(_invoke(runtime, cycle, parts[2], parts[3]))
                task.add_done_callback(self.tasks.discard)
                self.tasks.add(task)
                return
        super()._start_asgi_task(cycle, app)


async def _invoke(runtime: RuntimeApi, cycle: RequestResponseCycle, name: str, action: str) -> None:
    try:
        status, headers, body, result = await runtime.process(
            cast(dict[str, object], cycle.scope), cast(Receive, cycle.receive), name, action
        )
        if cycle.flow.write_paused and not cycle.disconnected:
            await cycle.flow.drain()
        if not cycle.disconnected:
            parts = [STATUS_LINE[status], b"content-length: %d\r\n" % len(body)]
            for k, v in headers:
                parts += (k, b": ", v, b"\r\n")
            if not cycle.keep_alive:
                parts.append(b"connection: close\r\n")
            parts += (b"\r\n", body)
            cycle.response_started = True
            cycle.transport.write(b"".join(parts))
        cycle.response_complete = True
        cycle.message_event.set()
        if not cycle.keep_alive:
            cycle.transport.close()
        cycle.on_response()
        if result is not None:
            runtime.router.record(result)
    except Exception:  # process() answers every error itself: this is a bug, not the client's doing
        log.exception("InvokeEndpoint failed outside the handler")
        cycle.transport.close()
    finally:
        cycle.on_response = lambda: None
