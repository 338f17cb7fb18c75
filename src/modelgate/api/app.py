"""The ASGI application: one port for every protocol.

Dispatch (see the reference, §1.1):
* ``/endpoints/{name}/{action}`` → the runtime (rest-json);
* ``POST /`` with ``X-Amz-Target: <Prefix>.<Operation>`` → the JSON RPC service for that prefix
  (``SageMaker``, ``GraniteServiceVersion20100801`` for CloudWatch, ``AnyScaleFrontendService``);
* other routes (``/healthz``, ``/metrics``, CBOR ``/service/…``, the A/B API) are registered by the
  composition root as ``Route`` entries.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from modelgate.api.awsjson import JsonRpcService
from modelgate.api.http import (
    Receive,
    Request,
    Scope,
    Send,
    new_request_id,
    read_body,
    send_json,
)
from modelgate.api.runtime import RuntimeApi
from modelgate.errors import ClientDisconnected, ModelgateError, RequestTooLarge, UnknownOperation, UnknownPath

log = logging.getLogger(__name__)

RouteHandler = Callable[[Request, Send], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: RouteHandler
    prefix: bool = False


class App:
    def __init__(
        self,
        runtime: RuntimeApi,
        json_services: dict[str, JsonRpcService],
        routes: list[Route],
        max_body_bytes: int,
        on_startup: Callable[[], Awaitable[None]] | None = None,
        on_shutdown: Callable[[], Awaitable[None]] | None = None,
        mounts: dict[str, ASGIApp] | None = None,
    ) -> None:
        self.runtime = runtime
        self.json_services = json_services
        self.routes = routes
        self.max_body = max_body_bytes
        self.on_startup = on_startup
        self.on_shutdown = on_shutdown
        # Exact paths served by another ASGI app (the A/B experiments API).
        self.mounts = mounts or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            path: str = scope["path"]
            if path.startswith("/endpoints/"):
                parts = path.split("/")
                if len(parts) == 4:
                    await self.runtime.handle(scope, receive, send, parts[2], parts[3])
                    return
            mounted = self.mounts.get(path)
            if mounted is not None:
                await mounted(scope, receive, send)
                return
            await self._other(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _other(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope["method"]
        path = scope["path"]
        try:
            body = await read_body(receive, self.max_body, f"The request body is larger than {self.max_body} bytes.")
        except RequestTooLarge as exc:
            await send_json(send, 413, {"__type": exc.code, "message": exc.message}, b"application/json")
            return
        except ClientDisconnected:
            log.info("%s %s: the client left before its body was complete; not executed", method, path)
            return
        request = Request(scope, body)
        target = request.header("x-amz-target")
        if method == "POST" and path == "/" and target:
            prefix, _, operation = target.partition(".")
            service = self.json_services.get(prefix)
            if service is not None:
                await service.handle(request, send, operation)
                return
            exc2: ModelgateError = UnknownOperation(f"X-Amz-Target {target} is not a service modelgate serves.")
            await send_json(
                send,
                400,
                {"__type": exc2.code, "message": exc2.message},
                b"application/x-amz-json-1.1",
                [(b"x-amzn-requestid", new_request_id().encode())],
            )
            return
        for route in self.routes:
            if route.method == method and (path == route.path or (route.prefix and path.startswith(route.path))):
                await route.handler(request, send)
                return
        # An AWS-shaped answer like every other refusal: a client's error parser finds its code.
        missing = UnknownPath(f"Not Found: no operation is served at {method} {path}.")
        await send_json(
            send,
            missing.status,
            {"__type": missing.code, "message": missing.message},
            b"application/json",
            [(b"x-amzn-errortype", missing.code.encode())],
        )

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    if self.on_startup is not None:
                        await self.on_startup()
                except Exception as exc:
                    log.exception("startup failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                try:
                    if self.on_shutdown is not None:
                        await self.on_shutdown()
                finally:
                    await send({"type": "lifespan.shutdown.complete"})
                return
