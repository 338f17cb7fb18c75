"""A deployment as a pure, durable state machine: ``(state, observation, now) -> (state, actions)``.

The rollout controller owns the loop::

    state, actions = start(config, blue_counts, green_counts, now)      # on UpdateEndpoint
    store(state); perform(actions)                                      # write first, then act
    every tick:  state2, actions = advance(state, observe(), now)
                 if state2 != state: store(state2); perform(actions)   # then tick again at once
    on restart:  state, actions = recover(load(), observe(), now); store(state); perform(actions)

``now`` is wall-clock seconds (``Clock.now()``), not monotonic time: the state outlives the process.
Each call makes at most one transition. Actions are idempotent desired-state commands, carried out in
list order (a traffic share is set before the fleet that loses it is stopped). Because the state is
stored before the actions run, a crash may lose them; ``recover`` therefore re-issues the actions of
the phase it resumes, or rolls back. What each phase does on a restart:

==================  ==============================================================================
phase               on restart
==================  ==============================================================================
PROVISIONING_GREEN  resumes (no traffic is on green yet) -- except a rolling batch after the first,
                    which rolls back (earlier batches carry traffic)
SHIFTING, BAKING,   roll back: green carries traffic and its bake was not watched while the server
FINAL_BAKE          was down; its instances may be gone, so the share on green drops to what the
                    live green instances can carry at once
TERMINATING_BLUE    blue/green and a rolling update's last batch resume (all traffic is on a fleet
                    that passed every bake, blue is partly gone); earlier rolling batches roll back
RESTORING_BLUE,     resume (a rolling rollback is re-planned from the instances that are alive)
ROLLING_BACK
DONE, ROLLED_BACK,  nothing to do
ROLLBACK_FAILED
==================  ==============================================================================

Rules. In PROVISIONING_GREEN, SHIFTING, BAKING and FINAL_BAKE (and a rolling update's
TERMINATING_BLUE before the last batch), a green fleet failure or passing ``started_at +
MaximumExecutionTimeoutInSeconds`` rolls back. Rollback alarms are watched in every bake, including
the final one, and at the moment a bake starts: any of them in ALARM rolls back, with a
FailureReason that names them. Blue/green rolls back at once (all traffic to blue, green stopped);
a rolling update rolls back in batches of ``RollbackMaximumBatchSize`` and, if old instances fail to
start, ends ROLLBACK_FAILED (``UpdateRollbackFailed``). Once blue is being terminated after the last
bake (the point of no return), the deployment only finishes.

After ROLLBACK_FAILED the endpoint serves a mix: old instances (blue) and the failed update's new ones
(green), both carrying traffic. Another UpdateEndpoint is the remedy; :func:`consolidate` decides
what it starts from. The new deployment first finishes the failed rollback as far as it can without
starting any old instance (starting them is what failed): all traffic goes to the old instances that
serve, the failed update's instances are drained and stopped, and the new deployment is an ordinary
one whose blue is those old instances. If a variant has no old instance serving, there is nothing to
consolidate onto and the new deployment does not start (the endpoint stays UpdateRollbackFailed).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from modelgate.domain.resources import EndpointStatus
from modelgate.rollout.config import DeploymentConfig
from modelgate.rollout.contract import (
    Action,
    Finish,
    FleetRole,
    Observation,
    Outcome,
    ScaleFleet,
    SetTrafficShare,
    StartGreen,
    StopBlue,
    StopGreen,
)
from modelgate.rollout.plan import (
    BlueGreenPlan,
    RollbackBatch,
    RollingPlan,
    plan_deployment,
    plan_rollback,
)

FAILURE_REASON_MAX = 1024  # DescribeEndpoint FailureReason length limit
_SHARE_TOLERANCE = 1e-9


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Phase(enum.StrEnum):
    PROVISIONING_GREEN = "PROVISIONING_GREEN"  # green instances (all, or rolling batch `step`) starting
    SHIFTING = "SHIFTING"  # the traffic share of step `step` is being applied to the routing table
    BAKING = "BAKING"  # bake of WaitIntervalInSeconds after step `step`; alarms watched
    FINAL_BAKE = "FINAL_BAKE"  # blue/green: all traffic on green for TerminationWaitInSeconds; alarms watched
    TERMINATING_BLUE = "TERMINATING_BLUE"  # blue draining and stopping (rolling: old capacity of batch `step`)
    RESTORING_BLUE = "RESTORING_BLUE"  # rolling rollback batch `step`: old instances starting
    ROLLING_BACK = "ROLLING_BACK"  # traffic going back to blue, green draining (rolling: batch `step`)
    DONE = "DONE"  # finished: the endpoint serves the new config
    ROLLED_BACK = "ROLLED_BACK"  # finished: the endpoint serves the old config, with a FailureReason
    ROLLBACK_FAILED = "ROLLBACK_FAILED"  # finished: a rolling rollback failed; the endpoint serves a mix


TERMINAL = frozenset({Phase.DONE, Phase.ROLLED_BACK, Phase.ROLLBACK_FAILED})


class RolloutState(_Frozen):
    """Everything a restarted server needs to resume or roll back; stored as JSON before any action."""

    version: Literal[1] = 1
    plan: Annotated[BlueGreenPlan | RollingPlan, Field(discriminator="kind")]
    alarms: tuple[str, ...]  # AutoRollbackConfiguration alarm names
    phase: Phase
    step: int = 0  # index into plan.steps / plan.batches, or into `rollback` while rolling back
    phase_started_at: float  # when the phase began (the start of a bake); VariantStatus StartTime
    started_at: float  # when the deployment began
    deadline: float  # started_at + MaximumExecutionTimeoutInSeconds
    green_share: dict[str, float]  # per variant, the share of traffic last commanded onto green
    rollback: tuple[RollbackBatch, ...] = ()  # rolling rollback batches, planned when it starts
    reason: str | None = None  # the FailureReason, once rolling back

    def to_json(self) -> str:
        return self.model_dump_json()

    @classmethod
    def from_json(cls, text: str | bytes) -> RolloutState:
        return cls.model_validate_json(text)


Step = tuple[RolloutState, list[Action]]  # the state to store, then the actions to perform


# --- failure reasons --------------------------------------------------------------------------------


def alarm_reason(alarms: Sequence[str]) -> str:
    names = ", ".join(alarms)
    return _cap(f"Deployment rolled back: alarm(s) in ALARM during a baking period: {names}.")


def timeout_reason(seconds: int) -> str:
    return f"Deployment rolled back: it exceeded MaximumExecutionTimeoutInSeconds ({seconds} seconds)."


def green_failure_reason(failure: str) -> str:
    return _cap(f"Deployment rolled back: the new fleet failed: {failure}")


RESTART_REASON = "Deployment rolled back: the server restarted while traffic was shifted to the new fleet."


def not_consolidated_reason(config_name: str, variants: Sequence[str]) -> str:
    names = ", ".join(variants)
    return _cap(
        f"The update was not started: no instance of endpoint config {config_name} serves production "
        f"variant(s) {names}, so the instances of the update that failed to roll back cannot be retired. "
        "The endpoint still serves a mix of the old and new endpoint configurations; delete it and create "
        "it again."
    )


def _cap(text: str) -> str:
    return text if len(text) <= FAILURE_REASON_MAX else text[: FAILURE_REASON_MAX - 3] + "..."


# --- transitions ------------------------------------------------------------------------------------


def start(
    config: DeploymentConfig | None,
    blue: Mapping[str, int],
    green: Mapping[str, int],
    now: float,
    *,
    all_at_once_fallback: bool = False,
) -> Step:
    """Begin a validated deployment from ``blue`` to ``green`` instance counts per variant."""
    plan = plan_deployment(config, blue, green, all_at_once_fallback=all_at_once_fallback)
    state = RolloutState(
        plan=plan,
        alarms=config.alarms if config else (),
        phase=Phase.PROVISIONING_GREEN,
        phase_started_at=now,
        started_at=now,
        deadline=now + plan.max_execution_seconds,
        green_share=dict.fromkeys(green, 0.0),
    )
    return state, _entry_actions(state)


class Consolidation(_Frozen):
    """Where an UpdateEndpoint on an UpdateRollbackFailed endpoint starts from (see the module docstring)."""

    blue: dict[str, int]  # per variant, the old instances the new deployment starts from (its blue)
    missing: tuple[str, ...] = ()  # variants with no old instance serving: the new deployment cannot start

    @property
    def possible(self) -> bool:
        return not self.missing


def consolidate(old_serving: Mapping[str, int]) -> Consolidation:
    """The old config's instances that serve now (per variant, healthy) become the whole of blue: all
    traffic moves onto them and the failed update's instances are stopped. No instance is started."""
    missing = tuple(v for v, n in old_serving.items() if n < 1)
    return Consolidation(blue={v: max(0, n) for v, n in old_serving.items()}, missing=missing)


