"""SQLAlchemy implementations of the experiment and assignment stores.

The tables live in their own :data:`metadata` (``ab_*``), created by :func:`create_tables` on the
gateway's Engine (SQLite on one machine, PostgreSQL when several gateways share it); a column added since
a data directory was made is added to its table there (``ALTER TABLE … ADD COLUMN`` with the column's
default), so an older data directory keeps working. Every SQLAlchemy
error is mapped to :class:`StoreUnavailable` here, at the boundary. Every call blocks: invocations and
conversions reach these stores from worker threads only (:mod:`~modelgate.experiments.assignment_cache`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Engine,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    Row,
    String,
    Table,
    bindparam,
    delete,
    insert,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from modelgate.experiments.assignments import Assignment, Served
from modelgate.experiments.entities import Experiment, ExperimentParams, Strategy, VariantCounts, VariantSpec
from modelgate.experiments.errors import StoreUnavailable
from modelgate.experiments.sequential import Look
from modelgate.experiments.store import Deltas

metadata = MetaData()

experiments = Table(
    "ab_experiments",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("endpoint_name", String(128), nullable=False, index=True),
    Column("strategy", String(32), nullable=False),
    Column("epsilon", Float, nullable=False),
    Column("warmup", Integer, nullable=False),
    Column("alpha", Float, nullable=False),
    Column("horizon", Integer, nullable=False),
    Column("looks", Integer, nullable=False),
    Column("control", String(128), nullable=True),
    Column("max_rewards", Integer, nullable=False, server_default=text("1")),
    Column("created_at", Float, nullable=False),
    Column("closed_at", Float, nullable=True),
)

variants = Table(
    "ab_variants",
    metadata,
    Column("experiment_id", Integer, ForeignKey("ab_experiments.id"), nullable=False),
    Column("variant", String(128), nullable=False),
    Column("position", Integer, nullable=False),
    Column("initial_weight", Float, nullable=False),
    Column("invocations", BigInteger, nullable=False, default=0),
    Column("conversions", BigInteger, nullable=False, default=0),
    Column("reward_sum", Float, nullable=False, default=0.0),
    Column("errors", BigInteger, nullable=False, server_default=text("0")),
    PrimaryKeyConstraint("experiment_id", "variant"),
)

# Event files already folded into ab_variants, written in the same transaction as the counts.
folded = Table(
    "ab_folded",
    metadata,
    Column("key", String(1024), primary_key=True),
    Column("folded_at", Float, nullable=False),
)

looks_table = Table(
    "ab_looks",
    metadata,
    Column("experiment_id", Integer, ForeignKey("ab_experiments.id"), nullable=False),
    Column("challenger", String(128), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("fraction", Float, nullable=False),
    Column("z", Float, nullable=False),
    Column("n_control", BigInteger, nullable=False),
    Column("n_challenger", BigInteger, nullable=False),
    PrimaryKeyConstraint("experiment_id", "challenger", "seq"),
)

assignments = Table(
    "ab_assignments",
    metadata,
    Column("user_id", String(256), nullable=False),
    Column("endpoint_name", String(128), nullable=False),
    Column("variant", String(128), nullable=False),
    Column("expires_at", Float, nullable=False),
    PrimaryKeyConstraint("user_id", "endpoint_name"),
    Index("ab_assignments_expiry", "expires_at"),
)

served = Table(
    "ab_served",
    metadata,
    Column("endpoint_name", String(128), nullable=False),
    Column("inference_id", String(256), nullable=False),
    Column("variant", String(128), nullable=False),
    Column("experiment_id", Integer, nullable=True),
    Column("strategy", String(32), nullable=False),
    Column("user_id", String(256), nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("failed", Integer, nullable=False, server_default=text("0")),
    Column("conversions", Integer, nullable=False, server_default=text("0")),
    PrimaryKeyConstraint("endpoint_name", "inference_id"),
    Index("ab_served_expiry", "expires_at"),
)


# Parameters per SQLite statement: SQLITE_MAX_VARIABLE_NUMBER is 999 before SQLite 3.32, 32766 since.
_SQLITE_MAX_PARAMS = 999


def create_tables(engine: Engine) -> None:
    metadata.create_all(engine)
    with engine.begin() as conn:
        present = inspect(conn)
        for table in metadata.sorted_tables:
            have = {c["name"] for c in present.get_columns(table.name)}
            for column in table.columns:
                if column.name in have:
                    continue
                if column.server_default is None:  # every column added since the first release has one
                    raise StoreUnavailable(f"table {table.name} lacks column {column.name} and it has no default")
                kind = column.type.compile(engine.dialect)
                default = column.server_default.arg.text  # type: ignore[attr-defined]
                conn.exec_driver_sql(
                    f'ALTER TABLE "{table.name}" ADD COLUMN "{column.name}" {kind} NOT NULL DEFAULT {default}'
                )


@contextmanager
def _guard(what: str) -> Iterator[None]:
    try:
        yield
    except SQLAlchemyError as exc:
        raise StoreUnavailable(f"experiment store failed to {what}: {type(exc).__name__}") from exc


class _Upsert:
    """Insert-or-replace of one row, built once: a single ON CONFLICT statement on SQLite and
    PostgreSQL, an update then (if no row matched) an insert elsewhere. Statements are built once per
    store because building SQLAlchemy expressions costs more than SQLite's execution of them.

    :meth:`many` writes a batch. On SQLite it sends multi-row statements (``VALUES (...), (...) ON
    CONFLICT ...``, up to :data:`_SQLITE_MAX_PARAMS` parameters each): Python's sqlite3 releases the GIL
    around each statement's execution, and an ``executemany`` executes one statement per row, so a
    batch written from a worker thread while the event loop is busy waited for the GIL once per row
    (measured: 100 rows next to a busy thread, 900 ms with executemany, 22 ms in one statement, and 8 x
    less CPU)."""

    def __init__(self, dialect: str, table: Table, keys: Sequence[str]) -> None:
        self._keys = list(keys)
        self._native: Any = None
        if dialect in ("sqlite", "postgresql"):
            stmt = (sqlite if dialect == "sqlite" else postgresql).insert(table)
            others = {c.name: stmt.excluded[c.name] for c in table.columns if c.name not in self._keys}
            self._native = stmt.on_conflict_do_update(index_elements=self._keys, set_=others)
        where = [table.c[k] == bindparam(f"key_{k}") for k in self._keys]
        self._update = update(table).where(*where)
        self._insert = insert(table)
        self._columns = [c.name for c in table.columns]
        self._sqlite = dialect == "sqlite"
        quoted = {c: f'"{c}"' for c in self._columns}
        updates = ", ".join(f"{q} = excluded.{q}" for c, q in quoted.items() if c not in self._keys)
        self._head = f'INSERT INTO "{table.name}" ({", ".join(quoted.values())}) VALUES '
        self._tail = f" ON CONFLICT ({', '.join(quoted[k] for k in self._keys)}) DO UPDATE SET {updates}"
        self._row_marks = "(" + ", ".join("?" * len(self._columns)) + ")"
        self._chunk = max(1, _SQLITE_MAX_PARAMS // len(self._columns))

    def __call__(self, conn: Connection, row: Mapping[str, Any]) -> None:
        if self._native is not None:
            conn.execute(self._native, dict(row))
            return
        values = {k: v for k, v in row.items() if k not in self._keys}
        params = {f"key_{k}": row[k] for k in self._keys}
        if conn.execute(self._update.values(**values), params).rowcount == 0:
            conn.execute(self._insert, dict(row))

    def many(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        """Several rows of distinct keys (a key twice in one batch is refused by PostgreSQL)."""
        if self._sqlite:
            for start in range(0, len(rows), self._chunk):
                part = rows[start : start + self._chunk]
                sql = self._head + ", ".join([self._row_marks] * len(part)) + self._tail
                conn.exec_driver_sql(sql, tuple(row[c] for row in part for c in self._columns))
        elif self._native is not None:
            if rows:
                conn.execute(self._native, [dict(row) for row in rows])
        else:
            for row in rows:
                self(conn, row)


_GET_ASSIGNMENT = select(assignments.c.variant, assignments.c.expires_at).where(
    assignments.c.user_id == bindparam("user_id"), assignments.c.endpoint_name == bindparam("endpoint_name")
)
_RECENT = (
    select(assignments)
    .where(assignments.c.expires_at > bindparam("now"))
    .order_by(assignments.c.expires_at.desc())
    .limit(bindparam("limit"))
)
_GET_SERVED = select(served).where(
    served.c.endpoint_name == bindparam("endpoint_name"),
    served.c.inference_id == bindparam("inference_id"),
    served.c.expires_at > bindparam("now"),
)


def _assignment_row(a: Assignment) -> dict[str, Any]:
    return {"user_id": a.user_id, "endpoint_name": a.endpoint_name, "variant": a.variant, "expires_at": a.expires_at}


def _served_row(s: Served) -> dict[str, Any]:
    return {
        "endpoint_name": s.endpoint_name,
        "inference_id": s.inference_id,
        "variant": s.variant,
        "experiment_id": s.experiment_id,
        "strategy": s.strategy,
        "user_id": s.user_id,
        "expires_at": s.expires_at,
        "failed": int(s.failed),
        "conversions": s.conversions,
    }


class SqlAssignmentStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._put = _Upsert(engine.dialect.name, assignments, ["user_id", "endpoint_name"])
        self._record = _Upsert(engine.dialect.name, served, ["endpoint_name", "inference_id"])

    def get(self, user_id: str, endpoint_name: str) -> Assignment | None:
        params = {"user_id": user_id, "endpoint_name": endpoint_name}
        with _guard("read an assignment"), self._engine.connect() as conn:
            row = conn.execute(_GET_ASSIGNMENT, params).first()
        return None if row is None else Assignment(user_id, endpoint_name, row.variant, row.expires_at)

    def put(self, assignment: Assignment) -> None:
        with _guard("write an assignment"), self._engine.begin() as conn:
            self._put(conn, _assignment_row(assignment))

    def record_served(self, record: Served) -> None:
        with _guard("record a served inference"), self._engine.begin() as conn:
            self._record(conn, _served_row(record))

    def write(self, assignments: Sequence[Assignment], served: Sequence[Served]) -> None:
        with _guard("write assignments and served inferences"), self._engine.begin() as conn:
            self._put.many(conn, [_assignment_row(a) for a in assignments])
            self._record.many(conn, [_served_row(s) for s in served])

    def recent(self, limit: int, now: float) -> tuple[list[Assignment], bool]:
        with _guard("read assignments"), self._engine.connect() as conn:
            rows = conn.execute(_RECENT, {"now": now, "limit": limit + 1}).all()
        found = [Assignment(r.user_id, r.endpoint_name, r.variant, r.expires_at) for r in rows[:limit]]
        return found, len(rows) <= limit

    def served(self, endpoint_name: str, inference_id: str, now: float) -> Served | None:
        params = {"endpoint_name": endpoint_name, "inference_id": inference_id, "now": now}
        with _guard("read a served inference"), self._engine.connect() as conn:
            row = conn.execute(_GET_SERVED, params).first()
        if row is None:
            return None
        return Served(
            row.endpoint_name,
            row.inference_id,
            row.variant,
            row.experiment_id,
            row.strategy,
            row.user_id,
            row.expires_at,
            bool(row.failed),
            int(row.conversions),
        )

    def purge_expired(self, now: float) -> int:
        with _guard("purge expired assignments"), self._engine.begin() as conn:
            a = conn.execute(delete(assignments).where(assignments.c.expires_at <= now)).rowcount
            s = conn.execute(delete(served).where(served.c.expires_at <= now)).rowcount
        return int(a) + int(s)


class SqlExperimentStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def _load(self, conn: Connection, rows: Sequence[Row[Any]]) -> list[Experiment]:
        if not rows:
            return []
        ids = [r.id for r in rows]
        specs: dict[int, list[VariantSpec]] = {i: [] for i in ids}
        q = (
            select(variants.c.experiment_id, variants.c.variant, variants.c.initial_weight)
            .where(variants.c.experiment_id.in_(ids))
            .order_by(variants.c.experiment_id, variants.c.position)
        )
        for v in conn.execute(q):
            specs[v.experiment_id].append(VariantSpec(v.variant, v.initial_weight))
        out = []
        for r in rows:
            params = ExperimentParams(
                strategy=Strategy(r.strategy),
                epsilon=r.epsilon,
                warmup=r.warmup,
                alpha=r.alpha,
                horizon=r.horizon,
                looks=r.looks,
                control=r.control,
                max_rewards_per_inference=int(r.max_rewards),
            )
            out.append(Experiment(r.id, r.endpoint_name, params, tuple(specs[r.id]), r.created_at, r.closed_at))
        return out

    def _query(self, what: str, *where: Any, newest_first: bool = False, limit: int | None = None) -> list[Experiment]:
        order = experiments.c.id.desc() if newest_first else experiments.c.id
        q = select(experiments).where(*where).order_by(order).limit(limit)
        with _guard(what), self._engine.connect() as conn:
            return self._load(conn, list(conn.execute(q)))

    def current(self, endpoint_name: str) -> Experiment | None:
        found = self._query(
            "read an experiment",
            experiments.c.endpoint_name == endpoint_name,
            experiments.c.closed_at.is_(None),
            newest_first=True,
            limit=1,
        )
        return found[0] if found else None

    def latest(self, endpoint_name: str) -> Experiment | None:
        found = self._query(
            "read an experiment", experiments.c.endpoint_name == endpoint_name, newest_first=True, limit=1
        )
        return found[0] if found else None

    def get(self, experiment_id: int) -> Experiment | None:
        found = self._query("read an experiment", experiments.c.id == experiment_id)
        return found[0] if found else None

    def history(self, endpoint_name: str) -> list[Experiment]:
        return self._query("read experiments", experiments.c.endpoint_name == endpoint_name)

    def start(
        self, endpoint_name: str, params: ExperimentParams, specs: Sequence[VariantSpec], now: float
    ) -> Experiment:
        with _guard("start an experiment"), self._engine.begin() as conn:
            conn.execute(
                update(experiments)
                .where(experiments.c.endpoint_name == endpoint_name, experiments.c.closed_at.is_(None))
                .values(closed_at=now)
            )
            result = conn.execute(
                insert(experiments).values(
                    endpoint_name=endpoint_name,
                    strategy=params.strategy.value,
                    epsilon=params.epsilon,
                    warmup=params.warmup,
                    alpha=params.alpha,
                    horizon=params.horizon,
                    looks=params.looks,
                    control=params.control,
                    max_rewards=params.max_rewards_per_inference,
                    created_at=now,
                    closed_at=None,
                )
            )
            key = result.inserted_primary_key
            if key is None:
                raise StoreUnavailable("experiment store did not return the new experiment's id")
            experiment_id = int(key[0])
            for position, spec in enumerate(specs):
                conn.execute(
                    insert(variants).values(
                        experiment_id=experiment_id,
                        variant=spec.name,
                        position=position,
                        initial_weight=spec.initial_weight,
                        invocations=0,
                        conversions=0,
                        reward_sum=0.0,
                        errors=0,
                    )
                )
        return Experiment(experiment_id, endpoint_name, params, tuple(specs), now)

    def close(self, endpoint_name: str, now: float) -> Experiment | None:
        open_one = self.current(endpoint_name)
        if open_one is None:
            return None
        with _guard("close an experiment"), self._engine.begin() as conn:
            conn.execute(update(experiments).where(experiments.c.id == open_one.id).values(closed_at=now))
        return self.get(open_one.id)

    def counts(self, experiment_id: int) -> dict[str, VariantCounts]:
        q = select(variants).where(variants.c.experiment_id == experiment_id).order_by(variants.c.position)
        with _guard("read counts"), self._engine.connect() as conn:
            rows = list(conn.execute(q))
        return {
            r.variant: VariantCounts(int(r.invocations), int(r.conversions), float(r.reward_sum), int(r.errors))
            for r in rows
        }

    def fold(self, key: str, deltas: Deltas, now: float) -> bool:
        try:
            with self._engine.begin() as conn:
                if conn.execute(select(folded.c.key).where(folded.c.key == key)).first() is not None:
                    return False
                conn.execute(insert(folded).values(key=key, folded_at=now))
                for (experiment_id, variant), d in deltas.items():
                    conn.execute(
                        update(variants)
                        .where(variants.c.experiment_id == experiment_id, variants.c.variant == variant)
                        .values(
                            invocations=variants.c.invocations + d.invocations,
                            conversions=variants.c.conversions + d.conversions,
                            reward_sum=variants.c.reward_sum + d.reward_sum,
                            errors=variants.c.errors + d.errors,
                        )
                    )
        except IntegrityError:
            return False  # another aggregator folded the same key concurrently; its commit won
        except SQLAlchemyError as exc:
            raise StoreUnavailable(f"experiment store failed to fold {key}: {type(exc).__name__}") from exc
        return True

    def folded_keys(self) -> set[str]:
        with _guard("read folded keys"), self._engine.connect() as conn:
            return {r.key for r in conn.execute(select(folded.c.key))}

    def looks(self, experiment_id: int) -> list[Look]:
        q = (
            select(looks_table)
            .where(looks_table.c.experiment_id == experiment_id)
            .order_by(looks_table.c.challenger, looks_table.c.seq)
        )
        with _guard("read looks"), self._engine.connect() as conn:
            rows = list(conn.execute(q))
        return [Look(r.challenger, r.fraction, r.z, int(r.n_control), int(r.n_challenger)) for r in rows]

    def add_looks(self, experiment_id: int, new: Sequence[Look]) -> None:
        if not new:
            return
        with _guard("record looks"), self._engine.begin() as conn:
            for look in new:
                seq = len(
                    conn.execute(
                        select(looks_table.c.seq).where(
                            looks_table.c.experiment_id == experiment_id,
                            looks_table.c.challenger == look.challenger,
                        )
                    ).all()
                )
                conn.execute(
                    insert(looks_table).values(
                        experiment_id=experiment_id,
                        challenger=look.challenger,
                        seq=seq,
                        fraction=look.t,
                        z=look.z,
                        n_control=look.n_control,
                        n_challenger=look.n_challenger,
                    )
                )
