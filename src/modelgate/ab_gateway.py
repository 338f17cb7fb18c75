"""A/B experiments wired into the gateway: the ports the experiments package needs, and its lifecycle.

* ``RouterInvoker`` — :class:`experiments.ports.Invoker` over the runtime router (same path as
  InvokeEndpoint, so metrics are recorded the same way);
* ``ControlCatalog`` — :class:`experiments.ports.EndpointCatalog` over the control plane
  (variants with current weights, tags, UpdateEndpointWeightsAndCapacities for ``promote``);
* ``MetricsPort`` — :class:`experiments.ports.MetricsPublisher` over the metric store (custom metrics);
* ``Experiments`` — builds the stores, the event buffer and aggregator, mounts the REST API
  (``/invocation``, ``/conversion``, ``/stats``, ``/register``, ``/promote``), runs the event
  pipeline, and registers every endpoint tagged ``ab-testing:enabled=true`` once it is InService
  (checked every ``registration_poll`` seconds) and closes its experiment when it is deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
from sqlalchemy import Engine
from starlette.applications import Starlette

from modelgate.api.http import Receive, Scope, Send
from modelgate.clock import Clock
from modelgate.controllers.endpoints import EndpointController
from modelgate.domain.resources import Endpoint, EndpointStatus
from modelgate.errors import ModelgateError
from modelgate.experiments.aggregator import Aggregator
from modelgate.experiments.events import EventBuffer, EventFilter
from modelgate.experiments.http import ExperimentsApi
from modelgate.experiments.pipeline import run_pipeline
from modelgate.experiments.service import ExperimentService
from modelgate.experiments.sinks import sink_from_url
from modelgate.experiments.sqlstore import SqlAssignmentStore, SqlExperimentStore, create_tables
from modelgate.routing.router import Invocation, Router
from modelgate.services.control import ControlPlane, VariantUpdate
from modelgate.services.metrics import MetricsService
from modelgate.telemetry.model import MetricDatum

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Result:
    variant: str
    status: int
    body: bytes
    content_type: str


class RouterInvoker:
    def __init__(self, router: Router) -> None:
        self.router = router

    async def invoke(
        self,
        endpoint_name: str,
        body: bytes,
        content_type: str,
        accept: str | None,
        target_variant: str | None,
        inference_id: str,
    ) -> _Result:
        result = await self.router.invoke(
            Invocation(endpoint_name, body, content_type, accept, None, target_variant, inference_id)
        )
        self.router.record(result)  # the A/B API's answer is written later, by Starlette: not timed
        reply = result.reply
        if reply is None:
            assert result.error is not None
            raise result.error
        return _Result(result.variant, reply.status, reply.body, reply.content_type or "application/octet-stream")


class ControlCatalog:
    def __init__(self, control: ControlPlane) -> None:
        self.control = control

    def variants(self, endpoint_name: str) -> list[tuple[str, float]]:
        ep = self.control.describe_endpoint(endpoint_name)
        return [(v.variant_name, v.current_weight) for v in ep.variants]

    def tags(self, endpoint_name: str) -> Mapping[str, str]:
        ep = self.control.describe_endpoint(endpoint_name)
        return {t.key: t.value for t in self.control.list_tags(ep.arn)}

    async def set_weights(self, endpoint_name: str, weights: Mapping[str, float]) -> None:
        self.control.update_weights_and_capacities(
            endpoint_name, [VariantUpdate(name, weight, None) for name, weight in weights.items()]
        )


class MetricsPort:
    def __init__(self, metrics: MetricsService) -> None:
        self.metrics = metrics

    def put(
        self, namespace: str, name: str, dimensions: Mapping[str, str], value: float, unit: str, timestamp: float
    ) -> None:
        dims = tuple(sorted(dimensions.items()))
        self.metrics.put_metric_data(namespace, [MetricDatum(name, dims, timestamp, value=value, unit=unit)])


class Experiments:
    def __init__(
        self,
        engine: Engine,
        router: Router,
        control: ControlPlane,
        controller: EndpointController,
        metrics: MetricsService,
        clock: Clock,
        events_url: str,
        flush_seconds: float,
        flush_bytes: int,
        event_filter: EventFilter | None = None,
        registration_poll: float = 1.0,
    ) -> None:
        create_tables(engine)
        self.clock = clock
        self.controller = controller
        self.poll = registration_poll
        experiments = SqlExperimentStore(engine)
        assignments = SqlAssignmentStore(engine)
        self.assignments = assignments
        sink = sink_from_url(events_url)
        self.buffer = EventBuffer(sink, clock, max_age=flush_seconds, max_bytes=flush_bytes)
        self.aggregator = Aggregator(
            sink, experiments, clock, assignments=assignments, event_filter=event_filter, metrics=MetricsPort(metrics)
        )
        self.service = ExperimentService(
            invoker=RouterInvoker(router),
            catalog=ControlCatalog(control),
            experiments=experiments,
            assignments=assignments,
            events=self.buffer,
            clock=clock,
            rng=np.random.default_rng(),
        )
        self.app = Starlette(routes=ExperimentsApi(self.service).routes())
        self.paths = frozenset(r.path for r in self.app.routes if hasattr(r, "path"))
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._registered: dict[str, float] = {}

    async def asgi(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The REST API as an ASGI app of the gateway's own types."""
        await self.app(scope, receive, cast(Any, send))

    async def start(self) -> None:
        self._stop.clear()
        self._tasks = [
            asyncio.create_task(run_pipeline(self.buffer, self.aggregator, self.clock, self._stop)),
            asyncio.create_task(self._registrations()),
        ]

    async def stop(self) -> None:
        self._stop.set()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, timeout=10)

    async def _registrations(self) -> None:
        """Register tagged endpoints when they are InService; close experiments of deleted ones."""
        last_purge = 0.0
        while not self._stop.is_set():
            try:
                self._sync(dict(self.controller.endpoints))
                now = self.clock.now()
                if now - last_purge > 3600:
                    last_purge = now
                    await asyncio.to_thread(self.assignments.purge_expired, now)
            except Exception:
                log.exception("A/B registration round failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=self.poll)

    def _sync(self, endpoints: dict[str, Endpoint]) -> None:
        for name, ep in endpoints.items():
            if ep.status == EndpointStatus.IN_SERVICE and self._registered.get(name) != ep.last_modified_time:
                try:
                    reg = self.service.register(name)
                except ModelgateError as exc:
                    log.warning("A/B registration of %s failed: %s", name, exc.message)
                else:
                    if reg.status in (200, 201):
                        log.info("A/B experiment on %s: %s", name, "started" if reg.status == 201 else "unchanged")
                self._registered[name] = ep.last_modified_time
        for name in list(self._registered):
            if name not in endpoints:
                del self._registered[name]
                with contextlib.suppress(ModelgateError):
                    self.service.deregister(name)


def default_events_url(data_dir: Path) -> str:
    return str(data_dir / "ab-events")
