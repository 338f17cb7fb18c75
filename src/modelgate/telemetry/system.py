"""The metrics-and-alarms subsystem behind one object, for the composition root to wire.

    system = MetricsSystem(engine, clock, list_instances, account_id, region)
    await system.start()                     # loads persisted metrics and alarms, starts the loops
    router.recorder = system.recorder        # record_invocation(endpoint, variant, fleet, status,
                                             #   model_latency_us, overhead_latency_us, instance_count)
    json_services["GraniteServiceVersion20100801"] = system.cloudwatch        # JSON 1.0 (boto3 today)
    Route("POST", "/service/GraniteServiceVersion20100801/operation/", system.handle_cbor, prefix=True)
    Route("POST", "/", system.handle_query)  # query protocol: form body with Action=... (also GET)
    Route("GET", "/metrics", ...)            # body system.prometheus_text(), type PROMETHEUS_CONTENT_TYPE
    system.alarm_state("my-alarm")           # "OK" | "ALARM" | "INSUFFICIENT_DATA"; AlarmNotFound if absent
    await system.stop()                      # final drain and flush, cancels the loops

``list_instances()`` returns ``(endpoint, variant, instance_id, pid)`` for each live instance; it is called
on the event loop every ``sample_interval`` seconds and must not block.

Background loops (all on the event loop; blocking work goes to threads):

* drain, every 0.1 s: recorder queue → 1 s and 60 s aggregates, ``DRAIN_CHUNK`` samples at a time with
  the loop given back in between (a sample costs a few µs to fold: draining 0.5 s of 3,000 requests/s
  at once held the loop for ~6 ms, which every request in flight waited for);
* flush, every 2 s: changed aggregates → SQLite (a ``kill -9`` loses at most ~3 s of metrics);
* instance sampling, every 5 s: psutil CPU and memory per instance;
* alarm evaluation, every 1 s (controllers/alarms.py);
* maintenance, every 60 s: retention (3 h at 1 s, 15 days at 60 s; alarm history 14 days).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy import Engine

from modelgate.api.cbor import handle_rpc_v2_cbor
from modelgate.api.cloudwatch import cloudwatch_service
from modelgate.api.http import Request, Send
from modelgate.api.query import handle_aws_query
from modelgate.clock import Clock
from modelgate.controllers.alarms import AlarmEvaluator
from modelgate.egress import EgressPolicy
from modelgate.services.alarms import AlarmService
from modelgate.services.metrics import MetricsService
from modelgate.telemetry import prometheus
from modelgate.telemetry.alarm_records import AlarmRepository
from modelgate.telemetry.instances import InstanceLister, InstanceSampler
from modelgate.telemetry.notify import AiohttpPoster, Notifier, Poster
from modelgate.telemetry.persist import MetricPersistence
from modelgate.telemetry.recorder import InvocationRecorder
from modelgate.telemetry.store import MetricStore

log = logging.getLogger(__name__)

PROMETHEUS_CONTENT_TYPE = prometheus.CONTENT_TYPE
DRAIN_CHUNK = 256  # samples folded per turn of the event loop (~0.35 ms, bench/RECORD_COST.md)


@dataclass(frozen=True)
class MetricsOptions:
    drain_interval: float = 0.1
    flush_interval: float = 2.0
    sample_interval: float = 5.0
    evaluation_tick: float = 1.0
    evaluation_settle: float = 1.0
    maintenance_interval: float = 60.0
    action_attempts: int = 4
    action_base_delay: float = 1.0


class MetricsSystem:
    def __init__(
        self,
        engine: Engine,
        clock: Clock,
        list_instances: InstanceLister,
        account_id: str,
        region: str,
        *,
        options: MetricsOptions | None = None,
        poster: Poster | None = None,
        egress: EgressPolicy | None = None,
    ) -> None:
        self.options = opts = options or MetricsOptions()
        self.clock = clock
        self.list_instances = list_instances
        self.store = MetricStore()
        self.persistence = MetricPersistence(engine)
        self.recorder = InvocationRecorder(self.store, clock)
        self.metrics = MetricsService(self.store, clock, before_read=self.recorder.drain)
        egress = egress or EgressPolicy()  # public destinations only, unless the operator opens others
        self.alarms = AlarmService(self.metrics, AlarmRepository(engine), clock, account_id, region, egress=egress)
        self.notifier = Notifier(
            poster or AiohttpPoster(egress=egress),
            clock,
            account_id,
            region,
            self.alarms.record_history,
            attempts=opts.action_attempts,
            base_delay=opts.action_base_delay,
        )
        self.alarms.notify = self.notifier.notify
        self.evaluator = AlarmEvaluator(
            self.alarms, clock, self.recorder.drain, opts.evaluation_tick, opts.evaluation_settle
        )
        self.sampler = InstanceSampler(self.store)
        self.cloudwatch = cloudwatch_service(self.metrics, self.alarms)
        self._tasks: list[asyncio.Task[None]] = []

    async def handle_cbor(self, request: Request, send: Send) -> None:
        await handle_rpc_v2_cbor(self.cloudwatch, request, send)

    async def handle_query(self, request: Request, send: Send) -> None:
        await handle_aws_query(self.cloudwatch, request, send)

    def prometheus_text(self) -> bytes:
        self.recorder.drain()
        return prometheus.render(self.store, self.sampler.latest.values(), self.recorder.dropped, self.clock.now())

    def alarm_state(self, name: str) -> str:
        return self.alarms.alarm_state(name)

    async def start(self) -> None:
        loaded = await asyncio.to_thread(self.persistence.load_into, self.store, self.clock.now())
        self.alarms.load()
        log.info("metrics: %d datapoints and %d alarms loaded", loaded, len(self.alarms.alarms))
        opts = self.options
        self._tasks = [
            asyncio.create_task(self._every(opts.drain_interval, self._drain), name="metrics-drain"),
            asyncio.create_task(self._every(opts.flush_interval, self.flush), name="metrics-flush"),
            asyncio.create_task(self._every(opts.sample_interval, self.sample_instances), name="metrics-sample"),
            asyncio.create_task(self._every(opts.maintenance_interval, self.maintain), name="metrics-retention"),
            asyncio.create_task(self.evaluator.run(), name="alarm-evaluator"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        await self.flush()
        await self.notifier.close()

    async def _every(self, interval: float, step: Callable[[], Awaitable[None]]) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await step()
            except Exception:
                log.exception("metrics loop %s failed", getattr(step, "__name__", step))

    async def _drain(self) -> None:
        while self.recorder.drain(DRAIN_CHUNK) == DRAIN_CHUNK:
            await asyncio.sleep(0)

    async def flush(self) -> None:
        """Drain the recorder, seal the points whose period is over, and persist every changed one."""
        self.recorder.drain()
        self.store.seal(self.clock.now())
        series, points = self.store.take_dirty()
        try:
            await asyncio.to_thread(self.persistence.write, series, points)
        except Exception:
            self.store.restore_dirty(series, points)
            raise

    async def sample_instances(self) -> None:
        instances = list(self.list_instances())
        samples = await asyncio.to_thread(self.sampler.sample, instances)
        self.sampler.record(samples, self.clock.now())

    async def maintain(self) -> None:
        now = self.clock.now()
        gone = self.store.purge(now)
        await asyncio.to_thread(self.persistence.expire, now, gone)
        await asyncio.to_thread(self.alarms.repo.purge_history, now)
