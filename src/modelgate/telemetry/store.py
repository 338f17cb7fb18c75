"""The in-memory metric store: per series, 1-second and 60-second aggregates.

A *series* is one metric (namespace, name, dimensions) with one unit. Each keeps two tiers, as
CloudWatch's retention describes: high-resolution (1 s, kept 3 hours, only for series that were ever
published at high resolution) and 1-minute (kept 15 days). Every sample lands in both tiers; nothing is
re-aggregated later, so the tiers never disagree.

The store is single-threaded: it is touched only from the event loop (the recorder's drain, PutMetricData,
queries, the flusher's snapshot). Persistence reads :meth:`MetricStore.take_dirty` and writes elsewhere.

A point is *open* (a mutable :class:`Agg`) while its period can still receive samples, and *sealed*
(``Agg.pack()``: one immutable bytes object) a few seconds after the period ended (:meth:`MetricStore.seal`,
every flush). Three hours of per-second points are most of the store, and an open point is a dozen
Python objects with float arrays grown as samples came: measured on a c=16 benchmark (3,000 requests/s,
one variant), the gateway grew 16 KB a second, which is 170 MB at the three hours' plateau; sealed, a
second of a variant's six series takes about 1.5 KB. A late sample opens a sealed point again.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from modelgate.telemetry.model import MetricId
from modelgate.telemetry.sketch import Sketch
from modelgate.telemetry.statistics import Agg

HIGH_RES = 1
LOW_RES = 60
HIGH_RES_RETENTION = 3 * 3600
LOW_RES_RETENTION = 15 * 86400
SEAL_AFTER = 5  # seconds after a period's end before its point is sealed (the drain runs every 0.1 s)

Point = Agg | bytes
"""A tier's value: an open aggregate, or a sealed one (``Agg.pack()``)."""


def agg_of(point: Point, with_sketch: bool = True) -> Agg:
    """The point's aggregate, read-only when open (the store's own object), a new one when sealed."""
    return point if isinstance(point, Agg) else Agg.unpack(point, with_sketch)


def copy_of(point: Point, with_sketch: bool = True) -> Agg:
    """A new aggregate equal to the point's, safe to change or to hand to another thread."""
    return point.copy(with_sketch) if isinstance(point, Agg) else Agg.unpack(point, with_sketch)


class Series:
    __slots__ = (
        "dirty_hi",
        "dirty_lo",
        "hi",
        "high_res",
        "id",
        "last_ts",
        "lo",
        "metric",
        "open_hi",
        "open_lo",
        "total_count",
        "total_sum",
        "unit",
    )

    def __init__(self, series_id: int, metric: MetricId, unit: str, high_res: bool) -> None:
        self.id = series_id
        self.metric = metric
        self.unit = unit
        self.high_res = high_res
        self.hi: dict[int, Point] = {}
        self.lo: dict[int, Point] = {}
        self.dirty_hi: set[int] = set()
        self.dirty_lo: set[int] = set()
        self.open_hi: set[int] = set()  # keys whose point is an open Agg
        self.open_lo: set[int] = set()
        # Since this process started, for Prometheus counters.
        self.total_count = 0.0
        self.total_sum = 0.0
        self.last_ts = 0.0


@dataclass(frozen=True, slots=True)
class PointRow:
    series_id: int
    resolution: int
    ts: int
    agg: Agg


