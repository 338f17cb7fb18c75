"""The endpoint controller: makes running fleets match what the store says each endpoint should be.

Services write an endpoint's intent (status Creating, Updating or Deleting, and desired weights and
counts) to the store, then ``submit`` it here. The controller acts, and writes each outcome back.
At start it reaps instances a killed server left behind and resumes every endpoint from its stored
status: InService endpoints serve again, Creating ones are created again, Updating ones are restored
and the update re-applied, Deleting ones finish deleting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from modelgate.artifacts.fetch import ArtifactCache, ModelDataError
from modelgate.clock import Clock
from modelgate.controllers.fleets import Fleet, FleetManager, FleetSpec, InstanceFailure
from modelgate.controllers.rollouts import RolloutController
from modelgate.domain.resources import Endpoint, EndpointStatus, VariantState
from modelgate.routing.table import EndpointRoute, RoutingTable, VariantRoute
from modelgate.runtime.environment import first_refusal
from modelgate.runtime.images import ImageMap, ImageNotRunnable
from modelgate.runtime.process import reap
from modelgate.store.repo import Repository

log = logging.getLogger(__name__)

DEFAULT_DOWNLOAD_TIMEOUT = 3600.0
SERVING = (EndpointStatus.IN_SERVICE, EndpointStatus.UPDATING, EndpointStatus.ROLLING_BACK)
ROUTABLE = (*SERVING, EndpointStatus.UPDATE_ROLLBACK_FAILED)  # a failed rolling rollback serves a mix


class EndpointController:
    def __init__(
        self,
        repo: Repository,
        fleets: FleetManager,
        artifacts: ArtifactCache,
        table: RoutingTable,
        clock: Clock,
        default_health_timeout: float,
        max_health_timeout: float | None = None,
        alarm_state: Callable[[str], str] | None = None,
        max_rollout_seconds: int | None = None,
        images: ImageMap | None = None,
    ) -> None:
        self.repo = repo
        self.images = images if images is not None else ImageMap()
        self.fm = fleets
        self.artifacts = artifacts
        self.table = table
        self.clock = clock
        self.default_health_timeout = default_health_timeout
        self.max_health_timeout = max_health_timeout
        self.fleets: dict[str, dict[str, Fleet]] = {}
        self.endpoints: dict[str, Endpoint] = {}
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.rollouts = RolloutController(self, alarm_state, max_rollout_seconds)
        self._cleanup: set[asyncio.Task[None]] = set()
        fleets.on_change = self.publish

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Reap what a previous server left running, then resume every endpoint."""
        records = self.repo.all_instances()
        killed = reap({rec.id for rec in records})
        if killed:
            log.info("reaped %d leftover instance process(es): %s", len(killed), killed)
        for rec in records:
            self.repo.remove_instance(rec.id)
        self.fm.clear_homes()
        self.collect_artifacts(always=True)  # before anything is materialized: what no stored resource names
        for ep in self.repo.all(Endpoint):  # a row that does not load is quarantined, the rest resume
            self.endpoints[ep.name] = ep
            if ep.status == EndpointStatus.CREATING:
                self.submit(ep.name, self._create(ep.name))
            elif ep.status in ROUTABLE:
                # Before the server listens: until its route is published, the runtime answers this endpoint
                # with a retryable ServiceUnavailable, not "not found" (DescribeEndpoint already shows it).
                self.table.expect(ep.name)
                resume = self.repo.get_deployment(ep.name) is not None  # an UpdateEndpoint in progress
                work = self.rollouts.resume(ep.name) if resume else self._restore(ep.name)
                self.submit(ep.name, self._settled(ep.name, work))
            elif ep.status == EndpointStatus.DELETING:
                self.submit(ep.name, self._delete(ep.name))

    async def _settled(self, name: str, work: Coroutine[Any, Any, None]) -> None:
        """Run a restore; however it ends (published, failed, cancelled), the endpoint is no longer expected."""
        try:
            await work
        finally:
            self.table.settle(name)

    async def stop(self) -> None:
        """Server shutdown: stop every instance; the store keeps each endpoint for the next start."""
        for task in list(self.tasks.values()):
            task.cancel()
        for task in list(self.tasks.values()):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await asyncio.gather(
            *(self.fm.stop_all(f, drain=False) for fleets in self.fleets.values() for f in fleets.values()),
            *(self.fm.stop_all(f, drain=False) for _, _, f in self.rollouts.green_fleets()),
        )
        for task in list(self._cleanup):
            task.cancel()
        self.artifacts.close()  # model data work in its threads stops at its next check

    def collect_artifacts(self, always: bool = False) -> None:
        """Remove cached model data that no stored model, endpoint or deployment names and no instance uses
        (after DeleteModel, after an endpoint is deleted, and at start). The decision is made here, on the event
        loop, where the fleets cannot change meanwhile; the files are deleted in the cache's worker threads."""
        try:
            keep = self.repo.model_data_urls()
        except Exception:
            log.exception("artifact collection skipped: the stored resources could not be read")
            return
        in_use = self.fm.model_dirs_in_use() | {
            fleet.spec.model_dir
            for fleet in [*(f for fleets in self.fleets.values() for f in fleets.values()),
                          *(f for _, _, f in self.rollouts.green_fleets())]
        }  # fmt: skip
        try:
            moved = self.artifacts.collect(keep, in_use)
        except OSError:
            log.exception("artifact collection failed")
            return
        if moved or always:
            task = asyncio.create_task(self._empty_trash())
            self._cleanup.add(task)
            task.add_done_callback(self._cleanup.discard)

    async def _empty_trash(self) -> None:
        try:
            await self.artifacts.empty_trash()
        except Exception:
            log.exception("removing collected artifacts failed")

    def submit(self, name: str, work: asyncio.Future[None] | object) -> None:
        """Run one operation on an endpoint; a newer operation (delete) cancels the one in progress."""
        previous = self.tasks.get(name)

        async def run() -> None:
            if previous is not None and not previous.done():
                previous.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await previous
            try:
                await work  # type: ignore[misc]
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("operation on endpoint %s failed", name)

        self.tasks[name] = asyncio.create_task(run())

    async def idle(self, name: str) -> None:
        """Wait until no operation is in progress on the endpoint (for tests and shutdown)."""
        task = self.tasks.get(name)
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def notify(self, ep: Endpoint) -> None:
        """The service stored a new version of the endpoint."""
        self.endpoints[ep.name] = ep

    # --- routing -------------------------------------------------------------------------------

    def publish(self, name: str) -> None:
        ep = self.endpoints.get(name)
        fleets = self.fleets.get(name)
        if ep is None or fleets is None or ep.status not in ROUTABLE:
            return
        assert ep.config is not None
        during_rollout = self.rollouts.routes(ep, fleets)
        if during_rollout is not None:
            self.table.publish(EndpointRoute(name, during_rollout))
            return
        variants = []
        for v in ep.variants:
            fleet = fleets.get(v.variant_name)
            pv = ep.config.variant(v.variant_name)
            if fleet is None or pv is None:
                continue
            variants.append(
                VariantRoute(
                    name=v.variant_name,
                    weight=v.current_weight,
                    fleets=(fleet.route(),),
                    fleet_shares=(1.0,),
                    random_routing=pv.routing_strategy.value == "RANDOM",
                )
            )
        self.table.publish(EndpointRoute(name, tuple(variants)))

    # --- operations ----------------------------------------------------------------------------

    def save(self, ep: Endpoint) -> Endpoint:
        self.endpoints[ep.name] = ep
        self.repo.save_endpoint(ep)
        return ep

    def _health_timeout(self, configured: int | None) -> float:
        timeout = float(configured) if configured is not None else self.default_health_timeout
        if self.max_health_timeout is not None:
            timeout = min(timeout, self.max_health_timeout)
        return timeout

    async def fleet_for(self, ep: Endpoint, variant_name: str) -> Fleet:
        assert ep.config is not None
        pv = ep.config.variant(variant_name)
        assert pv is not None
        model = ep.model(pv.model_name)
        if model is None:
            raise InstanceFailure(f"model {pv.model_name} is missing from the endpoint's deployment")
        container = model.containers[0]
        try:
            launch = self.images.resolve(container.image)
        except ImageNotRunnable as exc:
            raise InstanceFailure(exc.reason) from exc
        refused = first_refusal(container.environment)
        if refused is not None:  # a model stored before the rule existed
            raise InstanceFailure(
                f"the Environment of model {model.name} sets {refused[0]}, which modelgate refuses: {refused[1]}"
            )
        timeout = float(pv.model_data_download_timeout_s or DEFAULT_DOWNLOAD_TIMEOUT)
        try:
            model_dir: Path = await self.artifacts.materialize(container.model_data_url, timeout)
        except ModelDataError as exc:
            raise InstanceFailure(str(exc)) from exc
        spec = FleetSpec(
            ep.name, pv, model, launch, model_dir, self._health_timeout(pv.startup_health_check_timeout_s)
        )
        return Fleet(id=f"{ep.name}/{variant_name}/{ep.config_name}", spec=spec, desired=0)

    async def provision(self, ep: Endpoint, counts: dict[str, int]) -> dict[str, Fleet] | str:
        """Start every variant's fleet; all healthy, or everything stopped and a FailureReason returned."""
        fleets: dict[str, Fleet] = {}
        self.fleets[ep.name] = fleets

        async def one(variant: str, count: int) -> None:
            try:
                fleet = await self.fleet_for(ep, variant)
            except InstanceFailure as exc:
                raise _VariantFailure(variant, exc.reason) from exc
            fleets[variant] = fleet
            try:
                await self.fm.scale(fleet, count)
            except InstanceFailure as exc:
                raise _VariantFailure(variant, exc.reason) from exc

        results = await asyncio.gather(*(one(v, n) for v, n in counts.items()), return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        if not failures:
            return fleets
        await asyncio.gather(*(self.fm.stop_all(f, drain=False) for f in fleets.values()))
        self.fleets.pop(ep.name, None)
        first = failures[0]
        if isinstance(first, _VariantFailure):
            return (
                f"The primary container for production variant {first.variant} did not pass the ping health "
                f"check: {first.reason}"
            )[:1024]
        return f"Unexpected error while creating the endpoint: {type(first).__name__}: {first}"[:1024]

    async def _create(self, name: str) -> None:
        ep = self.endpoints[name]
        result = await self.provision(ep, {v.variant_name: v.desired_instance_count for v in ep.variants})
        ep = self.endpoints[name]
        now = self.clock.now()
        if isinstance(result, str):
            self.save(
                ep.model_copy(
                    update={
                        "status": EndpointStatus.FAILED,
                        "failure_reason": result,
                        "last_modified_time": now,
                    }
                )
            )
            return
        variants = tuple(
            v.model_copy(
                update={
                    "current_weight": v.desired_weight,
                    "current_instance_count": v.desired_instance_count,
                }
            )
            for v in ep.variants
        )
        ep = ep.model_copy(
            update={
                "status": EndpointStatus.IN_SERVICE,
                "variants": variants,
                "last_modified_time": now,
                "failure_reason": None,
            }
        )
        self.endpoints[name] = ep
        self.publish(name)
        self.save(ep)

    async def _restore(self, name: str) -> None:
        """After a restart: bring back what was serving, then finish what was in progress."""
        ep = self.endpoints[name]
        result = await self.provision(ep, {v.variant_name: v.current_instance_count for v in ep.variants})
        ep = self.endpoints[name]
        if isinstance(result, str):
            self.save(
                ep.model_copy(
                    update={
                        "status": EndpointStatus.FAILED,
                        "failure_reason": f"The endpoint could not be restored after a restart: {result}"[
                            :1024
                        ],
                        "last_modified_time": self.clock.now(),
                    }
                )
            )
            self.table.withdraw(name)
            return
        self.publish(name)
        if ep.status == EndpointStatus.UPDATING:
            await self._apply_weights(name)
        elif ep.status != EndpointStatus.IN_SERVICE:
            self.save(
                ep.model_copy(
                    update={"status": EndpointStatus.IN_SERVICE, "last_modified_time": self.clock.now()}
                )
            )

    async def apply_weights(self, name: str) -> None:
        await self._apply_weights(name)

    async def _apply_weights(self, name: str) -> None:
        """Apply desired counts (starting and stopping processes), then desired weights."""
        ep = self.endpoints[name]
        fleets = self.fleets.get(name, {})
        failure: str | None = None
        for v in ep.variants:
            fleet = fleets.get(v.variant_name)
            if fleet is None or v.desired_instance_count == fleet.healthy_count:
                continue
            try:
                await self.fm.scale(fleet, v.desired_instance_count)
            except InstanceFailure as exc:
                failure = (
                    f"Failed to update the instance count of production variant {v.variant_name} to "
                    f"{v.desired_instance_count}: {exc.reason}"
                )[:1024]
                break
            self._set_variant(name, v.variant_name, current_instance_count=v.desired_instance_count)
        ep = self.endpoints[name]
        now = self.clock.now()
        if failure is not None:
            self.save(
                ep.model_copy(update={"status": EndpointStatus.ROLLING_BACK, "last_modified_time": now})
            )
            for v in ep.variants:
                fleet = fleets.get(v.variant_name)
                if fleet is not None and fleet.healthy_count != v.current_instance_count:
                    with contextlib.suppress(InstanceFailure):
                        await self.fm.scale(fleet, v.current_instance_count)
            ep = self.endpoints[name]
            variants = tuple(
                v.model_copy(
                    update={
                        "desired_weight": v.current_weight,
                        "desired_instance_count": v.current_instance_count,
                    }
                )
                for v in ep.variants
            )
            self.save(
                ep.model_copy(
                    update={
                        "status": EndpointStatus.IN_SERVICE,
                        "variants": variants,
                        "failure_reason": failure,
                        "last_modified_time": self.clock.now(),
                    }
                )
            )
            self.publish(name)
            return
        variants = tuple(v.model_copy(update={"current_weight": v.desired_weight}) for v in ep.variants)
        ep = ep.model_copy(
            update={"variants": variants, "status": EndpointStatus.IN_SERVICE, "last_modified_time": now}
        )
        self.endpoints[name] = ep
        self.publish(name)
        self.save(ep)

    def _set_variant(self, name: str, variant: str, **changes: float | int) -> None:
        ep = self.endpoints[name]
        variants: list[VariantState] = []
        for v in ep.variants:
            variants.append(v.model_copy(update=changes) if v.variant_name == variant else v)
        self.save(ep.model_copy(update={"variants": tuple(variants)}))

    async def _delete(self, name: str) -> None:
        self.table.withdraw(name)
        fleets = self.fleets.pop(name, {})
        await asyncio.gather(*(self.fm.stop_all(f) for f in fleets.values()), self.rollouts.discard(name))
        ep = self.endpoints.pop(name, None)
        if ep is not None:
            self.repo.delete(Endpoint, name, ep.arn)
        self.collect_artifacts()

    def delete(self, name: str) -> None:
        self.submit(name, self._delete(name))

    def create(self, name: str) -> None:
        self.submit(name, self._create(name))

    def update_weights(self, name: str) -> None:
        self.submit(name, self._apply_weights(name))

    def deploy(self, name: str) -> None:
        """Carry out the UpdateEndpoint the service stored (controllers/rollouts.py)."""
        self.submit(name, self.rollouts.run(name))

    def instances(self) -> list[tuple[str, str, str, int]]:
        """(endpoint, variant, instance id, pid) of every running instance, for the metrics sampler."""
        every = [(name, v, f) for name, fleets in self.fleets.items() for v, f in fleets.items()]
        return [
            (name, variant, inst.route.id, inst.route.pid)
            for name, variant, fleet in every + self.rollouts.green_fleets()
            for inst in fleet.instances
            if inst.route.alive
        ]


class _VariantFailure(Exception):
    def __init__(self, variant: str, reason: str) -> None:
        super().__init__(reason)
        self.variant = variant
        self.reason = reason
