"""DeploymentConfig: wire names and limits against botocore, parsing errors, validation against variants."""

from __future__ import annotations

from typing import Any

import botocore.session
import pytest
from botocore.model import ServiceModel, StructureShape
from hypothesis import given
from hypothesis import strategies as st

from modelgate.errors import ValidationException
from modelgate.rollout import config as cfg
from modelgate.rollout.config import DeploymentConfig, validate_deployment
from modelgate.rollout.plan import plan_deployment
from modelgate.rollout.wire import parse_deployment_config, to_wire


@pytest.fixture(scope="module")
def model() -> ServiceModel:
    return botocore.session.get_session().get_service_model("sagemaker")


def shape(model: ServiceModel, name: str) -> StructureShape:
    s = model.shape_for(name)
    assert isinstance(s, StructureShape)
    return s


def canary(value: int = 1, kind: str = "INSTANCE_COUNT", wait: int = 300, **extra: Any) -> dict[str, Any]:
    return {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": {
                "Type": "CANARY",
                "CanarySize": {"Type": kind, "Value": value},
                "WaitIntervalInSeconds": wait,
            },
            "TerminationWaitInSeconds": 120,
            "MaximumExecutionTimeoutInSeconds": 1800,
            **extra,
        },
        "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": "errors"}, {"AlarmName": "latency"}]},
    }


def linear(value: int, kind: str = "CAPACITY_PERCENT", wait: int = 180, timeout: int = 1800) -> dict[str, Any]:
    return {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": {
                "Type": "LINEAR",
                "LinearStepSize": {"Type": kind, "Value": value},
                "WaitIntervalInSeconds": wait,
            },
            "TerminationWaitInSeconds": 120,
            "MaximumExecutionTimeoutInSeconds": timeout,
        }
    }


def rolling(value: int, kind: str = "INSTANCE_COUNT", wait: int = 60, **extra: Any) -> dict[str, Any]:
    return {
        "RollingUpdatePolicy": {
            "MaximumBatchSize": {"Type": kind, "Value": value},
            "WaitIntervalInSeconds": wait,
            **extra,
        }
    }


ALL_AT_ONCE = {
    "BlueGreenUpdatePolicy": {"TrafficRoutingConfiguration": {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 0}}
}


# --- names and limits against botocore's model ------------------------------------------------------


def test_limits_match_botocore(model: ServiceModel) -> None:
    def bounds(struct: str, member: str) -> tuple[int, int]:
        meta = shape(model, struct).members[member].metadata
        return meta["min"], meta["max"]

    assert bounds("TrafficRoutingConfig", "WaitIntervalInSeconds") == cfg.WAIT_INTERVAL_RANGE
    assert bounds("RollingUpdatePolicy", "WaitIntervalInSeconds") == cfg.WAIT_INTERVAL_RANGE
    assert bounds("BlueGreenUpdatePolicy", "TerminationWaitInSeconds") == cfg.TERMINATION_WAIT_RANGE
    assert bounds("BlueGreenUpdatePolicy", "MaximumExecutionTimeoutInSeconds") == cfg.MAX_EXECUTION_RANGE
    assert bounds("RollingUpdatePolicy", "MaximumExecutionTimeoutInSeconds") == cfg.MAX_EXECUTION_RANGE
    assert bounds("AutoRollbackConfig", "Alarms") == cfg.ALARM_COUNT_RANGE
    assert bounds("Alarm", "AlarmName") == cfg.ALARM_NAME_LENGTH
    assert shape(model, "CapacitySize").members["Value"].metadata["min"] == cfg.CAPACITY_VALUE_MIN
    assert shape(model, "CapacitySize").members["Type"].metadata["enum"] == [m.value for m in cfg.CapacitySizeType]
    assert shape(model, "TrafficRoutingConfig").members["Type"].metadata["enum"] == [
        m.value for m in cfg.TrafficRoutingType
    ]


