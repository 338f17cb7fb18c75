"""ExperimentService against fakes of the gateway: the anchor's semantics, its fixed bugs, Fallback."""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest
from sqlalchemy import create_engine

from modelgate.errors import ModelError, ModelgateError, ServiceUnavailable, ValidationError
from modelgate.experiments.analysis import design_of
from modelgate.experiments.assignment_cache import AssignmentCache
from modelgate.experiments.assignments import DAY, Assignment, AssignmentStore
from modelgate.experiments.entities import ExperimentParams, Strategy, VariantCounts, VariantSpec
from modelgate.experiments.errors import (
    AlreadyConverted,
    DuplicateInferenceId,
    ExperimentNotFound,
    InferenceFailed,
    InferenceNotFound,
    InferenceUserMismatch,
    InvalidParameter,
    InvalidRequest,
    InvalidReward,
    InvalidStrategy,
    NoWinner,
    StoreUnavailable,
    UnknownVariant,
    VariantMismatch,
)
from modelgate.experiments.sequential import next_looks
from modelgate.experiments.service import ExperimentService, Requester
from modelgate.experiments.sqlstore import SqlAssignmentStore, create_tables

from .fakes import (
    FakeClock,
    FakeGateway,
    MemoryAssignmentStore,
    MemoryExperimentStore,
    RecordingEventLog,
    ThreadCheckingStore,
)

T = TypeVar("T")
TAGS = {"ab-testing:enabled": "true", "ab-testing:strategy": "WeightedSampling"}


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


@dataclass
class World:
    service: ExperimentService
    gateway: FakeGateway
    experiments: MemoryExperimentStore
    assignments: MemoryAssignmentStore  # the store behind the cache
    cache: AssignmentCache
    events: RecordingEventLog
    clock: FakeClock

    def stored(self, user_id: str) -> Assignment | None:
        """What the store holds for the user once the cache has written what it holds."""
        assert run(self.cache.flush())
        return self.assignments.get(user_id, "ep")

    def restart(self, **cache_options: Any) -> World:
        """A gateway started again on the same stores: a new service, a new cache (loaded) over them."""
        return make_world(
            gateway=self.gateway, experiments=self.experiments, assignments=self.assignments, clock=self.clock,
            **cache_options,
        )  # fmt: skip


def make_world(
    variants: list[tuple[str, float]] | None = None,
    tags: dict[str, str] | None = None,
    *,
    loaded: bool = True,
    gateway: FakeGateway | None = None,
    experiments: MemoryExperimentStore | None = None,
    assignments: MemoryAssignmentStore | None = None,
    clock: FakeClock | None = None,
    **cache_options: Any,
) -> World:
    """``loaded``: the cache was filled from the store at start, so (while everything fits) it holds every
    assignment and never reads the store; else every miss reads the store."""
    gateway = gateway or FakeGateway(
        {"ep": variants or [("A", 0.5), ("B", 0.5)]}, {"ep": TAGS if tags is None else tags}
    )
    experiments, assignments, events, clock = (
        experiments or MemoryExperimentStore(), assignments or MemoryAssignmentStore(), RecordingEventLog(),
        clock or FakeClock(),
    )  # fmt: skip
    cache = AssignmentCache(assignments, clock, **cache_options)
    if loaded:
        cache.load(clock.now())
    ids = iter(range(10**6))
    service = ExperimentService(
        invoker=gateway, catalog=gateway, experiments=experiments, assignments=cache, events=events,
        clock=clock, rng=np.random.default_rng(1), new_id=lambda: f"id-{next(ids)}",
    )  # fmt: skip
    return World(service, gateway, experiments, assignments, cache, events, clock)


@pytest.fixture
def w() -> World:
    world = make_world()
    assert world.service.register("ep").status == 201
    return world


# --- registration ---------------------------------------------------------------------------------------


