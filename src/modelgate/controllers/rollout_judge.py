"""Green against blue during a deployment: the sequential comparison, published as metrics to alarm on.

Beyond SageMaker, whose bakes watch fixed-threshold alarms only. The boto3 API stays as it is: the
comparison is a metric, and a user who wants it lists an alarm on it in AutoRollbackConfiguration:

    cloudwatch.put_metric_alarm(
        AlarmName="green-worse-than-blue", Namespace="modelgate/Rollout", MetricName="GreenWorseThanBlue",
        Dimensions=[{"Name": "EndpointName", "Value": "churn"}], Statistic="Maximum", Period=10,
        EvaluationPeriods=1, Threshold=1, ComparisonOperator="GreaterThanOrEqualToThreshold",
        TreatMissingData="notBreaching")

Every ``interval`` seconds, for each deployment in progress and each variant with a green fleet, the
judge takes what each fleet answered since its last look (the recorder's per-fleet tallies: requests,
answers with status >= 400, ModelLatency buckets). The interval counts only if the published route of
the variant was the same at both looks (the same fleets with the same shares: an interval never
straddles a traffic shift) and sent traffic to both green and blue; then it is folded into the
variant's :mod:`modelgate.rollout.compare` state. Routing between a variant's fleets is random by
share (routing/router.py), which the test needs.

Published in namespace ``modelgate/Rollout`` at every look while the deployment runs (storage
resolution 1, so alarms may use a 10 s period):

============================  ===================================================================
GreenWorseThanBlue            1 from the moment either test rejects at ``alpha`` until the
                              deployment ends, else 0; dimensions (EndpointName) (the largest
                              over variants) and (EndpointName, VariantName)
GreenWorseThanBlueConfidence  ``1 - min(1, 2 min(p_errors, p_latency))``, never decreasing;
                              an alarm at threshold ``c`` rolls back an A/A update with
                              probability at most ``1 - c``; (EndpointName, VariantName)
GreenErrorRatePValue          the error test's always-valid p-value, (EndpointName, VariantName)
GreenLatencyPValue            the latency test's, (EndpointName, VariantName)
============================  ===================================================================

With an alarm as above, an A/A deployment rolls back with probability at most ``alpha`` (default
0.05; docs/rollout-comparison.md has the proof and the simulated rates). The states live in memory:
after a restart a deployment in a bake rolls back anyway (controllers/rollouts.py), and one whose blue
fleet is being stopped no longer compares. Nothing is published once a deployment has ended, so an
alarm with ``TreatMissingData=notBreaching`` returns to OK.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from modelgate.clock import Clock
from modelgate.controllers.rollouts import RolloutController
from modelgate.rollout.compare import ComparisonConfig, ComparisonState, Counts, new_comparison, slow_counts
from modelgate.rollout.compare import update as fold
from modelgate.rollout.compare import verdict as judge
from modelgate.routing.table import RoutingTable
from modelgate.services.metrics import MetricsService
from modelgate.telemetry.model import MetricDatum
from modelgate.telemetry.recorder import InvocationRecorder

log = logging.getLogger(__name__)

NAMESPACE = "modelgate/Rollout"
Layout = tuple[tuple[str, float], ...]  # a variant's published (fleet id, share) pairs


@dataclass
class _Watch:
    green: str  # green fleet id
    blue: tuple[str, ...]  # the variant's other fleet ids
    layout: Layout | None  # the published route at the last look
    state: ComparisonState
    worse: bool = False


class RolloutJudge:
    def __init__(
        self,
        rollouts: RolloutController,
        table: RoutingTable,
        recorder: InvocationRecorder,
        metrics: MetricsService,
        clock: Clock,
        config: ComparisonConfig,
        interval: float,
    ) -> None:
        self.rollouts = rollouts
        self.table = table
        self.recorder = recorder
        self.metrics = metrics
        self.clock = clock
        self.config = config
        self.interval = interval
        self._watches: dict[tuple[str, str, str], _Watch] = {}  # (endpoint, deployment id, variant)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                self.look()
            except Exception:
                log.exception("rollout comparison failed")

    def look(self) -> None:
        """One look at every deployment: fold the last interval, publish the verdicts."""
        seen: set[tuple[str, str, str]] = set()
        data: list[MetricDatum] = []
        now = self.clock.now()

        def datum(name: str, value: float, dims: tuple[tuple[str, str], ...]) -> MetricDatum:
            return MetricDatum(name, dims, now, value=value, unit="None", storage_resolution=1)

        self.recorder.drain()
        for endpoint, live in list(self.rollouts.live.items()):
            route = self.table.get(endpoint)
            if route is None or not live.green:
                continue
            worst = 0.0
            for variant, green in live.green.items():
                vr = route.by_name.get(variant)
                if vr is None:
                    continue
                key = (endpoint, live.record.id, variant)
                seen.add(key)
                layout = tuple(zip((f.fleet_id for f in vr.fleets), vr.fleet_shares, strict=True))
                watch = self._watches.get(key)
                if watch is None or watch.green != green.id:
                    watch = self._watches[key] = _Watch(green.id, (), None, new_comparison(self.config))
                self._observe(watch, layout)
                verdict = judge(watch.state, self.config)
                if verdict.green_worse and not watch.worse:
                    watch.worse = True
                    log.warning("deployment of %s, variant %s: %s", endpoint, variant, verdict.reason)
                worst = max(worst, 1.0 if watch.worse else 0.0)
                dims = (("EndpointName", endpoint), ("VariantName", variant))
                p = min(1.0, 2.0 * min(verdict.errors_p_value, verdict.latency_p_value))
                data += [
                    datum("GreenWorseThanBlue", 1.0 if watch.worse else 0.0, dims),
                    datum("GreenWorseThanBlueConfidence", 1.0 - p, dims),
                    datum("GreenErrorRatePValue", verdict.errors_p_value, dims),
                    datum("GreenLatencyPValue", verdict.latency_p_value, dims),
                ]
            data.append(datum("GreenWorseThanBlue", worst, (("EndpointName", endpoint),)))
        for key in set(self._watches) - seen:
            watch = self._watches.pop(key)
            for fleet in (watch.green, *watch.blue):
                self.recorder.unwatch_fleet(fleet)
        for i in range(0, len(data), 1000):  # PutMetricData takes at most 1000 at a time
            self.metrics.put_metric_data(NAMESPACE, data[i : i + 1000])

    def _observe(self, watch: _Watch, layout: Layout) -> None:
        """Take both fleets' tallies; fold them in if the interval had one route with traffic on both."""
        blue = tuple(f for f, _ in layout if f != watch.green)
        for fleet in (watch.green, *blue):
            self.recorder.watch_fleet(fleet)
        for gone in set(watch.blue) - set(blue):
            self.recorder.unwatch_fleet(gone)
        watch.blue = blue
        g = self.recorder.take_fleet(watch.green)
        b_requests = b_errors = 0
        b_latency: dict[int, float] = {}
        for fleet in blue:
            t = self.recorder.take_fleet(fleet)
            b_requests += t.requests
            b_errors += t.errors
            for k, c in t.latency.items():
                b_latency[k] = b_latency.get(k, 0.0) + c
        same_route = watch.layout == layout
        watch.layout = layout
        shares = dict(layout)
        green_share = shares.get(watch.green, 0.0)
        if not same_route or green_share <= 0.0 or green_share >= sum(shares.values()):
            return
        errors = Counts(
            green_requests=g.requests, green_events=g.errors, blue_requests=b_requests, blue_events=b_errors
        )
        slow = slow_counts(g.latency, b_latency, self.config.latency_quantile)
        watch.state = fold(watch.state, self.config, errors, slow)
