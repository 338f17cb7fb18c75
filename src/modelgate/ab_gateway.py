"""A/B experiments wired into the gateway: the ports the experiments package needs, and its lifecycle.

* ``RouterInvoker`` — :class:`experiments.ports.Invoker` over the runtime router (same path as
  InvokeEndpoint, so metrics are recorded the same way);
* ``ControlCatalog`` — :class:`experiments.ports.EndpointCatalog` over the control plane
  (variants with current weights, tags, UpdateEndpointWeightsAndCapacities for ``promote``);
* ``MetricsPort`` — :class:`experiments.ports.MetricsPublisher` over the metric store (custom metrics);
* ``Experiments`` — mounts the REST API (``/invocation``, ``/conversion``, ``/stats``, ``/register``,
  ``/promote``), runs the event pipeline, and registers every endpoint tagged ``ab-testing:enabled=true``
  once it is InService (checked every ``registration_poll`` seconds) and closes its experiment when it is
  deleted. The stores, the event journal and aggregator, the service and its ASGI app (``_Running``)
  are built when A/B is first needed (see :class:`Experiments`). At build, the events a killed process
  left in the journal restore the served records and conversion marks the assignment store's write-behind
  lost, before the first request is served.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, inspect, literal, select, table

from modelgate.api.http import Receive, Scope, Send
from modelgate.clock import Clock
from modelgate.controllers.endpoints import EndpointController
from modelgate.domain.resources import Endpoint, EndpointStatus
from modelgate.errors import ModelgateError, ValidationError
from modelgate.experiments.entities import tags_enable_experiment
from modelgate.experiments.events import EventFilter
from modelgate.experiments.sinks import DirectorySink
from modelgate.routing.router import Invocation, Router
from modelgate.services.control import ControlPlane, VariantUpdate
from modelgate.services.metrics import SMALLEST_MAGNITUDE, MetricsService
from modelgate.telemetry.model import MetricDatum

log = logging.getLogger(__name__)

PATHS = frozenset({"/invocation", "/conversion", "/stats", "/register", "/promote"})  # experiments.http's routes
# Tables whose rows mean that A/B was used on this data directory (experiments.sqlstore creates them).
USE_TABLES = ("ab_experiments", "ab_assignments", "ab_served")


@dataclass(frozen=True, slots=True)
class _Result:
    variant: str
    status: int
    body: bytes
    content_type: str
    error: ModelgateError | None = None


# InvokeEndpoint's ContentType, Accept and InferenceId (botocore's model: ``\p{ASCII}*`` up to 1024, and
# ``\A\S[\p{Print}]*\z`` up to 64) go to the instance as HTTP header values: printable ASCII only. The runtime
# reads them from request headers, which cannot hold anything else; the A/B API takes them from JSON strings.
_HEADER_VALUE = re.compile(r"[\x20-\x7e]{0,1024}")
_INFERENCE_ID = re.compile(r"[\x21-\x7e][\x20-\x7e]{0,63}")


def check_header_values(content_type: str, accept: str | None, inference_id: str) -> None:
    """Refuse what cannot be sent to the instance as a header value (a non-Latin-1 character failed the request
    with a 500; a CR LF would have injected a header of the caller's into the instance's request)."""
    for member, value in (("contentType", content_type), ("accept", accept)):
        if value is not None and not _HEADER_VALUE.fullmatch(value):
            raise ValidationError(
                f"1 validation error detected: Value at '{member}' failed to satisfy constraint: Member must have "
                "length less than or equal to 1024 and contain only printable ASCII characters"
            )
    if not _INFERENCE_ID.fullmatch(inference_id):
        raise ValidationError(
            "1 validation error detected: Value at 'inferenceId' failed to satisfy constraint: Member must have "
            "length between 1 and 64, contain only printable ASCII characters and not start with a space"
        )


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
        check_header_values(content_type, accept, inference_id)
        result = await self.router.invoke(
            Invocation(endpoint_name, body, content_type, accept, None, target_variant, inference_id)
        )
        self.router.record(result)  # the A/B API's answer is written later, by its adapter: not timed
        reply = result.reply
        if reply is None:  # the variant failed: the service counts it against the variant, then raises it
            assert result.error is not None
            return _Result(result.variant, result.status, b"", "", result.error)
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
        if abs(value) < SMALLEST_MAGNITUDE:
            # A sum of rewards in [0, 1] can be that small (one reward of 1e-200); CloudWatch's validation refuses
            # it, which failed the whole round's publishing. 0 is what any reader makes of it.
            value = 0.0
        self.metrics.put_metric_data(namespace, [MetricDatum(name, dims, timestamp, value=value, unit=unit)])


@dataclass(frozen=True, slots=True)
class _Wiring:
    """What the experiments subsystem is built from: given to :class:`Experiments`, used by :class:`_Running`."""

    engine: Engine
    router: Router
    control: ControlPlane
    controller: EndpointController
    metrics: MetricsService
    clock: Clock
    events_url: str
    journal_dir: Path
    flush_seconds: float
    flush_bytes: int
    event_filter: EventFilter | None
    registration_poll: float
    assignment_flush_seconds: float


class _Running:
    """The experiments subsystem, built: stores, event pipeline, service, REST app, registrations."""

    def __init__(self, w: _Wiring) -> None:
        # The experiments package (with numpy and the stores) is imported here, when A/B is first
        # needed, not at start: about 8 MB of the gateway's RSS (bench/memory.py, bench/RESULTS.md "Memory").
        import numpy as np

        from modelgate.experiments.aggregator import Aggregator
        from modelgate.experiments.assignment_cache import AssignmentCache
        from modelgate.experiments.http import ExperimentsApi
        from modelgate.experiments.journal import EventJournal
        from modelgate.experiments.service import ExperimentService
        from modelgate.experiments.sinks import sink_from_url
        from modelgate.experiments.sqlstore import SqlAssignmentStore, SqlExperimentStore, create_tables

        create_tables(w.engine)
        self.clock = clock = w.clock
        self.controller = w.controller
        self.poll = w.registration_poll
        experiments = SqlExperimentStore(w.engine)
        assignments = SqlAssignmentStore(w.engine)
        self.assignments = assignments
        # The service reads assignments from memory and writes them behind (experiments.assignment_cache);
        # loaded here, in the building thread, so returning users are found without a store read.
        self.cache = AssignmentCache(assignments, clock, flush_seconds=w.assignment_flush_seconds)
        loaded = self.cache.load(clock.now())
        log.info("A/B assignments in memory: %d (%s)", loaded, "all" if self.cache.complete else "the latest used")
        sink = sink_from_url(w.events_url)
        self.journal = EventJournal(w.journal_dir, sink, clock, max_age=w.flush_seconds, max_bytes=w.flush_bytes)
        left = self.journal.recover()
        self.aggregator = Aggregator(
            sink, experiments, clock, assignments=self.cache.reader(), event_filter=w.event_filter,
            metrics=MetricsPort(w.metrics),
        )  # fmt: skip
        self.service = ExperimentService(
            invoker=RouterInvoker(w.router),
            catalog=ControlCatalog(w.control),
            experiments=experiments,
            assignments=self.cache,
            events=self.journal,
            clock=clock,
            rng=np.random.default_rng(),
        )
        if left:
            restored = self.service.restore(left)
            log.info("A/B: %d served inferences restored from the event journal", restored)
        self.app = ExperimentsApi(self.service)
        paths = self.app.paths
        if paths != PATHS:
            raise RuntimeError(f"the A/B routes {sorted(paths)} are not ab_gateway.PATHS {sorted(PATHS)}")
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._registered: dict[str, float] = {}

    async def asgi(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The REST API as an ASGI app of the gateway's own types."""
        await self.app(scope, receive, send)

    def start(self) -> None:
        """Start the pipeline and the registrations (in the event loop)."""
        from modelgate.experiments.pipeline import run_pipeline

        self._stop.clear()
        self._tasks = [
            asyncio.create_task(
                run_pipeline(self.journal, self.aggregator, self.clock, self._stop, before_delivery=self.cache.flush)
            ),
            asyncio.create_task(self._registrations()),
            asyncio.create_task(self.cache.run(self._stop)),  # writes assignments behind; all of them on stop
        ]

    async def stop(self) -> None:
        self._stop.set()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, timeout=10)
        self.journal.close()

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