def test_percent_limits_match_botocore_documentation(model: ServiceModel) -> None:
    canary_doc = shape(model, "TrafficRoutingConfig").members["CanarySize"].documentation
    linear_doc = shape(model, "TrafficRoutingConfig").members["LinearStepSize"].documentation
    batch_doc = shape(model, "RollingUpdatePolicy").members["MaximumBatchSize"].documentation
    assert f"{cfg.CANARY_PERCENT_MAX}%" in canary_doc
    assert "{}-{}%".format(*cfg.LINEAR_PERCENT_RANGE) in linear_doc
    assert "{}% to {}%".format(*cfg.ROLLING_PERCENT_RANGE) in batch_doc


def _all_members(model: ServiceModel, name: str) -> dict[str, Any]:
    """A wire value that sets every member of a structure, recursively, with valid values."""
    s = model.shape_for(name)
    if s.type_name == "structure":
        assert isinstance(s, StructureShape)
        return {k: _value(model, k, v.name) for k, v in s.members.items()}
    raise AssertionError(name)


def _value(model: ServiceModel, member: str, shape_name: str) -> Any:
    s = model.shape_for(shape_name)
    if s.type_name == "structure":
        return _all_members(model, shape_name)
    if s.type_name == "list":
        return [_value(model, member, s.member.name)]
    enum = s.metadata.get("enum")
    if enum:
        return "CANARY" if "CANARY" in enum else enum[0]
    if s.type_name == "integer":
        return s.metadata.get("min", 1)
    return "an-alarm"


def test_every_botocore_member_parses_and_renders_back(model: ServiceModel) -> None:
    for policy in ("BlueGreenUpdatePolicy", "RollingUpdatePolicy"):
        wire = _all_members(model, "DeploymentConfig")
        wire.pop("RollingUpdatePolicy" if policy == "BlueGreenUpdatePolicy" else "BlueGreenUpdatePolicy")
        routing = wire.get("BlueGreenUpdatePolicy", {}).get("TrafficRoutingConfiguration")
        if routing is not None:
            routing.pop("LinearStepSize")  # CANARY takes only CanarySize
        assert to_wire(parse_deployment_config(wire)) == wire


def test_unknown_member_is_refused() -> None:
    with pytest.raises(ValidationException, match="Unknown member 'Foo'"):
        parse_deployment_config({**canary(), "Foo": 1})


# --- parsing ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "wire",
    [
        canary(),
        canary(30, "CAPACITY_PERCENT"),
        linear(33),
        rolling(2, RollbackMaximumBatchSize={"Type": "CAPACITY_PERCENT", "Value": 50}),
        ALL_AT_ONCE,
        {"AutoRollbackConfiguration": {"Alarms": [{"AlarmName": "a"}]}},
        {},
    ],
)
def test_wire_round_trip(wire: dict[str, Any]) -> None:
    parsed = parse_deployment_config(wire)
    assert to_wire(parsed) == wire
    assert parse_deployment_config(to_wire(parsed)) == parsed
    assert DeploymentConfig.model_validate_json(parsed.model_dump_json()) == parsed


def test_parsed_fields() -> None:
    c = parse_deployment_config(canary(2, wait=300))
    bg = c.blue_green_update_policy
    assert bg is not None
    assert bg.traffic_routing_configuration.type is cfg.TrafficRoutingType.CANARY
    assert bg.traffic_routing_configuration.canary_size == cfg.CapacitySize(
        type=cfg.CapacitySizeType.INSTANCE_COUNT, value=2
    )
    assert (bg.termination_wait_s, bg.max_execution_s) == (120, 1800)
    assert c.alarms == ("errors", "latency")


def test_defaults_when_omitted() -> None:
    c = parse_deployment_config(ALL_AT_ONCE)
    policy = c.blue_green()
    assert (policy.termination_wait_s, policy.max_execution_s) == (0, cfg.DEFAULT_MAX_EXECUTION_SECONDS)
    assert DeploymentConfig().blue_green().traffic_routing_configuration.type is cfg.TrafficRoutingType.ALL_AT_ONCE
    assert "TerminationWaitInSeconds" not in to_wire(c)["BlueGreenUpdatePolicy"]  # type: ignore[operator]


