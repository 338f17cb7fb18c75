"""An UpdateEndpoint in progress, as stored, and what DescribeEndpoint shows of it.

One :class:`Deployment` per endpoint lives in the store from the moment UpdateEndpoint is accepted
until the deployment finishes (or, for ``UpdateRollbackFailed``, until the endpoint is deleted). It
carries a snapshot of the new (green) endpoint config and its models, the rollout state machine's
state, and how many instances each fleet must run once the actions of that state are carried out, so
that a restarted server can bring both fleets back before it resumes or rolls back.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from pydantic import BaseModel, ConfigDict, Field

from modelgate.domain.resources import EndpointConfig, EndpointStatus, Model, VariantState
from modelgate.rollout.config import DeploymentConfig
from modelgate.rollout.contract import Action, FleetRole, ScaleFleet, StartGreen, StopBlue, StopGreen
from modelgate.rollout.machine import RolloutState
from modelgate.rollout.view import VariantStatusEntry


class _Domain(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Deployment(_Domain):
    endpoint: str
    id: str  # tells the green fleets from the blue ones, even when the config name is the same
    config: EndpointConfig  # the new endpoint config (green), as it was when the update was accepted
    models: tuple[Model, ...]
    variants: tuple[VariantState, ...]  # green's desired weights and instance counts
    deployment_config: DeploymentConfig | None  # None: blue/green all at once, no bake
    started_at: float
    state: RolloutState | None = None  # None: accepted; the controller has not planned it yet
    blue_targets: dict[str, int]  # instances per blue variant once the stored state's actions are done
    green_targets: dict[str, int] = Field(default_factory=dict)  # ... and per green variant

    def model(self, name: str) -> Model | None:
        return next((m for m in self.models if m.name == name), None)

    def with_actions(self, state: RolloutState, actions: Iterable[Action]) -> Deployment:
        """The record to store before carrying out ``actions``: ``state`` and the fleet sizes they leave."""
        blue, green = dict(self.blue_targets), dict(self.green_targets)
        for a in actions:
            if isinstance(a, StartGreen):
                green.update(a.instance_counts)
            elif isinstance(a, ScaleFleet):
                (blue if a.fleet is FleetRole.BLUE else green).update(a.instance_counts)
            elif isinstance(a, StopBlue):
                blue = dict.fromkeys(blue, 0)
            elif isinstance(a, StopGreen):
                green = dict.fromkeys(green, 0)
        return self.model_copy(update={"state": state, "blue_targets": blue, "green_targets": green})


def all_on_green(shares: Mapping[str, float], green_variants: Iterable[str]) -> bool:
    """Whether every green variant takes all of its traffic: the endpoint then serves green's variants
    only (an all-at-once update may rename variants)."""
    names = list(green_variants)
    return bool(names) and all(shares.get(v, 0.0) >= 1.0 for v in names)


# --- what DescribeEndpoint shows -------------------------------------------------------------------


class VariantServing(_Domain):
    """A variant as it serves now: the share of its weight and the instances that take traffic."""

    variant_name: str
    current_weight: float
    desired_weight: float
    current_instance_count: int
    desired_instance_count: int
    statuses: tuple[VariantStatusEntry, ...] = ()


class PendingDeployment(_Domain):
    config: EndpointConfig
    models: tuple[Model, ...]
    start_time: float
    variants: tuple[VariantServing, ...]


class DeploymentView(_Domain):
    endpoint_status: EndpointStatus
    failure_reason: str | None
    serving: tuple[VariantServing, ...]  # the top-level ProductionVariants (the current config's)
    pending: PendingDeployment | None  # PendingDeploymentSummary while the deployment runs
