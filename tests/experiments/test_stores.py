"""One contract, two implementations: the SQL stores (SQLite file) and the in-memory fakes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from modelgate.experiments.assignments import DAY, Assignment, Served, StickyPolicy
from modelgate.experiments.entities import ExperimentParams, Strategy, VariantCounts, VariantSpec
from modelgate.experiments.errors import StoreUnavailable
from modelgate.experiments.sequential import Look
from modelgate.experiments.sqlstore import SqlAssignmentStore, SqlExperimentStore, create_tables

from .fakes import MemoryAssignmentStore, MemoryExperimentStore

NOW = 1_700_000_000.0
SPECS = (VariantSpec("A", 0.5), VariantSpec("B", 0.5))


@pytest.fixture(params=["sql", "memory"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[object, object]]:
    if request.param == "memory":
        yield MemoryAssignmentStore(), MemoryExperimentStore()
        return
    engine = create_engine(f"sqlite:///{tmp_path / 'ab.db'}")
    create_tables(engine)
    yield SqlAssignmentStore(engine), SqlExperimentStore(engine)
    engine.dispose()


def test_assignment_put_get_replace(stores: tuple[SqlAssignmentStore, SqlExperimentStore]) -> None:
    a, _ = stores
    assert a.get("u1", "ep") is None
    a.put(Assignment("u1", "ep", "A", NOW + 10))
    a.put(Assignment("u1", "other", "B", NOW + 10))
    assert a.get("u1", "ep") == Assignment("u1", "ep", "A", NOW + 10)
    a.put(Assignment("u1", "ep", "B", NOW + 20))
    assert a.get("u1", "ep") == Assignment("u1", "ep", "B", NOW + 20)
    assert a.get("u1", "other") == Assignment("u1", "other", "B", NOW + 10)


def test_served_records_expire(stores: tuple[SqlAssignmentStore, SqlExperimentStore]) -> None:
    a, _ = stores
    a.record_served(Served("ep", "inf-1", "B", 4, "ThompsonSampling", "u1", NOW + 100))
    assert a.served("ep", "inf-1", NOW) == Served("ep", "inf-1", "B", 4, "ThompsonSampling", "u1", NOW + 100)
    assert a.served("other", "inf-1", NOW) is None
    assert a.served("ep", "inf-1", NOW + 100) is None


def test_a_batch_of_writes_upserts_every_row(stores: tuple[SqlAssignmentStore, SqlExperimentStore]) -> None:
    a, _ = stores
    a.put(Assignment("u1", "ep", "A", NOW + 10))
    a.write(
        [Assignment("u1", "ep", "B", NOW + 20), Assignment("u2", "ep", "A", NOW + 30)],
        [Served("ep", "i1", "B", 4, "UCB1", "u1", NOW + 40), Served("ep", "i2", "A", None, "Fallback", "u2", NOW + 40)],
    )
    assert a.get("u1", "ep") == Assignment("u1", "ep", "B", NOW + 20)
    assert a.get("u2", "ep") == Assignment("u2", "ep", "A", NOW + 30)
    assert a.served("ep", "i2", NOW) == Served("ep", "i2", "A", None, "Fallback", "u2", NOW + 40)
    a.write([], [])


def test_a_large_batch_is_written_in_several_statements(stores: tuple[SqlAssignmentStore, SqlExperimentStore]) -> None:
    a, _ = stores  # SQLite: 999 parameters per statement at most, so 142 served records and 249 assignments
    a.put(Assignment("u7", "ep", "Z", NOW))
    a.write(
        [Assignment(f"u{i}", "ep", "AB"[i % 2], NOW + 1 + i) for i in range(1000)],
        [Served("ep", f"i{i}", "AB"[i % 2], None, "UCB1", f"u{i}", NOW + 1) for i in range(1000)],
    )
    found, everything = a.recent(2000, NOW)
    assert everything and len(found) == 1000 and found[0] == Assignment("u999", "ep", "B", NOW + 1000)
    assert a.get("u7", "ep") == Assignment("u7", "ep", "B", NOW + 8)
    assert all(a.served("ep", f"i{i}", NOW) is not None for i in (0, 141, 142, 999))


def test_recent_assignments_latest_expiry_first(stores: tuple[SqlAssignmentStore, SqlExperimentStore]) -> None:
    a, _ = stores
    assert a.recent(10, NOW) == ([], True)
    a.write([Assignment(f"u{i}", "ep", "A", NOW + i) for i in range(5)], [])  # u0 has expired
    assert a.recent(10, NOW) == ([Assignment(f"u{i}", "ep", "A", NOW + i) for i in (4, 3, 2, 1)], True)
    assert a.recent(4, NOW) == ([Assignment(f"u{i}", "ep", "A", NOW + i) for i in (4, 3, 2, 1)], True)
    assert a.recent(2, NOW) == ([Assignment("u4", "ep", "A", NOW + 4), Assignment("u3", "ep", "A", NOW + 3)], False)


def test_purge_expired(stores: tuple[SqlAssignmentStore, SqlExperimentStore]) -> None:
    a, _ = stores
    a.put(Assignment("old", "ep", "A", NOW - 1))
    a.put(Assignment("new", "ep", "A", NOW + 1))
    a.record_served(Served("ep", "i", "A", None, "Fallback", "old", NOW - 1))
    assert a.purge_expired(NOW) == 2
    assert a.get("old", "ep") is None
    assert a.get("new", "ep") is not None


def test_experiment_lifecycle(stores: tuple[SqlAssignmentStore, SqlExperimentStore]) -> None:
    _, e = stores
    assert e.current("ep") is None and e.latest("ep") is None
    params = ExperimentParams(strategy=Strategy.UCB1, epsilon=0.2, warmup=5, alpha=0.05, horizon=800, looks=4)
    first = e.start("ep", params, SPECS, NOW)
    assert e.current("ep") == first
    assert e.get(first.id) == first
    assert first.control == "A"
    assert e.counts(first.id) == {"A": VariantCounts(), "B": VariantCounts()}
    second = e.start("ep", ExperimentParams(control="B"), (VariantSpec("B", 1.0),), NOW + 5)
    assert second.id != first.id
    assert e.current("ep") == second and e.latest("ep") == second
    history = e.history("ep")
    assert [x.id for x in history] == [first.id, second.id]
    assert history[0].closed_at == NOW + 5
    assert history[0].params == params
    closed = e.close("ep", NOW + 9)
    assert closed is not None and closed.closed_at == NOW + 9
    assert e.current("ep") is None
    assert e.latest("ep") == closed
    assert e.close("ep", NOW + 10) is None


def test_fold_is_atomic_and_idempotent(stores: tuple[SqlAssignmentStore, SqlExperimentStore]) -> None:
    _, e = stores
    x = e.start("ep", ExperimentParams(), SPECS, NOW)
    deltas = {(x.id, "A"): VariantCounts(3, 1, 0.5), (x.id, "B"): VariantCounts(2, 2, 2.0)}
    assert e.fold("k1", deltas, NOW) is True
    assert e.fold("k1", deltas, NOW) is False
    assert e.fold("k2", {(x.id, "A"): VariantCounts(1, 0, 0.0)}, NOW) is True
    assert e.counts(x.id) == {"A": VariantCounts(4, 1, 0.5), "B": VariantCounts(2, 2, 2.0)}
    assert e.folded_keys() == {"k1", "k2"}


def test_looks_keep_their_order(stores: tuple[SqlAssignmentStore, SqlExperimentStore]) -> None:
    _, e = stores
    x = e.start("ep", ExperimentParams(), (*SPECS, VariantSpec("C", 1.0)), NOW)
    e.add_looks(x.id, [Look("B", 0.1, 0.5, 100, 100), Look("C", 0.1, -0.2, 100, 100)])
    e.add_looks(x.id, [Look("B", 0.2, 1.5, 200, 200)])
    looks = e.looks(x.id)
    assert [(lk.challenger, lk.t) for lk in looks if lk.challenger == "B"] == [("B", 0.1), ("B", 0.2)]
    assert sorted(looks, key=lambda lk: (lk.challenger, lk.t)) == sorted(
        [Look("B", 0.1, 0.5, 100, 100), Look("C", 0.1, -0.2, 100, 100), Look("B", 0.2, 1.5, 200, 200)],
        key=lambda lk: (lk.challenger, lk.t),
    )


def test_sql_errors_become_store_unavailable(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'ab.db'}")
    create_tables(engine)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE ab_assignments"))
        conn.execute(text("DROP TABLE ab_variants"))
    with pytest.raises(StoreUnavailable) as info:
        SqlAssignmentStore(engine).get("u", "ep")
    assert (info.value.code, info.value.status) == ("StoreUnavailable", 503)
    experiments = SqlExperimentStore(engine)
    with pytest.raises(StoreUnavailable):
        experiments.start("ep", ExperimentParams(), SPECS, NOW)
    assert experiments.current("ep") is None  # the failed start left nothing behind
    engine.dispose()


def test_a_failed_batch_writes_nothing(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'ab.db'}")
    create_tables(engine)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE ab_served"))  # the batch's assignments are written first, then this fails
    store = SqlAssignmentStore(engine)
    with pytest.raises(StoreUnavailable):
        store.write([Assignment("u", "ep", "A", NOW + 1)], [Served("ep", "i", "A", None, "Manual", "u", NOW + 1)])
    assert store.get("u", "ep") is None
    engine.dispose()


# --- the sticky policy -------------------------------------------------------------------------------


def test_ttl_is_computed_at_each_write_from_the_clock() -> None:
    policy = StickyPolicy()
    assert policy.assign("u", "ep", "A", NOW).expires_at == NOW + 90 * DAY
    assert policy.assign("u", "ep", "A", NOW + 7).expires_at == NOW + 7 + 90 * DAY


@pytest.mark.parametrize(
    ("stored_expiry", "now", "refreshed"),
    [
        (NOW + 90 * DAY, NOW, False),  # just written
        (NOW + 90 * DAY, NOW + 0.5 * DAY, False),  # within the refresh granularity
        (NOW + 90 * DAY, NOW + 1 * DAY, True),
        (NOW + 90 * DAY, NOW + 30 * DAY, True),
    ],
)
def test_ttl_is_refreshed_on_use_at_most_daily(stored_expiry: float, now: float, refreshed: bool) -> None:
    policy = StickyPolicy()
    renewal = policy.renewal(Assignment("u", "ep", "A", stored_expiry), now)
    assert (renewal is not None) == refreshed
    if renewal is not None:
        assert renewal == Assignment("u", "ep", "A", now + 90 * DAY)


@pytest.mark.parametrize(
    ("assignment", "variants", "expected"),
    [
        (None, ("A", "B"), None),
        (Assignment("u", "ep", "A", NOW + 1), ("A", "B"), "A"),
        (Assignment("u", "ep", "A", NOW), ("A", "B"), None),  # expired
        (Assignment("u", "ep", "C", NOW + 1), ("A", "B"), None),  # its variant left the endpoint
    ],
)
def test_current_assignment(assignment: Assignment | None, variants: tuple[str, ...], expected: str | None) -> None:
    assert StickyPolicy().current(assignment, variants, NOW) == expected


def test_the_portable_upsert_path_used_by_other_databases(tmp_path: Path) -> None:
    from modelgate.experiments import sqlstore

    engine = create_engine(f"sqlite:///{tmp_path / 'ab.db'}")
    create_tables(engine)
    upsert = sqlstore._Upsert("generic", sqlstore.assignments, ["user_id", "endpoint_name"])
    row = {"user_id": "u", "endpoint_name": "ep", "variant": "A", "expires_at": 1.0}
    with engine.begin() as conn:
        upsert(conn, row)
        upsert(conn, {**row, "variant": "B", "expires_at": 2.0})
        upsert.many(conn, [{**row, "user_id": "v"}, {**row, "user_id": "u", "variant": "C"}])
    assert SqlAssignmentStore(engine).get("u", "ep") == Assignment("u", "ep", "C", 1.0)
    assert SqlAssignmentStore(engine).get("v", "ep") == Assignment("v", "ep", "A", 1.0)
    engine.dispose()


def test_a_data_directory_from_before_the_error_and_reward_columns_is_upgraded(tmp_path: Path) -> None:
    """``create_tables`` adds the columns added since (errors per variant, max rewards per inference, a
    served inference's failure and conversions) to an older database, with their defaults."""
    engine = create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    create_tables(engine)
    with engine.begin() as conn:
        for table, column in (("ab_variants", "errors"), ("ab_experiments", "max_rewards"),
                              ("ab_served", "failed"), ("ab_served", "conversions")):  # fmt: skip
            conn.exec_driver_sql(f'ALTER TABLE "{table}" DROP COLUMN "{column}"')
        conn.exec_driver_sql(
            "INSERT INTO ab_served (endpoint_name, inference_id, variant, experiment_id, strategy, user_id, "
            "expires_at) VALUES ('ep', 'i1', 'A', 1, 'Manual', 'u1', 2e9)"
        )
    create_tables(engine)  # the next start
    experiments = SqlExperimentStore(engine)
    experiment = experiments.start("ep", ExperimentParams(), (VariantSpec("A", 1.0),), 0.0)
    assert experiment.params.max_rewards_per_inference == 1
    assert experiments.counts(experiment.id) == {"A": VariantCounts()}
    served = SqlAssignmentStore(engine).served("ep", "i1", 0.0)
    assert served is not None and (served.failed, served.conversions) == (False, 0)
    engine.dispose()