def test_register_reads_the_tags_and_current_weights() -> None:
    world = make_world(
        [("Champion1", 0.7), ("Challenger1", 0.3), ("Shadow", 0.0)],
        {"ab-testing:enabled": "True", "ab-testing:strategy": "EpsilonGreedy", "ab-testing:epsilon": "0.2",
         "ab-testing:warmup": "100"},
    )  # fmt: skip
    registration = world.service.register("ep")
    assert registration.status == 201 and registration.experiment is not None
    e = registration.experiment
    assert e.variants == (VariantSpec("Champion1", 0.7), VariantSpec("Challenger1", 0.3))  # weight 0 left out
    assert (e.params.strategy, e.params.epsilon, e.params.warmup) == (Strategy.EPSILON_GREEDY, 0.2, 100)
    assert e.control == "Champion1"


def test_register_is_idempotent_and_a_change_starts_a_new_experiment_keeping_the_old(w: World) -> None:
    first = w.experiments.current("ep")
    assert first is not None
    assert w.service.register("ep").status == 200
    w.experiments.fold("k", {(first.id, "A"): VariantCounts(10, 3, 3.0)}, 0.0)
    w.gateway.endpoints["ep"] = [("A", 0.5), ("C", 0.5)]
    second = w.service.register("ep")
    assert second.status == 201 and second.experiment is not None and second.experiment.id != first.id
    old = w.experiments.get(first.id)
    assert old is not None and old.closed_at is not None
    assert w.experiments.counts(first.id)["A"] == VariantCounts(10, 3, 3.0)
    assert [e.id for e in w.service.history("ep")] == [first.id, second.experiment.id]


def test_register_without_the_tag_is_not_modified_but_explicit_parameters_register() -> None:
    world = make_world(tags={"ab-testing:enabled": "false"})
    assert world.service.register("ep").status == 304
    assert world.experiments.current("ep") is None
    explicit = world.service.register("ep", ExperimentParams(strategy=Strategy.UCB1))
    assert explicit.status == 201 and explicit.experiment is not None
    assert explicit.experiment.params.strategy == Strategy.UCB1


@pytest.mark.parametrize(
    ("tags", "error", "code"),
    [
        ({"ab-testing:strategy": "Random"}, InvalidStrategy, "InvalidStrategy"),
        ({"ab-testing:epsilon": "1.5"}, InvalidParameter, "InvalidParameter"),
        ({"ab-testing:warmup": "ten"}, InvalidParameter, "InvalidParameter"),
        ({"ab-testing:control": "Z"}, UnknownVariant, "UnknownVariant"),
    ],
)
def test_bad_tags_are_refused_with_named_errors(tags: dict[str, str], error: type[ModelgateError], code: str) -> None:
    world = make_world(tags={"ab-testing:enabled": "true", **tags})
    with pytest.raises(error) as info:
        world.service.register("ep")
    assert (info.value.code, info.value.status) == (code, 400)
    assert str(info.value)


# --- invocation ---------------------------------------------------------------------------------------


def test_new_user_gets_201_then_200_and_the_event_has_the_anchor_fields(w: World) -> None:
    requester = Requester("10.1.2.3", "notebook/1.0")
    first = run(w.service.invoke("ep", b'"hello"', user_id="u1", inference_id="i1", requester=requester))
    assert first.status == 201
    assert first.strategy == "WeightedSampling"
    assert first.target_variant == first.endpoint_variant and first.target_variant in {"A", "B"}
    assert (w.gateway.calls[0].target_variant, w.gateway.calls[0].body) == (first.target_variant, b'"hello"')
    stored = w.stored("u1")
    assert stored is not None and stored.variant == first.target_variant
    assert stored.expires_at == w.clock.now() + 90 * DAY
    e = w.events.events[-1]
    assert (e.type, e.strategy, e.endpoint_name, e.target_variant, e.endpoint_variant) == (
        "invocation", "WeightedSampling", "ep", first.target_variant, first.endpoint_variant,
    )  # fmt: skip
    assert (e.inference_id, e.user_id, e.source_ip, e.user_agent, e.reward) == (
        "i1", "u1", "10.1.2.3", "notebook/1.0", None,
    )  # fmt: skip
    for _ in range(5):
        again = run(w.service.invoke("ep", b"{}", user_id="u1"))
        assert (again.status, again.target_variant) == (200, first.target_variant)


