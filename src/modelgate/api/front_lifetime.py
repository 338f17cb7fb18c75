"""When a connection of the HTTP front closes, and what it answers then: the base of FrontProtocol.

* **Deadlines, one timer per connection.** ``deadline`` is the loop time at which an idle connection
  closes: a new one that sent no request, a kept-alive one after its last answer, or one lingering after
  a refusal. A head being read instead has ``header_timeout`` from ``head_since`` (its first byte), and
  gets 408. The timer looks only when the queue is empty (else the connection is busy, and the last
  answer re-arms it) and re-arms itself when the deadline moved; it is moved earlier only when a new
  deadline comes before it. Nothing is scheduled per request.
* **Refusals in order.** :meth:`_fail` stops the reading of requests; the complete ones before are
  answered first (``after_last`` waits for the queue), the one cut short is dropped, never run.
* **A lingering close.** After a refusal our side is shut for writing and the client's further data is
  read and dropped for ``LINGER_SECONDS``: closing a socket with unread data resets the connection, and
  the client might lose the refusal (a 64 MB header's sender is still writing when its 431 is ready).
* **Half-close.** A client that shut its side after complete requests (``shutdown(SHUT_WR)``) still
  gets their answers: :meth:`eof_received` keeps the transport open for writing until then.
* **The connection limit.** A connection beyond it is answered 503 and lingers, counted, up to twice the
  limit; beyond that it is closed at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque

from modelgate.api.asgi_cycle import AsgiCycle, FlowControl
from modelgate.api.front_limits import LINGER_SECONDS, refusal
from modelgate.api.front_requests import REFUSED_LOG_SECONDS, Invoke, Request, ServerState, complete
from modelgate.errors import ModelgateError, RequestTimeout, TooManyConnections

log = logging.getLogger(__name__)


class Lifetime:
    """The deadline, refusal and closing state of a connection; FrontProtocol sets these attributes."""

    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    flow: FlowControl
    server_state: ServerState
    client: tuple[str, int] | None
    queue: deque[Request]
    current: Request | None
    header_timeout: float
    reading_head: bool
    head_since: float
    deadline: float
    timer: asyncio.TimerHandle | None
    timer_at: float
    failed: bool
    eof: bool
    after_last: bytes | None

    def eof_received(self) -> bool:
        """The client sends nothing more (``shutdown(SHUT_WR)`` or a close). The requests it completed
        are still answered, then the connection closes (True keeps it open for writing); one whose body
        was cut short is dropped, never run."""
        self.eof = True
        queue = self.queue
        if self.failed:
            return bool(queue)  # a refusal waits behind answers; else it was written: done
        if not queue:
            return False
        last = queue[-1]
        if last is self.current and not complete(last):
            if len(queue) == 1:
                return False  # the one being served: connection_lost tells it the client is gone
            queue.pop()
        self.after_last = b""
        return True

    def shutdown(self) -> None:
        """Called by the server (api/serve_http.py) at graceful shutdown: close now if idle, else after the answer."""
        if not self.queue:
            self.transport.close()
            return
        head = self.queue[0]
        head.keep_alive = False
        while len(self.queue) > 1:
            self.queue.pop()

    def _fail(self, exc: ModelgateError) -> None:
        """Stop reading requests: answer the complete ones before, in order, then ``exc``; then close.
        The request that ``exc`` cut short is dropped, never run."""
        if not isinstance(exc, RequestTimeout):  # slow clients are routine; the rest is worth a line
            log.warning("refused a request from %s: %d %s", _peer(self.client), exc.status, exc.message)
        self.failed = True
        self.reading_head = False
        self.after_last = refusal(exc)
        queue = self.queue
        current = self.current
        if queue and queue[-1] is current and not complete(current):
            queue.pop()
            if not queue and not self._abandon(current):
                self.transport.close()  # its answer had begun: nothing can follow it
                return
        if queue:
            self.flow.pause_reading()  # the answers come first; nothing more is parsed
        else:
            self._write_last()

    def _abandon(self, request: Request) -> bool:
        """The request being served will not be completed: it must not run on, nor answer. Can the
        refusal still be written (it had not begun to answer)?"""
        if isinstance(request, AsgiCycle):
            request.disconnected = True  # its receive() says http.disconnect: read_body raises
            request.on_response = _nothing
            request.message_event.set()
            return not request.response_started
        if isinstance(request, Invoke):
            request.disconnected = True
        return True

    def _write_last(self) -> None:
        """The queue is answered: write ``after_last`` and close. After a refusal, the client's further
        data is read and dropped for a moment first (our side shut for writing): closing with unread
        data would reset the connection, and the client might lose the refusal."""
        transport = self.transport
        if transport.is_closing():
            return
        last = self.after_last
        if last:
            transport.write(last)
        if not last or self.eof or not transport.can_write_eof():
            transport.close()
            return
        transport.write_eof()
        self.flow.resume_reading()
        self._set_deadline(self.loop.time() + LINGER_SECONDS)

    def _refuse_connection(self) -> None:
        state = self.server_state
        limit = state.limits.max_connections
        now = self.loop.time()
        if now - state.refused_logged >= REFUSED_LOG_SECONDS:
            state.refused_logged = now
            log.warning("refusing new connections: %d open, the limit (MODELGATE_MAX_CONNECTIONS)", limit)
        self.failed = True
        self.after_last = refusal(
            TooManyConnections(
                f"modelgate has {limit} connections open, its limit (MODELGATE_MAX_CONNECTIONS); try again later."
            )
        )
        if len(state.connections) < 2 * limit:
            state.connections.add(self)  # lingers a moment (counted, so that refusals stay bounded too)
            self._write_last()
        else:
            self.transport.write(self.after_last)
            self.transport.close()

    def _set_deadline(self, deadline: float) -> None:
        self.deadline = deadline
        if self.timer is None or self.timer_at > deadline:
            self._arm(deadline)

    def _arm(self, deadline: float) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer = self.loop.call_at(deadline, self._check_deadline)
        self.timer_at = deadline

    def _check_deadline(self) -> None:
        """The timer: close the connection once its deadline has passed, else look again at the deadline."""
        self.timer = None
        if self.queue or self.transport.is_closing():
            return  # busy: the last answer sets the deadline and re-arms
        now = self.loop.time()
        heading = self.reading_head and not self.failed
        deadline = now + self.head_since + self.header_timeout - time.perf_counter() if heading else self.deadline
        if deadline > now:
            self._arm(deadline)
        elif heading:
            self._fail(
                RequestTimeout(
                    f"The request's headers did not arrive within {self.header_timeout:g} s "
                    "(MODELGATE_HEADER_TIMEOUT_SECONDS)."
                )
            )
        else:
            self.transport.close()  # idle (a new connection that sent nothing, or keep-alive), or lingered


def _nothing() -> None:
    pass


def _peer(client: tuple[str, int] | None) -> str:
    return f"{client[0]}:{client[1]}" if client else "an unknown client"
