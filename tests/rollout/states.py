"""Deployment configs and rollout states shared by the machine and view tests."""

from __future__ import annotations

from typing import Any

from modelgate.rollout.config import DeploymentConfig
from modelgate.rollout.machine import Phase, RolloutState, start
from modelgate.rollout.wire import parse_deployment_config

V = "AllTraffic"
T0 = 1_700_000_000.0
ALARMS = [{"AlarmName": "errors"}, {"AlarmName": "latency"}]


def canary(wait: int = 300, term: int = 120, timeout: int = 1800, alarms: bool = True) -> DeploymentConfig:
    wire: dict[str, Any] = {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": {
                "Type": "CANARY",
                "CanarySize": {"Type": "INSTANCE_COUNT", "Value": 1},
                "WaitIntervalInSeconds": wait,
            },
            "TerminationWaitInSeconds": term,
            "MaximumExecutionTimeoutInSeconds": timeout,
        }
    }
    if alarms:
        wire["AutoRollbackConfiguration"] = {"Alarms": ALARMS}
    return parse_deployment_config(wire)


def linear() -> DeploymentConfig:
    return parse_deployment_config(
        {
            "BlueGreenUpdatePolicy": {
                "TrafficRoutingConfiguration": {
                    "Type": "LINEAR",
                    "LinearStepSize": {"Type": "CAPACITY_PERCENT", "Value": 33},
                    "WaitIntervalInSeconds": 180,
                },
                "TerminationWaitInSeconds": 120,
                "MaximumExecutionTimeoutInSeconds": 1800,
            },
            "AutoRollbackConfiguration": {"Alarms": ALARMS},
        }
    )


def rolling(rollback: int | None = 1) -> DeploymentConfig:
    policy: dict[str, Any] = {
        "MaximumBatchSize": {"Type": "INSTANCE_COUNT", "Value": 2},
        "WaitIntervalInSeconds": 60,
        "MaximumExecutionTimeoutInSeconds": 900,
    }
    if rollback is not None:
        policy["RollbackMaximumBatchSize"] = {"Type": "INSTANCE_COUNT", "Value": rollback}
    return parse_deployment_config({"RollingUpdatePolicy": policy, "AutoRollbackConfiguration": {"Alarms": ALARMS}})


def begin(config: DeploymentConfig | None, n: int = 4) -> RolloutState:
    return start(config, {V: n}, {V: n}, T0)[0]


def at(
    state: RolloutState,
    phase: Phase,
    step: int = 0,
    since: float = T0,
    *,
    share: float | None = None,
    **update: Any,
) -> RolloutState:
    """``state`` moved to ``phase`` (a bake begun at ``since``), with ``share`` of traffic on green."""
    if share is not None:
        update["green_share"] = {V: share}
    return state.model_copy(update={"phase": phase, "step": step, "phase_started_at": since, **update})


BG = begin(canary())
RO = begin(rolling(), 4)