def test_generated_ids_are_returned(w: World) -> None:
    out = run(w.service.invoke("ep", b"{}"))
    assert out.user_id.startswith("id-") and out.inference_id.startswith("id-")
    assert out.user_id != out.inference_id


def test_the_ttl_is_refreshed_on_use_and_an_expired_assignment_is_redrawn(w: World) -> None:
    run(w.service.invoke("ep", b"{}", user_id="u1"))
    written = w.stored("u1")
    assert written is not None
    w.clock.advance(10 * DAY)
    assert run(w.service.invoke("ep", b"{}", user_id="u1")).status == 200
    refreshed = w.stored("u1")
    assert refreshed is not None and refreshed.expires_at == written.expires_at + 10 * DAY
    w.clock.advance(91 * DAY)
    assert run(w.service.invoke("ep", b"{}", user_id="u1")).status == 201


def test_a_user_whose_variant_left_the_endpoint_is_reassigned(w: World) -> None:
    w.gateway.endpoints["ep"] = [("A", 1.0)]
    w.service.register("ep")
    w.gateway.endpoints["ep"] = [("A", 0.5), ("B", 0.5)]
    w.cache.put(Assignment("u1", "ep", "B", w.clock.now() + DAY))
    out = run(w.service.invoke("ep", b"{}", user_id="u1"))
    assert (out.status, out.target_variant) == (201, "A")
    stored = w.stored("u1")
    assert stored is not None and stored.variant == "A"


def test_manual_override_is_202_and_writes_no_assignment(w: World) -> None:
    out = run(w.service.invoke("ep", b"{}", user_id="u1", endpoint_variant="B"))
    assert (out.status, out.strategy, out.target_variant, out.endpoint_variant) == (202, "Manual", "B", "B")
    assert w.stored("u1") is None
    assert w.events.events[-1].strategy == "Manual"


@pytest.mark.parametrize("broken", ["assignments", "experiments", "unregistered", "backlog"])
def test_fallback_uses_the_endpoint_weights_and_is_recorded(broken: str) -> None:
    # Not loaded: the new user's miss must read the store. max_backlog=0: the store has refused writes for
    # so long that the cache holds all it may, and takes no new assignment.
    w = make_world(loaded=broken != "assignments", max_backlog=0 if broken == "backlog" else 100)
    w.service.register("ep")
    if broken == "assignments":
        w.assignments.fail = True
    elif broken == "experiments":
        w.experiments.fail = True
    elif broken == "unregistered":
        w.service.deregister("ep")
    out = run(w.service.invoke("ep", b"{}", user_id="u1"))
    assert (out.status, out.strategy, out.target_variant) == (202, "Fallback", None)
    assert out.endpoint_variant in {"A", "B"}
    assert w.gateway.calls[-1].target_variant is None
    e = w.events.events[-1]
    assert (e.strategy, e.target_variant, e.endpoint_variant) == ("Fallback", None, out.endpoint_variant)


def test_d5_a_failed_invocation_is_counted_against_its_variant_and_never_credited(w: World) -> None:
    """The caller gets the model's error; the event log gets an invocation of the variant that failed, with
    its error code (a trial with no reward); the inference is recorded as failed, so no conversion counts."""
    w.gateway.failing = {"A", "B"}
    with pytest.raises(ModelError) as info:
        run(w.service.invoke("ep", b"{}", user_id="u1", inference_id="i1"))
    assert info.value.status == 424
    (e,) = w.events.events
    assert (e.type, e.endpoint_variant, e.error, e.reward, e.inference_id) == (
        "invocation", e.target_variant, "ModelError", None, "i1",
    )  # fmt: skip
    with pytest.raises(InferenceFailed) as refused:
        run(w.service.convert("ep", user_id="u1", inference_id="i1"))
    assert (refused.value.status, refused.value.code) == (409, "InferenceFailed")
    assert "failed" in refused.value.message and len(w.events.events) == 1


