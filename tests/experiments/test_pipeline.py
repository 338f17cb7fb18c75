"""The background flush-and-fold loop, on a real event loop with worker threads and SQLite."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy import create_engine

from modelgate.clock import SystemClock
from modelgate.experiments.aggregator import Aggregator
from modelgate.experiments.entities import ExperimentParams, VariantCounts, VariantSpec
from modelgate.experiments.events import Event
from modelgate.experiments.journal import EventJournal
from modelgate.experiments.pipeline import run_pipeline
from modelgate.experiments.sinks import DirectorySink
from modelgate.experiments.sqlstore import SqlExperimentStore, create_tables


def invocation(experiment_id: int, variant: str, i: int) -> Event:
    return Event(
        SystemClock().now(), "invocation", "WeightedSampling", "ep", variant, variant, f"i{i}", f"u{i}",
        None, None, None, experiment_id,
    )  # fmt: skip


def test_events_are_flushed_and_folded_in_the_background_and_on_stop(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'ab.db'}")
    create_tables(engine)
    store = SqlExperimentStore(engine)
    experiment = store.start("ep", ExperimentParams(), (VariantSpec("A", 1.0),), SystemClock().now() - 10)
    clock = SystemClock()
    sink = DirectorySink(tmp_path / "events")
    buffer = EventJournal(tmp_path / "journal", sink, clock, max_age=0.05)
    aggregator = Aggregator(sink, store, clock)

    async def scenario() -> tuple[VariantCounts, VariantCounts]:
        stop = asyncio.Event()
        task = asyncio.create_task(run_pipeline(buffer, aggregator, clock, stop, poll=0.01))
        for i in range(3):
            buffer.append(invocation(experiment.id, "A", i))
        for _ in range(500):  # up to 5 s on a busy machine
            await asyncio.sleep(0.01)
            if store.counts(experiment.id)["A"].invocations == 3:
                break
        in_background = store.counts(experiment.id)["A"]
        buffer.append(invocation(experiment.id, "A", 99))  # still in the open segment when we stop
        stop.set()
        await task
        return in_background, store.counts(experiment.id)["A"]

    in_background, after_stop = asyncio.run(scenario())
    assert in_background == VariantCounts(3, 0, 0.0)
    assert after_stop == VariantCounts(4, 0, 0.0)
    engine.dispose()
