"""Metric use cases: PutMetricData, GetMetricStatistics, GetMetricData, ListMetrics.

Typed arguments in, typed results out, CloudWatch's validation and error codes (telemetry/errors.py);
the metric store does the arithmetic. Time rounding follows CloudWatch: a start time is rounded down to
the minute for periods of a minute or more, and to the period below that.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from modelgate.clock import Clock
from modelgate.telemetry.errors import (
    CloudWatchValidation,
    InvalidParameterCombination,
    InvalidParameterValue,
    MissingParameter,
)
from modelgate.telemetry.metric_math import MathError, Node, Series, Value, evaluate_queries, parse
from modelgate.telemetry.model import (
    MetricDataResult,
    MetricDatum,
    MetricId,
    MetricQuery,
    MetricStat,
    StatisticsDatapoint,
)
from modelgate.telemetry.statistics import STATISTICS, is_statistic, percentile_of, value_of
from modelgate.telemetry.store import HIGH_RES_RETENTION, MetricStore

MAX_DATAPOINTS_PER_CALL = 1440
LIST_PAGE = 500
_LIMIT = 2.0**360
# CloudWatch refuses a non-zero value whose magnitude is below this (2 ** -360), as it refuses one above _LIMIT.
SMALLEST_MAGNITUDE = 8.515920e-109
_TWO_WEEKS = 14 * 86400
_TWO_HOURS = 2 * 3600


def valid_period(period: int) -> bool:
    return period in (1, 5, 10, 20, 30) or (period > 0 and period % 60 == 0)


def align_start(start: float, period: int) -> int:
    step = 60 if period >= 60 else period
    return int(start // step) * step


class MetricsService:
    def __init__(self, store: MetricStore, clock: Clock, before_read: Callable[[], object] | None = None) -> None:
        self.store = store
        self.clock = clock
        # Run before every read, so reads see all recorded samples (the metrics system drains the recorder).
        self.before_read: Callable[[], object] = before_read or (lambda: None)

    # --- PutMetricData ----------------------------------------------------------------------------

    def put_metric_data(self, namespace: str, data: Sequence[MetricDatum]) -> None:
        if namespace.startswith("AWS/"):
            raise InvalidParameterValue(f"The value {namespace} for parameter Namespace is invalid.")
        if len(data) > 1000:
            raise InvalidParameterValue("The collection MetricData must not have a size greater than 1000.")
        now = self.clock.now()
        for i, datum in enumerate(data, start=1):
            _check_datum(datum, f"MetricData.member.{i}", now)
        for datum in data:
            ts = datum.timestamp if datum.timestamp is not None else now
            high_res = datum.storage_resolution == 1 and ts >= now - HIGH_RES_RETENTION
            series = self.store.series(
                MetricId(namespace, datum.name, datum.dimensions), datum.unit or "None", high_res
            )
            if datum.value is not None:
                self.store.add(series, ts, datum.value)
            elif datum.statistic_values is not None:
                sv = datum.statistic_values
                self.store.add_stats(series, ts, sv.sample_count, sv.sum, sv.minimum, sv.maximum)
            else:
                counts = datum.counts or (1.0,) * len(datum.values)
                for value, count in zip(datum.values, counts, strict=True):
                    if count > 0:
                        self.store.add(series, ts, value, count)

    # --- GetMetricStatistics ----------------------------------------------------------------------

    def get_metric_statistics(
        self,
        metric: MetricId,
        start: float,
        end: float,
        period: int,
        statistics: Sequence[str],
        extended: Sequence[str],
        unit: str | None,
    ) -> list[StatisticsDatapoint]:
        if not statistics and not extended:
            raise InvalidParameterCombination("Must specify either Statistics or ExtendedStatistics")
        if statistics and extended:
            raise InvalidParameterCombination("Cannot specify both Statistics and ExtendedStatistics")
        for s in statistics:
            if s not in STATISTICS:
                raise InvalidParameterValue(f"The value {s} for parameter Statistics is not supported.")
        for s in extended:
            if percentile_of(s) is None:
                raise InvalidParameterValue(
                    f"The value {s} for parameter ExtendedStatistics is not supported."
                )
        if not valid_period(period):
            raise InvalidParameterValue(
                "The parameter Period must be 1, 5, 10, 20, 30, 60 or a multiple of 60."
            )
        first = align_start(start, period)
        self.before_read()
        if first >= end:
            raise InvalidParameterValue("The parameter StartTime must be less than the parameter EndTime.")
        requested = math.ceil((end - first) / period)
        if requested > MAX_DATAPOINTS_PER_CALL:
            raise InvalidParameterCombination(
                f"You have requested up to {requested:,} datapoints, which exceeds the limit of 1,440. "
                "You may reduce the datapoints requested by increasing Period, or decreasing the time range."
            )
        buckets = self.store.buckets(metric, unit, first, math.ceil(end), period, with_sketch=bool(extended))
        out: list[StatisticsDatapoint] = []
        for ts in sorted(buckets):
            agg, agg_unit = buckets[ts]
            wanted = set(statistics)
            dp = StatisticsDatapoint(timestamp=float(ts), unit=agg_unit)
            if "SampleCount" in wanted:
                dp.sample_count = agg.count
            if "Average" in wanted:
                dp.average = agg.sum / agg.count
            if "Sum" in wanted:
                dp.sum = agg.sum
            if "Minimum" in wanted:
                dp.minimum = agg.min
            if "Maximum" in wanted:
                dp.maximum = agg.max
            for s in extended:
                v = value_of(agg, s)
                if v is not None:
                    dp.extended[s] = v
            out.append(dp)
        return out

    # --- GetMetricData ----------------------------------------------------------------------------

    def get_metric_data(
        self,
        queries: Sequence[MetricQuery],
        start: float,
        end: float,
        scan_by: str = "TimestampDescending",
        max_datapoints: int | None = None,
    ) -> list[MetricDataResult]:
        if start >= end:
            raise CloudWatchValidation("The parameter EndTime must be greater than StartTime.")
        expressions = check_queries(queries, "MetricDataQueries")
        self.before_read()
        period = default_period(queries)
        first = align_start(start, period)
        resolve = self._resolver(queries, expressions, first, math.ceil(end), period, align=True)
        results: list[MetricDataResult] = []
        budget = max_datapoints if max_datapoints is not None else 100_800
        for q in queries:
            if not q.return_data:
                continue
            series = _single_series(q.id, resolve, range(first, math.ceil(end), period))
            stamps = sorted(series, reverse=scan_by != "TimestampAscending")
            result = MetricDataResult(q.id, q.label or (q.metric_stat.metric.name if q.metric_stat else q.id))
            if len(stamps) > budget:
                stamps = stamps[:budget]
                result.status_code = "PartialData"
            budget -= len(stamps)
            result.timestamps = [float(t) for t in stamps]
            result.values = [series[t] for t in stamps]
            results.append(result)
        return results

    def _resolver(
        self, queries: Sequence[MetricQuery], expressions: dict[str, Node], start: int, end: int, period: int,
        align: bool,
    ) -> Callable[[str], Value]:
        """Each MetricStat's series starts at ``start`` (or, with ``align``, at its own rounded start)."""
        stats: dict[str, Series] = {}
        for q in queries:
            if q.metric_stat is not None:
                ms = q.metric_stat
                first = align_start(start, ms.period) if align else start
                stats[q.id] = {t: v for t, (v, _) in self.stat_values(ms, first, end).items()}
        return evaluate_queries(expressions, stats, range(start, end, period))

    def stat_values(self, ms: MetricStat, start: int, end: int) -> dict[int, tuple[float, float]]:
        """Per period start: (statistic value, sample count), for periods that have a value."""
        want_sketch = percentile_of(ms.stat) is not None
        out: dict[int, tuple[float, float]] = {}
        for ts, (agg, _) in self.store.buckets(
            ms.metric, ms.unit, start, end, ms.period, want_sketch
        ).items():
            v = value_of(agg, ms.stat)
            if v is not None:
                out[ts] = (v, agg.count)
        return out

    def math_values(self, queries: Sequence[MetricQuery], start: int, end: int, period: int) -> Series:
        """The ReturnData series of a metric-math alarm over ``[start, end)``."""
        expressions = check_queries(queries, "Metrics")
        returned = [q for q in queries if q.return_data]
        resolve = self._resolver(queries, expressions, start, end, period, align=False)
        return _single_series(returned[0].id, resolve, range(start, end, period))

    # --- ListMetrics ------------------------------------------------------------------------------

    def list_metrics(
        self,
        namespace: str | None,
        metric_name: str | None,
        dimension_filters: Sequence[tuple[str, str | None]],
        recently_active: bool,
        next_token: str | None,
    ) -> tuple[list[MetricId], str | None]:
        offset = 0
        if next_token is not None:
            if not (next_token.isascii() and next_token.isdigit()) or len(next_token) > 18:
                raise InvalidParameterValue("Request parameter NextToken is invalid")
            offset = int(next_token)
        self.before_read()
        since = self.clock.now() - HIGH_RES_RETENTION if recently_active else None
        found = []
        for m in self.store.metrics():
            if namespace is not None and m.namespace != namespace:
                continue
            if metric_name is not None and m.name != metric_name:
                continue
            dims = dict(m.dimensions)
            if any(n not in dims or (v is not None and dims[n] != v) for n, v in dimension_filters):
                continue
            if since is not None and self.store.last_timestamp(m) < since:
                continue
            found.append(m)
        found.sort(key=lambda m: (m.namespace, m.name, m.dimensions))
        page = found[offset : offset + LIST_PAGE]
        more = offset + LIST_PAGE < len(found)
        return page, str(offset + LIST_PAGE) if more else None


