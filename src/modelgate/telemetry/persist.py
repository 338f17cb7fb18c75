"""Metric persistence: upsert changed aggregates, delete expired ones, reload at start.

All methods are synchronous and run in a worker thread (``asyncio.to_thread``); they receive copies
taken on the event loop, never live store objects.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Engine, and_, delete, select
from sqlalchemy.dialects import sqlite

from modelgate.telemetry.model import MetricId
from modelgate.telemetry.schema import create_tables, metric_points, metric_series
from modelgate.telemetry.sketch import Sketch
from modelgate.telemetry.statistics import Agg
from modelgate.telemetry.store import (
    HIGH_RES,
    HIGH_RES_RETENTION,
    LOW_RES,
    LOW_RES_RETENTION,
    MetricStore,
    PointRow,
)


class MetricPersistence:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        create_tables(engine)

    def _upsert(self, table: Any, keys: list[str]) -> Any:
        mod: Any = sqlite
        if self.engine.dialect.name == "postgresql":
            # Imported only for a PostgreSQL engine: about 2.3 MB of the gateway's RSS otherwise (bench/memory.py).
            from sqlalchemy.dialects import postgresql

            mod = postgresql
        stmt = mod.insert(table)
        updates = {c.name: stmt.excluded[c.name] for c in table.columns if c.name not in keys}
        return stmt.on_conflict_do_update(index_elements=keys, set_=updates)

    def write(self, series: Sequence[tuple[int, MetricId, str, bool]], points: Sequence[PointRow]) -> None:
        if not series and not points:
            return
        with self.engine.begin() as conn:
            if series:
                conn.execute(
                    self._upsert(metric_series, ["id"]),
                    [
                        {
                            "id": i,
                            "namespace": m.namespace,
                            "name": m.name,
                            "dimensions": json.dumps([list(d) for d in m.dimensions]),
                            "unit": u,
                            "high_res": h,
                        }
                        for i, m, u, h in series
                    ],
                )
            if points:
                conn.execute(
                    self._upsert(metric_points, ["series_id", "resolution", "ts"]),
                    [_point_values(p) for p in points],
                )

    def expire(self, now: float, gone_series: Sequence[int]) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                delete(metric_points).where(
                    and_(
                        metric_points.c.resolution == HIGH_RES,
                        metric_points.c.ts < int(now) - HIGH_RES_RETENTION,
                    )
                )
            )
            conn.execute(
                delete(metric_points).where(
                    and_(
                        metric_points.c.resolution == LOW_RES,
                        metric_points.c.ts < int(now) - LOW_RES_RETENTION,
                    )
                )
            )
            if gone_series:
                conn.execute(delete(metric_series).where(metric_series.c.id.in_(list(gone_series))))

    def load_into(self, store: MetricStore, now: float) -> int:
        """Load series and unexpired points; return the number of points loaded."""
        n = 0
        with self.engine.connect() as conn:
            for row in conn.execute(select(metric_series)):
                dims = tuple((str(k), str(v)) for k, v in json.loads(row.dimensions))
                store.load_series(row.id, MetricId(row.namespace, row.name, dims), row.unit, bool(row.high_res))
            q = select(metric_points).where(
                ((metric_points.c.resolution == HIGH_RES) & (metric_points.c.ts >= int(now) - HIGH_RES_RETENTION))
                | ((metric_points.c.resolution == LOW_RES) & (metric_points.c.ts >= int(now) - LOW_RES_RETENTION))
            )
            for row in conn.execute(q):
                r = row._mapping
                agg = Agg()
                agg.count, agg.sum, agg.min, agg.max = r["count"], r["sum"], r["min"], r["max"]
                agg.sketched = r["sketched"]
                agg.sketch = Sketch.from_bytes(r["sketch"]) if r["sketch"] is not None else None
                store.load_point(PointRow(r["series_id"], r["resolution"], r["ts"], agg))
                n += 1
        return n


def _point_values(p: PointRow) -> dict[str, Any]:
    a = p.agg
    return {
        "series_id": p.series_id,
        "resolution": p.resolution,
        "ts": p.ts,
        "count": a.count,
        "sum": a.sum,
        "min": a.min,
        "max": a.max,
        "sketched": a.sketched,
        "sketch": a.sketch.to_bytes() if a.sketch is not None else None,
    }