def test_d5_an_assigned_variant_without_a_healthy_instance_is_a_failure_of_that_variant(w: World) -> None:
    w.gateway.unavailable = {"A", "B"}
    with pytest.raises(ServiceUnavailable):
        run(w.service.invoke("ep", b"{}", user_id="u1"))
    (e,) = w.events.events
    assert (e.error, e.endpoint_variant) == ("ServiceUnavailable", e.target_variant)


def test_errors_before_any_variant_runs_pass_through_and_log_nothing(w: World) -> None:
    with pytest.raises(ValidationError):
        run(w.service.invoke("nope", b"{}", user_id="u1"))
    assert w.events.events == []


def test_d7_an_event_that_cannot_be_made_durable_fails_the_request(w: World) -> None:
    def broken(_: object) -> None:
        raise StoreUnavailable("the A/B event log cannot be written: No space left on device")

    w.events.append = broken  # type: ignore[method-assign,assignment]
    with pytest.raises(StoreUnavailable):
        run(w.service.invoke("ep", b"{}", user_id="u1", inference_id="i1"))
    assert w.cache.peek_served("ep", "i1", w.clock.now()) is None  # not acknowledged: not creditable


# --- conversion ---------------------------------------------------------------------------------------


def test_conversion_is_credited_to_the_variant_that_served_the_inference(w: World) -> None:
    served = run(w.service.invoke("ep", b"{}", user_id="u1", inference_id="i1", endpoint_variant="B"))
    out = run(w.service.convert("ep", user_id="u1", inference_id="i1", reward=0.5))
    assert (out.status, out.endpoint_variant, out.reward, out.strategy) == (200, served.endpoint_variant, 0.5, "Manual")
    e = w.events.events[-1]
    assert (e.type, e.endpoint_variant, e.target_variant, e.reward, e.inference_id) == (
        "conversion", "B", None, 0.5, "i1",
    )  # fmt: skip


def test_conversion_with_the_default_reward(w: World) -> None:
    first = run(w.service.invoke("ep", b"{}", user_id="u1"))
    out = run(w.service.convert("ep", user_id="u1", inference_id=first.inference_id))
    assert (out.status, out.endpoint_variant, out.reward, out.strategy) == (
        200, first.endpoint_variant, 1.0, "WeightedSampling",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("ids", "error", "status", "message"),
    [
        ({"user_id": "u1"}, InvalidRequest, 400, "must name the inference_id and the user_id"),
        ({"inference_id": "i1"}, InvalidRequest, 400, "must name the inference_id and the user_id"),
        ({}, InvalidRequest, 400, "could credit any variant"),
        ({"user_id": "u1", "inference_id": "forged"}, InferenceNotFound, 404, "was not served on endpoint ep"),
        ({"user_id": "mallory", "inference_id": "i1"}, InferenceUserMismatch, 403, "not issued to user_id 'mallory'"),
    ],
)
def test_d5b_a_conversion_must_name_an_inference_issued_to_its_user(
    w: World, ids: dict[str, str], error: type[ModelgateError], status: int, message: str
) -> None:
    run(w.service.invoke("ep", b"{}", user_id="u1", inference_id="i1"))
    with pytest.raises(error) as info:
        run(w.service.convert("ep", **ids))
    assert (info.value.status, info.value.code) == (status, error.code)
    assert message in info.value.message
    assert [e.type for e in w.events.events] == ["invocation"]  # nothing counted
    with pytest.raises(InvalidRequest, match="could credit any variant"):
        run(w.service.convert("ep", endpoint_variant="A"))  # the anchor's id-less "manual" conversion


