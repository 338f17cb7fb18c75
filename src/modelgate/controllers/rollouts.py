"""The rollout controller: carries out an UpdateEndpoint by driving :mod:`modelgate.rollout.machine`.

The loop is the machine's contract: the new state is stored, then its actions are carried out in
order; ``advance`` is called again at once when the state changed, otherwise every ``tick`` seconds.
The stored record (:class:`~modelgate.domain.deployments.Deployment`) also says how many instances each
fleet must run once the stored state's actions are done.

Fleets. The endpoint's current fleets (blue) stay in ``EndpointController.fleets``; the new config's
fleets (green, one per variant, ids suffixed with the deployment id) live here until the deployment
succeeds and they become the endpoint's fleets. The routing table gives each variant's green fleet
the share the last ``SetTrafficShare`` commanded and blue the rest (:mod:`controllers.rollout_views`).
Stopping a fleet publishes a route without its instances first, then drains them
(``FleetManager.stop_instance``), so a request goes to the fleet that held its share when it arrived.

Observations: per fleet and variant the instances starting (wanted, not yet healthy), healthy and
draining; a fleet's failure is why a StartGreen or ScaleFleet could not reach its size; green's share
is read back from the published route; the rollback alarms in ALARM come from ``alarm_state``
(``MetricsSystem.alarm_state``; an alarm deleted meanwhile counts as not in ALARM).

Restart (kill -9). ``EndpointController.start`` reaps every instance and calls :meth:`resume` for an
endpoint with a stored deployment: ``recover`` decides with nothing running (a bake rolls back, the
termination of blue finishes), the record is stored with the fleet sizes the recovered actions leave,
those fleets are started (blue unless it is being terminated, green unless it is being stopped),
the share is published, and the loop carries on. Traffic is never published onto a fleet before its
instances pass ``/ping``.

UpdateRollbackFailed, then UpdateEndpoint. A failed rolling rollback keeps its ``LiveDeployment``
(both fleets serve, with its share). When another update is accepted there, :meth:`run` first
consolidates (:func:`~modelgate.rollout.machine.consolidate`): the endpoint's variants and the new
record's blue targets become the old instances that serve now (stored first), the route sends all
traffic to them, and the failed update's fleets (``retiring`` while they drain) are drained and
stopped; no old instance is started, since that is what failed. The new deployment then begins from
there like any other, so its rollback returns the endpoint to InService on the old config at that
size. A variant with no old instance serving cannot be consolidated: the failed deployment's record
and the endpoint's UpdateRollbackFailed status are stored back, with a FailureReason that says so. A
restart before the consolidation is stored restores the old config at the record's blue targets
(the failed update's instances, reaped like every other, are not brought back).

Fault injection (tests only). With ``MODELGATE_FAULT_CRASH_AT`` set (``Settings.fault_crash_at``, read
once when the controller is built), the controller sends SIGKILL to its own process at that point of
the first traffic shift it carries out: ``traffic-shift`` right after the state whose actions include
a ``SetTrafficShare`` was stored and before the share is published, ``traffic-shifted`` right after
the share was published. A real kill -9 at an exact point, so that recovery from it can be tested.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from modelgate.controllers.fleets import Fleet, InstanceFailure
from modelgate.controllers.rollout_views import describe_deployment, variant_routes
from modelgate.domain.deployments import Deployment, DeploymentView
from modelgate.domain.resources import Endpoint, EndpointStatus
from modelgate.errors import ModelgateError
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
    TERMINAL,
    Phase,
    RolloutState,
    advance,
    consolidate,
    not_consolidated_reason,
    recover,
    start,
)
from modelgate.rollout.view import endpoint_view
from modelgate.routing.table import EndpointRoute, VariantRoute
from modelgate.settings import Settings

if TYPE_CHECKING:
    from modelgate.controllers.endpoints import EndpointController

log = logging.getLogger(__name__)

DEFAULT_TICK = 0.2  # seconds between two looks at the world while nothing changes
CRASH_BEFORE_SHIFT = "traffic-shift"  # fault injection: SIGKILL once a shift is stored, before it is published
CRASH_AFTER_SHIFT = "traffic-shifted"  # fault injection: SIGKILL right after a shift is published
_DEPLOYING = (EndpointStatus.UPDATING, EndpointStatus.ROLLING_BACK, EndpointStatus.UPDATE_ROLLBACK_FAILED)


@dataclass(eq=False)
class LiveDeployment:
    """A deployment being carried out: its stored record and what exists only in this process."""

    record: Deployment
    green: dict[str, Fleet] = field(default_factory=dict)  # variant -> green fleet
    share: dict[str, float] = field(default_factory=dict)  # variant -> share of its traffic on green
    failure: dict[FleetRole, str] = field(default_factory=dict)  # why a fleet could not reach its size
    retiring: dict[str, Fleet] = field(default_factory=dict)  # a failed update's fleets, draining (consolidation)


class RolloutController:
    def __init__(
        self,
        endpoints: EndpointController,
        alarm_state: Callable[[str], str] | None,
        max_execution_seconds: int | None = None,
        tick: float = DEFAULT_TICK,
        crash_at: str | None = None,
    ) -> None:
        self.ec = endpoints
        self.alarm_state = alarm_state
        self.max_execution_seconds = max_execution_seconds
        self.tick = tick
        # Test-only fault injection. The composition root builds this controller without it, so the one
        # setting is read here, once.
        self.crash_at = crash_at if crash_at is not None else Settings().fault_crash_at
        self.live: dict[str, LiveDeployment] = {}
        self._missing_alarms: set[str] = set()

    # --- entry points (each runs as the endpoint's operation) ------------------------------------

    async def run(self, name: str) -> None:
        """A deployment the service has just stored: plan it, then drive it to the end. Accepted on an
        endpoint in UpdateRollbackFailed, it first consolidates onto the old instances that serve."""
        dep = self.ec.repo.get_deployment(name)
        if dep is None:
            return
        failed = self.live.get(name)
        live = LiveDeployment(dep)
        if failed is not None and _rollback_failed(failed) and not await self._consolidate(name, live, failed):
            return
        self.live[name] = live
        await self._begin(name, live)

    async def resume(self, name: str) -> None:
        """After a restart, with no instance running: recover, start the fleets it needs, drive on."""
        dep = self.ec.repo.get_deployment(name)
        if dep is None:
            return
        live = self.live[name] = LiveDeployment(dep)
        if dep.state is None:  # accepted, never planned: serve blue again, then begin
            if await self._restore(name, live, dep.blue_targets, {}):
                await self._begin(name, live)
            return
        state, actions = dep.state, list[Action]()
        if state.phase not in TERMINAL:
            state, actions = recover(state, Observation(), self.ec.clock.now())
        live.record = dep.with_actions(state, actions)
        self.ec.repo.save_deployment(live.record, self._with_status(name, state))
        live.share = dict(state.green_share)
        green = {v: n for v, n in live.record.green_targets.items() if n > 0}
        if not await self._restore(name, live, live.record.blue_targets, green):
            return
        if state.phase in TERMINAL:  # UpdateRollbackFailed: both fleets serve, as they did
            return
        for action in actions:
            await self._do(name, live, action)
        await self._drive(name, live, state)

    async def discard(self, name: str) -> None:
        """DeleteEndpoint: stop the green fleets (the record goes with the endpoint's)."""
        live = self.live.pop(name, None)
        if live is not None:
            fleets = [*live.green.values(), *live.retiring.values()]
            await asyncio.gather(*(self.ec.fm.stop_all(f) for f in fleets))

    def green_fleets(self) -> list[tuple[str, str, Fleet]]:
        """(endpoint, variant, fleet) of every fleet this controller runs (green, and a failed update's
        while it is retired), for shutdown and the metrics sampler."""
        return [
            (name, v, f)
            for name, live in self.live.items()
            for fleets in (live.green, live.retiring)
            for v, f in fleets.items()
        ]

    def routes(self, ep: Endpoint, blue: Mapping[str, Fleet]) -> tuple[VariantRoute, ...] | None:
        """The endpoint's variants with blue and green fleets and their shares; None: no deployment."""
        live = self.live.get(ep.name)
        return None if live is None else variant_routes(ep, blue, live.record, live.green, live.share)

    def describe(self, name: str) -> DeploymentView | None:
        ep = self.ec.endpoints.get(name)
        if ep is None or ep.status not in _DEPLOYING:
            return None
        blue = self.ec.fleets.get(name, {})
        live = self.live.get(name)
        if live is not None and _superseded(live, ep):
            live = None  # UpdateRollbackFailed, then UpdateEndpoint: the new update is not picked up yet
        if live is not None:
            return describe_deployment(ep, live.record, blue, live.green, live.share)
        dep = self.ec.repo.get_deployment(name)  # stored, not picked up yet (or just restarted)
        return None if dep is None else describe_deployment(ep, dep, blue, {}, {})

    def alarm_exists(self, alarm: str) -> bool:
        if self.alarm_state is None:
            return True
        try:
            self.alarm_state(alarm)
        except ModelgateError:
            return False
        return True

    # --- the loop ----------------------------------------------------------------------------------

    async def _consolidate(self, name: str, live: LiveDeployment, failed: LiveDeployment) -> bool:
        """UpdateEndpoint on UpdateRollbackFailed: all traffic onto the old instances that serve, the failed
        update's fleets drained and stopped; False (UpdateRollbackFailed again) when a variant has none."""
        ep, now = self.ec.endpoints[name], self.ec.clock.now()
        blue = self.ec.fleets.get(name, {})
        plan = consolidate({v.variant_name: _healthy(blue.get(v.variant_name)) for v in ep.variants})
        if not plan.possible:  # the failed deployment is stored back, with this reason
            reason = not_consolidated_reason(ep.config_name, plan.missing)
            assert failed.record.state is not None
            failed.record = failed.record.model_copy(
                update={"state": failed.record.state.model_copy(update={"reason": reason})}
            )
            back = ep.model_copy(
                update={
                    "status": EndpointStatus.UPDATE_ROLLBACK_FAILED,
                    "failure_reason": reason,
                    "deployment_config": failed.record.deployment_config,
                    "last_modified_time": now,
                }
            )
            self.ec.endpoints[name] = back
            self.ec.repo.save_deployment(failed.record, back)
            self.ec.publish(name)
            log.warning("update of %s not started: %s", name, reason)
            return False
        counts = plan.blue
        ep = ep.model_copy(
            update={
                "variants": tuple(
                    v.model_copy(
                        update={
                            "current_instance_count": counts[v.variant_name],
                            "desired_instance_count": counts[v.variant_name],
                        }
                    )
                    for v in ep.variants
                ),
                "last_modified_time": now,
            }
        )
        live.record = live.record.model_copy(update={"blue_targets": counts})
        live.retiring = failed.green
        self.ec.endpoints[name] = ep
        self.ec.repo.save_deployment(live.record, ep)  # written first: a restart restores exactly this
        self.live[name] = live
        self.ec.publish(name)  # no share on green: the old instances take all the traffic
        for v, fleet in blue.items():
            fleet.desired = counts.get(v, fleet.desired)  # no more attempts to start old instances
        await asyncio.gather(*(self.ec.fm.stop_all(f) for f in failed.green.values()))
        live.retiring = {}
        log.info("%s: consolidated onto %s instance(s) of %s", name, counts, ep.config_name)
        return True

    async def _begin(self, name: str, live: LiveDeployment) -> None:
        dep, ep = live.record, self.ec.endpoints[name]
        blue = {v.variant_name: v.current_instance_count for v in ep.variants}
        green = {v.variant_name: v.desired_instance_count for v in dep.variants}
        now = self.ec.clock.now()
        state, actions = start(dep.deployment_config, blue, green, now)
        cap = self.max_execution_seconds
        if cap is not None and cap < state.plan.max_execution_seconds:  # MODELGATE_MAX_ROLLOUT_EXECUTION_SECONDS
            plan = state.plan.model_copy(update={"max_execution_seconds": cap})
            state = state.model_copy(update={"plan": plan, "deadline": now + cap})
        await self._step(name, live, state, actions)
        await self._drive(name, live, state)

    async def _drive(self, name: str, live: LiveDeployment, state: RolloutState) -> None:
        while state.phase not in TERMINAL:
            new, actions = advance(state, self._observe(name, live, state), self.ec.clock.now())
            if new == state:
                await asyncio.sleep(self.tick)
                continue
            state = new
            await self._step(name, live, state, actions)

    async def _step(self, name: str, live: LiveDeployment, state: RolloutState, actions: list[Action]) -> None:
        """Store ``state`` (with the fleet sizes its actions leave), then carry the actions out in order."""
        finish = next((a for a in actions if isinstance(a, Finish)), None)
        if finish is not None:  # finishing stores the endpoint and forgets the deployment at once
            self._finish(name, live, state, finish)
            return
        live.record = live.record.with_actions(state, actions)
        self.ec.repo.save_deployment(live.record, self._with_status(name, state))
        for action in actions:
            shift = isinstance(action, SetTrafficShare)
            if shift:
                self._fault(CRASH_BEFORE_SHIFT)
            await self._do(name, live, action)
            if shift:
                self._fault(CRASH_AFTER_SHIFT)

    def _fault(self, point: str) -> None:
        """Test-only fault injection (``MODELGATE_FAULT_CRASH_AT``): a real kill -9 of this server, here."""
        if self.crash_at == point:
            log.critical("MODELGATE_FAULT_CRASH_AT=%s: sending SIGKILL to the server (fault injection)", point)
            os.kill(os.getpid(), signal.SIGKILL)

    def _with_status(self, name: str, state: RolloutState) -> Endpoint | None:
        """The endpoint with the status the state shows (RollingBack during a rolling rollback), if new."""
        ep = self.ec.endpoints[name]
        status = endpoint_view(state).endpoint_status
        if status == ep.status:
            return None
        ep = ep.model_copy(update={"status": status, "last_modified_time": self.ec.clock.now()})
        self.ec.endpoints[name] = ep
        return ep

    async def _do(self, name: str, live: LiveDeployment, action: Action) -> None:
        if isinstance(action, StartGreen):
            await self._scale(name, live, FleetRole.GREEN, action.instance_counts)
        elif isinstance(action, ScaleFleet):
            await self._scale(name, live, action.fleet, action.instance_counts)
        elif isinstance(action, SetTrafficShare):
            live.share.update(action.green_share)
            self.ec.publish(name)
        elif isinstance(action, StopBlue):
            await asyncio.gather(*(self.ec.fm.stop_all(f) for f in self.ec.fleets.get(name, {}).values()))
        elif isinstance(action, StopGreen):
            await asyncio.gather(*(self.ec.fm.stop_all(f) for f in live.green.values()))

    async def _scale(
        self, name: str, live: LiveDeployment, role: FleetRole, counts: Mapping[str, int], retry: bool = False
    ) -> None:
        """Bring each variant's fleet of ``role`` to its count; a failure is observed, not raised, and with
        ``retry`` (a restart) the fleet keeps trying in the background, as a fleet replacing instances does."""
        fleets = live.green if role is FleetRole.GREEN else self.ec.fleets.setdefault(name, {})
        live.failure.pop(role, None)

        async def one(variant: str, count: int) -> None:
            fleet = fleets.get(variant)
            try:
                if fleet is None:
                    fleet = fleets[variant] = await self._new_fleet(name, live, role, variant)
                fleet.retired = False
                await self.ec.fm.scale(fleet, count)
            except InstanceFailure as exc:
                live.failure.setdefault(
                    role,
                    f"The primary container for production variant {variant} did not pass the ping health "
                    f"check: {exc.reason}",
                )
                if retry and fleet is not None and count > fleet.healthy_count:
                    fleet.desired = count
                    self.ec.fm.ensure_replacing(fleet)

        await asyncio.gather(*(one(v, n) for v, n in counts.items()))
        self.ec.publish(name)

    async def _new_fleet(self, name: str, live: LiveDeployment, role: FleetRole, variant: str) -> Fleet:
        ep = self.ec.endpoints[name]
        if role is FleetRole.BLUE:
            return await self.ec.fleet_for(ep, variant)
        dep = live.record
        green = ep.model_copy(update={"config_name": dep.config.name, "config": dep.config, "models": dep.models})
        fleet = await self.ec.fleet_for(green, variant)
        fleet.id = f"{fleet.id}#{dep.id}"
        return fleet

    def _observe(self, name: str, live: LiveDeployment, state: RolloutState) -> Observation:
        return Observation(
            blue=_fleet_view(self.ec.fleets.get(name, {}), live.failure.get(FleetRole.BLUE)),
            green=_fleet_view(live.green, live.failure.get(FleetRole.GREEN)),
            green_share=_published_shares(self.ec.table.get(name), live.green),
            alarms_in_alarm=self._alarms_in_alarm(state.alarms),
        )

    def _alarms_in_alarm(self, names: tuple[str, ...]) -> frozenset[str]:
        if self.alarm_state is None:
            return frozenset()
        out: set[str] = set()
        for alarm in names:
            try:
                if self.alarm_state(alarm) == "ALARM":
                    out.add(alarm)
            except ModelgateError:
                if alarm not in self._missing_alarms:
                    self._missing_alarms.add(alarm)
                    log.warning("rollback alarm %s does not exist; it counts as not in ALARM", alarm)
        return frozenset(out)

    # --- the end, and a restart ----------------------------------------------------------------------

    def _finish(self, name: str, live: LiveDeployment, state: RolloutState, finish: Finish) -> None:
        ep, dep, now = self.ec.endpoints[name], live.record, self.ec.clock.now()
        update: dict[str, object] = {
            "status": finish.endpoint_status,
            "failure_reason": finish.failure_reason,
            "last_modified_time": now,
        }
        if finish.outcome is Outcome.ROLLBACK_FAILED:  # both fleets keep serving; the record stays
            # with the old instances that do serve (the batch that failed to start is not there to restore)
            serving = {v: f.healthy_count for v, f in self.ec.fleets.get(name, {}).items()}
            live.record = dep.with_actions(state, []).model_copy(update={"blue_targets": serving})
            ep = ep.model_copy(update=update)
            self.ec.endpoints[name] = ep
            self.ec.repo.save_deployment(live.record, ep)
            self.ec.publish(name)
            log.warning("deployment of %s to %s: ROLLBACK_FAILED: %s", name, dep.config.name, ep.failure_reason)
            return
        if finish.outcome is Outcome.SUCCEEDED:
            update |= {
                "config_name": dep.config.name,
                "config": dep.config,
                "models": dep.models,
                "variants": tuple(
                    v.model_copy(
                        update={"current_weight": v.desired_weight, "current_instance_count": v.desired_instance_count}
                    )
                    for v in dep.variants
                ),
            }
        ep = ep.model_copy(update=update)
        self.ec.repo.finish_deployment(ep)
        self.ec.endpoints[name] = ep
        if finish.outcome is Outcome.SUCCEEDED:
            self.ec.fleets[name] = live.green
        self.live.pop(name, None)
        self.ec.publish(name)
        log.info("deployment of %s to %s: %s", name, dep.config.name, finish.outcome.value)

    async def _restore(
        self, name: str, live: LiveDeployment, blue: Mapping[str, int], green: Mapping[str, int]
    ) -> bool:
        """Start blue and green at these sizes after a restart; False if blue cannot serve again."""
        ep = self.ec.endpoints[name]
        result = await self.ec.provision(ep, {v.variant_name: blue.get(v.variant_name, 0) for v in ep.variants})
        if isinstance(result, str):
            failed = ep.model_copy(
                update={
                    "status": EndpointStatus.FAILED,
                    "failure_reason": f"The endpoint could not be restored after a restart: {result}"[:1024],
                    "last_modified_time": self.ec.clock.now(),
                }
            )
            self.live.pop(name, None)
            self.ec.endpoints[name] = failed
            self.ec.repo.finish_deployment(failed)
            self.ec.table.withdraw(name)
            return False
        if green:
            await self._scale(name, live, FleetRole.GREEN, green, retry=True)
        self.ec.publish(name)
        return True


def _rollback_failed(live: LiveDeployment) -> bool:
    return live.record.state is not None and live.record.state.phase is Phase.ROLLBACK_FAILED


def _superseded(live: LiveDeployment, ep: Endpoint) -> bool:
    """Whether ``live`` is a failed rolling rollback that an accepted UpdateEndpoint is about to replace."""
    return _rollback_failed(live) and ep.status != EndpointStatus.UPDATE_ROLLBACK_FAILED


def _healthy(fleet: Fleet | None) -> int:
    return 0 if fleet is None else fleet.healthy_count


def _fleet_view(fleets: Mapping[str, Fleet], failure: str | None) -> FleetView:
    variants = {}
    for v, f in fleets.items():
        healthy = f.healthy_count
        draining = sum(1 for i in f.instances if i.stopping)
        starting = 0 if f.retired else max(0, f.desired - healthy)
        variants[v] = VariantInstances(starting=starting, healthy=healthy, draining=draining)
    return FleetView(variants=variants, failure=failure)


def _published_shares(route: EndpointRoute | None, green: Mapping[str, Fleet]) -> dict[str, float]:
    """Per variant, the share of its traffic the published route sends to its green fleet."""
    if route is None:
        return {}
    ids = {f.id for f in green.values()}
    out: dict[str, float] = {}
    for vr in route.variants:
        total = sum(vr.fleet_shares)
        on_green = sum(s for f, s in zip(vr.fleets, vr.fleet_shares, strict=True) if f.fleet_id in ids)
        out[vr.name] = on_green / total if total > 0 else 0.0
    return out