def _without(wire: dict[str, Any], *path: str) -> dict[str, Any]:
    import copy

    out = copy.deepcopy(wire)
    node = out
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]
    return out


def _with(wire: dict[str, Any], value: Any, *path: str) -> dict[str, Any]:
    import copy

    out = copy.deepcopy(wire)
    node = out
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return out


TRC = ("BlueGreenUpdatePolicy", "TrafficRoutingConfiguration")
PARSE_ERRORS: list[tuple[str, dict[str, Any], str]] = [
    ("both policies", {**canary(), **rolling(1)}, "BlueGreenUpdatePolicy or RollingUpdatePolicy, not both"),
    (
        "wait missing",
        _without(canary(), *TRC, "WaitIntervalInSeconds"),
        "Value null at 'deploymentConfig.blueGreenUpdatePolicy.trafficRoutingConfiguration.waitIntervalInSeconds'",
    ),
    ("type missing", _without(canary(), *TRC, "Type"), "trafficRoutingConfiguration.type' failed"),
    (
        "routing missing",
        _without(canary(), *TRC),
        "Value null at 'deploymentConfig.blueGreenUpdatePolicy.traffic",
    ),
    ("wait too long", canary(wait=3601), "Member must have value less than or equal to 3600"),
    ("wait negative", canary(wait=-1), "Member must have value greater than or equal to 0"),
    ("wait not an integer", canary(wait="5"), "Member must be an integer"),  # type: ignore[arg-type]
    ("wait is a bool", _with(canary(), True, *TRC, "WaitIntervalInSeconds"), "Member must be an integer"),
    (
        "timeout too short",
        _with(canary(), 599, "BlueGreenUpdatePolicy", "MaximumExecutionTimeoutInSeconds"),
        "maximumExecutionTimeoutInSeconds' failed to satisfy constraint: "
        "Member must have value greater than or equal to 600",
    ),
    (
        "timeout too long",
        _with(canary(), 28801, "BlueGreenUpdatePolicy", "MaximumExecutionTimeoutInSeconds"),
        "less than or equal to 28800",
    ),
    (
        "termination too long",
        _with(canary(), 3601, "BlueGreenUpdatePolicy", "TerminationWaitInSeconds"),
        "terminationWaitInSeconds' failed to satisfy constraint: Member must have value less than or equal to 3600",
    ),
    (
        "bad routing type",
        _with(canary(), "BLUE", *TRC, "Type"),
        "Member must satisfy enum value set: [ALL_AT_ONCE, CANARY, LINEAR]",
    ),
    (
        "bad capacity type",
        canary(1, "INSTANCES"),
        "Member must satisfy enum value set: [INSTANCE_COUNT, CAPACITY_PERCENT]",
    ),
    (
        "capacity zero",
        canary(0),
        "canarySize.value' failed to satisfy constraint: Member must have value greater",
    ),
    ("canary without size", _without(canary(), *TRC, "CanarySize"), "Type CANARY requires CanarySize"),
    (
        "linear without size",
        _without(linear(20), *TRC, "LinearStepSize"),
        "Type LINEAR requires LinearStepSize",
    ),
    (
        "size with wrong type",
        _with(linear(20), {"Type": "INSTANCE_COUNT", "Value": 1}, *TRC, "CanarySize"),
        "CanarySize is only valid with Type CANARY, not LINEAR",
    ),
    (
        "linear size on canary",
        _with(canary(), {"Type": "INSTANCE_COUNT", "Value": 1}, *TRC, "LinearStepSize"),
        "LinearStepSize is only valid with Type LINEAR, not CANARY",
    ),
    (
        "rolling batch missing",
        _without(rolling(1), "RollingUpdatePolicy", "MaximumBatchSize"),
        "Value null at 'deploymentConfig.rollingUpdatePolicy.maximumBatchSize'",
    ),
    (
        "no alarms",
        {"AutoRollbackConfiguration": {"Alarms": []}},
        "Member must have length greater than or equal to 1",
    ),
    (
        "eleven alarms",
        {"AutoRollbackConfiguration": {"Alarms": [{"AlarmName": f"a{i}"} for i in range(11)]}},
        "Member must have length less than or equal to 10",
    ),
    ("unnamed alarm", {"AutoRollbackConfiguration": {"Alarms": [{}]}}, "must have a non-blank AlarmName"),
    ("blank alarm", {"AutoRollbackConfiguration": {"Alarms": [{"AlarmName": "  "}]}}, "non-blank AlarmName"),
    (
        "long alarm",
        {"AutoRollbackConfiguration": {"Alarms": [{"AlarmName": "x" * 256}]}},
        "Member must have length less than or equal to 255",
    ),
    ("policy not a structure", {"RollingUpdatePolicy": [1]}, "Member must be a structure"),
]


