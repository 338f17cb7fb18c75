"""Fakes of the experiments package's interfaces, shared by its tests.

The in-memory stores are also run through the same contract tests as the SQL ones
(test_stores.py), so they cannot drift from the real behaviour unnoticed.
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from modelgate.errors import ModelError, ServiceUnavailable, ValidationError
from modelgate.experiments.assignments import Assignment, AssignmentStore, Served
from modelgate.experiments.entities import Experiment, ExperimentParams, VariantCounts, VariantSpec
from modelgate.experiments.errors import StoreUnavailable
from modelgate.experiments.events import Event
from modelgate.experiments.sequential import Look
from modelgate.experiments.store import Deltas
from tests.fakes import FakeClock as SharedClock


class FakeClock(SharedClock):
    """The shared fake clock, with monotonic time starting at 1000 s as these tests expect."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        super().__init__(now, monotonic=1000.0)


class _Failing:
    """``fail = True`` makes every call raise StoreUnavailable, as a store whose database is down."""

    fail = False

    def _check(self) -> None:
        if self.fail:
            raise StoreUnavailable("injected store failure")


class MemoryAssignmentStore(_Failing):
    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], Assignment] = {}
        self.served_rows: dict[tuple[str, str], Served] = {}
        self.writes = 0
        self.batches = 0

    def get(self, user_id: str, endpoint_name: str) -> Assignment | None:
        self._check()
        return self.rows.get((user_id, endpoint_name))

    def put(self, assignment: Assignment) -> None:
        self._check()
        self.writes += 1
        self.rows[(assignment.user_id, assignment.endpoint_name)] = assignment

    def record_served(self, served: Served) -> None:
        self._check()
        self.served_rows[(served.endpoint_name, served.inference_id)] = served

    def served(self, endpoint_name: str, inference_id: str, now: float) -> Served | None:
        self._check()
        record = self.served_rows.get((endpoint_name, inference_id))
        return record if record is not None and record.expires_at > now else None

    def write(self, assignments: Sequence[Assignment], served: Sequence[Served]) -> None:
        self._check()
        self.batches += 1
        for a in assignments:
            self.put(a)
        for s in served:
            self.record_served(s)

    def recent(self, limit: int, now: float) -> tuple[list[Assignment], bool]:
        self._check()
        live = sorted((a for a in self.rows.values() if a.expires_at > now), key=lambda a: -a.expires_at)
        return live[:limit], len(live) <= limit

    def purge_expired(self, now: float) -> int:
        self._check()
        gone_a = [k for k, a in self.rows.items() if a.expires_at <= now]
        gone_s = [k for k, s in self.served_rows.items() if s.expires_at <= now]
        for k in gone_a:
            del self.rows[k]
        for k2 in gone_s:
            del self.served_rows[k2]
        return len(gone_a) + len(gone_s)


class ThreadCheckingStore:
    """Wraps an AssignmentStore and records each call by name, and separately each call made on the thread
    it was built on (the event loop's, when built in a coroutine): ``on_loop`` must stay empty."""

    def __init__(self, inner: AssignmentStore) -> None:
        self.inner = inner
        self.loop_thread = threading.get_ident()
        self.calls: list[str] = []
        self.on_loop: list[str] = []

    def _call(self, name: str) -> None:
        self.calls.append(name)
        if threading.get_ident() == self.loop_thread:
            self.on_loop.append(name)

    def get(self, user_id: str, endpoint_name: str) -> Assignment | None:
        self._call("get")
        return self.inner.get(user_id, endpoint_name)

    def put(self, assignment: Assignment) -> None:
        self._call("put")
        self.inner.put(assignment)

    def record_served(self, served: Served) -> None:
        self._call("record_served")
        self.inner.record_served(served)

    def served(self, endpoint_name: str, inference_id: str, now: float) -> Served | None:
        self._call("served")
        return self.inner.served(endpoint_name, inference_id, now)

    def write(self, assignments: Sequence[Assignment], served: Sequence[Served]) -> None:
        self._call("write")
        self.inner.write(assignments, served)

    def recent(self, limit: int, now: float) -> tuple[list[Assignment], bool]:
        self._call("recent")
        return self.inner.recent(limit, now)

    def purge_expired(self, now: float) -> int:
        self._call("purge_expired")
        return self.inner.purge_expired(now)