def advance(state: RolloutState, obs: Observation, now: float) -> Step:
    """At most one transition, from what the controller observes now."""
    if state.phase in TERMINAL:
        return state, []
    if _guarded(state):
        if obs.green.failure is not None:
            return _roll_back(state, obs, now, green_failure_reason(obs.green.failure))
        if now >= state.deadline:
            return _roll_back(state, obs, now, timeout_reason(state.plan.max_execution_seconds))
    if isinstance(state.plan, BlueGreenPlan):
        return _advance_blue_green(state, state.plan, obs, now)
    return _advance_rolling(state, state.plan, obs, now)


def recover(state: RolloutState, obs: Observation, now: float) -> Step:
    """After a restart: resume the stored phase (re-issuing its actions) or roll back; see the table."""
    if state.phase in TERMINAL:
        return state, []
    plan = state.plan
    if state.phase in (Phase.RESTORING_BLUE, Phase.ROLLING_BACK):
        if isinstance(plan, RollingPlan):  # re-plan the rollback from the instances alive now
            return _roll_back(state, obs, now, state.reason or RESTART_REASON)
        return state, _entry_actions(state)
    resumes = state.phase is Phase.PROVISIONING_GREEN and (isinstance(plan, BlueGreenPlan) or state.step == 0)
    resumes |= state.phase is Phase.TERMINATING_BLUE and (
        isinstance(plan, BlueGreenPlan) or state.step == len(plan.batches) - 1
    )
    if resumes:
        return state, _entry_actions(state)
    return _roll_back(state, obs, now, RESTART_REASON)