@pytest.mark.parametrize(("case", "wire", "message"), PARSE_ERRORS, ids=[c[0] for c in PARSE_ERRORS])
def test_parse_errors(case: str, wire: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationException) as info:
        parse_deployment_config(wire)
    assert message in info.value.message
    assert info.value.message.startswith("1 validation error detected: ") or "errors detected" in info.value.message
    assert (info.value.code, info.value.status) == ("ValidationException", 400)


def test_parse_reports_every_problem() -> None:
    wire = _with(canary(wait=4000), 10, "BlueGreenUpdatePolicy", "MaximumExecutionTimeoutInSeconds")
    with pytest.raises(ValidationException, match=r"^2 validation errors detected: ") as info:
        parse_deployment_config(wire)
    assert "less than or equal to 3600" in info.value.message
    assert "greater than or equal to 600" in info.value.message


@given(
    kind=st.sampled_from(["ALL_AT_ONCE", "CANARY", "LINEAR"]),
    wait=st.integers(0, 3600),
    size=st.fixed_dictionaries(
        {"Type": st.sampled_from(["INSTANCE_COUNT", "CAPACITY_PERCENT"]), "Value": st.integers(1, 100)}
    ),
    termination=st.none() | st.integers(0, 3600),
    timeout=st.none() | st.integers(600, 28800),
    alarms=st.none() | st.lists(st.text(min_size=1, max_size=20).filter(str.strip), min_size=1, max_size=10),
)
def test_round_trip_property(
    kind: str,
    wait: int,
    size: dict[str, Any],
    termination: int | None,
    timeout: int | None,
    alarms: list[str] | None,
) -> None:
    routing: dict[str, Any] = {"Type": kind, "WaitIntervalInSeconds": wait}
    if kind == "CANARY":
        routing["CanarySize"] = size
    if kind == "LINEAR":
        routing["LinearStepSize"] = size
    policy: dict[str, Any] = {"TrafficRoutingConfiguration": routing}
    if termination is not None:
        policy["TerminationWaitInSeconds"] = termination
    if timeout is not None:
        policy["MaximumExecutionTimeoutInSeconds"] = timeout
    wire: dict[str, Any] = {"BlueGreenUpdatePolicy": policy}
    if alarms is not None:
        wire["AutoRollbackConfiguration"] = {"Alarms": [{"AlarmName": a} for a in alarms]}
    assert to_wire(parse_deployment_config(wire)) == wire


# --- validation against the variants ----------------------------------------------------------------

ONE = {"AllTraffic": 1}
TWO = {"AllTraffic": 2}
THREE = {"AllTraffic": 3}
FOUR = {"AllTraffic": 4}
TEN = {"AllTraffic": 10}
AB = {"A": 4, "B": 2}

