"""A fake of what the rollout controller acts on: two fleets, a routing share and alarm states.

Actions take effect at once (traffic share) or on the next ``tick`` (instances start, drains finish),
and, like the endpoint controller, the world restarts instances that died up to each fleet's desired
size. ``crash`` is a ``kill -9`` of the server: the actions of the transition being stored are lost,
and optionally every instance process dies with it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from modelgate.rollout.contract import (
    Action,
    Finish,
    FleetRole,
    FleetView,
    Observation,
    ScaleFleet,
    SetTrafficShare,
    StartGreen,
    StopBlue,
    StopGreen,
    VariantInstances,
)
from modelgate.rollout.machine import TERMINAL, Phase, RolloutState, advance, recover


@dataclass
class Fleet:
    desired: dict[str, int] = field(default_factory=dict)
    starting: dict[str, int] = field(default_factory=dict)
    healthy: dict[str, int] = field(default_factory=dict)
    draining: dict[str, int] = field(default_factory=dict)
    failure: str | None = None  # instances of this fleet never become healthy, and it says why
    stuck: bool = False  # instances of this fleet never become healthy, silently

    def scale(self, counts: dict[str, int]) -> None:
        for v, n in counts.items():
            self.desired[v] = n
            extra = self.starting.get(v, 0) + self.healthy.get(v, 0) - n
            if extra < 0:
                self.starting[v] = self.starting.get(v, 0) - extra
            if extra > 0:  # stop starting instances first, then drain healthy ones
                from_starting = min(extra, self.starting.get(v, 0))
                self.starting[v] = self.starting.get(v, 0) - from_starting
                from_healthy = extra - from_starting
                self.healthy[v] = self.healthy.get(v, 0) - from_healthy
                self.draining[v] = self.draining.get(v, 0) + from_healthy

    def stop(self) -> None:
        self.scale(dict.fromkeys(set(self.desired) | set(self.healthy) | set(self.starting), 0))

    def tick(self) -> None:
        self.draining.clear()
        for v, n in self.desired.items():
            if self.failure is None and not self.stuck:
                self.healthy[v] = self.healthy.get(v, 0) + self.starting.get(v, 0)
                self.starting[v] = 0
            missing = n - self.starting.get(v, 0) - self.healthy.get(v, 0)
            if missing > 0:  # the endpoint controller replaces instances that died
                self.starting[v] = self.starting.get(v, 0) + missing

    def kill(self) -> None:
        self.starting.clear()
        self.healthy.clear()
        self.draining.clear()

    def view(self) -> FleetView:
        names = set(self.starting) | set(self.healthy) | set(self.draining)
        return FleetView(
            variants={
                v: VariantInstances(
                    starting=self.starting.get(v, 0), healthy=self.healthy.get(v, 0), draining=self.draining.get(v, 0)
                )
                for v in names
            },
            failure=self.failure,
        )


@dataclass
class World:
    blue: Fleet
    green: Fleet = field(default_factory=Fleet)
    share: dict[str, float] = field(default_factory=dict)
    alarms: set[str] = field(default_factory=set)
    finished: list[Finish] = field(default_factory=list)

    @classmethod
    def serving(cls, counts: dict[str, int]) -> World:
        return cls(blue=Fleet(desired=dict(counts), healthy=dict(counts)), share=dict.fromkeys(counts, 0.0))

    def observe(self) -> Observation:
        return Observation(
            blue=self.blue.view(),
            green=self.green.view(),
            green_share=dict(self.share),
            alarms_in_alarm=frozenset(self.alarms),
        )

    def perform(self, actions: Iterable[Action]) -> None:
        for a in actions:
            if isinstance(a, StartGreen):
                self.green.scale(a.instance_counts)
            elif isinstance(a, ScaleFleet):
                (self.blue if a.fleet is FleetRole.BLUE else self.green).scale(a.instance_counts)
            elif isinstance(a, SetTrafficShare):
                self.share.update(a.green_share)
            elif isinstance(a, StopBlue):
                self.blue.stop()
            elif isinstance(a, StopGreen):
                self.green.stop()
            else:
                self.finished.append(a)
            self.check_traffic_has_a_fleet()

    def check_traffic_has_a_fleet(self) -> None:
        """Traffic never goes to a fleet that is gone or being removed."""
        for v, s in self.share.items():
            assert s <= 0.0 or self.green.desired.get(v, 0) > 0, f"share {s} on a green fleet without instances"
            assert s >= 1.0 or self.blue.desired.get(v, 0) > 0, f"share {1 - s} on a blue fleet without instances"

    def tick(self) -> None:
        self.blue.tick()
        self.green.tick()


@dataclass
class Run:
    """Drives the machine against a world, storing every state as JSON as the controller would."""

    world: World
    stored: str
    now: float
    trace: list[tuple[Phase, int]] = field(default_factory=list)

    @property
    def state(self) -> RolloutState:
        return RolloutState.from_json(self.stored)

    def step(self, dt: float = 1.0) -> bool:
        """One controller tick; True when the state changed (the world then acted, not ticked)."""
        state = self.state
        new, actions = advance(state, self.world.observe(), self.now)
        if new == state:
            assert actions == []
            self.world.tick()
            self.now += dt
            return False
        self.stored = new.to_json()
        self.trace.append((new.phase, new.step))
        self.world.perform(actions)
        return True

    def crash(self, kill_instances: bool) -> None:
        """kill -9 right after the next transition was stored, before its actions ran; then restart."""
        state = self.state
        new, _lost = advance(state, self.world.observe(), self.now)
        self.stored = new.to_json()
        if kill_instances:
            self.world.blue.kill()
            self.world.green.kill()
        recovered, actions = recover(self.state, self.world.observe(), self.now)
        self.stored = recovered.to_json()
        self.trace.append((recovered.phase, recovered.step))
        self.world.perform(actions)

    def until_done(self, dt: float = 1.0, limit: int = 100_000) -> RolloutState:
        for _ in range(limit):
            if self.state.phase in TERMINAL:
                return self.state
            self.step(dt)
        raise AssertionError(f"no end after {limit} ticks: {self.state.phase}")