def _single_series(qid: str, resolve: Callable[[str], Value], grid: range) -> Series:
    try:
        value = resolve(qid)
    except MathError as exc:
        raise CloudWatchValidation(f"Error in expression {qid}: {exc}") from exc
    if isinstance(value, list):
        raise CloudWatchValidation(f"Error in expression {qid}: it must return a single time series")
    if isinstance(value, dict):
        return value
    return {t: float(value) for t in grid} if math.isfinite(value) else {}


def default_period(queries: Sequence[MetricQuery]) -> int:
    for q in queries:
        if q.metric_stat is not None:
            return q.metric_stat.period
    for q in queries:
        if q.period is not None:
            return q.period
    return 60


def check_queries(queries: Sequence[MetricQuery], param: str) -> dict[str, Node]:
    """Validate a MetricDataQuery list; return the parsed expressions by id."""
    seen: set[str] = set()
    expressions: dict[str, Node] = {}
    for i, q in enumerate(queries, start=1):
        where = f"{param}.member.{i}"
        if not (q.id[:1].islower() and q.id.replace("_", "a").isalnum() and q.id.isascii()):
            raise CloudWatchValidation(
                f"The value {q.id} for parameter {where}.Id is invalid: it must start with "
                "a lower-case letter and hold only letters, digits and underscores."
            )
        if q.id in seen:
            raise CloudWatchValidation(f"The value {q.id} for parameter {where}.Id is duplicated.")
        seen.add(q.id)
        if (q.metric_stat is None) == (q.expression is None):
            raise CloudWatchValidation(
                f"Exactly one of {where}.MetricStat and {where}.Expression must be set."
            )
        if q.metric_stat is not None:
            if not is_statistic(q.metric_stat.stat):
                raise CloudWatchValidation(
                    f"The value {q.metric_stat.stat} for parameter {where}.MetricStat.Stat is not supported."
                )
            if not valid_period(q.metric_stat.period):
                raise CloudWatchValidation(
                    f"The parameter {where}.MetricStat.Period must be 1, 5, 10, 20, 30, 60 "
                    "or a multiple of 60."
                )
        if q.expression is not None:
            try:
                expressions[q.id] = parse(q.expression)
            except MathError as exc:
                raise CloudWatchValidation(f"Error in expression {q.id}: {exc}") from exc
    return expressions


