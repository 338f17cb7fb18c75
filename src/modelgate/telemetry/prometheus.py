"""The Prometheus text exposition (format 0.0.4) of the endpoint and instance metrics.

Counters count since this process started (Prometheus handles the reset at a restart). The latency
summaries' quantiles cover the last 60 seconds, from the same sketches as CloudWatch's percentiles.

==============================================  =======  ===========================================
modelgate_invocations_total                     counter  per endpoint, variant
modelgate_invocation_4xx_errors_total           counter
modelgate_invocation_5xx_errors_total           counter
modelgate_model_latency_microseconds            summary  quantiles 0.5, 0.9, 0.99 over 60 s; sum; count
modelgate_overhead_latency_microseconds         summary
modelgate_instance_cpu_utilization_percent      gauge    per endpoint, variant, instance (latest sample)
modelgate_instance_memory_utilization_percent   gauge
modelgate_metric_samples_dropped_total          counter  recorder queue overflow
==============================================  =======  ===========================================
"""

from __future__ import annotations

from collections.abc import Iterable

from modelgate.telemetry.instances import InstanceSample
from modelgate.telemetry.model import SAGEMAKER_NAMESPACE
from modelgate.telemetry.sketch import Sketch
from modelgate.telemetry.store import MetricStore, Series, agg_of

CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"
QUANTILES = (0.5, 0.9, 0.99)
WINDOW = 60

_COUNTERS = (
    ("Invocations", "modelgate_invocations_total", "InvokeEndpoint requests routed to a variant.", "count"),
    ("Invocation4XXErrors", "modelgate_invocation_4xx_errors_total", "Requests the model answered with 4xx.", "sum"),
    ("Invocation5XXErrors", "modelgate_invocation_5xx_errors_total", "Requests answered with 5xx.", "sum"),
)
_SUMMARIES = (
    ("ModelLatency", "modelgate_model_latency_microseconds", "Time spent in the model container."),
    ("OverheadLatency", "modelgate_overhead_latency_microseconds", "Time spent in modelgate around the model."),
)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(pairs: Iterable[tuple[str, str]]) -> str:
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in pairs) + "}"


def _number(x: float) -> str:
    if x != x:
        return "NaN"
    if x in (float("inf"), float("-inf")):
        return "+Inf" if x > 0 else "-Inf"
    return repr(float(x)) if x != int(x) else str(int(x))


def _endpoint_labels(s: Series) -> str:
    dims = dict(s.metric.dimensions)
    return _labels((("endpoint", dims.get("EndpointName", "")), ("variant", dims.get("VariantName", ""))))


def _window(s: Series, now: float) -> Sketch:
    sketch = Sketch()
    for ts in range(int(now) - WINDOW + 1, int(now) + 1):
        found = s.hi.get(ts)
        agg = None if found is None else agg_of(found)
        if agg is not None and agg.sketch is not None:
            sketch.merge(agg.sketch)
    return sketch


def render(store: MetricStore, instances: Iterable[InstanceSample], dropped: int, now: float) -> bytes:
    by_name: dict[str, list[Series]] = {}
    for s in store.all_series():
        if s.metric.namespace == SAGEMAKER_NAMESPACE:
            by_name.setdefault(s.metric.name, []).append(s)
    lines: list[str] = []
    for metric, name, help_text, field in _COUNTERS:
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} counter"]
        for s in sorted(by_name.get(metric, ()), key=lambda s: s.metric.dimensions):
            lines.append(f"{name}{_endpoint_labels(s)} {_number(s.total_count if field == 'count' else s.total_sum)}")
    for metric, name, help_text in _SUMMARIES:
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} summary"]
        for s in sorted(by_name.get(metric, ()), key=lambda s: s.metric.dimensions):
            labels = _endpoint_labels(s)
            sketch = _window(s, now)
            for q in QUANTILES:
                value = sketch.quantile(q)
                quantile_labels = labels[:-1] + f',quantile="{q}"}}'
                lines.append(f"{name}{quantile_labels} {_number(value if value is not None else float('nan'))}")
            lines.append(f"{name}_sum{labels} {_number(s.total_sum)}")
            lines.append(f"{name}_count{labels} {_number(s.total_count)}")
    samples = sorted(instances, key=lambda i: (i.endpoint, i.variant, i.instance_id))
    for name, help_text, attr in (
        ("modelgate_instance_cpu_utilization_percent", "CPU of an instance, summed over cores.", "cpu_percent"),
        ("modelgate_instance_memory_utilization_percent", "Memory of an instance (% of host).", "memory_percent"),
    ):
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
        for i in samples:
            labels = _labels((("endpoint", i.endpoint), ("variant", i.variant), ("instance", i.instance_id)))
            lines.append(f"{name}{labels} {_number(getattr(i, attr))}")
    lines += [
        "# HELP modelgate_metric_samples_dropped_total Invocation samples dropped because the queue was full.",
        "# TYPE modelgate_metric_samples_dropped_total counter",
        f"modelgate_metric_samples_dropped_total {dropped}",
    ]
    return ("\n".join(lines) + "\n").encode()
