"""The telemetry tables, in their own MetaData so the subsystem owns its schema.

The gateway passes its Engine; :func:`create_tables` is idempotent.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Engine,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
)

metadata = MetaData()

metric_series = Table(
    "cw_metric_series",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("namespace", String(255), nullable=False),
    Column("name", String(255), nullable=False),
    Column("dimensions", Text, nullable=False),  # JSON [[name, value], ...], sorted by name
    Column("unit", String(32), nullable=False),
    Column("high_res", Boolean, nullable=False),
)

# One aggregate per series, resolution (1 or 60 s) and period start.
metric_points = Table(
    "cw_metric_points",
    metadata,
    Column("series_id", Integer, nullable=False),
    Column("resolution", Integer, nullable=False),
    Column("ts", Integer, nullable=False),
    Column("count", Float, nullable=False),
    Column("sum", Float, nullable=False),
    Column("min", Float, nullable=False),
    Column("max", Float, nullable=False),
    Column("sketched", Float, nullable=False),
    Column("sketch", LargeBinary, nullable=True),
    PrimaryKeyConstraint("series_id", "resolution", "ts"),
)
Index("cw_metric_points_age", metric_points.c.resolution, metric_points.c.ts)

# Alarms as JSON documents in CloudWatch's own member names (see telemetry/alarm_records.py).
alarms = Table(
    "cw_alarms",
    metadata,
    Column("name", String(255), primary_key=True),
    Column("body", Text, nullable=False),
)

alarm_history = Table(
    "cw_alarm_history",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("alarm_name", String(255), nullable=False),
    Column("timestamp", Float, nullable=False),
    Column("item_type", String(32), nullable=False),
    Column("summary", String(255), nullable=False),
    Column("data", Text, nullable=False),
)
Index("cw_alarm_history_name", alarm_history.c.alarm_name, alarm_history.c.timestamp)


def create_tables(engine: Engine) -> None:
    metadata.create_all(engine)
