"""Thompson sampling end to end without the HTTP server: service, event buffer, aggregator.

Three variants convert at 0.3, 0.7 and 0.5; 5,000 new users arrive at 100 per second; the buffer
flushes every second (the issue's setting) and the aggregator folds each flush, so the strategy always
works from counts up to a second old. The real-server version of this check is the lead's (it needs
the runtime), this one pins down the part this package owns.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import create_engine, event

from modelgate.experiments.aggregator import Aggregator
from modelgate.experiments.assignment_cache import AssignmentCache
from modelgate.experiments.entities import ExperimentParams, Strategy
from modelgate.experiments.journal import EventJournal
from modelgate.experiments.service import ExperimentService
from modelgate.experiments.sinks import DirectorySink
from modelgate.experiments.sqlstore import SqlAssignmentStore, SqlExperimentStore, create_tables

from .fakes import FakeClock, FakeGateway

RATES = {"v1": 0.3, "v2": 0.7, "v3": 0.5}


def _wal(dbapi_conn: Any, _record: Any) -> None:
    """The gateway's SQLite settings (store/db.py): WAL, no fsync per commit."""
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


async def simulate(tmp_path: Path, users: int) -> list[str]:
    engine = create_engine(f"sqlite:///{tmp_path / 'ab.db'}")
    event.listen(engine, "connect", _wal)
    create_tables(engine)
    experiments, assignments = SqlExperimentStore(engine), SqlAssignmentStore(engine)
    gateway = FakeGateway({"ep": [(v, 1.0) for v in RATES]}, {})
    clock = FakeClock()
    sink = DirectorySink(tmp_path / "events")
    buffer = EventJournal(tmp_path / "journal", sink, clock, max_age=1.0)
    cache = AssignmentCache(assignments, clock)
    cache.load(clock.now())
    service = ExperimentService(
        invoker=gateway, catalog=gateway, experiments=experiments, assignments=cache, events=buffer,
        clock=clock, rng=np.random.default_rng(2024),
    )  # fmt: skip
    aggregator = Aggregator(sink, experiments, clock, assignments=cache.reader())
    service.register("ep", ExperimentParams(strategy=Strategy.THOMPSON_SAMPLING))
    users_rng = np.random.default_rng(7)
    served = []
    for i in range(users):
        out = await service.invoke("ep", b"{}", user_id=f"user-{i}")
        served.append(out.endpoint_variant)
        if users_rng.random() < RATES[out.endpoint_variant]:
            await service.convert("ep", user_id=f"user-{i}", inference_id=out.inference_id)
        clock.advance(0.01)
        if buffer.due():
            await cache.flush()
            buffer.flush()
            aggregator.run_once()
    assert await cache.flush() and assignments.get("user-0", "ep") is not None
    engine.dispose()
    return served


def test_thompson_gives_the_best_variant_at_least_85_percent_of_the_last_1000_users(tmp_path: Path) -> None:
    served = asyncio.run(simulate(tmp_path, 5_000))
    last = served[-1000:]
    share = last.count("v2") / len(last)
    print(f"\nThompson share of v2 (0.7) in the last 1000 of 5000 users: {share:.3f}")
    assert share >= 0.85
    assert set(served[:300]) == set(RATES)  # it did explore every variant
