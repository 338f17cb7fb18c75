"""The A/B wiring: when the experiments subsystem is built at start, and its paths."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any, cast

from modelgate.ab_gateway import PATHS, USE_TABLES, Experiments
from modelgate.experiments.assignments import Served
from modelgate.experiments.entities import ExperimentParams, VariantSpec
from modelgate.experiments.http import ExperimentsApi
from modelgate.experiments.sqlstore import (
    SqlAssignmentStore,
    SqlExperimentStore,
    assignments,
    create_tables,
    experiments,
    served,
)
from modelgate.store.db import make_engine


def _experiments(data: Path, events_url: str | None = None) -> Experiments:
    none = cast(Any, None)
    url = events_url or str(data / "ab-events")
    return Experiments(make_engine(data), none, none, none, none, none, url, 60.0, 1 << 20)


def test_paths_are_the_rest_apis_routes() -> None:
    assert ExperimentsApi(cast(Any, None)).paths == PATHS


def test_use_tables_are_the_stores_tables() -> None:
    assert set(USE_TABLES) == {experiments.name, assignments.name, served.name}


def test_not_used_on_a_fresh_data_directory(tmp_path: Path) -> None:
    ab = _experiments(tmp_path)
    assert not ab.used_before()
    create_tables(ab.engine)  # a data directory of an earlier version: the tables, empty
    assert not ab.used_before()


def test_used_with_a_stored_experiment(tmp_path: Path) -> None:
    ab = _experiments(tmp_path)
    create_tables(ab.engine)
    SqlExperimentStore(ab.engine).start("ep", ExperimentParams(), [VariantSpec("a", 1.0)], 1.0)
    assert ab.used_before()


def test_used_with_a_served_inference(tmp_path: Path) -> None:
    ab = _experiments(tmp_path)
    create_tables(ab.engine)
    SqlAssignmentStore(ab.engine).record_served(Served("ep", "inf-1", "a", None, "Manual", "u", 10.0))
    assert ab.used_before()


def test_used_with_an_event_file(tmp_path: Path) -> None:
    ab = _experiments(tmp_path)
    events = tmp_path / "ab-events" / "year=2026"
    events.mkdir(parents=True)
    (events / ".part.jsonl.gz.tmp").write_bytes(b"")  # a temporary file is not an event file
    assert not ab.used_before()
    (events / "events-1.jsonl.gz").write_bytes(b"")
    assert ab.used_before()


def test_an_s3_sink_is_always_started(tmp_path: Path) -> None:
    assert _experiments(tmp_path, "s3://bucket/prefix").used_before()


def test_the_server_starts_without_the_heavy_libraries() -> None:
    """What the gateway imports only when needed (bench/RESULTS.md, "Memory"): never at start."""
    lazy = ["numpy", "scipy", "aiohttp", "boto3", "botocore.session", "starlette", "modelgate.experiments.service"]
    code = f"import sys, modelgate.server; print(' '.join(m for m in {lazy!r} if m in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert loaded == []


def test_fz11_a_tiny_reward_sum_is_published_as_zero() -> None:
    """A conversion's reward may be 1e-200 (it is in [0, 1]); CloudWatch refuses so small a value, which failed
    the aggregator's whole publishing round (an ERROR and a traceback in the log, every round)."""
    from modelgate.ab_gateway import MetricsPort
    from modelgate.services.metrics import MetricsService
    from modelgate.telemetry.model import MetricId
    from modelgate.telemetry.store import MetricStore
    from tests.telemetry.fakes import FakeClock

    clock = FakeClock(1_700_000_040)
    metrics = MetricsService(MetricStore(), clock)
    MetricsPort(metrics).put("ab", "Rewards", {"Variant": "a"}, 2.7e-154, "Count", clock.now())
    points = metrics.get_metric_statistics(
        MetricId.of("ab", "Rewards", [("Variant", "a")]), clock.now() - 60, clock.now() + 60, 60, ["Sum"], [], None
    )
    assert [p.sum for p in points] == [0.0]