def test_d5b_one_reward_per_inference_unless_the_experiment_allows_more(w: World) -> None:
    served = run(w.service.invoke("ep", b"{}", user_id="u1", inference_id="i1"))
    assert run(w.service.convert("ep", user_id="u1", inference_id="i1")).status == 200
    with pytest.raises(AlreadyConverted) as info:
        run(w.service.convert("ep", user_id="u1", inference_id="i1"))
    assert (info.value.status, info.value.code) == (409, "AlreadyConverted")
    assert "allows 1" in info.value.message
    assert [e.type for e in w.events.events] == ["invocation", "conversion"]
    w.service.register("ep", ExperimentParams(strategy=Strategy.WEIGHTED_SAMPLING, max_rewards_per_inference=2))
    again = run(w.service.invoke("ep", b"{}", user_id="u1", inference_id="i2"))
    for _ in range(2):
        assert run(w.service.convert("ep", user_id="u1", inference_id="i2")).endpoint_variant == again.endpoint_variant
    with pytest.raises(AlreadyConverted):
        run(w.service.convert("ep", user_id="u1", inference_id="i2"))
    assert served.endpoint_variant in {"A", "B"}


def test_d5b_concurrent_repeats_of_one_conversion_count_once() -> None:
    w = make_world(loaded=False)
    w.service.register("ep")
    run(w.service.invoke("ep", b"{}", user_id="u1", inference_id="i1"))
    assert run(w.cache.flush())
    restarted = w.restart(loaded=False)  # the served record is in the store only: every conversion reads it

    async def together() -> list[str]:
        tries = [restarted.service.convert("ep", user_id="u1", inference_id="i1") for _ in range(5)]
        outs = await asyncio.gather(*tries, return_exceptions=True)
        return sorted(type(o).__name__ for o in outs)

    assert run(together()) == ["AlreadyConverted"] * 4 + ["ConversionOutcome"]
    assert [e.type for e in restarted.events.events] == ["conversion"]


def test_d5b_a_reused_inference_id_is_refused(w: World) -> None:
    run(w.service.invoke("ep", b"{}", user_id="u1", inference_id="i1"))
    with pytest.raises(DuplicateInferenceId) as info:
        run(w.service.invoke("ep", b"{}", user_id="u2", inference_id="i1"))
    assert (info.value.status, info.value.code) == (409, "DuplicateInferenceId")
    assert len(w.events.events) == 1


def test_manual_conversion_must_match_the_serving_variant(w: World) -> None:
    run(w.service.invoke("ep", b"{}", user_id="u1", inference_id="i1", endpoint_variant="A"))
    with pytest.raises(VariantMismatch) as info:
        run(w.service.convert("ep", user_id="u1", inference_id="i1", endpoint_variant="B"))
    assert info.value.status == 400
    assert run(w.service.convert("ep", user_id="u1", inference_id="i1", endpoint_variant="A")).status == 202


@pytest.mark.parametrize(
    "reward",
    [1.5, -0.1, math.nan, math.inf, True, "1", pytest.param(10**400, id="huge"), pytest.param(-(10**400), id="-huge")],
)
def test_rewards_outside_zero_one_are_refused(w: World, reward: Any) -> None:
    run(w.service.invoke("ep", b"{}", user_id="u1", inference_id="i1"))
    with pytest.raises(InvalidReward) as info:
        run(w.service.convert("ep", user_id="u1", inference_id="i1", reward=reward))
    assert (info.value.code, info.value.status) == ("InvalidReward", 400)
    assert [e.type for e in w.events.events] == ["invocation"]


def test_a_conversion_is_refused_when_the_store_fails_and_memory_cannot_answer(w: World) -> None:
    run(w.service.invoke("ep", b"{}", user_id="u1", inference_id="i1"))
    restarted = w.restart()  # memory holds the user's assignment again, not the served record
    w.assignments.fail = True
    with pytest.raises(StoreUnavailable):
        run(restarted.service.convert("ep", user_id="u1", inference_id="i1"))
    assert restarted.events.events == []  # nothing counted: the caller may retry


