"""The composition root: one of each effect, wired from the settings. Nothing imports this module."""

from __future__ import annotations

import asyncio
import fcntl
import gc
import logging
import os
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from modelgate.ab_gateway import Experiments, default_events_url, journal_dir
from modelgate.api.app import App, Route
from modelgate.api.awsjson import JsonRpcService
from modelgate.api.browsers import BrowserGuard
from modelgate.api.front_limits import FrontLimits
from modelgate.api.http import Request, Send, send_response
from modelgate.api.runtime import RuntimeApi
from modelgate.api.sagemaker import build as build_sagemaker
from modelgate.api.serve_http import HttpServer
from modelgate.artifacts.fetch import ArtifactCache, CacheLimits
from modelgate.clock import SystemClock
from modelgate.controllers.endpoints import EndpointController
from modelgate.controllers.fleets import FleetManager
from modelgate.controllers.rollout_judge import RolloutJudge
from modelgate.domain.arns import ArnBuilder
from modelgate.experiments.events import EventFilter
from modelgate.policies.capacity import InstanceLimits
from modelgate.rollout.compare import ComparisonConfig
from modelgate.routing.router import Router
from modelgate.routing.table import RoutingTable
from modelgate.runtime.client import InstanceClient
from modelgate.runtime.environment import base_environment
from modelgate.runtime.images import load_image_map
from modelgate.runtime.process import LocalSpawner
from modelgate.services.control import ControlPlane
from modelgate.settings import Settings
from modelgate.store.db import make_engine
from modelgate.store.repo import Repository
from modelgate.telemetry.system import PROMETHEUS_CONTENT_TYPE, MetricsSystem

log = logging.getLogger("modelgate")


class DataDirLocked(Exception):
    pass


def lock_data_dir(data_dir: Path) -> IO[str]:
    """One server per data directory: hold an exclusive lock for the server's lifetime."""
    data_dir.mkdir(parents=True, exist_ok=True)
    f = open(data_dir / "server.lock", "a+")  # noqa: SIM115 - held open for the process lifetime
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        f.close()
        raise DataDirLocked(f"another modelgate server is using {data_dir}") from exc
    f.seek(0)
    f.truncate()
    f.write(str(os.getpid()))
    f.flush()
    return f


@dataclass
class Server:
    settings: Settings
    app: App
    control: ControlPlane
    controller: EndpointController
    client: InstanceClient
    after_start: list[Callable[[], Coroutine[Any, Any, None]]] = field(default_factory=list)


