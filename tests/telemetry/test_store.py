"""The recorder, the in-memory store, retention, persistence and the Prometheus text."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from sqlalchemy import create_engine

from modelgate.telemetry import prometheus
from modelgate.telemetry.instances import InstanceSampler
from modelgate.telemetry.model import INSTANCE_NAMESPACE, SAGEMAKER_NAMESPACE, MetricId
from modelgate.telemetry.persist import MetricPersistence
from modelgate.telemetry.recorder import InvocationRecorder
from modelgate.telemetry.statistics import value_of
from modelgate.telemetry.store import SEAL_AFTER, MetricStore
from modelgate.telemetry.system import MetricsOptions, MetricsSystem
from tests.telemetry.fakes import FakeClock, FakePoster

T0 = 1_700_000_040  # a whole minute
DIMS = (("EndpointName", "ep"), ("VariantName", "blue"))


def metric(name: str, dims: tuple[tuple[str, str], ...] = DIMS) -> MetricId:
    return MetricId.of(SAGEMAKER_NAMESPACE, name, dims)


def stat(store: MetricStore, name: str, statistic: str, start: int = T0, period: int = 60) -> float | None:
    buckets = store.buckets(metric(name), None, start, start + period, period)
    return value_of(buckets[start][0], statistic) if start in buckets else None


def recorded(statuses: list[int], instances: int = 2) -> MetricStore:
    clock = FakeClock(T0 + 5)
    store = MetricStore()
    rec = InvocationRecorder(store, clock)
    for i, status in enumerate(statuses):
        rec.record_invocation("ep", "blue", "fleet-1", status, 1000.0 + i, 50.0, instances)
    assert rec.pending == len(statuses)
    assert rec.drain() == len(statuses)
    assert rec.pending == 0
    return store


def test_recording_is_deferred_until_drain() -> None:
    store = MetricStore()
    rec = InvocationRecorder(store, FakeClock(T0))
    rec.record_invocation("ep", "blue", "fleet-1", 200, 10.0, 1.0, 1)
    assert list(store.metrics()) == []
    rec.drain()
    assert stat(store, "Invocations", "Sum") == 1.0


def test_fleet_tallies_count_only_watched_fleets_since_the_last_take() -> None:
    rec = InvocationRecorder(MetricStore(), FakeClock(T0))
    rec.record_invocation("ep", "blue", "green#1", 200, 10.0, 1.0, 2)  # before watching: not tallied
    rec.drain()
    rec.watch_fleet("green#1")
    for status, latency in [(200, 10.0), (500, 20.0), (404, 20.0), (200, -1.0)]:
        rec.record_invocation("ep", "blue", "green#1", status, latency, 1.0, 2)
    rec.record_invocation("ep", "blue", "blue", 500, 10.0, 1.0, 2)  # another fleet, not watched
    rec.drain()
    tally = rec.take_fleet("green#1")
    assert (tally.requests, tally.errors) == (4, 2)  # status >= 400 counts, 4XX too
    assert sorted(tally.latency.values()) == [1.0, 2.0]  # 10 us once, 20 us twice; -1 (not measured) skipped
    assert rec.take_fleet("green#1").requests == 0  # a take starts a new tally
    assert rec.take_fleet("blue").requests == 0
    rec.unwatch_fleet("green#1")
    rec.record_invocation("ep", "blue", "green#1", 200, 10.0, 1.0, 2)
    rec.drain()
    assert rec.take_fleet("green#1").requests == 0


@pytest.mark.parametrize(
    ("status", "e4xx", "e5xx"),
    [(200, 0.0, 0.0), (204, 0.0, 0.0), (400, 1.0, 0.0), (404, 1.0, 0.0), (424, 1.0, 0.0), (429, 1.0, 0.0),
     (499, 1.0, 0.0), (500, 0.0, 1.0), (503, 0.0, 1.0), (504, 0.0, 1.0)],
)
def test_error_metrics_by_status(status: int, e4xx: float, e5xx: float) -> None:
    store = recorded([status])
    assert stat(store, "Invocations", "Sum") == 1.0
    assert stat(store, "Invocation4XXErrors", "Sum") == e4xx
    assert stat(store, "Invocation5XXErrors", "Sum") == e5xx


def test_invocation_metrics() -> None:
    store = recorded([200, 200, 500, 400], instances=4)
    assert stat(store, "Invocations", "Sum") == 4.0
    assert stat(store, "Invocation5XXErrors", "Average") == 0.25
    assert stat(store, "InvocationsPerInstance", "Sum") == 1.0
    assert stat(store, "ModelLatency", "Average") == 1001.5
    assert stat(store, "ModelLatency", "Maximum") == 1003.0
    assert stat(store, "OverheadLatency", "SampleCount") == 4.0
    assert store.series_of(metric("ModelLatency"))[0].unit == "Microseconds"
    # 1-second resolution for the endpoint metrics
    assert stat(store, "Invocations", "Sum", start=T0 + 5, period=1) == 4.0
    assert stat(store, "Invocations", "Sum", start=T0 + 6, period=1) is None


def test_invocations_per_instance_follows_the_instance_count() -> None:
    store = MetricStore()
    rec = InvocationRecorder(store, FakeClock(T0))
    for instances in (1, 2, 4, 0):
        rec.record_invocation("ep", "blue", "fleet-1", 200, 1.0, 1.0, instances)
    rec.drain()
    assert stat(store, "InvocationsPerInstance", "Sum") == 1 + 0.5 + 0.25 + 1  # 0 instances counts as 1
    assert stat(store, "Invocations", "SampleCount") == 4.0


def test_negative_latency_means_not_measured() -> None:
    store = MetricStore()
    rec = InvocationRecorder(store, FakeClock(T0))
    rec.record_invocation("ep", "blue", "fleet-1", 503, -1.0, -1.0, 1)
    rec.drain()
    assert stat(store, "Invocations", "Sum") == 1.0
    assert stat(store, "ModelLatency", "SampleCount") is None


def test_full_queue_drops_and_counts() -> None:
    rec = InvocationRecorder(MetricStore(), FakeClock(T0), max_pending=3)
    for _ in range(5):
        rec.record_invocation("ep", "blue", "fleet-1", 200, 1.0, 1.0, 1)
    assert (rec.pending, rec.dropped) == (3, 2)


def test_buckets_align_to_the_query_start() -> None:
    store = MetricStore()
    s = store.series(metric("X"), "Count", high_res=True)
    for sec in range(0, 30):
        store.add(s, T0 + sec, 1.0)
    buckets = store.buckets(metric("X"), None, T0 + 5, T0 + 25, 10)
    assert {t: a.count for t, (a, _) in buckets.items()} == {T0 + 5: 10.0, T0 + 15: 10.0}
    assert store.buckets(metric("X"), "Seconds", T0, T0 + 60, 60) == {}  # unit filter


def test_standard_resolution_series_keep_only_minutes() -> None:
    store = MetricStore()
    s = store.series(metric("Y"), "None")
    store.add(s, T0 + 30, 2.0)
    assert s.hi == {} and T0 in s.lo


def test_retention() -> None:
    store = MetricStore()
    s = store.series(metric("Z"), "None", high_res=True)
    store.add(s, T0, 1.0)
    store.take_dirty()
    assert store.purge(T0 + 3 * 3600 - 1) == [] and T0 in s.hi
    assert store.purge(T0 + 3 * 3600 + 1) == [] and T0 not in s.hi and T0 in s.lo
    assert store.purge(T0 + 15 * 86400 + 1) == [s.id]
    assert list(store.metrics()) == []


def test_persistence_round_trip(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'm.db'}")
    store = recorded([200] * 50 + [500] * 5)
    before = stat(store, "ModelLatency", "p90")
    persistence = MetricPersistence(engine)
    persistence.write(*store.take_dirty())
    assert store.take_dirty() == ([], [])
    again = MetricStore()
    assert persistence.load_into(again, T0 + 10) > 0
    assert stat(again, "Invocation5XXErrors", "Sum") == 5.0
    assert stat(again, "ModelLatency", "p90") == before
    assert stat(again, "Invocations", "Sum", start=T0 + 5, period=1) == 55.0
    # expired data is neither loaded nor kept
    assert persistence.load_into(MetricStore(), T0 + 16 * 86400) == 0


def test_upsert_of_a_changed_point(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'm.db'}")
    persistence = MetricPersistence(engine)
    store = MetricStore()
    s = store.series(metric("W"), "None")
    store.add(s, T0, 1.0)
    persistence.write(*store.take_dirty())
    store.add(s, T0 + 1, 2.0)
    persistence.write(*store.take_dirty())
    again = MetricStore()
    persistence.load_into(again, T0)
    assert stat(again, "W", "Sum") == 3.0


def test_system_flushes_without_stop(tmp_path: Path) -> None:
    """What a kill -9 keeps: everything recorded before the last periodic flush (every 0.2 s here)."""
    engine = create_engine(f"sqlite:///{tmp_path / 'm.db'}")
    clock = FakeClock(T0)

    async def run() -> None:
        system = MetricsSystem(engine, clock, list, "123456789012", "us-east-1", poster=FakePoster(),
                               options=MetricsOptions(drain_interval=0.05, flush_interval=0.2))
        await system.start()
        system.recorder.record_invocation("ep", "blue", "fleet-1", 200, 5.0, 1.0, 1)
        await asyncio.sleep(0.6)
        for task in system._tasks:  # abandon the system as a crash would: no stop(), no final flush
            task.cancel()

    asyncio.run(run())
    again = MetricStore()
    MetricPersistence(engine).load_into(again, T0)
    assert stat(again, "Invocations", "Sum") == 1.0


def test_instance_sampler_measures_a_live_process() -> None:
    store = MetricStore()
    sampler = InstanceSampler(store)
    me = [("ep", "blue", "i-1", os.getpid()), ("ep", "blue", "i-gone", 2**22 + 12345), ("ep", "blue", "i-new", None)]
    assert sampler.sample(me) == []  # first sight: no CPU reading yet
    sum(i * i for i in range(200_000))
    samples = sampler.sample(me)
    assert [s.instance_id for s in samples] == ["i-1"]
    assert samples[0].cpu_percent >= 0.0 and 0.0 < samples[0].memory_percent < 100.0
    sampler.record(samples, T0)
    cpu = MetricId.of(INSTANCE_NAMESPACE, "CPUUtilization", DIMS)
    assert store.buckets(cpu, "Percent", T0, T0 + 60, 60)[T0][0].count == 1.0


def test_prometheus_text() -> None:
    store = recorded([200, 200, 503])
    text = prometheus.render(store, [], dropped=7, now=T0 + 6).decode()
    assert 'modelgate_invocations_total{endpoint="ep",variant="blue"} 3' in text
    assert 'modelgate_invocation_5xx_errors_total{endpoint="ep",variant="blue"} 1' in text
    assert 'modelgate_invocation_4xx_errors_total{endpoint="ep",variant="blue"} 0' in text
    assert "# TYPE modelgate_model_latency_microseconds summary" in text
    assert 'modelgate_model_latency_microseconds_count{endpoint="ep",variant="blue"} 3' in text
    assert 'modelgate_model_latency_microseconds_sum{endpoint="ep",variant="blue"} 3003' in text
    line = next(x for x in text.splitlines() if 'quantile="0.99"' in x and "model_latency" in x)
    assert abs(float(line.split()[-1]) - 1002.0) <= 10.02
    assert "modelgate_metric_samples_dropped_total 7" in text
    later = prometheus.render(store, [], dropped=0, now=T0 + 120).decode()  # quantiles cover 60 s
    assert 'modelgate_model_latency_microseconds{endpoint="ep",variant="blue",quantile="0.5"} NaN' in later


def test_prometheus_label_escaping() -> None:
    store = MetricStore()
    rec = InvocationRecorder(store, FakeClock(T0))
    rec.record_invocation('we"ird\\ep', "v\n1", "fleet-1", 200, 1.0, 1.0, 1)
    rec.drain()
    text = prometheus.render(store, [], 0, T0).decode()
    assert 'modelgate_invocations_total{endpoint="we\\"ird\\\\ep",variant="v\\n1"} 1' in text


def test_points_are_sealed_after_their_period_and_read_the_same() -> None:
    """MetricStore.seal packs the points of periods that ended SEAL_AFTER s ago; queries, the take for
    persistence and Prometheus read them as before; a late sample opens a sealed point again."""
    store = recorded([200] * 40 + [500] * 3)  # at T0 + 5
    figures = ("Sum", "SampleCount", "Minimum", "Maximum", "p50", "p90")
    names = ("Invocations", "Invocation5XXErrors", "ModelLatency", "OverheadLatency")

    def read() -> list[float | None]:
        return [stat(store, n, f, T0 + 5, 1) for n in names for f in figures] + [
            stat(store, n, f) for n in names for f in figures
        ]

    before = read()
    text = prometheus.render(store, [], 0, T0 + 30)
    s = store.series_of(metric("ModelLatency"))[0]
    assert store.seal(T0 + 5 + SEAL_AFTER) == 0  # the second T0 + 5 ended at T0 + 6: not yet
    assert store.seal(T0 + 6 + SEAL_AFTER) == 6  # the six series' seconds; their minute is still open
    assert isinstance(s.hi[T0 + 5], bytes) and not isinstance(s.lo[T0], bytes)
    assert store.seal(T0 + 60 + SEAL_AFTER) == 6  # now the minutes
    assert isinstance(s.lo[T0], bytes)
    assert read() == before
    _, points = store.take_dirty()
    assert {p.agg.count for p in points if p.series_id == s.id} == {43.0}
    assert prometheus.render(store, [], 0, T0 + 30) == text and b'quantile="0.5"' in text

    store.add_values(s, T0 + 5, [9_000_000.0])  # late: opens the second and the minute again
    assert not isinstance(s.hi[T0 + 5], bytes)
    assert stat(store, "ModelLatency", "Maximum", T0 + 5, 1) == 9_000_000.0
    assert stat(store, "ModelLatency", "SampleCount") == 44.0
    _, points = store.take_dirty()
    assert sorted((p.resolution, p.agg.count) for p in points) == [(1, 44.0), (60, 44.0)]
    assert store.seal(T0 + 60 + SEAL_AFTER) == 2 and isinstance(s.hi[T0 + 5], bytes)


def test_sealed_points_survive_persistence_and_retention(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'm.db'}")
    store = recorded([200] * 20)
    before = stat(store, "ModelLatency", "p90")
    store.seal(T0 + 70)
    persistence = MetricPersistence(engine)
    persistence.write(*store.take_dirty())
    again = MetricStore()
    assert persistence.load_into(again, T0 + 80) > 0
    s = again.series_of(metric("ModelLatency"))[0]
    assert isinstance(s.hi[T0 + 5], bytes)  # loaded points come in sealed
    assert stat(again, "ModelLatency", "p90") == before
    assert again.purge(T0 + 5 + 3 * 3600 + 1) == [] and T0 + 5 not in s.hi and not s.open_hi
