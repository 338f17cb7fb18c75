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
timeout counts as 5XX). A literal 424 counts as 4XX. Requests refused before a variant is chosen are not
recorded: they have no VariantName.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from modelgate.clock import Clock
from modelgate.telemetry.model import SAGEMAKER_NAMESPACE, MetricId
from modelgate.telemetry.store import MetricStore, Series

_Pending = tuple[float, str, str, int, float, float, int]


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
        self._now = clock.now
        self._pending: deque[_Pending] = deque()
        self._limit = max_pending
        self._variants: dict[tuple[str, str], _VariantSeries] = {}
        # Samples refused because the queue was full (the drain task is stuck): a named, counted loss.
        self.dropped = 0

    def record_invocation(
        self,
        endpoint: str,
        variant: str,
        status: int,
        model_latency_us: float,
        overhead_latency_us: float,
        instance_count: int,
    ) -> None:
        pending = self._pending
        if len(pending) >= self._limit:
            self.dropped += 1
            return
        pending.append((self._now(), endpoint, variant, status, model_latency_us, overhead_latency_us, instance_count))

    @property
    def pending(self) -> int:
        return len(self._pending)

    def drain(self) -> int:
        """Fold every queued sample into the store; return how many."""
        pending = self._pending
        n = len(pending)
        pop = pending.popleft
        add = self._store.add
        for _ in range(n):
            ts, endpoint, variant, status, model_us, overhead_us, instances = pop()
            v = self._variants.get((endpoint, variant)) or self._variant(endpoint, variant)
            add(v.invocations, ts, 1.0)
            add(v.e4xx, ts, 1.0 if 400 <= status < 500 else 0.0)
            add(v.e5xx, ts, 1.0 if status >= 500 else 0.0)
            add(v.per_instance, ts, 1.0 / instances if instances > 0 else 1.0)
            if model_us >= 0.0:
                add(v.model_latency, ts, model_us)
            if overhead_us >= 0.0:
                add(v.overhead_latency, ts, overhead_us)
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
