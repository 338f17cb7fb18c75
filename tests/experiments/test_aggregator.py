"""The aggregator: attribution, filtering, metrics, looks, and exactly-once folding across crashes."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine
from sqlalchemy import event as sa_event

from modelgate.experiments.aggregator import NAMESPACE, Aggregator
from modelgate.experiments.assignments import Assignment, Served
from modelgate.experiments.entities import ExperimentParams, VariantCounts, VariantSpec
from modelgate.experiments.errors import StoreUnavailable
from modelgate.experiments.events import Event, EventFilter
from modelgate.experiments.journal import EventJournal
from modelgate.experiments.sinks import DirectorySink
from modelgate.experiments.sqlstore import SqlAssignmentStore, SqlExperimentStore, create_tables

from .fakes import FakeClock, MemoryAssignmentStore, MemoryExperimentStore, MemorySink, RecordingMetrics

T0 = 1_717_243_200.0
SPECS = (VariantSpec("A", 1.0), VariantSpec("B", 1.0))


def ev(kind: str, variant: str | None, i: int, *, experiment_id: int | None = 1, **kw: Any) -> Event:
    fields: dict[str, Any] = {
        "timestamp": T0 + i, "type": kind, "strategy": "ThompsonSampling", "endpoint_name": "ep",
        "target_variant": variant if kind == "invocation" else None, "endpoint_variant": variant,
        "inference_id": f"inf-{i}", "user_id": f"u{i}", "reward": None if kind == "invocation" else 1.0,
        "source_ip": "10.0.0.1", "user_agent": "Mozilla/5.0", "experiment_id": experiment_id,
    }  # fmt: skip
    fields.update(kw)
    return Event(**fields)


def put_file(sink: MemorySink, key: str, events: list[Event], extra: bytes = b"") -> None:
    sink.put(key, gzip.compress(b"".join(e.to_json().encode() + b"\n" for e in events) + extra))


@pytest.fixture
def world() -> tuple[MemorySink, MemoryExperimentStore, MemoryAssignmentStore, FakeClock]:
    store = MemoryExperimentStore()
    store.start("ep", ExperimentParams(horizon=10, looks=2), SPECS, T0 - 100)
    return MemorySink(), store, MemoryAssignmentStore(), FakeClock(T0 + 1000)


def test_counts_invocations_conversions_and_rewards(world: Any) -> None:
    sink, store, assignments, clock = world
    metrics = RecordingMetrics()
    put_file(
        sink,
        "f1.jsonl.gz",
        [
            ev("invocation", "A", 1), ev("invocation", "B", 2), ev("invocation", "B", 3),
            ev("conversion", "B", 4, reward=1.0), ev("conversion", "B", 5, reward=0.25),
        ],
    )  # fmt: skip
    report = Aggregator(sink, store, clock, assignments=assignments, metrics=metrics).run_once()
    assert (report.files, report.events) == (1, 5)
    assert store.counts(1) == {"A": VariantCounts(1, 0, 0.0), "B": VariantCounts(2, 2, 1.25)}
    assert sorted((p[1], p[2]["VariantName"], p[3]) for p in metrics.points) == [
        ("Conversions", "B", 2.0), ("Invocations", "A", 1.0), ("Invocations", "B", 2.0), ("Rewards", "B", 1.25),
    ]  # fmt: skip
    assert {p[0] for p in metrics.points} == {NAMESPACE}
    assert {p[2]["EndpointName"] for p in metrics.points} == {"ep"}


def test_d5_a_failed_invocation_counts_as_an_invocation_with_no_reward_and_an_error(world: Any) -> None:
    sink, store, assignments, clock = world
    metrics = RecordingMetrics()
    failed = [ev("invocation", "B", i, error="ModelError") for i in range(3)]
    put_file(sink, "f1.jsonl.gz", [ev("invocation", "A", 10), ev("conversion", "A", 10), *failed])
    Aggregator(sink, store, clock, assignments=assignments, metrics=metrics).run_once()
    assert store.counts(1) == {"A": VariantCounts(1, 1, 1.0, 0), "B": VariantCounts(3, 0, 0.0, 3)}
    assert ("Errors", "B", 3.0) in [(p[1], p[2]["VariantName"], p[3]) for p in metrics.points]


def test_filtered_malformed_and_unattributable_events_do_not_count(world: Any) -> None:
    sink, store, assignments, clock = world
    put_file(
        sink,
        "f1.jsonl.gz",
        [
            ev("invocation", "A", 1),
            ev("invocation", "A", 2, user_agent="Googlebot/2.1"),
            ev("invocation", "A", 3, source_ip="192.168.1.5"),
            ev("invocation", "Z", 4),  # not a variant of the experiment
            ev("invocation", "A", 5, experiment_id=77),  # no such experiment
            ev("invocation", None, 6),
            ev("conversion", None, 7),  # the service could not attribute it, nor can we
        ],
        extra=b"{not json\n\n",
    )
    event_filter = EventFilter.from_config(["192.168.0.0/16"], ["bot"])
    report = Aggregator(sink, store, clock, assignments=assignments, event_filter=event_filter).run_once()
    assert (report.events, report.filtered, report.malformed, report.unattributed) == (1, 2, 1, 4)
    assert store.counts(1)["A"] == VariantCounts(1, 0, 0.0)


def test_events_without_experiment_id_go_to_the_experiment_open_at_their_time(world: Any) -> None:
    sink, store, assignments, clock = world
    second = store.start("ep", ExperimentParams(), SPECS, T0 + 50)  # closes experiment 1 at T0 + 50
    put_file(
        sink,
        "f1.jsonl.gz",
        [
            ev("invocation", "A", 10, experiment_id=None, strategy="Fallback"),  # before the switch
            ev("invocation", "B", 60, experiment_id=None, strategy="Fallback"),  # after it
            ev("conversion", "A", 61, experiment_id=1),  # a late conversion for the closed experiment
        ],
    )
    Aggregator(sink, store, clock, assignments=assignments).run_once()
    assert store.counts(1) == {"A": VariantCounts(1, 1, 1.0), "B": VariantCounts()}
    assert store.counts(second.id) == {"A": VariantCounts(), "B": VariantCounts(1, 0, 0.0)}


def test_unattributed_conversions_are_credited_to_the_served_variant_never_a_fresh_one(world: Any) -> None:
    sink, store, assignments, clock = world
    assignments.record_served(Served("ep", "inf-1", "B", 1, "ThompsonSampling", "u1", T0 + 10**6))
    assignments.put(Assignment("u2", "ep", "A", T0 + 10**6))
    put_file(
        sink,
        "f1.jsonl.gz",
        [
            ev("conversion", None, 1, experiment_id=None, strategy="Fallback"),  # by inference id
            ev("conversion", None, 2, experiment_id=None, strategy="Fallback"),  # by assignment
            ev("conversion", None, 3, experiment_id=None, strategy="Fallback"),  # unknown: not credited
        ],
    )
    report = Aggregator(sink, store, clock, assignments=assignments).run_once()
    assert store.counts(1) == {"A": VariantCounts(0, 1, 1.0), "B": VariantCounts(0, 1, 1.0)}
    assert report.unattributed == 1
    assert assignments.get("u3", "ep") is None  # nothing was drawn or written for the unknown user


def test_corrupt_files_are_reported_and_left_unfolded(world: Any) -> None:
    sink, store, _assignments, clock = world
    sink.put("bad.jsonl.gz", b"\x1f\x8b not really gzip")
    report = Aggregator(sink, store, clock).run_once()
    assert report.corrupt_files == 1 and "bad.jsonl.gz" not in store.folded_keys()


def test_looks_are_taken_as_marks_are_reached(world: Any) -> None:
    sink, store, _assignments, clock = world  # horizon 10 per variant, 2 looks
    put_file(sink, "f1.jsonl.gz", [ev("invocation", v, i) for i in range(5) for v in "AB"])
    agg = Aggregator(sink, store, clock)
    assert agg.run_once().looks == 1
    assert [lk.t for lk in store.looks(1)] == [0.5]
    assert agg.run_once().looks == 0  # nothing new: reading again takes no look
    put_file(sink, "f2.jsonl.gz", [ev("invocation", v, i) for i in range(5, 12) for v in "AB"])
    agg.run_once()
    assert [lk.t for lk in store.looks(1)] == [0.5, 1.0]


def test_a_store_failure_leaves_the_file_for_the_next_pass(world: Any) -> None:
    sink, store, _assignments, clock = world
    put_file(sink, "f1.jsonl.gz", [ev("invocation", "A", 1)])
    agg = Aggregator(sink, store, clock)
    agg.run_once()
    put_file(sink, "f2.jsonl.gz", [ev("invocation", "A", 2)])
    store.fail = True
    with pytest.raises(StoreUnavailable):
        agg.run_once()
    store.fail = False
    agg.run_once()
    assert store.counts(1)["A"] == VariantCounts(2, 0, 0.0)


# --- exactly once across crashes, with the real SQL store and directory sink ---------------------------


def sql_world(tmp_path: Path) -> tuple[Engine, SqlExperimentStore, SqlAssignmentStore, DirectorySink]:
    engine = create_engine(f"sqlite:///{tmp_path / 'ab.db'}")
    create_tables(engine)
    return engine, SqlExperimentStore(engine), SqlAssignmentStore(engine), DirectorySink(tmp_path / "events")


def write_events(tmp_path: Path, clock: FakeClock) -> tuple[int, int]:
    """Run a process that logs 125 events and flushes them as several files, then dies before any fold."""
    engine, store, _, sink = sql_world(tmp_path)
    store.start("ep", ExperimentParams(), SPECS, T0 - 100)
    size = len(ev("invocation", "A", 0).to_json()) + 1
    buf = EventJournal(tmp_path / "journal", sink, clock, max_bytes=40 * size, writer_id="before-crash")
    for i in range(100):
        buf.append(ev("invocation", "AB"[i % 2], i))
        if i % 4 == 0:
            buf.append(ev("conversion", "AB"[i % 2], i, reward=0.5))
    files = len(buf.flush(force=True))
    assert files > 1
    engine.dispose()  # the crash: no fold ever ran, all objects are gone
    return 125, files


def test_crash_between_flush_and_fold_counts_every_event_once(tmp_path: Path) -> None:
    clock = FakeClock(T0 + 1000)
    total, files = write_events(tmp_path, clock)
    # "restart": every object rebuilt from the data directory
    engine, store, assignments, sink = sql_world(tmp_path)
    report = Aggregator(sink, store, clock, assignments=assignments).run_once()
    assert (report.files, report.events) == (files, total)
    expected = {"A": VariantCounts(50, 25, 12.5), "B": VariantCounts(50, 0, 0.0)}
    assert store.counts(1) == expected
    # and again, with a second restart: nothing is counted twice
    assert Aggregator(sink, store, clock).run_once().files == 0
    engine.dispose()
    engine, store, assignments, sink = sql_world(tmp_path)
    assert Aggregator(sink, store, clock).run_once().files == 0
    assert store.counts(1) == expected
    engine.dispose()


def test_crash_in_the_middle_of_a_fold_rolls_back_and_counts_once_after_restart(tmp_path: Path) -> None:
    clock = FakeClock(T0 + 1000)
    write_events(tmp_path, clock)
    engine, store, _, sink = sql_world(tmp_path)
    updates = 0

    def die_on_second_variant_update(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        nonlocal updates
        if statement.startswith("UPDATE ab_variants"):
            updates += 1
            if updates == 2:
                raise RuntimeError("power cut")  # after the folded key and one variant were written

    sa_event.listen(engine, "before_cursor_execute", die_on_second_variant_update)
    with pytest.raises(RuntimeError, match="power cut"):
        Aggregator(sink, store, clock).run_once()
    engine.dispose()
    engine, store, _, sink = sql_world(tmp_path)
    assert store.counts(1) == {"A": VariantCounts(), "B": VariantCounts()}  # the partial fold rolled back
    assert store.folded_keys() == set()
    Aggregator(sink, store, clock).run_once()
    assert store.counts(1) == {"A": VariantCounts(50, 25, 12.5), "B": VariantCounts(50, 0, 0.0)}
    engine.dispose()


def test_a_leftover_temporary_file_from_a_crashed_write_is_ignored(tmp_path: Path) -> None:
    clock = FakeClock(T0 + 1000)
    write_events(tmp_path, clock)
    leftover = tmp_path / "events" / "year=2024/month=06/day=01/hour=12/.events-x.jsonl.gz.tmp"
    leftover.write_bytes(b"half a file")
    engine, store, _, sink = sql_world(tmp_path)
    assert Aggregator(sink, store, clock).run_once().corrupt_files == 0
    engine.dispose()
