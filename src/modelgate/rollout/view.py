"""What DescribeEndpoint shows of a deployment, phase by phase. Pure.

While a deployment runs, the top level (``EndpointConfigName``, ``ProductionVariants``) still
describes blue and ``PendingDeploymentSummary`` describes green, whose ``VariantStatus`` entries are
given here. The messages follow the EventBridge "endpoint deployment state change" samples; X, Y, Z are
instance counts.

========================  ==================  ==================================================
phase                     EndpointStatus      green VariantStatus
========================  ==================  ==================================================
PROVISIONING_GREEN        Updating            Creating: "Launching X instance(s)."
SHIFTING (partial)        Updating            ActivatingTraffic: "Activating traffic on canary
                                              capacity of X instance(s)."
SHIFTING (to 100%)        Updating            ActivatingTraffic: "... on full capacity of Y ..."
BAKING                    Updating            Baking: "Baking for W seconds (WaitIntervalInSeconds)
                                              with traffic enabled on canary capacity of X ..."
FINAL_BAKE                Updating            Baking: "Baking for T seconds
                                              (TerminationWaitInSeconds) ... full capacity of Y"
TERMINATING_BLUE          Updating            Deleting: "Terminating Z instance(s)."
ROLLING_BACK (blue/green) Updating            Deleting: "Terminating Y instance(s)." (green)
RESTORING_BLUE (rolling)  RollingBack         Updating: "Rolling back: X of N instance(s) of the
                                              previous endpoint config."
ROLLING_BACK (rolling)    RollingBack         Deleting: "Terminating instance(s) to leave X of N."
DONE                      InService           - (the top level now describes green)
ROLLED_BACK               InService           - (the top level still describes blue; FailureReason)
ROLLBACK_FAILED           UpdateRollbackFailed - (FailureReason)
========================  ==================  ==================================================

A blue/green rollback stays ``Updating``, as SageMaker documents ``RollingBack`` for weight and
capacity changes only; a rolling rollback, which takes batches and can fail into
``UpdateRollbackFailed``, shows ``RollingBack`` (the endpoint statuses' allowed transitions reach
``UpdateRollbackFailed`` only from there). Rolling batches use the same statuses with "X of N
instance(s)" for the capacity that carries traffic.
"""

from __future__ import annotations

import enum

from pydantic import BaseModel, ConfigDict

from modelgate.domain.resources import EndpointStatus
from modelgate.rollout.contract import FleetRole
from modelgate.rollout.machine import Phase, RolloutState
from modelgate.rollout.plan import BlueGreenPlan, RollingPlan


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class VariantStatus(enum.StrEnum):
    CREATING = "Creating"
    UPDATING = "Updating"
    DELETING = "Deleting"
    ACTIVATING_TRAFFIC = "ActivatingTraffic"
    BAKING = "Baking"


class VariantStatusEntry(_Frozen):
    status: VariantStatus
    status_message: str
    start_time: float


class EndpointView(_Frozen):
    endpoint_status: EndpointStatus
    serving: FleetRole  # whose config the top-level EndpointConfigName and ProductionVariants describe
    pending: bool  # whether PendingDeploymentSummary (the new config, green's variants) is shown
    variant_status: dict[str, tuple[VariantStatusEntry, ...]]  # green's VariantStatus per variant
    failure_reason: str | None = None