def build(settings: Settings) -> Server:
    """Everything, wired; a ValueError (a bad image map) when the settings cannot be used."""
    images = load_image_map(settings.image_map, settings.allow_command_images)
    data = settings.data_dir
    engine = make_engine(data)
    repo = Repository(engine)
    clock = SystemClock()
    arns = ArnBuilder(settings.account_id, settings.region)
    table = RoutingTable()
    client = InstanceClient(settings.invocation_timeout_seconds)
    controller_ref: list[EndpointController] = []
    egress = settings.egress_policy()
    metrics = MetricsSystem(
        engine,
        clock,
        lambda: controller_ref[0].instances() if controller_ref else [],
        settings.account_id,
        settings.region,
        egress=egress,
    )
    router = Router(table, client, metrics.recorder, settings.account_id, arns.log_stream(""))
    fleets = FleetManager(
        repo,
        LocalSpawner(),
        client,
        clock,
        data / "logs",
        settings.drain_timeout_seconds,
        settings.allow_pip_install,
        on_change=lambda _name: None,
        memory_limit_scale=settings.memory_limit_scale,
        # The server's environment is read here once, for the variables the operator passes through.
        base_env=base_environment(settings.instance_env_passthrough, os.environ),
        homes_dir=data / "homes",
        max_concurrent_starts=settings.max_concurrent_instance_starts,
    )
    controller = EndpointController(
        repo,
        fleets,
        ArtifactCache(
            data / "artifacts",
            CacheLimits(
                settings.max_artifact_bytes, settings.max_artifact_cache_bytes, settings.max_artifact_expansion_ratio
            ),
            settings.model_data_directories(),
            egress,
            settings.artifact_workers,
        ),
        table,
        clock,
        settings.default_startup_health_timeout_seconds,
        settings.max_startup_health_timeout_seconds,
        alarm_state=metrics.alarm_state,
        max_rollout_seconds=settings.max_rollout_execution_seconds,
        images=images,
    )
    controller_ref.append(controller)
    judge = RolloutJudge(
        controller.rollouts,
        table,
        metrics.recorder,
        metrics.metrics,
        clock,
        ComparisonConfig(alpha=settings.rollout_comparison_alpha),
        settings.rollout_comparison_interval_seconds,
    )
    control = ControlPlane(
        repo, controller, arns, clock, InstanceLimits(settings.max_instances_per_endpoint, settings.max_instances)
    )
    experiments = Experiments(
        engine, router, control, controller, metrics.metrics, clock,
        settings.ab_events_url or default_events_url(data), settings.ab_flush_seconds, settings.ab_flush_bytes,
        EventFilter.from_config(settings.ab_filter_source_ips, settings.ab_filter_user_agents), journal_dir(data),
    )  # fmt: skip
    json_services: dict[str, JsonRpcService] = {
        "SageMaker": build_sagemaker(control),
        "GraniteServiceVersion20100801": metrics.cloudwatch,
    }

    async def healthz(_req: Request, send: Send) -> None:
        await send_response(send, 200, b'{"status":"ok"}', [(b"content-type", b"application/json")])

    async def prometheus(_req: Request, send: Send) -> None:
        await send_response(send, 200, metrics.prometheus_text(), [(b"content-type", PROMETHEUS_CONTENT_TYPE)])

    routes = [
        Route("GET", "/healthz", healthz),
        Route("GET", "/ping", healthz),
        Route("GET", "/metrics", prometheus),
        Route("POST", "/service/GraniteServiceVersion20100801/operation/", metrics.handle_cbor, prefix=True),
        Route("POST", "/", metrics.handle_query),
        Route("GET", "/", metrics.handle_query),  # the query protocol's parameters in the query string
    ]
    server: Server

    background: set[asyncio.Task[None]] = set()

    async def startup() -> None:
        await metrics.start()
        await controller.start()
        await experiments.start()
        background.add(asyncio.create_task(fleets.watch_memory()))
        background.add(asyncio.create_task(judge.run()))
        for hook in server.after_start:
            task = asyncio.create_task(hook())
            background.add(task)
            task.add_done_callback(background.discard)
        # Everything built so far lives as long as the server: move it out of the collector's generations, so that
        # a full collection (30-40 ms over these ~80,000 objects, in the event loop) skips it. RSS unchanged
        # (bench/RESULTS.md, "Memory"); the collect first costs ~40 ms once, before the server listens.
        gc.collect()
        gc.freeze()

    async def shutdown() -> None:
        for task in background:
            task.cancel()
        await experiments.stop()
        await controller.stop()
        await metrics.stop()
        await client.close()
        engine.dispose()

    app = App(
        RuntimeApi(router, settings.max_payload_bytes),
        json_services,
        routes,
        settings.max_control_body_bytes,
        on_startup=startup,
        mounts=dict.fromkeys(experiments.paths, experiments.asgi),
        on_shutdown=shutdown,
    )
    server = Server(settings, app, control, controller, client)
    return server


def front_limits(settings: Settings) -> FrontLimits:
    return FrontLimits(
        max_url_bytes=settings.max_url_bytes,
        max_header_bytes=settings.max_header_bytes,
        max_header_count=settings.max_header_count,
        header_timeout_seconds=settings.header_timeout_seconds,
        max_connections=settings.max_connections,
    )


def browser_guard(settings: Settings) -> BrowserGuard:
    return BrowserGuard.for_server(settings.host, settings.allowed_hosts, settings.cors_allowed_origins)


def serve(settings: Settings) -> None:
    settings.check_bind()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    lock = lock_data_dir(settings.data_dir)
    try:
        server = build(settings)
        if settings.demo:
            from modelgate.demo import deploy_demo

            server.after_start.append(lambda: deploy_demo(server.control, settings))
        log.info("modelgate serving on http://%s:%s (data in %s)", settings.host, settings.port, settings.data_dir)
        status = HttpServer(
            server.app, settings.host, settings.port, limits=front_limits(settings), guard=browser_guard(settings)
        ).run()  # api/serve_http.py
    finally:
        lock.close()
    if status:
        raise SystemExit(status)  # startup failed (logged): 3, as uvicorn exited
