"""The AWS JSON of a DeploymentConfig: parsed into :class:`~modelgate.rollout.config.DeploymentConfig`
and rendered back for DescribeEndpoint's ``LastDeploymentConfig``.

Parsing checks the schema (required members, types, enums, ranges), in AWS's validation wording, and
what the config alone can tell: one policy only, ``CanarySize`` with ``CANARY`` only and
``LinearStepSize`` with ``LINEAR`` only, every alarm named. Limits that depend on the variants are
:func:`modelgate.rollout.config.validate_deployment`'s.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import TypeVar

from modelgate.rollout.config import (
    ALARM_COUNT_RANGE,
    ALARM_NAME_LENGTH,
    CAPACITY_VALUE_MIN,
    MAX_EXECUTION_RANGE,
    TERMINATION_WAIT_RANGE,
    WAIT_INTERVAL_RANGE,
    AutoRollbackConfig,
    BlueGreenUpdatePolicy,
    CapacitySize,
    CapacitySizeType,
    DeploymentConfig,
    RollingUpdatePolicy,
    TrafficRoutingConfig,
    TrafficRoutingType,
    raise_validation,
)

_E = TypeVar("_E", bound=enum.Enum)


class _Reader:
    """Walks a wire dict, collecting errors in AWS's validation wording."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def structure(self, value: object, path: str, members: tuple[str, ...]) -> Mapping[str, object] | None:
        if value is None:
            return None
        if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
            self.errors.append(f"Value at '{path}' failed to satisfy constraint: Member must be a structure")
            return None
        for key in value:
            if key not in members:
                self.errors.append(f"Unknown member '{key}' at '{path}'; expected one of: {', '.join(members)}")
        return value

    def required(self, parent: Mapping[str, object], key: str, path: str) -> object:
        value = parent.get(key)
        if value is None:
            self.errors.append(
                f"Value null at '{_join(path, key)}' failed to satisfy constraint: Member must not be null"
            )
        return value

    def integer(self, value: object, path: str, low: int, high: int | None) -> int | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or not float(value).is_integer():
            self.errors.append(f"Value '{value}' at '{path}' failed to satisfy constraint: Member must be an integer")
            return None
        number = int(value)
        if number < low:
            self.errors.append(
                f"Value '{number}' at '{path}' failed to satisfy constraint: "
                f"Member must have value greater than or equal to {low}"
            )
        elif high is not None and number > high:
            self.errors.append(
                f"Value '{number}' at '{path}' failed to satisfy constraint: "
                f"Member must have value less than or equal to {high}"
            )
        return number

    def enum_value(self, value: object, path: str, kind: type[_E]) -> _E | None:
        if value is None:
            return None
        allowed = [str(m.value) for m in kind]
        if value not in allowed:
            self.errors.append(
                f"Value '{value}' at '{path}' failed to satisfy constraint: "
                f"Member must satisfy enum value set: [{', '.join(allowed)}]"
            )
            return None
        return kind(value)

    def capacity(self, value: object, path: str) -> CapacitySize | None:
        wire = self.structure(value, path, ("Type", "Value"))
        if wire is None:
            return None
        kind = self.enum_value(self.required(wire, "Type", path), _join(path, "Type"), CapacitySizeType)
        number = self.integer(self.required(wire, "Value", path), _join(path, "Value"), CAPACITY_VALUE_MIN, None)
        if kind is None or number is None or number < CAPACITY_VALUE_MIN:
            return None
        return CapacitySize(type=kind, value=number)


def _join(path: str, key: str) -> str:
    return f"{path}.{key[:1].lower()}{key[1:]}"


def parse_deployment_config(wire: Mapping[str, object]) -> DeploymentConfig:
    """The typed config of a wire ``DeploymentConfig``; raises ValidationException listing every problem."""
    r = _Reader()
    root = "deploymentConfig"
    top = r.structure(wire, root, ("BlueGreenUpdatePolicy", "RollingUpdatePolicy", "AutoRollbackConfiguration"))
    if top is None:
        raise_validation(r.errors or ["DeploymentConfig must be a structure"])
    blue_green = _parse_blue_green(r, top.get("BlueGreenUpdatePolicy"), _join(root, "BlueGreenUpdatePolicy"))
    rolling = _parse_rolling(r, top.get("RollingUpdatePolicy"), _join(root, "RollingUpdatePolicy"))
    auto = _parse_auto_rollback(r, top.get("AutoRollbackConfiguration"), _join(root, "AutoRollbackConfiguration"))
    if top.get("BlueGreenUpdatePolicy") is not None and top.get("RollingUpdatePolicy") is not None:
        r.errors.append("DeploymentConfig may specify BlueGreenUpdatePolicy or RollingUpdatePolicy, not both.")
    if r.errors:
        raise_validation(r.errors)
    return DeploymentConfig(
        blue_green_update_policy=blue_green, rolling_update_policy=rolling, auto_rollback_configuration=auto
    )


