"""The rollout state machine: a table of every transition, restarts, and whole runs against a fake world."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from modelgate.domain.resources import EndpointStatus
from modelgate.rollout.config import DeploymentConfig
from modelgate.rollout.contract import (
    Action,
    Finish,
    FleetRole,
    FleetView,
    Observation,
    Outcome,
    ScaleFleet,
    SetTrafficShare,
    StartGreen,
    StopBlue,
    StopGreen,
    VariantInstances,
)
from modelgate.rollout.machine import (
    RESTART_REASON,
    Phase,
    RolloutState,
    advance,
    alarm_reason,
    green_failure_reason,
    recover,
    start,
    timeout_reason,
)
from modelgate.rollout.plan import RollbackBatch

from .states import BG, RO, T0, V, at, begin, canary, linear, rolling
from .world import Fleet, Run, World


def fleet(healthy: int = 0, starting: int = 0, draining: int = 0, failure: str | None = None) -> FleetView:
    return FleetView(
        variants={V: VariantInstances(starting=starting, healthy=healthy, draining=draining)}, failure=failure
    )


def seen(
    blue: FleetView | None = None, green: FleetView | None = None, share: float = 0.0, alarms: tuple[str, ...] = ()
) -> Observation:
    return Observation(
        blue=blue or fleet(4), green=green or fleet(), green_share={V: share}, alarms_in_alarm=frozenset(alarms)
    )


def share(s: float) -> SetTrafficShare:
    return SetTrafficShare(green_share={V: s})


def scale(role: FleetRole, n: int) -> ScaleFleet:
    return ScaleFleet(fleet=role, instance_counts={V: n})


def finish(outcome: Outcome, reason: str | None = None) -> Finish:
    status = EndpointStatus.UPDATE_ROLLBACK_FAILED if outcome is Outcome.ROLLBACK_FAILED else EndpointStatus.IN_SERVICE
    return Finish(outcome=outcome, endpoint_status=status, failure_reason=reason)


BACK_ACTIONS: list[Action] = [share(0.0), StopGreen()]
ALARM = alarm_reason(["latency"])

# (case, state, observation, now, phase, step, actions, reason)
BLUE_GREEN: list[tuple[str, RolloutState, Observation, float, Phase, int, list[Action], str | None]] = [
    ("green starting", BG, seen(green=fleet(3, 1)), T0 + 5, Phase.PROVISIONING_GREEN, 0, [], None),
    ("green healthy: shift the canary", BG, seen(green=fleet(4)), T0 + 5, Phase.SHIFTING, 0, [share(0.25)], None),
    (
        "green failed",
        BG,
        seen(green=fleet(3, 1, failure="ping failed")),
        T0 + 5,
        Phase.ROLLING_BACK,
        0,
        BACK_ACTIONS,
        green_failure_reason("ping failed"),
    ),
    (
        "provisioning past the deadline",
        BG,
        seen(green=fleet(0, 4)),
        T0 + 1800,
        Phase.ROLLING_BACK,
        0,
        BACK_ACTIONS,
        timeout_reason(1800),
    ),
    (
        "provisioning just before the deadline",
        BG,
        seen(green=fleet(0, 4)),
        T0 + 1799.9,
        Phase.PROVISIONING_GREEN,
        0,
        [],
        None,
    ),
    (
        "share not yet applied",
        at(BG, Phase.SHIFTING, share=0.25),
        seen(green=fleet(4), share=0.0),
        T0 + 6,
        Phase.SHIFTING,
        0,
        [],
        None,
    ),
    (
        "share applied: bake",
        at(BG, Phase.SHIFTING, share=0.25),
        seen(green=fleet(4), share=0.25),
        T0 + 6,
        Phase.BAKING,
        0,
        [],
        None,
    ),
    (
        "alarm already in ALARM when the bake starts",
        at(BG, Phase.SHIFTING, share=0.25),
        seen(green=fleet(4), share=0.25, alarms=("latency",)),
        T0 + 6,
        Phase.ROLLING_BACK,
        0,
        BACK_ACTIONS,
        ALARM,
    ),
    (
        "baking",
        at(BG, Phase.BAKING, share=0.25),
        seen(green=fleet(4), share=0.25),
        T0 + 299.9,
        Phase.BAKING,
        0,
        [],
        None,
    ),
    (
        "bake over: shift the rest",
        at(BG, Phase.BAKING, share=0.25),
        seen(green=fleet(4), share=0.25),
        T0 + 300,
        Phase.SHIFTING,
        1,
        [share(1.0)],
        None,
    ),
    (
        "alarm during the bake",
        at(BG, Phase.BAKING, share=0.25),
        seen(green=fleet(4), share=0.25, alarms=("latency", "unrelated")),
        T0 + 100,
        Phase.ROLLING_BACK,
        0,
        BACK_ACTIONS,
        ALARM,
    ),
    (
        "alarm at the last moment of the bake",
        at(BG, Phase.BAKING, share=0.25),
        seen(green=fleet(4), share=0.25, alarms=("errors", "latency")),
        T0 + 300,
        Phase.ROLLING_BACK,
        0,
        BACK_ACTIONS,
        alarm_reason(["errors", "latency"]),
    ),
    (
        "unrelated alarm ignored",
        at(BG, Phase.BAKING, share=0.25),
        seen(green=fleet(4), share=0.25, alarms=("unrelated",)),
        T0 + 100,
        Phase.BAKING,
        0,
        [],
        None,
    ),
    (
        "deadline during a bake",
        at(BG, Phase.BAKING, share=0.25),
        seen(green=fleet(4), share=0.25),
        T0 + 1800,
        Phase.ROLLING_BACK,
        0,
        BACK_ACTIONS,
        timeout_reason(1800),
    ),
    (
        "green fails during a bake",
        at(BG, Phase.BAKING, share=0.25),
        seen(green=fleet(3, failure="instance died"), share=0.25),
        T0 + 10,
        Phase.ROLLING_BACK,
        0,
        BACK_ACTIONS,
        green_failure_reason("instance died"),
    ),
    (
        "full share applied: final bake",
        at(BG, Phase.SHIFTING, 1, share=1.0),
        seen(green=fleet(4), share=1.0),
        T0 + 301,
        Phase.FINAL_BAKE,
        1,
        [],
        None,
    ),
    (
        "final baking",
        at(BG, Phase.FINAL_BAKE, 1, T0 + 301, share=1.0),
        seen(green=fleet(4), share=1.0),
        T0 + 420.9,
        Phase.FINAL_BAKE,
        1,
        [],
        None,
    ),
    (
        "alarm during the final bake",
        at(BG, Phase.FINAL_BAKE, 1, T0 + 301, share=1.0),
        seen(green=fleet(4), share=1.0, alarms=("latency",)),
        T0 + 400,
        Phase.ROLLING_BACK,
        0,
        BACK_ACTIONS,
        ALARM,
    ),
    (
        "final bake over: stop blue",
        at(BG, Phase.FINAL_BAKE, 1, T0 + 301, share=1.0),
        seen(green=fleet(4), share=1.0),
        T0 + 421,
        Phase.TERMINATING_BLUE,
        1,
        [share(1.0), StopBlue()],
        None,
    ),
    (
        "blue draining",
        at(BG, Phase.TERMINATING_BLUE, 1, share=1.0),
        seen(blue=fleet(draining=4), green=fleet(4), share=1.0),
        T0 + 422,
        Phase.TERMINATING_BLUE,
        1,
        [],
        None,
    ),
    (
        "no rollback once blue terminates",
        at(BG, Phase.TERMINATING_BLUE, 1, share=1.0),
        seen(blue=fleet(draining=2), green=fleet(3, failure="x"), share=1.0, alarms=("errors",)),
        T0 + 9999,
        Phase.TERMINATING_BLUE,
        1,
        [],
        None,
    ),
    (
        "blue gone: done",
        at(BG, Phase.TERMINATING_BLUE, 1, share=1.0),
        seen(blue=fleet(), green=fleet(4), share=1.0),
        T0 + 423,
        Phase.DONE,
        1,
        [finish(Outcome.SUCCEEDED)],
        None,
    ),
    (
        "rolling back, green draining",
        at(BG, Phase.ROLLING_BACK, reason=ALARM, share=0.0),
        seen(green=fleet(draining=4)),
        T0 + 50,
        Phase.ROLLING_BACK,
        0,
        [],
        ALARM,
    ),
    (
        "rolling back, share still on green",
        at(BG, Phase.ROLLING_BACK, reason=ALARM, share=0.0),
        seen(green=fleet(), share=0.25),
        T0 + 50,
        Phase.ROLLING_BACK,
        0,
        [],
        ALARM,
    ),
    (
        "rolled back",
        at(BG, Phase.ROLLING_BACK, reason=ALARM, share=0.0),
        seen(green=fleet()),
        T0 + 51,
        Phase.ROLLED_BACK,
        0,
        [finish(Outcome.ROLLED_BACK, ALARM)],
        ALARM,
    ),
    (
        "done stays done",
        at(BG, Phase.DONE, 1, share=1.0),
        seen(alarms=("errors",)),
        T0 + 99999,
        Phase.DONE,
        1,
        [],
        None,
    ),
    (
        "rolled back stays",
        at(BG, Phase.ROLLED_BACK, reason=ALARM, share=0.0),
        seen(green=fleet(failure="x")),
        T0 + 99999,
        Phase.ROLLED_BACK,
        0,
        [],
        ALARM,
    ),
]


def check(
    state: RolloutState,
    obs: Observation,
    now: float,
    phase: Phase,
    step: int,
    actions: list[Action],
    reason: str | None,
    recovering: bool = False,
) -> RolloutState:
    new, got = (recover if recovering else advance)(state, obs, now)
    assert (new.phase, new.step, got, new.reason) == (phase, step, actions, reason)
    if (new.phase, new.step) != (state.phase, state.step):
        assert new.phase_started_at == now  # every new phase (and bake) starts now
    assert RolloutState.from_json(new.to_json()) == new
    return new


@pytest.mark.parametrize(
    ("case", "state", "obs", "now", "phase", "step", "actions", "reason"), BLUE_GREEN, ids=[c[0] for c in BLUE_GREEN]
)
def test_blue_green_transitions(
    case: str,
    state: RolloutState,
    obs: Observation,
    now: float,
    phase: Phase,
    step: int,
    actions: list[Action],
    reason: str | None,
) -> None:
    check(state, obs, now, phase, step, actions, reason)


def test_start() -> None:
    state, actions = start(canary(), {V: 4}, {V: 4}, T0)
    assert (state.phase, state.step, state.started_at, state.deadline) == (Phase.PROVISIONING_GREEN, 0, T0, T0 + 1800)
    assert state.green_share == {V: 0.0} and state.alarms == ("errors", "latency")
    assert actions == [StartGreen(instance_counts={V: 4})]
    no_config, _ = start(None, {"old": 1}, {"a": 2, "b": 1}, T0)
    assert no_config.deadline == T0 + 28800 and no_config.alarms == ()
    assert _ == [StartGreen(instance_counts={"a": 2, "b": 1})]


def test_without_alarms_bakes_are_plain_waits() -> None:
    state = at(begin(canary(alarms=False)), Phase.BAKING, share=0.25)
    check(state, seen(green=fleet(4), share=0.25, alarms=("errors",)), T0 + 100, Phase.BAKING, 0, [], None)


def test_zero_second_final_bake_still_checks_alarms_once() -> None:
    state = at(begin(canary(term=0)), Phase.FINAL_BAKE, 1, T0 + 10, share=1.0)
    check(
        state,
        seen(green=fleet(4), share=1.0, alarms=("errors",)),
        T0 + 10,
        Phase.ROLLING_BACK,
        0,
        BACK_ACTIONS,
        alarm_reason(["errors"]),
    )
    check(state, seen(green=fleet(4), share=1.0), T0 + 10, Phase.TERMINATING_BLUE, 1, [share(1.0), StopBlue()], None)


RO_BACK = (
    RollbackBatch(blue_instances=3, green_share=0.25, green_instances=1),
    RollbackBatch(blue_instances=4, green_share=0.0, green_instances=0),
)
RO_REASON = alarm_reason(["errors"])

ROLLING: list[tuple[str, RolloutState, Observation, float, Phase, int, list[Action], str | None]] = [
    ("first batch starting", RO, seen(green=fleet(1, 1)), T0 + 1, Phase.PROVISIONING_GREEN, 0, [], None),
    ("first batch healthy: shift", RO, seen(green=fleet(2)), T0 + 2, Phase.SHIFTING, 0, [share(0.5)], None),
    (
        "batch shifted: bake",
        at(RO, Phase.SHIFTING, share=0.5),
        seen(green=fleet(2), share=0.5),
        T0 + 3,
        Phase.BAKING,
        0,
        [],
        None,
    ),
    (
        "batch baked: terminate old batch",
        at(RO, Phase.BAKING, share=0.5),
        seen(green=fleet(2), share=0.5),
        T0 + 60,
        Phase.TERMINATING_BLUE,
        0,
        [share(0.5), scale(FleetRole.BLUE, 2)],
        None,
    ),
    (
        "old batch draining",
        at(RO, Phase.TERMINATING_BLUE, share=0.5),
        seen(blue=fleet(2, draining=2), green=fleet(2), share=0.5),
        T0 + 61,
        Phase.TERMINATING_BLUE,
        0,
        [],
        None,
    ),
    (
        "old batch gone: next batch",
        at(RO, Phase.TERMINATING_BLUE, share=0.5),
        seen(blue=fleet(2), green=fleet(2), share=0.5),
        T0 + 62,
        Phase.PROVISIONING_GREEN,
        1,
        [scale(FleetRole.GREEN, 4)],
        None,
    ),
    (
        "second batch healthy: shift all",
        at(RO, Phase.PROVISIONING_GREEN, 1, share=0.5),
        seen(blue=fleet(2), green=fleet(4), share=0.5),
        T0 + 63,
        Phase.SHIFTING,
        1,
        [share(1.0)],
        None,
    ),
    (
        "last batch baked: terminate the rest",
        at(RO, Phase.BAKING, 1, share=1.0),
        seen(blue=fleet(2), green=fleet(4), share=1.0),
        T0 + 200,
        Phase.TERMINATING_BLUE,
        1,
        [share(1.0), scale(FleetRole.BLUE, 0)],
        None,
    ),
    (
        "old fleet gone: done",
        at(RO, Phase.TERMINATING_BLUE, 1, share=1.0),
        seen(blue=fleet(), green=fleet(4), share=1.0),
        T0 + 201,
        Phase.DONE,
        1,
        [finish(Outcome.SUCCEEDED)],
        None,
    ),
    (
        "alarm in the last bake: roll back in batches",
        at(RO, Phase.BAKING, 1, share=1.0),
        seen(blue=fleet(2), green=fleet(4), share=1.0, alarms=("errors",)),
        T0 + 100,
        Phase.RESTORING_BLUE,
        0,
        [share(1.0), scale(FleetRole.BLUE, 3)],
        RO_REASON,
    ),
    (
        "alarm in the first bake: old fleet complete, one batch",
        at(RO, Phase.BAKING, share=0.5),
        seen(blue=fleet(4), green=fleet(2), share=0.5, alarms=("errors",)),
        T0 + 10,
        Phase.RESTORING_BLUE,
        0,
        [share(0.5), scale(FleetRole.BLUE, 4)],
        RO_REASON,
    ),
    (
        "green failure between batches rolls back",
        at(RO, Phase.TERMINATING_BLUE, share=0.5),
        seen(blue=fleet(3, draining=1), green=fleet(1, failure="oom"), share=0.5),
        T0 + 61,
        Phase.RESTORING_BLUE,
        0,
        [share(0.25), scale(FleetRole.BLUE, 4)],
        green_failure_reason("oom"),
    ),
    (
        "deadline between batches rolls back",
        at(RO, Phase.PROVISIONING_GREEN, 1, share=0.5),
        seen(blue=fleet(2), green=fleet(2, 2), share=0.5),
        T0 + 900,
        Phase.RESTORING_BLUE,
        0,
        [share(0.5), scale(FleetRole.BLUE, 3)],
        timeout_reason(900),
    ),
    (
        "last batch terminating: no rollback",
        at(RO, Phase.TERMINATING_BLUE, 1, share=1.0),
        seen(blue=fleet(draining=2), green=fleet(3, failure="oom"), share=1.0),
        T0 + 9999,
        Phase.TERMINATING_BLUE,
        1,
        [],
        None,
    ),
    (
        "old batch starting",
        at(RO, Phase.RESTORING_BLUE, rollback=RO_BACK, reason=RO_REASON, share=1.0),
        seen(blue=fleet(2, 1), green=fleet(4), share=1.0),
        T0 + 101,
        Phase.RESTORING_BLUE,
        0,
        [],
        RO_REASON,
    ),
    (
        "old batch healthy: shift back",
        at(RO, Phase.RESTORING_BLUE, rollback=RO_BACK, reason=RO_REASON, share=1.0),
        seen(blue=fleet(3), green=fleet(4), share=1.0),
        T0 + 102,
        Phase.ROLLING_BACK,
        0,
        [share(0.25), scale(FleetRole.GREEN, 1)],
        RO_REASON,
    ),
    (
        "old batch fails: rollback failed",
        at(RO, Phase.RESTORING_BLUE, rollback=RO_BACK, reason=RO_REASON, share=1.0),
        seen(blue=fleet(2, 1, failure="no capacity"), green=fleet(4), share=1.0),
        T0 + 102,
        Phase.ROLLBACK_FAILED,
        0,
        [
            finish(
                Outcome.ROLLBACK_FAILED,
                f"{RO_REASON} The rollback failed: no capacity. The "
                "endpoint serves a mix of the old and new endpoint configurations.",
            )
        ],
        f"{RO_REASON} The rollback failed: no capacity. The endpoint serves a mix of the old and new endpoint "
        "configurations.",
    ),
    (
        "new batch draining",
        at(RO, Phase.ROLLING_BACK, rollback=RO_BACK, reason=RO_REASON, share=0.25),
        seen(blue=fleet(3), green=fleet(1, draining=3), share=0.25),
        T0 + 103,
        Phase.ROLLING_BACK,
        0,
        [],
        RO_REASON,
    ),
    (
        "new batch gone: next old batch",
        at(RO, Phase.ROLLING_BACK, rollback=RO_BACK, reason=RO_REASON, share=0.25),
        seen(blue=fleet(3), green=fleet(1), share=0.25),
        T0 + 104,
        Phase.RESTORING_BLUE,
        1,
        [scale(FleetRole.BLUE, 4)],
        RO_REASON,
    ),
    (
        "last batch back: rolled back",
        at(RO, Phase.ROLLING_BACK, 1, rollback=RO_BACK, reason=RO_REASON, share=0.0),
        seen(blue=fleet(4), green=fleet(), share=0.0),
        T0 + 105,
        Phase.ROLLED_BACK,
        1,
        [finish(Outcome.ROLLED_BACK, RO_REASON)],
        RO_REASON,
    ),
    (
        "deadline ignored while rolling back",
        at(RO, Phase.ROLLING_BACK, 1, rollback=RO_BACK, reason=RO_REASON, share=0.0),
        seen(blue=fleet(4), green=fleet(draining=1)),
        T0 + 99999,
        Phase.ROLLING_BACK,
        1,
        [],
        RO_REASON,
    ),
]


@pytest.mark.parametrize(
    ("case", "state", "obs", "now", "phase", "step", "actions", "reason"), ROLLING, ids=[c[0] for c in ROLLING]
)
def test_rolling_transitions(
    case: str,
    state: RolloutState,
    obs: Observation,
    now: float,
    phase: Phase,
    step: int,
    actions: list[Action],
    reason: str | None,
) -> None:
    check(state, obs, now, phase, step, actions, reason)


def test_rolling_rollback_plan_is_stored() -> None:
    state = at(RO, Phase.BAKING, 1, share=1.0)
    new, _ = advance(state, seen(blue=fleet(2), green=fleet(4), share=1.0, alarms=("errors",)), T0 + 100)
    assert new.rollback == RO_BACK


# --- restarts ---------------------------------------------------------------------------------------

LIVE = seen(blue=fleet(4), green=fleet(4), share=0.25)
DEAD = seen(blue=fleet(), green=fleet(), share=0.25)

# (case, state, observation, phase, step, actions, reason)
RECOVERY: list[tuple[str, RolloutState, Observation, Phase, int, list[Action], str | None]] = [
    ("provisioning resumes", BG, DEAD, Phase.PROVISIONING_GREEN, 0, [StartGreen(instance_counts={V: 4})], None),
    (
        "shifting rolls back",
        at(BG, Phase.SHIFTING, share=0.25),
        LIVE,
        Phase.ROLLING_BACK,
        0,
        BACK_ACTIONS,
        RESTART_REASON,
    ),
    ("baking rolls back", at(BG, Phase.BAKING, share=0.25), LIVE, Phase.ROLLING_BACK, 0, BACK_ACTIONS, RESTART_REASON),
    (
        "final bake rolls back",
        at(BG, Phase.FINAL_BAKE, 1, share=1.0),
        DEAD,
        Phase.ROLLING_BACK,
        0,
        BACK_ACTIONS,
        RESTART_REASON,
    ),
    (
        "terminating blue resumes",
        at(BG, Phase.TERMINATING_BLUE, 1, share=1.0),
        DEAD,
        Phase.TERMINATING_BLUE,
        1,
        [share(1.0), StopBlue()],
        None,
    ),
    (
        "rolling back resumes",
        at(BG, Phase.ROLLING_BACK, reason=ALARM, share=0.0),
        LIVE,
        Phase.ROLLING_BACK,
        0,
        BACK_ACTIONS,
        ALARM,
    ),
    ("done is done", at(BG, Phase.DONE, 1, share=1.0), DEAD, Phase.DONE, 1, [], None),
    ("rolling: first batch resumes", RO, DEAD, Phase.PROVISIONING_GREEN, 0, [scale(FleetRole.GREEN, 2)], None),
    (
        "rolling: later batch rolls back",
        at(RO, Phase.PROVISIONING_GREEN, 1, share=0.5),
        seen(blue=fleet(2), green=fleet(2), share=0.5),
        Phase.RESTORING_BLUE,
        0,
        [share(0.5), scale(FleetRole.BLUE, 3)],
        RESTART_REASON,
    ),
    (
        "rolling: bake rolls back, green lost",
        at(RO, Phase.BAKING, share=0.5),
        seen(blue=fleet(), green=fleet(), share=0.5),
        Phase.RESTORING_BLUE,
        0,
        [share(0.0), scale(FleetRole.BLUE, 1)],
        RESTART_REASON,
    ),
    (
        "rolling: last termination resumes",
        at(RO, Phase.TERMINATING_BLUE, 1, share=1.0),
        DEAD,
        Phase.TERMINATING_BLUE,
        1,
        [share(1.0), scale(FleetRole.BLUE, 0)],
        None,
    ),
    (
        "rolling: earlier termination rolls back",
        at(RO, Phase.TERMINATING_BLUE, 0, share=0.5),
        seen(blue=fleet(2), green=fleet(2), share=0.5),
        Phase.RESTORING_BLUE,
        0,
        [share(0.5), scale(FleetRole.BLUE, 3)],
        RESTART_REASON,
    ),
    (
        "rolling: rollback re-planned from what is alive",
        at(RO, Phase.ROLLING_BACK, rollback=RO_BACK, reason=RO_REASON, share=0.25),
        seen(blue=fleet(), green=fleet(), share=0.25),
        Phase.RESTORING_BLUE,
        0,
        [share(0.0), scale(FleetRole.BLUE, 1)],
        RO_REASON,
    ),
]


@pytest.mark.parametrize(
    ("case", "state", "obs", "phase", "step", "actions", "reason"), RECOVERY, ids=[c[0] for c in RECOVERY]
)
def test_recovery(
    case: str,
    state: RolloutState,
    obs: Observation,
    phase: Phase,
    step: int,
    actions: list[Action],
    reason: str | None,
) -> None:
    check(state, obs, T0 + 50, phase, step, actions, reason, recovering=True)


# --- whole runs against a fake world ---------------------------------------------------------------


def run(config: DeploymentConfig | None, old: int = 4, new: int = 4) -> Run:
    world = World.serving({V: old})
    state, actions = start(config, {V: old}, {V: new}, T0)
    world.perform(actions)
    return Run(world=world, stored=state.to_json(), now=T0, trace=[(state.phase, state.step)])


def phases(r: Run) -> list[tuple[str, int]]:
    return [(p.value, s) for p, s in r.trace]


def test_canary_succeeds() -> None:
    r = run(canary())
    final = r.until_done()
    assert final.phase is Phase.DONE
    assert phases(r) == [
        ("PROVISIONING_GREEN", 0),
        ("SHIFTING", 0),
        ("BAKING", 0),
        ("SHIFTING", 1),
        ("FINAL_BAKE", 1),
        ("TERMINATING_BLUE", 1),
        ("DONE", 1),
    ]
    assert r.world.finished == [finish(Outcome.SUCCEEDED)]
    assert (r.world.blue.healthy.get(V, 0), r.world.green.healthy[V], r.world.share[V]) == (0, 4, 1.0)
    assert r.now - T0 >= 300 + 120  # both bakes were waited out


def test_linear_steps_through_thirds() -> None:
    r = run(linear(), 3, 3)
    shares: list[float] = []
    while r.state.phase is not Phase.DONE:
        if r.step() and r.state.phase is Phase.SHIFTING:
            shares.append(r.state.green_share[V])
    assert shares == [1 / 3, 2 / 3, 1.0]
    assert [p for p, _ in phases(r)].count("BAKING") == 2


@pytest.mark.parametrize("bake", ["BAKING", "FINAL_BAKE"])
def test_alarm_rolls_everything_back(bake: str) -> None:
    r = run(canary())
    while r.state.phase.value != bake:
        r.step()
    r.step()  # one quiet tick of the bake
    r.world.alarms.add("errors")
    final = r.until_done()
    assert final.phase is Phase.ROLLED_BACK
    assert r.world.finished == [finish(Outcome.ROLLED_BACK, alarm_reason(["errors"]))]
    assert (r.world.blue.healthy[V], r.world.green.healthy.get(V, 0), r.world.share[V]) == (4, 0, 0.0)


def test_timeout_rolls_back() -> None:
    r = run(canary(wait=300, term=0, timeout=600))
    r.world.green.stuck = True  # starts, never passes /ping, never reports a failure
    final = r.until_done(dt=50.0)
    assert (final.phase, final.reason) == (Phase.ROLLED_BACK, timeout_reason(600))
    assert T0 + 600 <= r.now < T0 + 700
    assert r.world.green.desired[V] == 0 and r.world.blue.healthy[V] == 4


def test_rolling_succeeds_and_rolls_back() -> None:
    r = run(rolling(), 4, 4)
    assert r.until_done().phase is Phase.DONE
    assert (r.world.blue.healthy.get(V, 0), r.world.green.healthy[V]) == (0, 4)
    bad = run(rolling(), 4, 4)
    while bad.state.phase is not Phase.BAKING or bad.state.step != 1:
        bad.step()
    bad.world.alarms.add("latency")
    assert bad.until_done().phase is Phase.ROLLED_BACK
    assert (bad.world.blue.healthy[V], bad.world.green.healthy.get(V, 0), bad.world.share[V]) == (4, 0, 0.0)
    assert ("RESTORING_BLUE", 1) in phases(bad)  # two rollback batches of one instance


def test_rolling_rollback_fails() -> None:
    r = run(rolling(), 4, 4)
    while r.state.phase is not Phase.BAKING or r.state.step != 1:
        r.step()
    r.world.alarms.add("latency")
    r.world.blue.failure = "insufficient capacity"
    final = r.until_done()
    assert final.phase is Phase.ROLLBACK_FAILED
    assert r.world.finished[-1].endpoint_status is EndpointStatus.UPDATE_ROLLBACK_FAILED
    assert "insufficient capacity" in (final.reason or "")


CONFIGS: dict[str, Callable[[], DeploymentConfig | None]] = {
    "canary": lambda: canary(),
    "linear": lambda: linear(),
    "all-at-once": lambda: None,
    "rolling": lambda: rolling(),
    "rolling-all-back": lambda: rolling(None),
}


@pytest.mark.parametrize("kill", [False, True], ids=["instances-survive", "instances-die"])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_a_crash_at_any_transition_ends_consistent(name: str, kill: bool) -> None:
    """kill -9 after each stored transition in turn: the run always ends rolled forward or back, never
    leaving traffic on a fleet that is gone (the world checks that after every action)."""
    reference = run(CONFIGS[name](), 3, 3)
    reference.until_done()
    transitions = len(reference.trace)
    assert transitions >= 5
    for crash_at in range(1, transitions):
        r = run(CONFIGS[name](), 3, 3)
        while len(r.trace) < crash_at:
            r.step()
        r.crash(kill)
        final = r.until_done()
        w = r.world
        if final.phase is Phase.DONE:
            assert (w.blue.desired.get(V, 0), w.green.desired[V], w.share[V]) == (0, 3, 1.0)
        else:
            assert final.phase is Phase.ROLLED_BACK, final.phase
            assert (w.blue.desired[V], w.green.desired.get(V, 0), w.share[V]) == (3, 0, 0.0)
        for _ in range(3):
            w.tick()
        assert w.blue.healthy.get(V, 0) + w.green.healthy.get(V, 0) == 3  # the survivor fleet is whole again
        assert len(w.finished) == 1


def test_fleet_world_helpers_follow_the_actions() -> None:
    """The fake itself: growing starts instances, shrinking drains, ticks finish both."""
    f = Fleet(desired={V: 2}, healthy={V: 2})
    f.scale({V: 4})
    assert f.starting[V] == 2
    f.tick()
    assert f.healthy[V] == 4
    f.scale({V: 1})
    assert (f.healthy[V], f.draining[V]) == (1, 3)
    f.tick()
    assert f.draining == {}
