"""UpdateEndpoint on an endpoint in UpdateRollbackFailed: accepted (UpdateEndpointWeightsAndCapacities is not),
consolidated onto the old instances that serve, then an ordinary deployment from there."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from modelgate.domain.resources import (
    ContainerDefinition,
    Endpoint,
    EndpointConfig,
    EndpointStatus,
    Model,
    ProductionVariant,
    VariantState,
)
from modelgate.errors import ValidationException
from modelgate.rollout.contract import Outcome
from modelgate.rollout.machine import (
    Phase,
    alarm_reason,
    consolidate,
    not_consolidated_reason,
    start,
)
from modelgate.services.updates import UpdateRequest, check_deployable, check_updatable, prepare_update

from .states import T0, V, rolling
from .world import Fleet, Run, World

# --- the consolidation, as a table ----------------------------------------------------------------------

# (case, old instances serving per variant, blue the new deployment starts from, variants it cannot start in)
CONSOLIDATIONS: list[tuple[str, dict[str, int], dict[str, int], tuple[str, ...]]] = [
    ("part of the old fleet serves", {V: 2}, {V: 2}, ()),
    ("the whole old fleet serves", {V: 4}, {V: 4}, ()),
    ("several variants", {"a": 1, "b": 3}, {"a": 1, "b": 3}, ()),
    ("a variant without any old instance", {"a": 0, "b": 2}, {"a": 0, "b": 2}, ("a",)),
    ("no old instance at all", {V: 0}, {V: 0}, (V,)),
]


@pytest.mark.parametrize(("case", "serving", "blue", "missing"), CONSOLIDATIONS, ids=[c[0] for c in CONSOLIDATIONS])
def test_consolidate(case: str, serving: dict[str, int], blue: dict[str, int], missing: tuple[str, ...]) -> None:
    got = consolidate(serving)
    assert (got.blue, got.missing, got.possible) == (blue, missing, not missing)


def test_a_consolidation_that_cannot_start_says_why() -> None:
    assert not_consolidated_reason("v1", ["a", "b"]) == (
        "The update was not started: no instance of endpoint config v1 serves production variant(s) a, b, so "
        "the instances of the update that failed to roll back cannot be retired. The endpoint still serves a "
        "mix of the old and new endpoint configurations; delete it and create it again."
    )


# --- which calls are accepted -------------------------------------------------------------------------------


def _config(name: str, count: int) -> EndpointConfig:
    pv = ProductionVariant(variant_name=V, model_name=name, initial_instance_count=count, instance_type="ml.m5.large")
    return EndpointConfig(name=name, arn=f"arn:{name}", production_variants=(pv,), creation_time=T0)


def _endpoint(status: EndpointStatus, count: int = 4) -> Endpoint:
    model = Model(
        name="v1", arn="arn:v1", containers=(ContainerDefinition(image="command:/bin/true"),), creation_time=T0
    )
    return Endpoint(
        name="ep",
        arn="arn:ep",
        config_name="v1",
        status=status,
        creation_time=T0,
        last_modified_time=T0,
        variants=(
            VariantState(
                variant_name=V,
                desired_weight=1.0,
                desired_instance_count=count,
                current_weight=1.0,
                current_instance_count=count,
            ),
        ),
        config=_config("v1", count),
        models=(model,),
        deployment_config=rolling(),
        failure_reason=None if status is EndpointStatus.IN_SERVICE else "The rollback failed: no capacity.",
    )


IN_PROGRESS = "Cannot update in-progress endpoint"
# (status, UpdateEndpoint's refusal, UpdateEndpointWeightsAndCapacities' refusal; None: accepted)
CHECKS: list[tuple[EndpointStatus, str | None, str | None]] = [
    (EndpointStatus.IN_SERVICE, None, None),
    (EndpointStatus.UPDATE_ROLLBACK_FAILED, None, "in status UpdateRollbackFailed: it serves a mix"),
    (EndpointStatus.UPDATING, IN_PROGRESS, IN_PROGRESS),
    (EndpointStatus.ROLLING_BACK, IN_PROGRESS, IN_PROGRESS),
    (EndpointStatus.CREATING, IN_PROGRESS, IN_PROGRESS),
    (EndpointStatus.FAILED, "only DeleteEndpoint", "only DeleteEndpoint"),
]


@pytest.mark.parametrize(("status", "update", "weights"), CHECKS, ids=[c[0].value for c in CHECKS])
def test_which_status_accepts_which_update(status: EndpointStatus, update: str | None, weights: str | None) -> None:
    ep = _endpoint(status)
    checks: list[tuple[Callable[[Endpoint], None], str | None]] = [
        (check_deployable, update),
        (check_updatable, weights),
    ]
    for check, refusal in checks:
        if refusal is None:
            check(ep)
        else:
            with pytest.raises(ValidationException, match=refusal):
                check(ep)


def test_update_endpoint_on_update_rollback_failed_is_prepared_like_any_other() -> None:
    req = UpdateRequest("v3", retain_deployment_config=True)
    ep, dep = prepare_update(
        _endpoint(EndpointStatus.UPDATE_ROLLBACK_FAILED), _config("v3", 4), [], req, T0 + 9, "d2", lambda _: True
    )
    assert (ep.status, ep.failure_reason, ep.config_name) == (EndpointStatus.UPDATING, None, "v1")
    assert dep.deployment_config == rolling() and dep.state is None
    assert dep.blue_targets == {V: 4}  # the controller replaces it with the old instances that serve


# --- whole runs against the fake world --------------------------------------------------------------------------


def _rollback_fails() -> Run:
    """A rolling update of 4 instances (batches of 2) whose alarm fires in the second bake, when two old
    instances are left; the rollback cannot start old instances again."""
    world = World.serving({V: 4})
    state, actions = start(rolling(), {V: 4}, {V: 4}, T0)
    world.perform(actions)
    r = Run(world=world, stored=state.to_json(), now=T0)
    while (r.state.phase, r.state.step) != (Phase.BAKING, 1):
        r.step()
    r.world.alarms.add("errors")
    r.world.blue.failure = "insufficient capacity"
    assert r.until_done().phase is Phase.ROLLBACK_FAILED
    return r


def _from_consolidation(failed: Run) -> Run:
    """UpdateEndpoint after the failed rollback: consolidate, then a new rolling update to 4 new instances."""
    old = failed.world.blue
    plan = consolidate({V: old.healthy.get(V, 0)})
    assert plan.possible
    # the old fleet keeps the instances that serve (its failed start given up), the failed update's stop
    world = World(blue=Fleet(desired=dict(plan.blue), healthy=dict(plan.blue)), share={V: 0.0})
    state, actions = start(rolling(), plan.blue, {V: 4}, failed.now)
    world.perform(actions)
    return Run(world=world, stored=state.to_json(), now=failed.now)


def test_a_failed_rollback_leaves_a_mix_to_consolidate() -> None:
    failed = _rollback_fails()
    w = failed.world
    assert (w.blue.healthy[V], w.green.healthy[V], w.share[V]) == (2, 4, 1.0)
    assert w.finished[-1].outcome is Outcome.ROLLBACK_FAILED
    assert consolidate({V: w.blue.healthy[V]}).blue == {V: 2}


def test_the_new_deployment_from_the_consolidated_old_instances_completes() -> None:
    r = _from_consolidation(_rollback_fails())
    assert r.until_done().phase is Phase.DONE
    assert (r.world.blue.desired[V], r.world.green.healthy[V], r.world.share[V]) == (0, 4, 1.0)
    assert [f.outcome for f in r.world.finished] == [Outcome.SUCCEEDED]


def test_its_rollback_returns_to_the_consolidated_old_instances_without_starting_more() -> None:
    r = _from_consolidation(_rollback_fails())
    while r.state.phase is not Phase.BAKING:
        r.step()
    r.world.alarms.add("latency")
    most = 0
    while r.state.phase is not Phase.ROLLED_BACK:
        r.step()
        most = max(most, r.world.blue.desired[V])
    assert r.state.reason == alarm_reason(["latency"])
    assert most == 2  # never more old instances than those that served
    assert (r.world.blue.healthy[V], r.world.green.healthy.get(V, 0), r.world.share[V]) == (2, 0, 0.0)