def test_a_conversion_right_after_its_invocation_is_credited_before_any_write(w: World) -> None:
    """The served record is still in the cache's backlog (here the store even refuses every call)."""
    w.assignments.fail = True
    served = run(w.service.invoke("ep", b"{}", user_id="u1"))  # an id it issues: no store read to check it
    assert served.status == 201  # memory holds every assignment (loaded at start): no store read needed
    out = run(w.service.convert("ep", user_id="u1", inference_id=served.inference_id, reward=0.25))
    assert (out.status, out.endpoint_variant, out.reward) == (200, served.endpoint_variant, 0.25)
    assert w.assignments.batches == 0 and w.cache.backlog == 2  # the assignment; the served record, marked
    w.assignments.fail = False
    assert w.stored("u1") is not None  # writes what the cache holds
    stored = w.assignments.served("ep", served.inference_id, w.clock.now())
    assert stored is not None and stored.conversions == 1


def test_a_returning_user_keeps_the_variant_across_a_restart(w: World) -> None:
    first = run(w.service.invoke("ep", b"{}", user_id="u1", inference_id="i1"))
    assert run(w.cache.flush())
    for loaded in (True, False):  # found in memory (loaded at start), or read from the store on a miss
        restarted = w.restart(loaded=loaded)
        again = run(restarted.service.invoke("ep", b"{}", user_id="u1"))
        assert (again.status, again.endpoint_variant) == (200, first.endpoint_variant)
        inference = f"i{loaded}"
        run(restarted.service.invoke("ep", b"{}", user_id="u1", inference_id=inference))
        out = run(restarted.service.convert("ep", user_id="u1", inference_id=inference))
        assert (out.status, out.endpoint_variant) == (200, first.endpoint_variant)


@pytest.mark.parametrize("loaded", [True, False])
@pytest.mark.parametrize("backend", ["memory", "sqlite"])
def test_the_invocation_path_calls_no_store_on_the_event_loop(loaded: bool, backend: str, tmp_path: Path) -> None:
    """Every assignment-store and experiment-store call of invoke and convert is made in a worker thread;
    with memory loaded at start, a returning user costs no store read at all."""
    clock = FakeClock()
    gateway = FakeGateway({"ep": [("A", 0.5), ("B", 0.5)]}, {"ep": TAGS})
    experiments = MemoryExperimentStore()
    experiments.start("ep", ExperimentParams(), (VariantSpec("A", 0.5), VariantSpec("B", 0.5)), clock.now())
    inner: AssignmentStore = MemoryAssignmentStore()
    if backend == "sqlite":
        engine = create_engine(f"sqlite:///{tmp_path / 'ab.db'}")
        create_tables(engine)
        inner = SqlAssignmentStore(engine)
    inner.put(Assignment("back", "ep", "B", clock.now() + DAY))  # assigned before the gateway started
    experiment_calls: list[tuple[str, bool]] = []  # (method, called on the loop's thread)

    async def scenario() -> tuple[ThreadCheckingStore, str]:
        store = ThreadCheckingStore(inner)  # built on the loop's thread: calls on it are recorded as such
        loop_thread = threading.get_ident()
        for name in ("current", "latest", "counts"):
            original = getattr(experiments, name)

            def checked(*args: Any, _name: str = name, _original: Any = original) -> Any:
                experiment_calls.append((_name, threading.get_ident() == loop_thread))
                return _original(*args)

            setattr(experiments, name, checked)
        cache = AssignmentCache(store, clock)
        if loaded:
            await asyncio.to_thread(cache.load, clock.now())  # as the gateway does, while it builds A/B
        service = ExperimentService(
            invoker=gateway, catalog=gateway, experiments=experiments, assignments=cache,
            events=RecordingEventLog(), clock=clock, rng=np.random.default_rng(3),
        )  # fmt: skip
        stop = asyncio.Event()
        writer = asyncio.create_task(cache.run(stop))
        back = await service.invoke("ep", b"{}", user_id="back")
        assert (back.status, back.endpoint_variant) == (200, "B")
        new = await service.invoke("ep", b"{}", user_id="new")
        assert new.status == 201
        assert (await service.convert("ep", user_id="back", inference_id=back.inference_id)).endpoint_variant == "B"
        converted = await service.convert("ep", user_id="new", inference_id=new.inference_id)
        assert converted.endpoint_variant == new.endpoint_variant
        stop.set()
        await writer  # writes what is left
        return store, back.inference_id

    store, inference_id = asyncio.run(scenario())
    assert store.on_loop == []
    assert experiment_calls == [("current", False), ("counts", False)]  # one read of the open experiment
    if loaded:
        assert set(store.calls) == {"recent", "write"}  # memory answered every read
    else:
        assert store.calls.count("get") == 2 and "served" not in store.calls  # each user's first miss
    assert inner.get("new", "ep") is not None and inner.served("ep", inference_id, clock.now()) is not None


