"""Percentiles from the sketch against exact values on known samples, within the stated 1% error."""

from __future__ import annotations

import math
import random

import pytest

from modelgate.telemetry.sketch import RELATIVE_ACCURACY, Sketch
from modelgate.telemetry.statistics import Agg, low_sample_count, percentile_of, value_of

QUANTILES = (0.0, 0.01, 0.1, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0)


def exact(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[math.floor(q * (len(ordered) - 1))]


def samples() -> dict[str, list[float]]:
    rng = random.Random(20240601)
    return {
        # latencies in microseconds: log-normal around 2 ms with a long tail
        "lognormal": [rng.lognormvariate(math.log(2000), 0.8) for _ in range(20_000)],
        "uniform-ints": [float(i) for i in range(1, 10_001)],
        "bimodal": [rng.gauss(500, 20) if rng.random() < 0.9 else rng.gauss(50_000, 5_000) for _ in range(20_000)],
        "with-negatives-and-zeros": [rng.uniform(-100, 100) for _ in range(5_000)] + [0.0] * 500,
    }


@pytest.mark.parametrize("name", ["lognormal", "uniform-ints", "bimodal", "with-negatives-and-zeros"])
def test_quantiles_within_relative_accuracy(name: str) -> None:
    values = samples()[name]
    sketch = Sketch()
    for v in values:
        sketch.add(v)
    for q in QUANTILES:
        want = exact(values, q)
        got = sketch.quantile(q)
        assert got is not None
        assert abs(got - want) <= RELATIVE_ACCURACY * abs(want) + 1e-12, (name, q, got, want)


def test_merging_per_second_sketches_equals_one_sketch() -> None:
    values = samples()["lognormal"]
    whole = Sketch()
    merged = Sketch()
    for second in range(20):
        part = Sketch()
        for v in values[second * 1000:(second + 1) * 1000]:
            part.add(v)
            whole.add(v)
        merged.merge(part)
    for q in QUANTILES:
        assert merged.quantile(q) == whole.quantile(q)


def test_counts_weight_values() -> None:
    sketch = Sketch()
    sketch.add(10.0, count=99)
    sketch.add(1000.0, count=1)
    assert sketch.quantile(0.5) == pytest.approx(10.0, rel=RELATIVE_ACCURACY)
    assert sketch.quantile(1.0) == pytest.approx(1000.0, rel=RELATIVE_ACCURACY)


def test_serialization_round_trip() -> None:
    sketch = Sketch()
    for v in samples()["with-negatives-and-zeros"]:
        sketch.add(v)
    back = Sketch.from_bytes(sketch.to_bytes())
    assert back.count == sketch.count
    assert [back.quantile(q) for q in QUANTILES] == [sketch.quantile(q) for q in QUANTILES]


def test_empty_sketch_has_no_quantile() -> None:
    assert Sketch().quantile(0.5) is None


def test_statistics_of_an_aggregate() -> None:
    agg = Agg()
    for v in (1.0, 2.0, 3.0, 4.0):
        agg.add(v)
    assert [value_of(agg, s) for s in ("SampleCount", "Sum", "Average", "Minimum", "Maximum")] == [
        4.0, 10.0, 2.5, 1.0, 4.0]
    assert value_of(agg, "p100") == pytest.approx(4.0, rel=RELATIVE_ACCURACY)
    assert value_of(agg, "p0") == pytest.approx(1.0, rel=RELATIVE_ACCURACY)
    assert value_of(agg, "tm90") is None


def test_statistic_sets_have_no_percentiles() -> None:
    agg = Agg()
    agg.add(5.0)
    agg.add_stats(10, 100.0, 1.0, 20.0)
    assert value_of(agg, "Sum") == 105.0
    assert value_of(agg, "SampleCount") == 11.0
    assert (value_of(agg, "Minimum"), value_of(agg, "Maximum")) == (1.0, 20.0)
    assert value_of(agg, "p50") is None


@pytest.mark.parametrize(("stat", "q"), [("p99", 0.99), ("p99.9", 0.999), ("p50", 0.5), ("p0", 0.0), ("p100", 1.0),
                                         ("p101", None), ("Sum", None), ("p", None), ("P99", None)])
def test_percentile_names(stat: str, q: float | None) -> None:
    assert percentile_of(stat) == (pytest.approx(q) if q is not None else None)


def test_low_sample_count_thresholds() -> None:
    assert low_sample_count("p99", 999) and not low_sample_count("p99", 1000)
    assert low_sample_count("p25", 39) and not low_sample_count("p25", 40)
    assert not low_sample_count("Sum", 1) and not low_sample_count("p100", 1)


@pytest.mark.parametrize("name", ["lognormal", "uniform-ints", "bimodal", "with-negatives-and-zeros"])
def test_adding_in_bulk_equals_adding_one_by_one(name: str) -> None:
    values = samples()[name] + [1e-300, 5e-324, 1e300]  # below the mapping's smallest value, and huge
    one, bulk = Sketch(), Sketch()
    for v in values:
        one.add(v)
    bulk.add_many(values)
    assert bulk.to_bytes() == one.to_bytes()
    assert bulk.count == one.count == len(values)


@pytest.mark.parametrize(
    ("counts", "typecode"),
    [
        ([1.0, 3.0, 200.0], "B"),
        ([1.0, 70_000.0], "I"),
        ([300.0, 1.0], "H"),
        ([1.5, 2.0], "d"),  # a PutMetricData with fractional Counts
        ([2.0**33], "d"),
    ],
)
def test_packed_sketch_keeps_every_count_in_the_narrowest_type(counts: list[float], typecode: str) -> None:
    s = Sketch()
    for i, c in enumerate(counts):
        s.add(100.0 * 1.5**i, c)
    s.add(-3.0, 2.0)
    s.add(0.0, 4.0)
    packed = s.pack()
    again = Sketch.unpack(packed)
    assert (again.zero, again.count) == (s.zero, s.count)
    assert (again.pos.offset, list(again.pos.counts)) == (s.pos.offset, list(s.pos.counts))
    assert (again.neg.offset, list(again.neg.counts)) == (s.neg.offset, list(s.neg.counts))
    assert again.pos.counts.typecode == "d"  # mutable again, as add and merge expect
    assert packed[8:9] == typecode.encode()
    for q in QUANTILES:
        assert again.quantile(q) == s.quantile(q)
    again.add(100.0, 0.5)  # and it takes samples again
    assert again.count == s.count + 0.5


def test_packed_empty_sketch_and_aggregate_round_trip() -> None:
    assert Sketch.unpack(Sketch().pack()).count == 0.0
    a = Agg()
    a.add_stats(3.0, 30.0, 5.0, 15.0)  # a statistic set: no sketch
    b = Agg.unpack(a.pack())
    assert (b.count, b.sum, b.min, b.max, b.sketched, b.sketch) == (3.0, 30.0, 5.0, 15.0, 0.0, None)
    values = samples()["bimodal"][:3000]
    c = Agg()
    for v in values:
        c.add(v)
    d = Agg.unpack(c.pack())
    assert [value_of(d, st) for st in ("SampleCount", "Sum", "Minimum", "Maximum", "p50", "p99")] == [
        value_of(c, st) for st in ("SampleCount", "Sum", "Minimum", "Maximum", "p50", "p99")
    ]
    assert Agg.unpack(c.pack(), with_sketch=False).sketch is None
    assert len(c.pack()) < 0.3 * 8 * len(c.sketch.pos.counts)  # 1-2 bytes a bucket instead of 8, one object
