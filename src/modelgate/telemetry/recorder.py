"""Recording one invocation: O(1), in memory, on the request path.

:meth:`InvocationRecorder.record_invocation` appends one tuple to a deque (thread-safe, no lock) and
returns. :meth:`InvocationRecorder.drain`, run off the request path by the metrics system's periodic
task (and by the alarm evaluator just before it reads), folds the queued samples into the store.

What each metric counts (namespace ``AWS/SageMaker``, dimensions EndpointName and VariantName), after the
SageMaker monitoring guide (reference §4):

==========================  ==========================================================================
Invocations                 1 per request routed to the variant, whatever its outcome (unit None)
Invocation4XXErrors         1 if ``status`` is 400-499, else 0, so Sum counts errors and Average is a rate
Invocation5XXErrors         1 if ``status`` >= 500, else 0
InvocationsPerInstance      1 / instance_count at the time of the request (Sum = load per instance)
ModelLatency                ``model_latency_us`` (unit Microseconds); skipped when negative (not measured)
OverheadLatency             ``overhead_latency_us`` (Microseconds); skipped when negative
==========================  ==========================================================================

``status`` is the status *of the model*: the container's own HTTP status when it answered (so a request
answered to the client as ``ModelError`` 424 counts as 4XX or 5XX by the container's
``OriginalStatusCode``), else the status the gateway produced for that variant (e.g. 504 on an instance
timeout, 503 when the instance died with the request in flight: both count as 5XX). A literal 424
counts as 4XX. Requests refused before a variant is chosen are not recorded: they have no VariantName.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from modelgate.clock import Clock, SystemClock
from modelgate.telemetry.model import SAGEMAKER_NAMESPACE, MetricId
from modelgate.telemetry.sketch import bucket_key
from modelgate.telemetry.store import MetricStore, Series

_Pending = tuple[float, str, str, str, int, float, float, int]


class FleetTally:
    """Requests to one fleet since the last :meth:`InvocationRecorder.take_fleet`: for comparing fleets.

    ``errors`` counts answers with a status of 400 or more (the model's 4XX or 5XX); ``latency`` maps
    a DDSketch bucket key (:func:`modelgate.telemetry.sketch.bucket_key`) of ModelLatency to a count.
    """

    __slots__ = ("errors", "latency", "requests")

    def __init__(self) -> None:
        self.requests = 0
        self.errors = 0
        self.latency: dict[int, float] = {}


class _Batch:
    __slots__ = ("count", "e4xx", "e5xx", "model", "overhead", "per_instance")

    def __init__(self) -> None:
        self.count = 0
        self.e4xx = 0
        self.e5xx = 0
        self.per_instance = 0.0
        self.model: list[float] = []
        self.overhead: list[float] = []


@dataclass(frozen=True, slots=True)
class _VariantSeries:
    invocations: Series
    e4xx: Series
    e5xx: Series
    per_instance: Series
    model_latency: Series
    overhead_latency: Series


class InvocationRecorder:
    """``record_invocation`` is the only method called on the request path."""

    def __init__(self, store: MetricStore, clock: Clock, max_pending: int = 1_000_000) -> None:
        self._store = store
        # The system clock's reading without a Python-level call in between: ~60 ns less per request.
        self._now: Callable[[], float] = time.time if isinstance(clock, SystemClock) else clock.now
        self._pending: deque[_Pending] = deque()
        self._limit = max_pending
        self._variants: dict[tuple[str, str], _VariantSeries] = {}
        self._watched: dict[str, FleetTally] = {}  # fleet id -> tally, for the rollout comparison
        # Samples refused because the queue was full (the drain task is stuck): a named, counted loss.
        self.dropped = 0

    def record_invocation(
        self,
        endpoint: str,
        variant: str,
        fleet: str,
        status: int,
        model_latency_us: float,
        overhead_latency_us: float,
        instance_count: int,
    ) -> None:
        pending = self._pending
        if len(pending) >= self._limit:
            self.dropped += 1
            return
        pending.append(
            (self._now(), endpoint, variant, fleet, status, model_latency_us, overhead_latency_us, instance_count)
        )

    def watch_fleet(self, fleet: str) -> None:
        """Tally this fleet's requests from the next drain on (idempotent)."""
        self._watched.setdefault(fleet, FleetTally())

    def unwatch_fleet(self, fleet: str) -> None:
        self._watched.pop(fleet, None)

    def take_fleet(self, fleet: str) -> FleetTally:
        """The fleet's tally since the last take (as of the last drain); a new one starts."""
        tally = self._watched.get(fleet)
        if tally is None:
            return FleetTally()
        self._watched[fleet] = FleetTally()
        return tally

    @property
    def pending(self) -> int:
        return len(self._pending)

    def drain(self, limit: int | None = None) -> int:
        """Fold the queued samples (at most ``limit``) into the store; return how many.

        Samples are grouped per variant and second first, so the counters go in as one weighted value
        and each latency's sketch key is computed once for both tiers.
        """
        pending = self._pending
        n = len(pending) if limit is None else min(limit, len(pending))
        pop = pending.popleft
        batches: dict[tuple[str, str, int], _Batch] = {}
        watched = self._watched
        for _ in range(n):
            ts, endpoint, variant, fleet, status, model_us, overhead_us, instances = pop()
            if watched:
                tally = watched.get(fleet)
                if tally is not None:
                    tally.requests += 1
                    if status >= 400:
                        tally.errors += 1
                    if model_us >= 0.0:
                        k = bucket_key(model_us)
                        tally.latency[k] = tally.latency.get(k, 0.0) + 1.0
            key = (endpoint, variant, int(ts))
            b = batches.get(key)
            if b is None:
                b = batches[key] = _Batch()
            b.count += 1
            if status >= 400:
                if status >= 500:
                    b.e5xx += 1
                else:
                    b.e4xx += 1
            b.per_instance += 1.0 / instances if instances > 0 else 1.0
            if model_us >= 0.0:
                b.model.append(model_us)
            if overhead_us >= 0.0:
                b.overhead.append(overhead_us)
        store = self._store
        for (endpoint, variant, sec), b in batches.items():
            v = self._variants.get((endpoint, variant)) or self._variant(endpoint, variant)
            store.add(v.invocations, sec, 1.0, b.count)
            for series, errors in ((v.e4xx, b.e4xx), (v.e5xx, b.e5xx)):
                if errors:
                    store.add(series, sec, 1.0, errors)
                if errors < b.count:
                    store.add(series, sec, 0.0, b.count - errors)
            store.add(v.per_instance, sec, b.per_instance / b.count, b.count)
            store.add_values(v.model_latency, sec, b.model)
            store.add_values(v.overhead_latency, sec, b.overhead)
        return n

    def _variant(self, endpoint: str, variant: str) -> _VariantSeries:
        dims = (("EndpointName", endpoint), ("VariantName", variant))

        def series(name: str, unit: str) -> Series:
            return self._store.series(MetricId.of(SAGEMAKER_NAMESPACE, name, dims), unit, high_res=True)

        v = _VariantSeries(
            series("Invocations", "None"),
            series("Invocation4XXErrors", "None"),
            series("Invocation5XXErrors", "None"),
            series("InvocationsPerInstance", "None"),
            series("ModelLatency", "Microseconds"),
            series("OverheadLatency", "Microseconds"),
        )
        self._variants[(endpoint, variant)] = v
        return v
