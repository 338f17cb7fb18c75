"""The container as a raw ASGI callable, served by uvicorn (``MODELGATE_CONTAINER_HTTP=uvicorn``).

The default front end is ``http1`` (measured faster, see there); this one stays for deployments
that prefer uvicorn's HTTP handling, and as the reference the other is checked against.
"""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from modelgate.containers import routes
from modelgate.containers.errors import InvocationError
from modelgate.containers.protocol import Handler, Invocation, Reply
from modelgate.containers.routes import Route
from modelgate.containers.scheduling import Invoker

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class ContainerApp:
    def __init__(self, handler: Handler, invoker: Invoker, max_content_length: int) -> None:
        self.handler = handler
        self.invoker = invoker
        self.max_content_length = max_content_length

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        which = routes.route(scope["method"], scope["path"])
        if which is Route.INVOCATIONS:
            reply = await self._invocations(scope, receive)
        elif which is Route.PING:
            reply = routes.PING
        elif which is Route.EXECUTION_PARAMETERS:
            try:
                reply = self.handler.execution_parameters() or routes.NOT_FOUND
            except InvocationError as exc:
                reply = Reply(exc.status, exc.message.encode(), "text/plain; charset=utf-8")
        else:
            reply = routes.NOT_FOUND
        if reply is not None:
            await _send(send, reply)

    async def _invocations(self, scope: Scope, receive: Receive) -> Reply | None:
        content_type = accept = attributes = None
        declared = -1
        for name, value in scope["headers"]:
            if name == b"content-type":
                content_type = value.decode("latin-1")
            elif name == b"accept":
                accept = value.decode("latin-1")
            elif name == b"x-amzn-sagemaker-custom-attributes":
                attributes = value.decode("latin-1")
            elif name == b"content-length" and value.isdigit():
                declared = int(value)
        limit = self.max_content_length
        if declared > limit:
            return routes.too_large(declared, limit)
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size <= limit:
                chunks.append(chunk)
            more = message.get("more_body", False)
        if size > limit:
            return routes.too_large(size, limit)
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        return await self.invoker.invoke(Invocation(body, content_type, accept, attributes))


async def _send(send: Send, reply: Reply) -> None:
    headers = [(b"content-length", str(len(reply.body)).encode())]
    if reply.content_type:
        headers.append((b"content-type", reply.content_type.encode("latin-1")))
    if reply.custom_attributes is not None:
        headers.append((b"x-amzn-sagemaker-custom-attributes", reply.custom_attributes.encode("latin-1")))
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": reply.body})


def serve_uvicorn(app: ContainerApp, sock: socket.socket, keep_alive: int) -> None:
    import uvicorn

    config = uvicorn.Config(
        app,
        http="httptools",
        loop="uvloop",
        ws="none",
        lifespan="off",
        interface="asgi3",
        access_log=False,
        proxy_headers=False,  # no ProxyHeadersMiddleware wrapped around the app
        log_level="warning",
        server_header=False,
        date_header=False,
        timeout_keep_alive=keep_alive,
    )
    uvicorn.Server(config).run(sockets=[sock])