def _parse_blue_green(r: _Reader, value: object, path: str) -> BlueGreenUpdatePolicy | None:
    wire = r.structure(
        value,
        path,
        ("TrafficRoutingConfiguration", "TerminationWaitInSeconds", "MaximumExecutionTimeoutInSeconds"),
    )
    if wire is None:
        return None
    routing = _parse_routing(
        r, r.required(wire, "TrafficRoutingConfiguration", path), _join(path, "TrafficRoutingConfiguration")
    )
    termination = r.integer(
        wire.get("TerminationWaitInSeconds"), _join(path, "TerminationWaitInSeconds"), *TERMINATION_WAIT_RANGE
    )
    timeout = r.integer(
        wire.get("MaximumExecutionTimeoutInSeconds"),
        _join(path, "MaximumExecutionTimeoutInSeconds"),
        *MAX_EXECUTION_RANGE,
    )
    if routing is None or r.errors:
        return None
    return BlueGreenUpdatePolicy(
        traffic_routing_configuration=routing,
        termination_wait_in_seconds=termination,
        maximum_execution_timeout_in_seconds=timeout,
    )


def _parse_routing(r: _Reader, value: object, path: str) -> TrafficRoutingConfig | None:
    wire = r.structure(value, path, ("Type", "WaitIntervalInSeconds", "CanarySize", "LinearStepSize"))
    if wire is None:
        return None
    kind = r.enum_value(r.required(wire, "Type", path), _join(path, "Type"), TrafficRoutingType)
    wait = r.integer(
        r.required(wire, "WaitIntervalInSeconds", path),
        _join(path, "WaitIntervalInSeconds"),
        *WAIT_INTERVAL_RANGE,
    )
    canary = r.capacity(wire.get("CanarySize"), _join(path, "CanarySize"))
    linear = r.capacity(wire.get("LinearStepSize"), _join(path, "LinearStepSize"))
    if kind is TrafficRoutingType.CANARY and wire.get("CanarySize") is None:
        r.errors.append("TrafficRoutingConfiguration of Type CANARY requires CanarySize.")
    if kind is TrafficRoutingType.LINEAR and wire.get("LinearStepSize") is None:
        r.errors.append("TrafficRoutingConfiguration of Type LINEAR requires LinearStepSize.")
    if kind is not None and kind is not TrafficRoutingType.CANARY and wire.get("CanarySize") is not None:
        r.errors.append(f"CanarySize is only valid with Type CANARY, not {kind.value}.")
    if kind is not None and kind is not TrafficRoutingType.LINEAR and wire.get("LinearStepSize") is not None:
        r.errors.append(f"LinearStepSize is only valid with Type LINEAR, not {kind.value}.")
    if kind is None or wait is None:
        return None
    return TrafficRoutingConfig(type=kind, wait_interval_in_seconds=wait, canary_size=canary, linear_step_size=linear)


def _parse_rolling(r: _Reader, value: object, path: str) -> RollingUpdatePolicy | None:
    members = (
        "MaximumBatchSize",
        "WaitIntervalInSeconds",
        "MaximumExecutionTimeoutInSeconds",
        "RollbackMaximumBatchSize",
    )
    wire = r.structure(value, path, members)
    if wire is None:
        return None
    batch = r.capacity(r.required(wire, "MaximumBatchSize", path), _join(path, "MaximumBatchSize"))
    wait = r.integer(
        r.required(wire, "WaitIntervalInSeconds", path),
        _join(path, "WaitIntervalInSeconds"),
        *WAIT_INTERVAL_RANGE,
    )
    timeout = r.integer(
        wire.get("MaximumExecutionTimeoutInSeconds"),
        _join(path, "MaximumExecutionTimeoutInSeconds"),
        *MAX_EXECUTION_RANGE,
    )
    rollback = r.capacity(wire.get("RollbackMaximumBatchSize"), _join(path, "RollbackMaximumBatchSize"))
    if batch is None or wait is None or r.errors:
        return None
    return RollingUpdatePolicy(
        maximum_batch_size=batch,
        wait_interval_in_seconds=wait,
        maximum_execution_timeout_in_seconds=timeout,
        rollback_maximum_batch_size=rollback,
    )