def endpoint_view(state: RolloutState) -> EndpointView:
    phase = state.phase
    if phase is Phase.DONE:
        return EndpointView(
            endpoint_status=EndpointStatus.IN_SERVICE,
            serving=FleetRole.GREEN,
            pending=False,
            variant_status={},
        )
    if phase in (Phase.ROLLED_BACK, Phase.ROLLBACK_FAILED):
        status = EndpointStatus.IN_SERVICE if phase is Phase.ROLLED_BACK else EndpointStatus.UPDATE_ROLLBACK_FAILED
        return EndpointView(
            endpoint_status=status,
            serving=FleetRole.BLUE,
            pending=False,
            variant_status={},
            failure_reason=state.reason,
        )
    plan = state.plan
    messages = _blue_green(state, plan) if isinstance(plan, BlueGreenPlan) else _rolling(state, plan)
    rolling_back = isinstance(plan, RollingPlan) and phase in (Phase.RESTORING_BLUE, Phase.ROLLING_BACK)
    return EndpointView(
        endpoint_status=EndpointStatus.ROLLING_BACK if rolling_back else EndpointStatus.UPDATING,
        serving=FleetRole.BLUE,
        pending=True,
        variant_status={
            v: (VariantStatusEntry(status=s, status_message=m, start_time=state.phase_started_at),)
            for v, (s, m) in messages.items()
        },
        failure_reason=state.reason,
    )


def _blue_green(state: RolloutState, plan: BlueGreenPlan) -> dict[str, tuple[VariantStatus, str]]:
    phase, step = state.phase, plan.steps[min(state.step, len(plan.steps) - 1)]
    out: dict[str, tuple[VariantStatus, str]] = {}
    for v, total in plan.green.items():
        active = step.green_instances[v]
        capacity = f"full capacity of {total}" if step.final else f"canary capacity of {active}"
        if phase is Phase.PROVISIONING_GREEN:
            out[v] = (VariantStatus.CREATING, f"Launching {total} instance(s).")
        elif phase is Phase.SHIFTING:
            out[v] = (VariantStatus.ACTIVATING_TRAFFIC, f"Activating traffic on {capacity} instance(s).")
        elif phase in (Phase.BAKING, Phase.FINAL_BAKE):
            which = "TerminationWaitInSeconds" if step.final else "WaitIntervalInSeconds"
            out[v] = (
                VariantStatus.BAKING,
                f"Baking for {step.bake_seconds} seconds ({which}) with traffic enabled on {capacity} instance(s).",
            )
        elif phase is Phase.TERMINATING_BLUE:
            out[v] = (VariantStatus.DELETING, f"Terminating {plan.blue.get(v, 0)} instance(s).")
        elif phase is Phase.ROLLING_BACK:
            out[v] = (VariantStatus.DELETING, f"Terminating {total} instance(s).")
    return out


def _rolling(state: RolloutState, plan: RollingPlan) -> dict[str, tuple[VariantStatus, str]]:
    phase, i, total = state.phase, state.step, plan.green
    if phase in (Phase.RESTORING_BLUE, Phase.ROLLING_BACK):
        back = state.rollback[i]
        if phase is Phase.RESTORING_BLUE:
            old = f"{back.blue_instances} of {plan.blue}"
            message = f"Rolling back: {old} instance(s) of the previous endpoint config."
            return {plan.variant: (VariantStatus.UPDATING, message)}
        message = f"Terminating instance(s) to leave {back.green_instances} of {total}."
        return {plan.variant: (VariantStatus.DELETING, message)}
    batch = plan.batches[i]
    previous = plan.batches[i - 1] if i else None
    wait = batch.bake_seconds
    active = f"{batch.green_instances} of {total} instance(s)"
    if phase is Phase.PROVISIONING_GREEN:
        launching = batch.green_instances - (previous.green_instances if previous else 0)
        return {plan.variant: (VariantStatus.CREATING, f"Launching {launching} instance(s).")}
    if phase is Phase.SHIFTING:
        return {plan.variant: (VariantStatus.ACTIVATING_TRAFFIC, f"Activating traffic on {active}.")}
    if phase is Phase.BAKING:
        message = f"Baking for {wait} seconds (WaitIntervalInSeconds) with traffic enabled on {active}."
        return {plan.variant: (VariantStatus.BAKING, message)}
    terminated = (previous.blue_instances if previous else plan.blue) - batch.blue_instances
    return {plan.variant: (VariantStatus.DELETING, f"Terminating {terminated} instance(s).")}