def _guarded(state: RolloutState) -> bool:
    """Whether green failures and the time limit still roll the deployment back in this phase."""
    if state.phase in (Phase.PROVISIONING_GREEN, Phase.SHIFTING, Phase.BAKING, Phase.FINAL_BAKE):
        return True
    plan = state.plan
    return (
        state.phase is Phase.TERMINATING_BLUE and isinstance(plan, RollingPlan) and (state.step < len(plan.batches) - 1)
    )


def _tripped(state: RolloutState, obs: Observation) -> list[str]:
    return [a for a in state.alarms if a in obs.alarms_in_alarm]


def _shares_applied(target: Mapping[str, float], obs: Observation) -> bool:
    return all(abs(obs.green_share.get(v, 0.0) - s) <= _SHARE_TOLERANCE for v, s in target.items())


def _enter(state: RolloutState, now: float, phase: Phase, step: int, **changes: object) -> Step:
    new = state.model_copy(update={"phase": phase, "step": step, "phase_started_at": now, **changes})
    return new, _entry_actions(new)


def _advance_blue_green(state: RolloutState, plan: BlueGreenPlan, obs: Observation, now: float) -> Step:
    phase, i = state.phase, state.step
    if phase is Phase.PROVISIONING_GREEN:
        if all(obs.green.healthy(v) >= n for v, n in plan.green.items()):
            return _enter(state, now, Phase.SHIFTING, 0, green_share=plan.steps[0].green_share)
    elif phase is Phase.SHIFTING:
        if _shares_applied(state.green_share, obs):
            if tripped := _tripped(state, obs):
                return _roll_back(state, obs, now, alarm_reason(tripped))
            return _enter(state, now, Phase.FINAL_BAKE if plan.steps[i].final else Phase.BAKING, i)
    elif phase in (Phase.BAKING, Phase.FINAL_BAKE):
        if tripped := _tripped(state, obs):
            return _roll_back(state, obs, now, alarm_reason(tripped))
        if now - state.phase_started_at >= plan.steps[i].bake_seconds:
            if phase is Phase.FINAL_BAKE:
                return _enter(state, now, Phase.TERMINATING_BLUE, i)
            return _enter(state, now, Phase.SHIFTING, i + 1, green_share=plan.steps[i + 1].green_share)
    elif phase is Phase.TERMINATING_BLUE:
        if all(obs.blue.present(v) == 0 for v in plan.blue):
            return _finish(state, now, Phase.DONE)
    elif phase is Phase.ROLLING_BACK:
        gone = all(obs.green.present(v) == 0 for v in plan.green)
        if gone and _shares_applied(state.green_share, obs):
            return _finish(state, now, Phase.ROLLED_BACK)
    return state, []