def test_concurrent_requests_of_a_new_user_read_the_store_once_and_agree() -> None:
    w = make_world(loaded=False)
    w.service.register("ep")
    reads = 0
    original = w.assignments.get

    def counting(user_id: str, endpoint_name: str) -> Assignment | None:
        nonlocal reads
        reads += 1
        return original(user_id, endpoint_name)

    w.assignments.get = counting  # type: ignore[method-assign]

    async def together() -> list[int]:
        outs = await asyncio.gather(*(w.service.invoke("ep", b"{}", user_id="u1") for _ in range(5)))
        assert len({o.endpoint_variant for o in outs}) == 1
        return sorted(o.status for o in outs)

    assert run(together()) == [200, 200, 200, 200, 201]
    assert reads == 1


# --- stats and promotion ------------------------------------------------------------------------------


def test_stats_for_an_unknown_endpoint(w: World) -> None:
    with pytest.raises(ExperimentNotFound) as info:
        w.service.stats("nope")
    assert (info.value.status, info.value.message) == (404, "Endpoint nope not found")


def test_stats_report_counts_and_verdict(w: World) -> None:
    e = w.experiments.current("ep")
    assert e is not None
    w.experiments.fold("k", {(e.id, "A"): VariantCounts(100, 30, 30.0), (e.id, "B"): VariantCounts(90, 40, 40.0)}, 0)
    summary = w.service.stats("ep")
    assert [(v.name, v.invocations, v.conversions, v.reward_sum) for v in summary.variants] == [
        ("A", 100, 30, 30.0), ("B", 90, 40, 40.0),
    ]  # fmt: skip
    assert str(summary.verdict) == "keep_running"  # no look has been taken yet


def test_promote_without_a_winner_is_refused(w: World) -> None:
    with pytest.raises(NoWinner) as info:
        run(w.service.promote("ep"))
    assert (info.value.code, info.value.status) == ("NoWinner", 409)
    assert w.gateway.weight_updates == []


def test_promote_sends_all_traffic_to_the_variant_and_closes_the_experiment(w: World) -> None:
    with pytest.raises(UnknownVariant):
        run(w.service.promote("ep", "Z"))
    promotion = run(w.service.promote("ep", "B"))
    assert promotion.weights == {"A": 0.0, "B": 1.0}
    assert w.gateway.weight_updates == [("ep", {"A": 0.0, "B": 1.0})]
    assert w.experiments.current("ep") is None
    assert w.service.stats("ep").experiment.id == promotion.experiment_id  # still readable
    out = run(w.service.invoke("ep", b"{}", user_id="u9"))
    assert (out.strategy, out.endpoint_variant) == ("Fallback", "B")


def test_promote_without_a_variant_takes_the_verdicts_winner(w: World) -> None:
    e = w.experiments.current("ep")
    assert e is not None
    w.experiments.fold(
        "k", {(e.id, "A"): VariantCounts(5000, 1000, 1000.0), (e.id, "B"): VariantCounts(5000, 1500, 1500.0)}, 0
    )
    w.experiments.add_looks(e.id, next_looks(design_of(e), e.control, w.experiments.counts(e.id), []))
    assert str(w.service.stats("ep").verdict) == "winner: B"
    assert run(w.service.promote("ep")).variant == "B"
    assert w.gateway.weight_updates == [("ep", {"A": 0.0, "B": 1.0})]