VALID: list[tuple[str, dict[str, Any] | None, dict[str, int], dict[str, int]]] = [
    ("no config may rename variants", None, {"A": 1}, {"B": 3}),
    ("all at once on one instance", ALL_AT_ONCE, ONE, ONE),
    ("only alarms", {"AutoRollbackConfiguration": {"Alarms": [{"AlarmName": "a"}]}}, ONE, ONE),
    ("canary 1 of 2", canary(1), TWO, TWO),
    ("canary 2 of 4", canary(2), FOUR, FOUR),
    ("canary 50% of 3", canary(50, "CAPACITY_PERCENT"), THREE, THREE),
    ("canary 1 on two variants", canary(1), AB, AB),
    ("canary 1 of 3, from 1 old instance", canary(1), ONE, THREE),
    ("linear 33% of 3 (seed)", linear(33), THREE, THREE),
    ("linear 1 of 10", linear(1, "INSTANCE_COUNT", wait=100), TEN, TEN),
    ("linear 1 of 2", linear(1, "INSTANCE_COUNT"), TWO, TWO),
    ("linear 10% of 10", linear(10, wait=100), TEN, TEN),
    ("rolling 1 of 2", rolling(1), TWO, TWO),
    ("rolling 1 of 20 (5%)", rolling(1, wait=10), TWO, {"AllTraffic": 20}),
    (
        "rolling rollback 100%",
        rolling(1, RollbackMaximumBatchSize={"Type": "CAPACITY_PERCENT", "Value": 100}),
        TWO,
        TWO,
    ),
    (
        "rolling rollback more instances than old",
        rolling(1, RollbackMaximumBatchSize={"Type": "INSTANCE_COUNT", "Value": 9}),
        TWO,
        TWO,
    ),
]


@pytest.mark.parametrize(("case", "wire", "old", "new"), VALID, ids=[c[0] for c in VALID])
def test_valid_deployments(case: str, wire: dict[str, Any] | None, old: dict[str, int], new: dict[str, int]) -> None:
    validate_deployment(None if wire is None else parse_deployment_config(wire), old, new)


INVALID: list[tuple[str, dict[str, Any] | None, dict[str, int], dict[str, int], str]] = [
    (
        "renamed variant",
        canary(1),
        {"A": 2},
        {"B": 2},
        "must keep the production variant names of the current endpoint config: current [A], new [B]",
    ),
    ("added variant", ALL_AT_ONCE, {"A": 2}, {"A": 2, "B": 2}, "current [A], new [A, B]"),
    ("zero instances", None, ONE, {"AllTraffic": 0}, "has 0 instances; it needs at least 1"),
    ("no variants", None, ONE, {}, "no production variants"),
    (
        "canary on one instance",
        canary(1),
        ONE,
        ONE,
        "CanarySize needs at least 2 instances in variant 'AllTraffic'",
    ),
    (
        "canary 2 of 3",
        canary(2),
        THREE,
        THREE,
        "CanarySize of 2 instance(s) is 67% of the 3 instances of variant 'AllTraffic'; it must be at most 50%",
    ),
    ("canary 60%", canary(60, "CAPACITY_PERCENT"), FOUR, FOUR, "CanarySize of 60% is out of range"),
    ("canary too big for one variant", canary(2), AB, AB, "100% of the 2 instances of variant 'B'"),
    (
        "linear 1 of 11 (9%)",
        linear(1, "INSTANCE_COUNT"),
        ONE,
        {"AllTraffic": 11},
        "LinearStepSize of 1 instance(s) is 9% of the 11 instances of variant 'AllTraffic'; it must be 10-50%",
    ),
    ("linear 2 of 3", linear(2, "INSTANCE_COUNT"), THREE, THREE, "is 67% of the 3 instances"),
    ("linear 5%", linear(5), TEN, TEN, "LinearStepSize of 5% is out of range: it must be 10-50%"),
    ("linear 60%", linear(60), TEN, TEN, "LinearStepSize of 60% is out of range"),
    ("linear on one instance", linear(50), ONE, ONE, "LinearStepSize needs at least 2 instances"),
    (
        "rolling on two variants",
        rolling(1),
        AB,
        AB,
        "RollingUpdatePolicy is not available for endpoints with more than one production variant",
    ),
    (
        "rolling from two variants to one",
        rolling(1),
        {"A": 2, "B": 2},
        {"A": 2},
        "keep the production variant names",
    ),
    ("rolling batch 4%", rolling(4, "CAPACITY_PERCENT"), TEN, TEN, "MaximumBatchSize of 4% is out of range"),
    ("rolling batch 1 of 21", rolling(1), TWO, {"AllTraffic": 21}, "is 5% of the 21 instances"),
    ("rolling batch 3 of 4", rolling(3), FOUR, FOUR, "is 75% of the 4 instances"),
    ("rolling on one instance", rolling(1), ONE, ONE, "MaximumBatchSize needs at least 2 instances"),
    (
        "rolling rollback 101%",
        rolling(1, RollbackMaximumBatchSize={"Type": "CAPACITY_PERCENT", "Value": 101}),
        TWO,
        TWO,
        "RollbackMaximumBatchSize of 101% is more than 100%",
    ),
    (
        "canary waits exceed timeout",
        canary(1, wait=1700),
        TWO,
        TWO,
        "MaximumExecutionTimeoutInSeconds (1800) must be larger than the total waiting time of the "
        "deployment: "
        "1820 seconds (1 x WaitIntervalInSeconds 1700 + TerminationWaitInSeconds 120)",
    ),
    (
        "linear waits exceed timeout",
        linear(10, wait=200, timeout=1900),
        TEN,
        TEN,
        "1920 seconds (9 x WaitIntervalInSeconds 200 + TerminationWaitInSeconds 120)",
    ),
    (
        "rolling waits exceed default timeout",
        rolling(1, wait=3600),
        TWO,
        {"AllTraffic": 8},
        "(28800, the default when it is omitted,) must be larger than the total waiting time of the "
        "deployment: "
        "28800 seconds (8 batches x WaitIntervalInSeconds 3600)",
    ),
]


