"""Per-period aggregates and CloudWatch's statistics over them.

An :class:`Agg` is what CloudWatch keeps per metric per period: SampleCount, Sum, Minimum, Maximum, plus
(our addition) a :class:`Sketch` of the raw values for percentiles. Values published as a StatisticSet
carry no distribution, so an aggregate that holds any of them has no percentiles (as in CloudWatch,
percentiles need the raw values).
"""

from __future__ import annotations

import re
import struct

from modelgate.telemetry.sketch import Sketch

STATISTICS = ("SampleCount", "Average", "Sum", "Minimum", "Maximum")
_PERCENTILE = re.compile(r"p(\d{1,2}(?:\.\d{1,10})?|100(?:\.0{1,10})?)")
_STATS = struct.Struct("=5d")  # count, sum, min, max, sketched


class Agg:
    __slots__ = ("count", "max", "min", "sketch", "sketched", "sum")

    def __init__(self) -> None:
        self.count = 0.0
        self.sum = 0.0
        self.min = float("inf")
        self.max = float("-inf")
        self.sketch: Sketch | None = None
        self.sketched = 0.0

    def add(self, value: float, count: float = 1.0) -> None:
        self.count += count
        self.sum += value * count
        if value < self.min:
            self.min = value
        if value > self.max:
            self.max = value
        sketch = self.sketch
        if sketch is None:
            sketch = self.sketch = Sketch()
        sketch.add(value, count)
        self.sketched += count

    def add_stats(self, sample_count: float, total: float, minimum: float, maximum: float) -> None:
        self.count += sample_count
        self.sum += total
        self.min = min(self.min, minimum)
        self.max = max(self.max, maximum)

    def merge(self, other: Agg, with_sketch: bool = True) -> None:
        self.count += other.count
        self.sum += other.sum
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)
        self.sketched += other.sketched
        if with_sketch and other.sketch is not None:
            if self.sketch is None:
                self.sketch = other.sketch.copy()
            else:
                self.sketch.merge(other.sketch)

    def copy(self, with_sketch: bool = True) -> Agg:
        a = Agg()
        a.merge(self, with_sketch)
        return a

    def pack(self) -> bytes:
        """This aggregate as one immutable bytes object (see ``MetricStore.seal``): the five figures,
        then the sketch's packed form when there is one."""
        head = _STATS.pack(self.count, self.sum, self.min, self.max, self.sketched)
        return head if self.sketch is None else head + self.sketch.pack()

    @staticmethod
    def unpack(data: bytes, with_sketch: bool = True) -> Agg:
        """A new, mutable aggregate from :meth:`pack`'s bytes (without its sketch when not wanted)."""
        a = Agg()
        a.count, a.sum, a.min, a.max, a.sketched = _STATS.unpack_from(data)
        if with_sketch and len(data) > _STATS.size:
            a.sketch = Sketch.unpack(data, _STATS.size)
        return a

    def percentile(self, q: float) -> float | None:
        """The q-quantile (0..1), or None when some samples came without a distribution."""
        if self.sketch is None or self.sketched < self.count:
            return None
        return self.sketch.quantile(q)


def percentile_of(stat: str) -> float | None:
    """``p99.9`` → 0.999; None when ``stat`` is not a percentile statistic."""
    m = _PERCENTILE.fullmatch(stat)
    return float(m.group(1)) / 100.0 if m else None


def is_statistic(stat: str) -> bool:
    return stat in STATISTICS or percentile_of(stat) is not None


def value_of(agg: Agg, stat: str) -> float | None:
    """The statistic ``stat`` of an aggregate (None if it has no value, e.g. a percentile of a set)."""
    if agg.count <= 0:
        return None
    if stat == "Sum":
        return agg.sum
    if stat == "Average":
        return agg.sum / agg.count
    if stat == "SampleCount":
        return agg.count
    if stat == "Minimum":
        return agg.min
    if stat == "Maximum":
        return agg.max
    q = percentile_of(stat)
    return agg.percentile(q) if q is not None else None


def low_sample_count(stat: str, sample_count: float) -> bool:
    """CloudWatch's "too few samples" rule for percentiles: < 10/(1-p) for p >= 0.5, else < 10/p."""
    q = percentile_of(stat)
    if q is None:
        return False
    if q >= 0.5:
        return q < 1.0 and sample_count < 10.0 / (1.0 - q)
    return q > 0.0 and sample_count < 10.0 / q
