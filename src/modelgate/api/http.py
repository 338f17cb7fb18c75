"""A minimal ASGI request/response layer for the hot path and the AWS protocols.

We use plain ASGI rather than a framework's request objects: the runtime path reads the body once,
looks up a handful of headers and writes one response, and every layer we skip is time we save.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from modelgate.errors import ClientDisconnected, RequestTooLarge

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class Request:
    __slots__ = ("body", "headers", "method", "path", "query_string", "scope")

    def __init__(self, scope: Scope, body: bytes) -> None:
        self.scope = scope
        self.method: str = scope["method"]
        self.path: str = scope["path"]
        self.query_string: bytes = scope.get("query_string", b"")
        self.headers: dict[str, str] = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        self.body = body

    def header(self, name: str) -> str | None:
        """Header by lower-case name."""
        return self.headers.get(name)

    @property
    def client_ip(self) -> str:
        client = self.scope.get("client")
        return str(client[0]) if client else ""


async def read_body(receive: Receive, limit: int, too_large_message: str) -> bytes:
    """Read the whole body, refusing more than ``limit`` bytes without buffering past it.

    A disconnect before the last body message raises :class:`ClientDisconnected` (as Starlette's
    ``ClientDisconnect``): a body cut short must never be taken for the whole one and executed."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected("The client disconnected before the whole request body arrived.")
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise RequestTooLarge(too_large_message)
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    if len(chunks) == 1:
        return chunks[0]
    return b"".join(chunks)


def new_request_id() -> str:
    return str(uuid.uuid4())


async def send_response(
    send: Send,
    status: int,
    body: bytes,
    headers: Iterable[tuple[bytes, bytes]] = (),
) -> None:
    raw = [(b"content-length", str(len(body)).encode()), *headers]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


async def send_json(
    send: Send, status: int, payload: Any, content_type: bytes, extra: Iterable[tuple[bytes, bytes]] = ()
) -> None:
    body = json.dumps(payload, separators=(",", ":")).encode()
    await send_response(send, status, body, [(b"content-type", content_type), *extra])