def _check_datum(d: MetricDatum, where: str, now: float) -> None:
    has_values = bool(d.values)
    if d.value is not None and has_values:
        raise InvalidParameterValue(
            f"The parameters {where}.Value and {where}.Values are mutually exclusive and "
            "you have specified both."
        )
    if d.statistic_values is not None and (d.value is not None or has_values):
        other = "Value" if d.value is not None else "Values"
        raise InvalidParameterCombination(
            f"The parameters {where}.{other} and {where}.StatisticValues are "
            "mutually exclusive and you have specified both."
        )
    if d.value is None and d.statistic_values is None and not has_values:
        raise MissingParameter(
            f"The parameter {where}.Value, {where}.StatisticValues or {where}.Values is required."
        )
    if len(d.values) > 150:
        raise InvalidParameterValue(f"The collection {where}.Values must not have a size greater than 150.")
    if d.counts and len(d.counts) != len(d.values):
        raise InvalidParameterValue(
            f"The parameters {where}.Values and {where}.Counts must be of the same size."
        )
    checks: list[tuple[str, float]] = []
    if d.value is not None:
        checks.append((f"{where}.Value", d.value))
    checks.extend((f"{where}.Values", v) for v in d.values)
    checks.extend((f"{where}.Counts", c) for c in d.counts)
    if d.statistic_values is not None:
        sv = d.statistic_values
        checks += [
            (f"{where}.StatisticValues.{n}", v)
            for n, v in (
                ("SampleCount", sv.sample_count),
                ("Sum", sv.sum),
                ("Minimum", sv.minimum),
                ("Maximum", sv.maximum),
            )
        ]
        if sv.sample_count <= 0 or sv.minimum > sv.maximum:
            raise InvalidParameterValue(
                f"The parameter {where}.StatisticValues is invalid: SampleCount must be "
                "positive and Minimum no greater than Maximum."
            )
    for name, v in checks:
        if not math.isfinite(v) or abs(v) > _LIMIT or (v != 0 and abs(v) < SMALLEST_MAGNITUDE):
            raise InvalidParameterValue(f"The value {_show(v)} for parameter {name} is invalid.")
        if name.endswith(".Counts") and v < 0:
            raise InvalidParameterValue(f"The value {_show(v)} for parameter {name} is invalid.")
    if d.storage_resolution not in (1, 60):
        raise InvalidParameterValue(
            f"The value {d.storage_resolution} for parameter {where}.StorageResolution is "
            "invalid: it must be 1 or 60."
        )
    if d.timestamp is not None:
        if d.timestamp < now - _TWO_WEEKS:
            raise InvalidParameterValue(
                f"The parameter {where}.Timestamp must specify a time no more than two weeks in the past."
            )
        if d.timestamp > now + _TWO_HOURS:
            raise InvalidParameterValue(
                f"The parameter {where}.Timestamp must specify a time no more than two hours in the future."
            )
    names = [n for n, _ in d.dimensions]
    if len(set(names)) != len(names):
        raise InvalidParameterValue(f"The parameter {where}.Dimensions holds the same dimension name twice.")


def _show(v: float) -> str:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "Infinity" if v > 0 else "-Infinity"
    return repr(v)