def test_the_open_experiment_is_reread_at_most_every_cache_period_in_the_background(w: World) -> None:
    reads = 0
    original = w.experiments.current

    def counting(endpoint_name: str) -> Any:
        nonlocal reads
        reads += 1
        return original(endpoint_name)

    w.experiments.current = counting  # type: ignore[method-assign]

    async def scenario() -> None:
        for i in range(3):
            await w.service.invoke("ep", b"{}", user_id=f"u{i}")
        assert reads == 1
        w.clock.advance(1.0)
        # Aged: answered from memory at once, while one read refreshes it in a worker thread.
        outs = await asyncio.gather(*(w.service.invoke("ep", b"{}", user_id=f"v{i}") for i in range(3)))
        assert all(o.status == 201 for o in outs)
        for _ in range(500):
            if reads == 2:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.01)
        assert reads == 2
        await w.service.invoke("ep", b"{}", user_id="u9")
        assert reads == 2  # refreshed: fresh again
        w.gateway.endpoints["ep"] = [("A", 1.0)]
        w.service.register("ep")  # a registration through this service is seen at once
        assert (await w.service.invoke("ep", b"{}", user_id="new")).target_variant == "A"

    run(scenario())


def test_a_failed_refresh_of_the_experiment_leads_to_fallback_on_the_next_request(w: World) -> None:
    async def scenario() -> list[str]:
        strategies = [(await w.service.invoke("ep", b"{}", user_id="u1")).strategy]
        w.experiments.fail = True
        w.clock.advance(1.0)
        strategies.append((await w.service.invoke("ep", b"{}", user_id="u1")).strategy)  # the aged entry
        for _ in range(500):
            await asyncio.sleep(0.01)  # the background refresh fails and drops the entry
            out = await w.service.invoke("ep", b"{}", user_id="u1")
            if out.strategy == "Fallback":
                break
        strategies.append(out.strategy)
        w.experiments.fail = False
        strategies.append((await w.service.invoke("ep", b"{}", user_id="u1")).strategy)
        return strategies

    assert run(scenario()) == ["WeightedSampling", "WeightedSampling", "Fallback", "WeightedSampling"]


def test_d7_restore_rebuilds_what_the_write_behind_lost_in_a_kill(w: World) -> None:
    """Nothing reached the store (the kill came before the write-behind); the journal's events bring back
    the assignments, the served records and the conversion marks."""
    first = run(w.service.invoke("ep", b"{}", user_id="u1"))
    second = run(w.service.invoke("ep", b"{}", user_id="u2"))
    w.gateway.failing = {"A", "B"}
    with pytest.raises(ModelError):
        run(w.service.invoke("ep", b"{}", user_id="u3", inference_id="i3"))
    w.gateway.failing = set()
    run(w.service.convert("ep", user_id="u1", inference_id=first.inference_id))
    assert w.assignments.batches == 0  # killed: the cache's backlog is gone with the process
    restarted = w.restart()
    assert restarted.service.restore(w.events.events) == 3 + 3  # served records; assignments of u1, u2, u3
    with pytest.raises(AlreadyConverted):
        run(restarted.service.convert("ep", user_id="u1", inference_id=first.inference_id))
    with pytest.raises(InferenceFailed):
        run(restarted.service.convert("ep", user_id="u3", inference_id="i3"))
    assert run(restarted.service.convert("ep", user_id="u2", inference_id=second.inference_id)).status == 200
    again = run(restarted.service.invoke("ep", b"{}", user_id="u2", inference_id="i4"))
    assert (again.status, again.endpoint_variant) == (200, second.endpoint_variant)
    assert run(restarted.cache.flush())
    assert w.restart().service.restore(w.events.events) == 0  # a second start: nothing left to restore
