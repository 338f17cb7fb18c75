"""What the HTTP front (api/front.py) keeps per server and per request.

:class:`ServerState` is shared by the connections of one server. A connection's queue holds its
requests in arrival order, of three kinds: :class:`Invoke` (InvokeEndpoint, answered from the parser
callbacks), :class:`~modelgate.api.asgi_cycle.AsgiCycle` (everything else, through the App) and
:class:`Canned` (a CORS preflight, answered from its head alone).
"""

from __future__ import annotations

import asyncio
import time
from email.utils import formatdate
from typing import TYPE_CHECKING

from modelgate.api.asgi_cycle import AsgiCycle
from modelgate.api.browsers import BrowserGuard
from modelgate.api.front_limits import FrontLimits

if TYPE_CHECKING:
    from modelgate.api.front_lifetime import Lifetime

_SERVER = (b"server", b"modelgate")
REFUSED_LOG_SECONDS = 10.0  # the connection limit is logged at most this often


class ServerState:
    """What the connections of one server share: its limits and browser guard; the server waits on
    ``connections`` and ``tasks`` at graceful shutdown; ``default_headers`` go on every ASGI answer."""

    def __init__(self, limits: FrontLimits | None = None, guard: BrowserGuard | None = None) -> None:
        self.limits = limits or FrontLimits()
        self.guard = guard or BrowserGuard(())
        self.total_requests = 0
        self.connections: set[Lifetime] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.refused_logged = -REFUSED_LOG_SECONDS
        self._second = -1
        self._default_headers: list[tuple[bytes, bytes]] = []

    def default_headers(self) -> list[tuple[bytes, bytes]]:
        """``date`` and ``server``; the date is formatted once a second at most."""
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._default_headers = [(b"date", formatdate(now, usegmt=True).encode()), _SERVER]
        return self._default_headers


class Invoke:
    """An InvokeEndpoint request: its headers, its body as it arrives, and where it is."""

    __slots__ = (
        "action",
        "chunks",
        "complete",
        "cors",
        "disconnected",
        "expect_continue",
        "keep_alive",
        "name",
        "running",
        "scope",
        "size",
        "started",
        "too_large",
    )

    def __init__(
        self,
        name: str,
        action: str,
        scope: dict[str, object],
        keep_alive: bool,
        expect: bool,
        cors: list[tuple[bytes, bytes]] | None,
    ) -> None:
        self.name = name
        self.action = action
        self.scope = scope
        self.keep_alive = keep_alive
        self.expect_continue = expect
        self.cors = cors  # headers for an allowed browser origin
        self.chunks: list[bytes] = []
        self.size = 0
        self.complete = False  # the whole body was parsed
        self.started = False  # at the head of the connection's queue
        self.running = False
        self.too_large = False
        self.disconnected = False


class Canned:
    """A request answered from its head alone (an allowed origin's CORS preflight)."""

    __slots__ = ("answer", "complete", "keep_alive")

    def __init__(self, answer: bytes, keep_alive: bool) -> None:
        self.answer = answer
        self.keep_alive = keep_alive
        self.complete = False


Request = Invoke | AsgiCycle | Canned


def complete(request: Request) -> bool:
    """Was the whole request (its body included) parsed?"""
    if isinstance(request, AsgiCycle):
        return not request.more_body
    return request.complete