def _advance_rolling(state: RolloutState, plan: RollingPlan, obs: Observation, now: float) -> Step:
    phase, i, v = state.phase, state.step, plan.variant
    if phase is Phase.PROVISIONING_GREEN:
        batch = plan.batches[i]
        if obs.green.healthy(v) >= batch.green_instances:
            return _enter(state, now, Phase.SHIFTING, i, green_share={v: batch.green_share})
    elif phase is Phase.SHIFTING:
        if _shares_applied(state.green_share, obs):
            if tripped := _tripped(state, obs):
                return _roll_back(state, obs, now, alarm_reason(tripped))
            return _enter(state, now, Phase.BAKING, i)
    elif phase is Phase.BAKING:
        if tripped := _tripped(state, obs):
            return _roll_back(state, obs, now, alarm_reason(tripped))
        if now - state.phase_started_at >= plan.batches[i].bake_seconds:
            return _enter(state, now, Phase.TERMINATING_BLUE, i)
    elif phase is Phase.TERMINATING_BLUE:
        if obs.blue.present(v) <= plan.batches[i].blue_instances:
            if i == len(plan.batches) - 1:
                return _finish(state, now, Phase.DONE)
            return _enter(state, now, Phase.PROVISIONING_GREEN, i + 1)
    elif phase is Phase.RESTORING_BLUE:
        if obs.blue.failure is not None:
            reason = (
                f"{state.reason} The rollback failed: {obs.blue.failure}. The endpoint serves a mix of "
                "the old and new endpoint configurations."
            )
            return _finish(state.model_copy(update={"reason": _cap(reason)}), now, Phase.ROLLBACK_FAILED)
        if obs.blue.healthy(v) >= state.rollback[i].blue_instances:
            return _enter(state, now, Phase.ROLLING_BACK, i, green_share={v: state.rollback[i].green_share})
    elif phase is Phase.ROLLING_BACK:
        shrunk = obs.green.present(v) <= state.rollback[i].green_instances
        if shrunk and _shares_applied(state.green_share, obs):
            if i == len(state.rollback) - 1:
                return _finish(state, now, Phase.ROLLED_BACK)
            return _enter(state, now, Phase.RESTORING_BLUE, i + 1)
    return state, []


def _roll_back(state: RolloutState, obs: Observation, now: float, reason: str) -> Step:
    plan = state.plan
    if isinstance(plan, BlueGreenPlan):
        return _enter(state, now, Phase.ROLLING_BACK, 0, green_share=dict.fromkeys(plan.green, 0.0), reason=reason)
    v = plan.variant
    green_alive = obs.green.healthy(v)
    # traffic never waits on green instances that are gone: cap the share at what is alive, at once
    share = min(state.green_share.get(v, 0.0), green_alive / plan.green)
    batches = plan_rollback(plan, obs.blue.active(v), green_alive, share)
    new, actions = _enter(state, now, Phase.RESTORING_BLUE, 0, green_share={v: share}, rollback=batches, reason=reason)
    return new, [SetTrafficShare(green_share={v: share}), *actions]


def _finish(state: RolloutState, now: float, phase: Phase) -> Step:
    new = state.model_copy(update={"phase": phase, "phase_started_at": now})
    outcome, status = {
        Phase.DONE: (Outcome.SUCCEEDED, EndpointStatus.IN_SERVICE),
        Phase.ROLLED_BACK: (Outcome.ROLLED_BACK, EndpointStatus.IN_SERVICE),
        Phase.ROLLBACK_FAILED: (Outcome.ROLLBACK_FAILED, EndpointStatus.UPDATE_ROLLBACK_FAILED),
    }[phase]
    reason = None if phase is Phase.DONE else state.reason
    return new, [Finish(outcome=outcome, endpoint_status=status, failure_reason=reason)]


def _entry_actions(state: RolloutState) -> list[Action]:
    """The idempotent commands that bring the world to what ``state`` expects."""
    plan, phase, i = state.plan, state.phase, state.step
    if isinstance(plan, BlueGreenPlan):
        if phase is Phase.PROVISIONING_GREEN:
            return [StartGreen(instance_counts=dict(plan.green))]
        if phase is Phase.SHIFTING:
            return [SetTrafficShare(green_share=dict(state.green_share))]
        if phase is Phase.TERMINATING_BLUE:
            return [SetTrafficShare(green_share=dict(state.green_share)), StopBlue()]
        if phase is Phase.ROLLING_BACK:
            return [SetTrafficShare(green_share=dict(state.green_share)), StopGreen()]
        return []
    v = plan.variant
    if phase is Phase.PROVISIONING_GREEN:
        return [ScaleFleet(fleet=FleetRole.GREEN, instance_counts={v: plan.batches[i].green_instances})]
    if phase is Phase.SHIFTING:
        return [SetTrafficShare(green_share=dict(state.green_share))]
    if phase is Phase.TERMINATING_BLUE:
        return [
            SetTrafficShare(green_share=dict(state.green_share)),
            ScaleFleet(fleet=FleetRole.BLUE, instance_counts={v: plan.batches[i].blue_instances}),
        ]
    if phase is Phase.RESTORING_BLUE:
        return [ScaleFleet(fleet=FleetRole.BLUE, instance_counts={v: state.rollback[i].blue_instances})]
    if phase is Phase.ROLLING_BACK:
        return [
            SetTrafficShare(green_share=dict(state.green_share)),
            ScaleFleet(fleet=FleetRole.GREEN, instance_counts={v: state.rollback[i].green_instances}),
        ]
    return []