class MetricStore:
    def __init__(self) -> None:
        self._series: dict[tuple[MetricId, str], Series] = {}
        self._by_metric: dict[MetricId, list[Series]] = {}
        self._by_id: dict[int, Series] = {}
        self._next_id = 1
        self._dirty_series: set[int] = set()

    # --- writing ----------------------------------------------------------------------------------

    def series(self, metric: MetricId, unit: str, high_res: bool = False) -> Series:
        s = self._series.get((metric, unit))
        if s is None:
            s = self._register(Series(self._next_id, metric, unit, high_res))
            self._dirty_series.add(s.id)
        elif high_res and not s.high_res:
            s.high_res = True
            self._dirty_series.add(s.id)
        return s

    def _register(self, s: Series) -> Series:
        self._series[(s.metric, s.unit)] = s
        self._by_metric.setdefault(s.metric, []).append(s)
        self._by_id[s.id] = s
        self._next_id = max(self._next_id, s.id + 1)
        return s

    def add(self, s: Series, ts: float, value: float, count: float = 1.0) -> None:
        sec = int(ts)
        if s.high_res:
            _open(s.hi, s.open_hi, sec).add(value, count)
            s.dirty_hi.add(sec)
        minute = sec - sec % 60
        _open(s.lo, s.open_lo, minute).add(value, count)
        s.dirty_lo.add(minute)
        s.total_count += count
        s.total_sum += value * count
        if ts > s.last_ts:
            s.last_ts = ts

    def add_values(self, s: Series, ts: float, values: list[float]) -> None:
        """Several samples of one second at once: the sketch keys are computed once, then merged per tier."""
        if not values:
            return
        batch = Agg()
        batch.count = batch.sketched = float(len(values))
        batch.sum, batch.min, batch.max = sum(values), min(values), max(values)
        batch.sketch = Sketch()
        batch.sketch.add_many(values)
        sec = int(ts)
        tiers = [(s.lo, s.open_lo, s.dirty_lo, sec - sec % 60)]
        if s.high_res:
            tiers.append((s.hi, s.open_hi, s.dirty_hi, sec))
        for tier, opened, dirty, key in tiers:
            _open(tier, opened, key).merge(batch)  # into a new Agg, a merge is a copy
            dirty.add(key)
        s.total_count += batch.count
        s.total_sum += batch.sum
        if ts > s.last_ts:
            s.last_ts = ts

    def add_stats(self, s: Series, ts: float, count: float, total: float, minimum: float, maximum: float) -> None:
        sec = int(ts)
        tiers = [(s.lo, s.open_lo, s.dirty_lo, sec - sec % 60)]
        if s.high_res:
            tiers.append((s.hi, s.open_hi, s.dirty_hi, sec))
        for tier, opened, dirty, key in tiers:
            _open(tier, opened, key).add_stats(count, total, minimum, maximum)
            dirty.add(key)
        s.total_count += count
        s.total_sum += total
        if ts > s.last_ts:
            s.last_ts = ts

    # --- reading ----------------------------------------------------------------------------------

    def series_of(self, metric: MetricId, unit: str | None = None) -> list[Series]:
        return [s for s in self._by_metric.get(metric, ()) if unit is None or s.unit == unit]

    def all_series(self) -> Iterable[Series]:
        return self._by_id.values()

    def buckets(
        self, metric: MetricId, unit: str | None, start: int, end: int, period: int, with_sketch: bool = True
    ) -> dict[int, tuple[Agg, str]]:
        """Aggregates over ``[start + k*period, start + (k+1)*period)`` for k while < end, keyed by bucket
        start; only buckets with data. The unit is the first series' unit when units were mixed."""
        out: dict[int, tuple[Agg, str]] = {}
        minute_aligned = period % 60 == 0 and start % 60 == 0
        for s in self.series_of(metric, unit):
            use_hi = s.high_res and not minute_aligned
            tier, step = (s.hi, HIGH_RES) if use_hi else (s.lo, LOW_RES)
            for ts, point in _in_range(tier, start, end, step):
                b = start + (ts - start) // period * period
                have = out.get(b)
                if have is None:
                    out[b] = (copy_of(point, with_sketch), s.unit)
                else:
                    have[0].merge(agg_of(point, with_sketch), with_sketch)
        return out

    def metrics(self) -> Iterable[MetricId]:
        return self._by_metric.keys()

    def last_timestamp(self, metric: MetricId) -> float:
        return max((s.last_ts for s in self._by_metric.get(metric, ())), default=0.0)

    # --- persistence and retention ----------------------------------------------------------------

    def seal(self, now: float) -> int:
        """Seal the open points whose period ended ``SEAL_AFTER`` seconds or more before ``now``; return
        how many were sealed."""
        cut_hi = int(now) - SEAL_AFTER - HIGH_RES + 1  # a second ts ended at ts + 1
        cut_lo = int(now) - SEAL_AFTER - LOW_RES + 1
        n = 0
        for s in self._by_id.values():
            for tier, opened, cut in ((s.hi, s.open_hi, cut_hi), (s.lo, s.open_lo, cut_lo)):
                done = [ts for ts in opened if ts < cut]
                for ts in done:
                    point = tier.get(ts)
                    if isinstance(point, Agg):
                        tier[ts] = point.pack()
                    opened.discard(ts)
                n += len(done)
        return n

    def take_dirty(self) -> tuple[list[tuple[int, MetricId, str, bool]], list[PointRow]]:
        """Series created or changed, and points changed, since the last call (copies, safe to write
        from another thread)."""
        series = [(s.id, s.metric, s.unit, s.high_res) for s in map(self._by_id.get, self._dirty_series) if s]
        self._dirty_series = set()
        points: list[PointRow] = []
        for s in self._by_id.values():
            if s.dirty_hi:
                points.extend(PointRow(s.id, HIGH_RES, t, copy_of(s.hi[t])) for t in s.dirty_hi if t in s.hi)
                s.dirty_hi = set()
            if s.dirty_lo:
                points.extend(PointRow(s.id, LOW_RES, t, copy_of(s.lo[t])) for t in s.dirty_lo if t in s.lo)
                s.dirty_lo = set()
        return series, points

    def restore_dirty(self, series: list[tuple[int, MetricId, str, bool]], points: list[PointRow]) -> None:
        """Mark again what a failed write did not persist."""
        self._dirty_series.update(i for i, *_ in series)
        for p in points:
            s = self._by_id.get(p.series_id)
            if s is not None:
                (s.dirty_hi if p.resolution == HIGH_RES else s.dirty_lo).add(p.ts)

    def load_series(self, series_id: int, metric: MetricId, unit: str, high_res: bool) -> None:
        self._register(Series(series_id, metric, unit, high_res))

    def load_point(self, row: PointRow) -> None:
        s = self._by_id.get(row.series_id)
        if s is None:
            return
        tier = s.hi if row.resolution == HIGH_RES else s.lo
        tier[row.ts] = row.agg.pack()  # sealed: a sample for its period opens it again
        s.last_ts = max(s.last_ts, float(row.ts))

    def purge(self, now: float) -> list[int]:
        """Drop points past retention; return the ids of series left with no data (now forgotten)."""
        hi_cut = int(now) - HIGH_RES_RETENTION
        lo_cut = int(now) - LOW_RES_RETENTION
        gone: list[int] = []
        for s in list(self._by_id.values()):
            for t in [t for t in s.hi if t < hi_cut]:
                del s.hi[t]
                s.open_hi.discard(t)
            for t in [t for t in s.lo if t < lo_cut]:
                del s.lo[t]
                s.open_lo.discard(t)
            if not s.hi and not s.lo and s.last_ts < lo_cut and s.id not in self._dirty_series:
                gone.append(s.id)
                del self._by_id[s.id]
                del self._series[(s.metric, s.unit)]
                siblings = self._by_metric[s.metric]
                siblings.remove(s)
                if not siblings:
                    del self._by_metric[s.metric]
        return gone


def _open(tier: dict[int, Point], opened: set[int], key: int) -> Agg:
    """The open aggregate at ``key``: made, or unsealed, when needed."""
    point = tier.get(key)
    if isinstance(point, Agg):
        return point
    agg = tier[key] = Agg() if point is None else Agg.unpack(point)
    opened.add(key)
    return agg


def _in_range(tier: dict[int, Point], start: int, end: int, step: int) -> Iterator[tuple[int, Point]]:
    first = start - start % step
    if first < start:
        first += step
    if (end - first) // step > len(tier):
        for ts, agg in tier.items():
            if start <= ts < end:
                yield ts, agg
        return
    for ts in range(first, end, step):
        found = tier.get(ts)
        if found is not None:
            yield ts, found