class Experiments:
    """The A/B subsystem of one gateway, built (``_Running``) when it is first needed.

    It is built at start if A/B was used on this data directory before (a stored experiment, assignment or
    served inference, an event file, or events left in the journal) or the events go to S3; else when the
    first request reaches an A/B path, or when an InService endpoint turns out to be tagged
    ``ab-testing:enabled=true``. Until then a watcher looks at each endpoint's tags exactly when
    ``_Running`` would try to register it (InService, and changed since the last look), so the tagged
    endpoint is registered in the same round. Building
    runs in a worker thread (imports and ``CREATE TABLE``), so the event loop keeps serving meanwhile.
    """

    paths = PATHS

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
        journal_dir: Path | None = None,
        registration_poll: float = 1.0,
        assignment_flush_seconds: float = 1.0,
    ) -> None:
        self.engine = engine
        self.events_url = events_url
        self.journal_dir = journal_dir or Path(events_url + "-journal")
        self.controller = controller
        self.catalog = ControlCatalog(control)
        self.poll = registration_poll
        self._wiring = _Wiring(
            engine, router, control, controller, metrics, clock, events_url, self.journal_dir, flush_seconds,
            flush_bytes, event_filter, registration_poll, assignment_flush_seconds,
        )  # fmt: skip
        self.running: _Running | None = None
        self._building = asyncio.Lock()
        self._stop = asyncio.Event()
        self._watcher: asyncio.Task[None] | None = None

    def used_before(self) -> bool:
        """Whether A/B has state to carry on with: then it is built at start."""
        if self.events_url.startswith("s3://"):
            return True
        if self.journal_dir.exists() and any(self.journal_dir.iterdir()):
            return True
        if DirectorySink(Path(self.events_url)).list_keys():
            return True
        with self.engine.connect() as conn:
            present = set(inspect(conn).get_table_names())
            return any(
                conn.execute(select(literal(1)).select_from(table(name)).limit(1)).first() is not None
                for name in USE_TABLES
                if name in present
            )

    async def start(self) -> None:
        self._stop.clear()
        if await asyncio.to_thread(self.used_before):
            await self.activate()
        else:
            self._watcher = asyncio.create_task(self._watch())

    async def activate(self) -> _Running:
        async with self._building:
            if self.running is None:
                running = await asyncio.to_thread(_Running, self._wiring)
                if not self._stop.is_set():
                    running.start()
                self.running = running
                log.info("A/B experiments started")
        return self.running

    async def asgi(self, scope: Scope, receive: Receive, send: Send) -> None:
        running = self.running or await self.activate()
        await running.asgi(scope, receive, send)

    async def stop(self) -> None:
        self._stop.set()
        if self._watcher is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._watcher, timeout=10)
        if self.running is not None:
            await self.running.stop()

    async def _watch(self) -> None:
        """Until A/B is built: build it when an endpoint that _Running would register is tagged for A/B."""
        seen: dict[str, float] = {}
        while not self._stop.is_set() and self.running is None:
            try:
                if self._tagged(dict(self.controller.endpoints), seen):
                    await self.activate()  # its first registration round registers the endpoint
                    return
            except Exception:
                log.exception("A/B registration round failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=self.poll)

    def _tagged(self, endpoints: dict[str, Endpoint], seen: dict[str, float]) -> bool:
        for name, ep in endpoints.items():
            if ep.status == EndpointStatus.IN_SERVICE and seen.get(name) != ep.last_modified_time:
                seen[name] = ep.last_modified_time
                try:
                    if tags_enable_experiment(self.catalog.tags(name)):
                        return True
                except ModelgateError as exc:
                    log.warning("A/B registration of %s failed: %s", name, exc.message)
        return False


def default_events_url(data_dir: Path) -> str:
    return str(data_dir / "ab-events")


def journal_dir(data_dir: Path) -> Path:
    """Where the A/B event journal lives: always local, whatever the sink."""
    return data_dir / "ab-journal"
