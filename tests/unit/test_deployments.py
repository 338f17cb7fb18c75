"""UpdateEndpoint's pure parts: the checks and the stored deployment, the fleet sizes each action leaves,
and the route and DescribeEndpoint view during a deployment."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from modelgate.controllers.fleets import Fleet, FleetSpec, RunningInstance
from modelgate.controllers.rollout_views import describe_deployment, variant_routes
from modelgate.domain.deployments import Deployment
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
from modelgate.rollout.config import AutoRollbackConfig
from modelgate.rollout.contract import Action, FleetRole, ScaleFleet, SetTrafficShare, StartGreen, StopBlue, StopGreen
from modelgate.rollout.machine import start
from modelgate.rollout.wire import parse_deployment_config
from modelgate.routing.table import Instance
from modelgate.runtime.images import LaunchSpec
from modelgate.services.updates import UpdateRequest, prepare_update

V = "AllTraffic"
T0 = 1_700_000_000.0
CANARY = parse_deployment_config(
    {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": {
                "Type": "CANARY",
                "CanarySize": {"Type": "INSTANCE_COUNT", "Value": 1},
                "WaitIntervalInSeconds": 60,
            }
        },
        "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": "errors"}]},
    }
)


def model(name: str) -> Model:
    return Model(name=name, arn=f"arn:{name}", containers=(ContainerDefinition(image="command:/bin/true"),),
                 creation_time=T0)


def config(name: str, count: int, variant: str = V, weight: float = 1.0) -> EndpointConfig:
    pv = ProductionVariant(variant_name=variant, model_name=name, initial_instance_count=count,
                           instance_type="ml.m5.large", initial_variant_weight=weight)
    return EndpointConfig(name=name, arn=f"arn:{name}", production_variants=(pv,), creation_time=T0)


def endpoint(count: int = 3, status: EndpointStatus = EndpointStatus.IN_SERVICE, weight: float = 1.0) -> Endpoint:
    return Endpoint(
        name="ep", arn="arn:ep", config_name="v1", status=status, creation_time=T0, last_modified_time=T0,
        variants=(VariantState(variant_name=V, desired_weight=weight, desired_instance_count=count,
                               current_weight=weight, current_instance_count=count),),
        config=config("v1", count, weight=weight), models=(model("v1"),),
    )


def prepare(ep: Endpoint, new: EndpointConfig, req: UpdateRequest, alarms: tuple[str, ...] = ("errors",)) -> Any:
    return prepare_update(ep, new, [model(new.name)], req, T0 + 5, "d1", lambda a: a in alarms)


# --- prepare_update -------------------------------------------------------------------------------------------


def test_an_accepted_update_stores_the_endpoint_updating_and_the_deployment() -> None:
    ep, dep = prepare(endpoint(), config("v2", 3), UpdateRequest("v2", CANARY))
    assert ep.status == EndpointStatus.UPDATING and ep.deployment_config == CANARY and ep.config_name == "v1"
    assert dep.config.name == "v2" and dep.state is None and dep.started_at == T0 + 5
    assert dep.blue_targets == {V: 3} and dep.green_targets == {}
    assert [(v.variant_name, v.desired_instance_count, v.desired_weight) for v in dep.variants] == [(V, 3, 1.0)]


@pytest.mark.parametrize(
    ("retain", "exclude", "expected"),
    [
        (False, (), (2, 1.0)),  # the new config's InitialInstanceCount and InitialVariantWeight
        (True, (), (4, 0.5)),  # the live desired ones
        (True, ("DesiredInstanceCount",), (2, 0.5)),
        (True, ("DesiredWeight", "DataCaptureConfig"), (4, 1.0)),
    ],
)
def test_retained_variant_properties(retain: bool, exclude: tuple[str, ...], expected: tuple[int, float]) -> None:
    req = UpdateRequest("v2", None, retain_all_variant_properties=retain, exclude_retained=exclude)
    _, dep = prepare(endpoint(4, weight=0.5), config("v2", 2), req)
    (v,) = dep.variants
    assert (v.desired_instance_count, v.desired_weight) == expected


def test_retain_deployment_config_reuses_the_stored_one_and_an_explicit_one_wins() -> None:
    stored = endpoint().model_copy(update={"deployment_config": CANARY})
    ep, dep = prepare(stored, config("v2", 3), UpdateRequest("v2", None, retain_deployment_config=True))
    assert dep.deployment_config == CANARY == ep.deployment_config
    _, dep = prepare(stored, config("v2", 3), UpdateRequest("v2", None, retain_deployment_config=False))
    assert dep.deployment_config is None
    other = parse_deployment_config(
        {"BlueGreenUpdatePolicy": {"TrafficRoutingConfiguration": {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 0}}}
    )
    _, dep = prepare(stored, config("v2", 3), UpdateRequest("v2", other, retain_deployment_config=True))
    assert dep.deployment_config == other


GHOST = CANARY.model_copy(update={"auto_rollback_configuration": AutoRollbackConfig(alarms=("ghost",))})
RETAIN_ALL = {"retain_all_variant_properties": True}


@pytest.mark.parametrize(
    ("ep", "new", "req", "message"),
    [
        (endpoint(status=EndpointStatus.UPDATING), config("v2", 3), UpdateRequest("v2"), "Cannot update in-progress"),
        (endpoint(status=EndpointStatus.FAILED), config("v2", 3), UpdateRequest("v2"), "only DeleteEndpoint"),
        (endpoint(), config("v2", 3), UpdateRequest("v2", None, True), "no deployment configuration to retain"),
        (endpoint(), config("v2", 3), UpdateRequest("v2", GHOST), "The alarm ghost named in AutoRollbackConfiguration"),
        (endpoint(), config("v2", 3), UpdateRequest("v2", exclude_retained=("DesiredWeight",)), "only when Retain"),
        (endpoint(), config("v2", 3), UpdateRequest("v2", exclude_retained=("Colour",), **RETAIN_ALL), "Unknown"),
        (endpoint(), config("v2", 3, variant="Other"), UpdateRequest("v2", CANARY), "keep the production variant"),
        (endpoint(), config("v2", 1), UpdateRequest("v2", CANARY), "needs at least 2 instances"),
        (endpoint(), config("v2", 3, weight=0.0), UpdateRequest("v2"), "at least one needs a weight above zero"),
    ],
)
def test_refused_updates(ep: Endpoint, new: EndpointConfig, req: UpdateRequest, message: str) -> None:
    with pytest.raises(ValidationException, match=message):
        prepare(ep, new, req)


def test_an_update_without_a_deployment_config_may_rename_variants() -> None:
    _, dep = prepare(endpoint(), config("v2", 1, variant="Other"), UpdateRequest("v2"))
    assert [v.variant_name for v in dep.variants] == ["Other"]


# --- the fleet sizes each action leaves ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("actions", "blue", "green"),
    [
        ([], {V: 3}, {}),
        ([StartGreen(instance_counts={V: 3})], {V: 3}, {V: 3}),
        ([StartGreen(instance_counts={V: 3}), SetTrafficShare(green_share={V: 1.0}), StopBlue()], {V: 0}, {V: 3}),
        ([StartGreen(instance_counts={V: 3}), StopGreen()], {V: 3}, {V: 0}),
        ([ScaleFleet(fleet=FleetRole.GREEN, instance_counts={V: 1})], {V: 3}, {V: 1}),
        ([ScaleFleet(fleet=FleetRole.BLUE, instance_counts={V: 2})], {V: 2}, {}),
    ],
)
def test_with_actions_records_the_fleet_sizes(
    actions: list[Action], blue: dict[str, int], green: dict[str, int]
) -> None:
    _, dep = prepare(endpoint(), config("v2", 3), UpdateRequest("v2", CANARY))
    state, _ = start(CANARY, {V: 3}, {V: 3}, T0)
    stored = Deployment.model_validate_json(dep.with_actions(state, actions).model_dump_json())
    assert (stored.blue_targets, stored.green_targets, stored.state) == (blue, green, state)


# --- routes and DescribeEndpoint during a deployment --------------------------------------------------------------


def fleet(fleet_id: str, healthy: int) -> Fleet:
    pv = config("x", healthy).production_variants[0]
    spec = FleetSpec("ep", pv, model("x"), LaunchSpec("command", ("true",)), Path("/"), 1.0)
    f = Fleet(id=fleet_id, spec=spec, desired=healthy)
    for i in range(healthy):
        route = Instance(f"i-{fleet_id}-{i}", "ep", V, fleet_id, 9000 + i, 1)
        f.instances.append(RunningInstance(route, None, Path("/"), None))  # type: ignore[arg-type]
    return f


def deployment_at_canary() -> tuple[Endpoint, Deployment]:
    ep, dep = prepare(endpoint(), config("v2", 3), UpdateRequest("v2", CANARY))
    state, _ = start(CANARY, {V: 3}, {V: 3}, T0)
    return ep, dep.with_actions(state, [])


def test_route_splits_each_variant_by_share() -> None:
    ep, dep = deployment_at_canary()
    blue, green = {V: fleet("blue", 3)}, {V: fleet("green", 3)}
    for share, fleets, shares in [
        (0.0, ["blue"], [1.0]),
        (1 / 3, ["blue", "green"], [2 / 3, 1 / 3]),
        (1.0, ["green"], [1.0]),
    ]:
        (route,) = variant_routes(ep, blue, dep, green, {V: share})
        assert [f.fleet_id for f in route.fleets] == fleets
        assert list(route.fleet_shares) == pytest.approx(shares)


def test_route_switches_to_green_variants_once_all_traffic_is_there() -> None:
    ep, dep = prepare(endpoint(), config("v2", 1, variant="Other", weight=2.0), UpdateRequest("v2"))
    blue, green = {V: fleet("blue", 3)}, {"Other": fleet("green", 1)}
    assert [r.name for r in variant_routes(ep, blue, dep, green, {"Other": 0.0})] == [V]
    (route,) = variant_routes(ep, blue, dep, green, {"Other": 1.0})
    assert (route.name, route.weight, route.fleets[0].fleet_id) == ("Other", 2.0, "green")


def test_describe_shows_what_serves() -> None:
    ep, dep = deployment_at_canary()
    view = describe_deployment(ep, dep, {V: fleet("blue", 3)}, {V: fleet("green", 3)}, {V: 1 / 3})
    assert view.endpoint_status == EndpointStatus.UPDATING and view.failure_reason is None
    (blue,) = view.serving
    assert (blue.current_weight, blue.current_instance_count, blue.desired_instance_count) == (
        pytest.approx(2 / 3), 2, 3)
    assert view.pending is not None and view.pending.config.name == "v2"
    (green,) = view.pending.variants
    assert (green.current_weight, green.current_instance_count, green.desired_instance_count) == (
        pytest.approx(1 / 3), 1, 3)
    assert [s.status.value for s in green.statuses] == ["Creating"]
