"""A live CloudWatch server for black-box tests: uvicorn in a thread serving a minimal ASGI app.

The app dispatches as the gateway does (reference §1.1): ``X-Amz-Target: GraniteServiceVersion20100801.*``
to the JSON service, ``/service/...`` to CBOR, ``GET /metrics`` to Prometheus, other ``/`` requests to the
query protocol. To run the same tests against the real server, replace :func:`start_server` with one that
starts ``modelgate serve`` and returns its URL and a recorder handle.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from sqlalchemy import create_engine

from modelgate.api.http import Receive, Request, Scope, Send, read_body, send_response
from modelgate.clock import SystemClock
from modelgate.egress import EgressPolicy
from modelgate.telemetry.instances import InstanceInfo
from modelgate.telemetry.system import PROMETHEUS_CONTENT_TYPE, MetricsOptions, MetricsSystem

PREFIX = "GraniteServiceVersion20100801."


class CloudWatchApp:
    def __init__(self, system: MetricsSystem) -> None:
        self.system = system

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await self.system.start()
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await self.system.stop()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        request = Request(scope, await read_body(receive, 8 << 20, "too large"))
        target = request.header("x-amz-target") or ""
        if target.startswith(PREFIX):
            await self.system.cloudwatch.handle(request, send, target[len(PREFIX):])
        elif request.path.startswith("/service/"):
            await self.system.handle_cbor(request, send)
        elif request.path == "/metrics":
            await send_response(send, 200, self.system.prometheus_text(), [(b"content-type", PROMETHEUS_CONTENT_TYPE)])
        else:
            await self.system.handle_query(request, send)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LiveServer:
    url: str
    system: MetricsSystem
    server: uvicorn.Server
    thread: threading.Thread

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)


def start_server(data_dir: Path, instances: list[InstanceInfo] | None = None) -> LiveServer:
    engine = create_engine(f"sqlite:///{data_dir / 'metrics.db'}")
    system = MetricsSystem(
        engine, SystemClock(), lambda: list(instances or []), "123456789012", "us-east-1",
        options=MetricsOptions(action_base_delay=0.2, sample_interval=1.0),
        egress=EgressPolicy.from_entries(["127.0.0.1"]),  # the tests' webhooks listen on loopback
    )
    port = free_port()
    config = uvicorn.Config(CloudWatchApp(system), host="127.0.0.1", port=port, lifespan="on", log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the CloudWatch test server did not start")
        time.sleep(0.02)
    return LiveServer(f"http://127.0.0.1:{port}", system, server, thread)
