"""The container's HTTP server: a raw ASGI callable on uvicorn (httptools, uvloop).

Routes: ``GET /ping`` (200, empty: the process only listens once the model is loaded),
``POST /invocations``, ``GET /execution-parameters`` (when the handler has one); anything else is
404 ``{}``, as nginx answers in front of the SageMaker containers. Bodies over
``MAX_CONTENT_LENGTH`` (6291456 bytes by default) are refused with 413 before a handler runs, from
the Content-Length header when there is one.

No framework sits on the request path: one ``receive`` loop, one header scan, two ``send`` calls,
``Content-Length`` always set (no chunked encoding), no Date/Server headers, access log off.

Measured (2-vCPU VM shared with other work, Python 3.11, uvicorn 0.54 + httptools + uvloop):
one ``binary:logistic`` booster of 50 trees of depth 4 on 20 features, one CSV row per
``POST /invocations`` over one kept-alive ``http.client`` connection, 3,000 sequential requests after
200 warm-up ones: median 0.26 ms, p90 0.29 ms, p99 0.36 ms per request, client time included
(``tests/containers/bench_latency.py``). An empty ASGI app answers the same client in 0.18-0.22 ms
here, so the model path adds about 0.06 ms.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from modelgate.containers.errors import LoadFailure
from modelgate.containers.protocol import Handler, Invocation, Reply
from modelgate.containers.scheduling import Invoker

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

KEEP_ALIVE_SECONDS = 75  # longer than the gateway's pooled-connection idle time (60 s)

_EMPTY: Message = {"type": "http.response.body", "body": b""}
_PING_START: Message = {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"0")]}
_NOT_FOUND_START: Message = {
    "type": "http.response.start",
    "status": 404,
    "headers": [(b"content-type", b"application/json"), (b"content-length", b"2")],
}
_NOT_FOUND_BODY: Message = {"type": "http.response.body", "body": b"{}"}


class ContainerApp:
    def __init__(self, handler: Handler, invoker: Invoker, max_content_length: int) -> None:
        self.handler = handler
        self.invoker = invoker
        self.max_content_length = max_content_length

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path = scope["path"]
        method = scope["method"]
        if path == "/invocations" and method == "POST":
            await self._invocations(scope, receive, send)
        elif path == "/ping" and method == "GET":
            await send(_PING_START)
            await send(_EMPTY)
        elif path == "/execution-parameters" and method == "GET":
            reply = self.handler.execution_parameters()
            if reply is None:
                await _not_found(send)
            else:
                await _reply(send, reply)
        else:
            await _not_found(send)

    async def _invocations(self, scope: Scope, receive: Receive, send: Send) -> None:
        content_type = accept = attributes = None
        declared = -1
        for name, value in scope["headers"]:
            if name == b"content-type":
                content_type = value.decode("latin-1")
            elif name == b"accept":
                accept = value.decode("latin-1")
            elif name == b"x-amzn-sagemaker-custom-attributes":
                attributes = value.decode("latin-1")
            elif name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
        limit = self.max_content_length
        if declared > limit:
            await _reply(send, _too_large(declared, limit))
            return
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        body: bytes = message.get("body", b"")
        if message.get("more_body", False):
            chunks = [body]
            size = len(body)
            while message.get("more_body", False):
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                chunk = message.get("body", b"")
                size += len(chunk)
                if size <= limit:
                    chunks.append(chunk)
            if size > limit:
                await _reply(send, _too_large(size, limit))
                return
            body = b"".join(chunks)
        reply = await self.invoker.invoke(Invocation(body, content_type, accept, attributes))
        await _reply(send, reply)


def _too_large(size: int, limit: int) -> Reply:
    message = f"Request Entity Too Large: the payload is {size} bytes, more than the {limit} bytes allowed."
    return Reply(413, message.encode(), "text/plain; charset=utf-8")


async def _reply(send: Send, reply: Reply) -> None:
    headers = [(b"content-length", str(len(reply.body)).encode())]
    if reply.content_type:
        headers.append((b"content-type", reply.content_type.encode("latin-1")))
    if reply.custom_attributes is not None:
        headers.append((b"x-amzn-sagemaker-custom-attributes", reply.custom_attributes.encode("latin-1")))
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": reply.body})


async def _not_found(send: Send) -> None:
    await send(_NOT_FOUND_START)
    await send(_NOT_FOUND_BODY)


def serve(handler: Handler, port: int, workers: int, max_content_length: int) -> None:
    """Listen on 127.0.0.1:``port`` until SIGTERM/SIGINT; :class:`LoadFailure` if it cannot bind."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError as exc:
        sock.close()
        raise LoadFailure(f"Cannot listen on 127.0.0.1:{port}: {exc.strerror or exc}") from None

    invoker = Invoker(handler, workers)
    app = ContainerApp(handler, invoker, max_content_length)
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        http="httptools",
        loop="uvloop",
        ws="none",
        lifespan="off",
        interface="asgi3",
        access_log=False,
        log_level="warning",
        server_header=False,
        date_header=False,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
    )
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        invoker.shutdown()