@pytest.mark.parametrize(("case", "wire", "old", "new", "message"), INVALID, ids=[c[0] for c in INVALID])
def test_invalid_deployments(
    case: str, wire: dict[str, Any] | None, old: dict[str, int], new: dict[str, int], message: str
) -> None:
    with pytest.raises(ValidationException) as info:
        validate_deployment(None if wire is None else parse_deployment_config(wire), old, new)
    assert message in info.value.message
    assert (info.value.code, info.value.status) == ("ValidationException", 400)


@pytest.mark.parametrize(
    ("wire", "count"),
    [
        (canary(1, wait=700), 4),
        (linear(1, "INSTANCE_COUNT", wait=100), 7),
        (rolling(1, wait=150), 6),
        (linear(40, wait=300), 5),
    ],
)
def test_timeout_must_exceed_the_planned_waits(wire: dict[str, Any], count: int) -> None:
    """The boundary of the timeout check is the plan's own total wait: equal is refused, one more passes."""
    variants = {"AllTraffic": count}
    base = parse_deployment_config(wire)
    total = plan_deployment(base, variants, variants).total_wait_seconds
    assert total >= cfg.MAX_EXECUTION_RANGE[0]
    policy_key = "RollingUpdatePolicy" if "RollingUpdatePolicy" in wire else "BlueGreenUpdatePolicy"
    at = parse_deployment_config(_with(wire, total, policy_key, "MaximumExecutionTimeoutInSeconds"))
    above = parse_deployment_config(_with(wire, total + 1, policy_key, "MaximumExecutionTimeoutInSeconds"))
    with pytest.raises(
        ValidationException,
        match=f"must be larger than the total waiting time of the deployment: {total} seconds",
    ):
        validate_deployment(at, variants, variants)
    validate_deployment(above, variants, variants)


def test_validation_lists_every_problem() -> None:
    with pytest.raises(ValidationException, match=r"^2 validation errors detected") as info:
        validate_deployment(parse_deployment_config(canary(2)), {"A": 3, "B": 3}, {"A": 3, "B": 3})
    assert "variant 'A'" in info.value.message and "variant 'B'" in info.value.message