def _parse_auto_rollback(r: _Reader, value: object, path: str) -> AutoRollbackConfig | None:
    wire = r.structure(value, path, ("Alarms",))
    if wire is None:
        return None
    alarms = wire.get("Alarms")
    if alarms is None:
        return AutoRollbackConfig()
    alarms_path = _join(path, "Alarms")
    if not isinstance(alarms, list):
        r.errors.append(f"Value at '{alarms_path}' failed to satisfy constraint: Member must be a list")
        return None
    low, high = ALARM_COUNT_RANGE
    if not low <= len(alarms) <= high:
        bound = "greater than or equal to" if len(alarms) < low else "less than or equal to"
        r.errors.append(
            f"Value '[...]' at '{alarms_path}' failed to satisfy constraint: "
            f"Member must have length {bound} {low if len(alarms) < low else high}"
        )
    names: list[str] = []
    for i, item in enumerate(alarms, start=1):
        item_path = f"{alarms_path}.{i}.member"
        alarm = r.structure(item, item_path, ("AlarmName",))
        if alarm is None:
            r.errors.append(f"Alarm {i} of AutoRollbackConfiguration must be a structure with an AlarmName.")
            continue
        name = alarm.get("AlarmName")
        if not isinstance(name, str) or not name.strip():
            r.errors.append(f"Alarm {i} of AutoRollbackConfiguration must have a non-blank AlarmName.")
            continue
        if len(name) > ALARM_NAME_LENGTH[1]:
            r.errors.append(
                f"Value '{name[:40]}...' at '{item_path}.alarmName' failed to satisfy constraint: "
                f"Member must have length less than or equal to {ALARM_NAME_LENGTH[1]}"
            )
        names.append(name)
    return AutoRollbackConfig(alarms=tuple(names))


def to_wire(config: DeploymentConfig) -> dict[str, object]:
    """The AWS JSON of a config (DescribeEndpoint's ``LastDeploymentConfig``): what was given, no defaults."""
    out: dict[str, object] = {}
    if (bg := config.blue_green_update_policy) is not None:
        tr = bg.traffic_routing_configuration
        routing: dict[str, object] = {
            "Type": tr.type.value,
            "WaitIntervalInSeconds": tr.wait_interval_in_seconds,
        }
        if tr.canary_size is not None:
            routing["CanarySize"] = _capacity_wire(tr.canary_size)
        if tr.linear_step_size is not None:
            routing["LinearStepSize"] = _capacity_wire(tr.linear_step_size)
        policy: dict[str, object] = {"TrafficRoutingConfiguration": routing}
        if bg.termination_wait_in_seconds is not None:
            policy["TerminationWaitInSeconds"] = bg.termination_wait_in_seconds
        if bg.maximum_execution_timeout_in_seconds is not None:
            policy["MaximumExecutionTimeoutInSeconds"] = bg.maximum_execution_timeout_in_seconds
        out["BlueGreenUpdatePolicy"] = policy
    if (ro := config.rolling_update_policy) is not None:
        rolling: dict[str, object] = {
            "MaximumBatchSize": _capacity_wire(ro.maximum_batch_size),
            "WaitIntervalInSeconds": ro.wait_interval_in_seconds,
        }
        if ro.maximum_execution_timeout_in_seconds is not None:
            rolling["MaximumExecutionTimeoutInSeconds"] = ro.maximum_execution_timeout_in_seconds
        if ro.rollback_maximum_batch_size is not None:
            rolling["RollbackMaximumBatchSize"] = _capacity_wire(ro.rollback_maximum_batch_size)
        out["RollingUpdatePolicy"] = rolling
    if (auto := config.auto_rollback_configuration) is not None:
        out["AutoRollbackConfiguration"] = {"Alarms": [{"AlarmName": a} for a in auto.alarms]} if auto.alarms else {}
    return out


def _capacity_wire(size: CapacitySize) -> dict[str, object]:
    return {"Type": size.type.value, "Value": size.value}
