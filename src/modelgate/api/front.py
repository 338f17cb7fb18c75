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

from modelgate.api.runtime import ARRIVED, Answer, RuntimeApi, error_response
from modelgate.errors import RequestTooLarge

log = logging.getLogger(__name__)


class _Invoke:
    """An InvokeEndpoint request on a uvicorn request cycle: its body, and whether it has run."""

    __slots__ = ("action", "chunks", "name", "running", "size", "started", "too_large")

    def __init__(self, name: str, action: str) -> None:
        self.name = name
        self.action = action
        self.chunks: list[bytes] = []
        self.size = 0
        self.started = False  # uvicorn started the cycle (it is not waiting behind a pipelined one)
        self.running = False
        self.too_large = False


_MARK = "_modelgate_invoke"  # the attribute of a RequestResponseCycle that holds its _Invoke (or None)


class FrontProtocol(HttpToolsProtocol):
    def on_message_begin(self) -> None:
        super().on_message_begin()
        cast(dict[str, object], self.scope)[ARRIVED] = time.perf_counter()

    def _classify(self, cycle: RequestResponseCycle) -> _Invoke | None:
        invoke = getattr(cycle, _MARK, False)
        if invoke is not False:
            return cast(_Invoke | None, invoke)
        invoke = None
        scope = cycle.scope
        path = scope["path"]
        if scope["method"] == "POST" and path.startswith("/endpoints/") and isinstance(self._runtime, RuntimeApi):
            parts = path.split("/")
            if len(parts) == 4:
                invoke = _Invoke(parts[2], parts[3])
        setattr(cycle, _MARK, invoke)
        return invoke

    @property
    def _runtime(self) -> RuntimeApi | None:
        return getattr(self.app, "runtime", None)  # None: not our App

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        if self.cycle is not None:
            self._classify(self.cycle)

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
        invoke = self._classify(cycle) if app is self.app else None  # not uvicorn's 503 app for over-limit
        if invoke is None:
            super()._start_asgi_task(cycle, app)
            return
        invoke.started = True
        if cycle.waiting_for_100_continue and not cycle.transport.is_closing():
            cycle.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            cycle.waiting_for_100_continue = False
        if not cycle.more_body or invoke.too_large:
            self._run(cycle, invoke)

    def on_body(self, body: bytes) -> None:
        cycle = self.cycle
        invoke = getattr(cycle, _MARK, None)
        if invoke is None:
            super().on_body(body)
            return
        if cycle.response_complete or invoke.too_large:
            return
        invoke.size += len(body)
        runtime = self._runtime
        assert runtime is not None
        if invoke.size > runtime.max_payload:
            invoke.too_large = True  # refused now, the rest of the body is read and dropped
            invoke.chunks.clear()
            if invoke.started and not invoke.running:
                self._run(cycle, invoke)
            return
        invoke.chunks.append(body)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        cycle = self.cycle
        invoke = getattr(cycle, _MARK, None)
        if invoke is not None and invoke.started and not invoke.running:
            self._run(cycle, invoke)

    def _run(self, cycle: RequestResponseCycle, invoke: _Invoke) -> None:
        invoke.running = True
        runtime = self._runtime
        assert runtime is not None

        def answer(out: Answer) -> None:
            _write_answer(runtime, cycle, out)

        if invoke.too_large:
            answer((*error_response(RequestTooLarge(runtime.too_large_message)), None))
            return
        chunks, invoke.chunks = invoke.chunks, []
        body = b"" if not chunks else chunks[0] if len(chunks) == 1 else b"".join(chunks)
        runtime.begin(cast(dict[str, object], cycle.scope), body, invoke.name, invoke.action, answer)


def _write_answer(runtime: RuntimeApi, cycle: RequestResponseCycle, out: Answer) -> None:
    status, headers, body, result = out
    try:
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
    except Exception:  # begin() answers every error itself: this is a bug, not the client's doing
        log.exception("InvokeEndpoint failed outside the handler")
        cycle.transport.close()
    finally:
        cycle.on_response = lambda: None