class MemoryExperimentStore(_Failing):
    def __init__(self) -> None:
        self.experiments: list[Experiment] = []
        self._counts: dict[int, dict[str, VariantCounts]] = {}
        self._folded: set[str] = set()
        self._looks: dict[int, list[Look]] = {}

    def current(self, endpoint_name: str) -> Experiment | None:
        self._check()
        return next((e for e in reversed(self.experiments) if e.endpoint_name == endpoint_name and e.is_open), None)

    def latest(self, endpoint_name: str) -> Experiment | None:
        self._check()
        return next((e for e in reversed(self.experiments) if e.endpoint_name == endpoint_name), None)

    def get(self, experiment_id: int) -> Experiment | None:
        self._check()
        return next((e for e in self.experiments if e.id == experiment_id), None)

    def history(self, endpoint_name: str) -> list[Experiment]:
        self._check()
        return [e for e in self.experiments if e.endpoint_name == endpoint_name]

    def start(
        self, endpoint_name: str, params: ExperimentParams, variants: Sequence[VariantSpec], now: float
    ) -> Experiment:
        self._check()
        self.close(endpoint_name, now)
        experiment = Experiment(len(self.experiments) + 1, endpoint_name, params, tuple(variants), now)
        self.experiments.append(experiment)
        self._counts[experiment.id] = {v.name: VariantCounts() for v in variants}
        return experiment

    def close(self, endpoint_name: str, now: float) -> Experiment | None:
        self._check()
        for i, e in enumerate(self.experiments):
            if e.endpoint_name == endpoint_name and e.is_open:
                closed = Experiment(e.id, e.endpoint_name, e.params, e.variants, e.created_at, now)
                self.experiments[i] = closed
                return closed
        return None

    def counts(self, experiment_id: int) -> dict[str, VariantCounts]:
        self._check()
        return dict(self._counts.get(experiment_id, {}))

    def fold(self, key: str, deltas: Deltas, now: float) -> bool:
        self._check()
        if key in self._folded:
            return False
        updated = copy.deepcopy(self._counts)
        for (experiment_id, variant), d in deltas.items():
            row = updated[experiment_id]
            row[variant] = row[variant].plus(d)
        self._counts = updated  # all or nothing
        self._folded.add(key)
        return True

    def folded_keys(self) -> set[str]:
        self._check()
        return set(self._folded)

    def looks(self, experiment_id: int) -> list[Look]:
        self._check()
        return list(self._looks.get(experiment_id, []))

    def add_looks(self, experiment_id: int, looks: Sequence[Look]) -> None:
        self._check()
        self._looks.setdefault(experiment_id, []).extend(looks)


class MemorySink:
    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.fail = False

    def put(self, key: str, data: bytes) -> None:
        if self.fail:
            raise StoreUnavailable("injected sink failure")
        self.objects[key] = data

    def list_keys(self) -> list[str]:
        return sorted(self.objects)

    def get(self, key: str) -> bytes:
        return self.objects[key]


class RecordingEventLog:
    def __init__(self) -> None:
        self.events: list[Event] = []

    def append(self, event: Event) -> None:
        self.events.append(event)


@dataclass
class RecordingMetrics:
    points: list[tuple[str, str, dict[str, str], float]] = field(default_factory=list)

    def put(
        self, namespace: str, name: str, dimensions: Mapping[str, str], value: float, unit: str, timestamp: float
    ) -> None:
        self.points.append((namespace, name, dict(dimensions), value))


@dataclass(frozen=True)
class FakeResult:
    variant: str
    status: int
    body: bytes
    content_type: str
    error: ModelError | None = None


@dataclass
class FakeCall:
    endpoint_name: str
    body: bytes
    content_type: str
    accept: str | None
    target_variant: str | None
    inference_id: str


class FakeGateway:
    """Both the Invoker and the EndpointCatalog of one or more endpoints.

    Without a target variant it chooses by the endpoint's current weights with its own seeded
    generator, as SageMaker does. ``model_error`` makes every invocation fail as a container error, and
    ``failing`` the invocations of the variants it names; ``unavailable`` names variants with no healthy
    instance (ServiceUnavailable before anything runs).
    """

    def __init__(self, endpoints: Mapping[str, Sequence[tuple[str, float]]], tags: Mapping[str, Mapping[str, str]]):
        self.endpoints = {k: list(v) for k, v in endpoints.items()}
        self.tag_map = {k: dict(v) for k, v in tags.items()}
        self.calls: list[FakeCall] = []
        self.weight_updates: list[tuple[str, dict[str, float]]] = []
        self.model_error = False
        self.failing: set[str] = set()
        self.unavailable: set[str] = set()
        self._rng = np.random.default_rng(99)

    async def invoke(
        self,
        endpoint_name: str,
        body: bytes,
        content_type: str,
        accept: str | None,
        target_variant: str | None,
        inference_id: str,
    ) -> FakeResult:
        self.calls.append(FakeCall(endpoint_name, body, content_type, accept, target_variant, inference_id))
        if endpoint_name not in self.endpoints:
            raise ValidationError(f"Endpoint {endpoint_name} not found.")
        variants = self.endpoints[endpoint_name]
        if target_variant is None:
            weights = np.array([w for _, w in variants], dtype=float)
            variant = variants[int(self._rng.choice(len(variants), p=weights / weights.sum()))][0]
        elif target_variant not in {n for n, _ in variants}:
            raise ValidationError(f"Variant {target_variant} not found for endpoint {endpoint_name}.")
        else:
            variant = target_variant
        if variant in self.unavailable:
            raise ServiceUnavailable(f"Variant {variant} of endpoint {endpoint_name} has no healthy instance")
        if self.model_error or variant in self.failing:
            error = ModelError("Received server error (500) from model", 500, "boom", "arn:log")
            return FakeResult(variant, 500, b"", "", error)
        answer = json.dumps({"variant": variant, "echo": body.decode()}).encode()
        return FakeResult(variant, 200, answer, "application/json")

    def variants(self, endpoint_name: str) -> list[tuple[str, float]]:
        if endpoint_name not in self.endpoints:
            raise ValidationError(f"Could not find endpoint {endpoint_name}.")
        return list(self.endpoints[endpoint_name])

    def tags(self, endpoint_name: str) -> Mapping[str, str]:
        if endpoint_name not in self.endpoints:
            raise ValidationError(f"Could not find endpoint {endpoint_name}.")
        return dict(self.tag_map.get(endpoint_name, {}))

    async def set_weights(self, endpoint_name: str, weights: Mapping[str, float]) -> None:
        self.weight_updates.append((endpoint_name, dict(weights)))
        self.endpoints[endpoint_name] = [(n, weights.get(n, w)) for n, w in self.endpoints[endpoint_name]]
