"""What the rollout controller and the rollout state machine exchange: observations in, actions out.

The controller observes each fleet per variant (instances starting, healthy, draining; a failure it
could not recover from), the share of traffic the routing table gives green, and which CloudWatch
alarms are in ALARM. It carries out the actions in list order; each is an idempotent desired-state
command, so re-issuing one after a restart is safe.
"""

from __future__ import annotations

import enum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from modelgate.domain.resources import EndpointStatus


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# --- observations ---------------------------------------------------------------------------------


class VariantInstances(_Frozen):
    starting: int = 0  # started, not yet passing /ping
    healthy: int = 0  # passing /ping and routable
    draining: int = 0  # removed from routing, finishing in-flight requests, then stopped


class FleetView(_Frozen):
    variants: dict[str, VariantInstances] = Field(default_factory=dict)
    failure: str | None = None  # why the fleet cannot reach its size (start or health check failure)

    def healthy(self, variant: str) -> int:
        v = self.variants.get(variant)
        return v.healthy if v else 0

    def active(self, variant: str) -> int:
        v = self.variants.get(variant)
        return v.starting + v.healthy if v else 0

    def present(self, variant: str) -> int:
        v = self.variants.get(variant)
        return v.starting + v.healthy + v.draining if v else 0


class Observation(_Frozen):
    """What the controller sees when it calls ``advance``."""

    blue: FleetView = Field(default_factory=FleetView)
    green: FleetView = Field(default_factory=FleetView)
    green_share: dict[str, float] = Field(default_factory=dict)  # the routing table's share on green now
    alarms_in_alarm: frozenset[str] = frozenset()  # alarms in state ALARM now (any; unrelated ones ignored)


# --- actions --------------------------------------------------------------------------------------


class FleetRole(enum.StrEnum):
    BLUE = "blue"  # the fleets of the endpoint's current (old) config
    GREEN = "green"  # the fleets of the new config


class Outcome(enum.StrEnum):
    SUCCEEDED = "SUCCEEDED"  # InService on the new config; blue is gone
    ROLLED_BACK = "ROLLED_BACK"  # InService on the old config with a FailureReason; green is gone
    ROLLBACK_FAILED = "ROLLBACK_FAILED"  # UpdateRollbackFailed: a rolling rollback stopped half way


class StartGreen(_Frozen):
    """Blue/green: create the green fleet with these instances per variant (no traffic yet)."""

    type: Literal["StartGreen"] = "StartGreen"
    instance_counts: dict[str, int]


class ScaleFleet(_Frozen):
    """Rolling: make ``fleet`` have exactly these instances per variant. Growing starts instances and
    routes to them once healthy; shrinking takes instances out of routing, drains, then stops them."""

    type: Literal["ScaleFleet"] = "ScaleFleet"
    fleet: FleetRole
    instance_counts: dict[str, int]


class SetTrafficShare(_Frozen):
    """Route this share of each variant's traffic to green, the rest to blue (swap the routing table)."""

    type: Literal["SetTrafficShare"] = "SetTrafficShare"
    green_share: dict[str, float]


class StopBlue(_Frozen):
    """Take blue out of routing, drain its in-flight requests, stop its instances."""

    type: Literal["StopBlue"] = "StopBlue"


class StopGreen(_Frozen):
    """Take green out of routing, drain its in-flight requests, stop its instances."""

    type: Literal["StopGreen"] = "StopGreen"


class Finish(_Frozen):
    """The deployment is over: set the endpoint's status, config and FailureReason."""

    type: Literal["Finish"] = "Finish"
    outcome: Outcome
    endpoint_status: EndpointStatus
    failure_reason: str | None = None


Action = StartGreen | ScaleFleet | SetTrafficShare | StopBlue | StopGreen | Finish
