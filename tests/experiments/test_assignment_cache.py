"""The assignment cache: memory first, writes behind in batches, failures kept and retried, restarts."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy import create_engine

from modelgate.experiments.assignment_cache import AssignmentCache
from modelgate.experiments.assignments import Assignment, Served
from modelgate.experiments.backlog import Backlog
from modelgate.experiments.errors import StoreUnavailable
from modelgate.experiments.sqlstore import SqlAssignmentStore, create_tables

from .fakes import FakeClock, MemoryAssignmentStore, ThreadCheckingStore

T = TypeVar("T")
NOW = 1_700_000_000.0


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def a(user: str, variant: str = "A", expires: float = NOW + 100) -> Assignment:
    return Assignment(user, "ep", variant, expires)


def s(inference: str, variant: str = "A") -> Served:
    return Served("ep", inference, variant, 1, "UCB1", "u", NOW + 100)


# --- the backlog, a table of operations ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("steps", "batches", "left"),
    [
        ([("add", "k1", 1), ("add", "k2", 2), ("take",), ("ok",)], [[1, 2]], {}),
        ([("add", "k1", 1), ("add", "k1", 2), ("take",), ("ok",)], [[2]], {}),  # one row per key: the last
        ([("add", "k1", 1), ("add", "k2", 2), ("add", "k1", 3), ("take",)], [[2, 3]], {"k2": 2, "k1": 3}),
        # a failed batch goes back before what came meanwhile; a newer write of its key wins
        ([("add", "k1", 1), ("add", "k2", 2), ("take",), ("add", "k2", 9), ("add", "k3", 3), ("fail",), ("take",)],
         [[1, 2], [1, 9, 3]], {"k1": 1, "k2": 9, "k3": 3}),
        ([("take",), ("ok",)], [[]], {}),
    ],
)  # fmt: skip
def test_backlog(steps: list[tuple[Any, ...]], batches: list[list[int]], left: dict[str, int]) -> None:
    backlog: Backlog[str, int] = Backlog()
    taken = []
    for step in steps:
        if step[0] == "add":
            backlog.add(step[1], step[2])
        elif step[0] == "take":
            taken.append(backlog.take())
        elif step[0] == "ok":
            backlog.committed()
        else:
            backlog.failed()
    assert taken == batches
    assert {k: backlog.find(k) for k in left} == left
    assert len(backlog) == len(left)


def test_backlog_finds_a_write_while_its_batch_is_written() -> None:
    backlog: Backlog[str, int] = Backlog()
    backlog.add("k", 1)
    backlog.take()
    assert backlog.find("k") == 1
    backlog.add("k", 2)
    assert backlog.find("k") == 2  # the newer, still pending
    with pytest.raises(RuntimeError):
        backlog.take()  # one batch at a time
    backlog.committed()
    assert backlog.find("k") == 2 and len(backlog) == 1


# --- memory: loaded at start, complete while everything fits -------------------------------------------


def test_load_fills_memory_and_knows_when_it_holds_everything() -> None:
    store = MemoryAssignmentStore()
    for i in range(5):
        store.put(a(f"u{i}", expires=NOW + i))  # u0 expired
    checked = ThreadCheckingStore(store)
    cache = AssignmentCache(checked, FakeClock(NOW), capacity=10)
    assert cache.load(NOW) == 4 and cache.complete
    assert run(cache.get("u3", "ep")) == a("u3", expires=NOW + 3)
    assert run(cache.get("stranger", "ep")) is None
    assert checked.calls == ["recent"]  # the load; then complete: a miss is an answer


def test_when_not_everything_fits_the_latest_used_are_loaded_and_a_miss_reads_the_store() -> None:
    store = MemoryAssignmentStore()
    for i in range(1, 6):
        store.put(a(f"u{i}", expires=NOW + i))
    checked = ThreadCheckingStore(store)
    cache = AssignmentCache(checked, FakeClock(NOW), capacity=3)
    assert cache.load(NOW) == 3 and not cache.complete
    assert run(cache.get("u5", "ep")) == a("u5", expires=NOW + 5)  # loaded
    assert run(cache.get("u1", "ep")) == a("u1", expires=NOW + 1)  # read in a worker thread, then kept
    assert run(cache.get("u1", "ep")) == a("u1", expires=NOW + 1)
    assert checked.calls == ["recent", "get"] and checked.on_loop == ["recent"]  # load ran on the test thread


def test_an_eviction_ends_completeness() -> None:
    cache = AssignmentCache(MemoryAssignmentStore(), FakeClock(NOW), capacity=2)
    cache.load(NOW)
    cache.put(a("u1"))
    cache.put(a("u2"))
    assert cache.complete
    cache.put(a("u3"))  # u1 leaves memory (it stays in the backlog until written)
    assert not cache.complete
    assert run(cache.get("u1", "ep")) == a("u1")
    assert run(cache.flush())
    assert run(cache.get("u1", "ep")) == a("u1")  # written, evicted: read from the store


def test_a_store_read_does_not_overwrite_a_write_made_meanwhile() -> None:
    store = MemoryAssignmentStore()
    store.put(a("u1", "A"))
    cache = AssignmentCache(store, FakeClock(NOW))

    async def scenario() -> Assignment | None:
        read = asyncio.create_task(cache.get("u1", "ep"))
        await asyncio.sleep(0)  # the read is in a worker thread now
        cache.put(a("u1", "B"))
        await read
        return await cache.get("u1", "ep")

    assert run(scenario()) == a("u1", "B")


def test_a_failed_read_raises_store_unavailable_and_is_not_remembered() -> None:
    store = MemoryAssignmentStore()
    cache = AssignmentCache(store, FakeClock(NOW))
    store.fail = True
    with pytest.raises(StoreUnavailable):
        run(cache.get("u1", "ep"))
    store.fail = False
    assert run(cache.get("u1", "ep")) is None


# --- writing behind -------------------------------------------------------------------------------------


def test_a_flush_writes_the_backlog_in_one_batch_with_the_last_write_of_each_key() -> None:
    store = MemoryAssignmentStore()
    cache = AssignmentCache(store, FakeClock(NOW))
    cache.load(NOW)
    cache.put(a("u1", "A"))
    cache.put(a("u1", "B"))
    cache.put(a("u2"))
    cache.record_served(s("i1"))
    assert cache.backlog == 3 and store.rows == {}
    assert run(cache.flush())
    assert (store.batches, store.writes, cache.backlog) == (1, 2, 0)
    assert store.get("u1", "ep") == a("u1", "B") and store.served("ep", "i1", NOW) == s("i1")
    assert run(cache.flush()) and store.batches == 1  # nothing to write: no transaction


def test_a_failed_batch_is_kept_retried_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    store = MemoryAssignmentStore()
    clock = FakeClock(NOW)
    cache = AssignmentCache(store, clock)
    cache.load(NOW)
    cache.put(a("u1", "A"))
    cache.record_served(s("i1"))
    store.fail = True
    with caplog.at_level(logging.WARNING, "modelgate.experiments.assignment_cache"):
        assert not run(cache.flush())
        cache.put(a("u1", "B"))  # newer than the failed batch
        assert not run(cache.flush())
    assert len([r for r in caplog.records if "could not write" in r.message]) == 1  # then every 10 s
    assert run(cache.get("u1", "ep")) == a("u1", "B")
    assert run(cache.served("ep", "i1", NOW)) == s("i1")
    store.fail = False
    assert run(cache.flush())
    assert store.get("u1", "ep") == a("u1", "B") and store.served("ep", "i1", NOW) == s("i1")


def test_a_full_backlog_refuses_new_writes() -> None:
    store = MemoryAssignmentStore()
    cache = AssignmentCache(store, FakeClock(NOW), max_backlog=2)
    cache.put(a("u1"))
    cache.record_served(s("i1"))
    with pytest.raises(StoreUnavailable, match="2 writes wait"):
        cache.put(a("u2"))
    with pytest.raises(StoreUnavailable):
        cache.record_served(s("i2"))
    assert run(cache.flush())
    cache.put(a("u2"))


def test_the_writer_flushes_within_the_interval_and_everything_on_stop() -> None:
    store = MemoryAssignmentStore()
    cache = AssignmentCache(store, FakeClock(NOW), flush_seconds=0.02)

    async def scenario() -> tuple[bool, int]:
        stop = asyncio.Event()
        writer = asyncio.create_task(cache.run(stop))
        cache.put(a("u1"))
        deadline = time.monotonic() + 5
        while store.get("u1", "ep") is None and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        written_in_background = store.get("u1", "ep") is not None
        cache.put(a("u2"))
        cache.record_served(s("i2"))
        stop.set()  # graceful shutdown: before the next interval
        await writer
        return written_in_background, cache.backlog

    assert run(scenario()) == (True, 0)
    assert store.get("u2", "ep") == a("u2") and store.served("ep", "i2", NOW) == s("i2")


def test_what_cannot_be_written_at_shutdown_is_logged_as_lost(caplog: pytest.LogCaptureFixture) -> None:
    store = MemoryAssignmentStore()
    cache = AssignmentCache(store, FakeClock(NOW), flush_seconds=0.001)
    cache.put(a("u1"))
    store.fail = True

    async def scenario() -> None:
        stop = asyncio.Event()
        stop.set()
        await cache.run(stop)

    with caplog.at_level(logging.ERROR, "modelgate.experiments.assignment_cache"):
        run(scenario())
    assert any("1 assignment and served-inference writes could not be written" in r.message for r in caplog.records)


def test_the_reader_for_worker_threads_sees_unwritten_records_first() -> None:
    store = MemoryAssignmentStore()
    store.put(a("old"))
    cache = AssignmentCache(store, FakeClock(NOW))
    cache.record_served(s("i1", "B"))
    cache.put(a("u1", "B"))
    reader = cache.reader()
    assert reader.served("ep", "i1", NOW) == s("i1", "B") and reader.get("u1", "ep") == a("u1", "B")
    assert reader.get("old", "ep") == a("old")  # from the store
    assert reader.served("ep", "i1", NOW + 100) is None  # expired


# --- through SQLite: written, killed, restarted ----------------------------------------------------------


def test_what_was_written_survives_a_restart_and_the_backlog_does_not(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ab.db'}"
    engine = create_engine(url)
    create_tables(engine)
    cache = AssignmentCache(SqlAssignmentStore(engine), FakeClock(NOW))
    cache.load(NOW)
    cache.put(a("u1", "B"))
    cache.record_served(s("i1", "B"))
    assert run(cache.flush())
    cache.put(a("u2"))  # never flushed: the process is killed
    engine.dispose()

    engine = create_engine(url)
    restarted = AssignmentCache(SqlAssignmentStore(engine), FakeClock(NOW))
    assert restarted.load(NOW) == 1 and restarted.complete
    assert run(restarted.get("u1", "ep")) == a("u1", "B")
    assert run(restarted.get("u2", "ep")) is None
    assert run(restarted.served("ep", "i1", NOW)) == s("i1", "B")  # read from SQLite in a worker thread
    engine.dispose()
