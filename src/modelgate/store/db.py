"""Engine and schema."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    Engine,
    Float,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    create_engine,
    event,
)

metadata = MetaData()

# Control-plane resources (models, endpoint configs, endpoints) as typed JSON documents.
resources = Table(
    "resources",
    metadata,
    Column("kind", String(32), nullable=False),
    Column("name", String(128), nullable=False),
    Column("creation_time", Float, nullable=False),
    Column("status", String(32), nullable=True),
    Column("body", Text, nullable=False),
    PrimaryKeyConstraint("kind", "name"),
)

tags = Table(
    "tags",
    metadata,
    Column("arn", String(512), nullable=False),
    Column("key", String(128), nullable=False),
    Column("value", String(256), nullable=False),
    Column("position", Integer, nullable=False),
    PrimaryKeyConstraint("arn", "key"),
)

# Instances we started: written before the process is spawned, so a restarted server can reap them.
instances = Table(
    "instances",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("endpoint", String(128), nullable=False),
    Column("variant", String(128), nullable=False),
    Column("port", Integer, nullable=False),
    Column("pid", Integer, nullable=True),
    Column("created", Float, nullable=False),
)

# The deployment (UpdateEndpoint) in progress on an endpoint: written before each of its steps is taken.
deployments = Table(
    "deployments",
    metadata,
    Column("endpoint", String(128), primary_key=True),
    Column("body", Text, nullable=False),
)


# Stored documents that no longer load (a NaN weight stored as null by an older version, a hand edit):
# moved here, raw text kept for the operator, so that one bad row never stops start-up or a List*.
quarantine = Table(
    "quarantine",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(32), nullable=False),
    Column("name", String(128), nullable=False),
    Column("body", Text, nullable=False),
    Column("tags", Text, nullable=True),  # the resource's tags as JSON [[key, value], ...], moved with it
    Column("reason", Text, nullable=False),
    Column("quarantined_at", Float, nullable=False),
)


def make_engine(data_dir: Path) -> Engine:
    data_dir.mkdir(parents=True, exist_ok=True)
    engine = create_engine(f"sqlite:///{data_dir / 'modelgate.db'}", future=True)

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        # WAL with synchronous=NORMAL survives a killed process (not a power cut) without an fsync per commit.
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=5000")
        # Each pooled connection keeps its own page cache, 2 MB by default, filled as the metric tables grow
        # (about 3 KB a second under load): 512 KB each bounds the gateway's growth; appends and key
        # lookups need few pages, and older pages come back from the OS's file cache.
        cur.execute("PRAGMA cache_size=-512")
        cur.close()

    metadata.create_all(engine)
    return engine
