"""Fleets and their instances: start, health-check, watch, drain and stop worker processes.

A fleet is the running instances of one production variant of one endpoint config. Every instance
is recorded in the store before its process is spawned (so a restarted server can reap it), and
removed from the store after it has stopped. When an instance dies on its own, the router stops
choosing it at once (the fleet republishes its route through ``on_change``), what was in flight to
it fails with a named error (the connection breaks), and ``on_death`` lets the endpoint controller
start a replacement.

Instance starts go through one limiter per server (``max_concurrent_starts``): a large fleet starts in
waves, each start holding its place from the spawn until the instance passes /ping or fails, so that
one API call cannot fork a whole fleet of processes at once. An instance's environment is built from
scratch (``runtime/environment.py``), never the server's own; its HOME is a directory of its own under
``homes_dir``, removed when it stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import signal
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from modelgate.clock import Clock
from modelgate.domain.resources import Model, ProductionVariant
from modelgate.routing.table import FleetRoute, Instance
from modelgate.runtime.client import InstanceClient
from modelgate.runtime.environment import base_environment, instance_environment
from modelgate.runtime.images import LaunchSpec
from modelgate.runtime.instance_types import shape_of
from modelgate.runtime.process import (
    INSTANCE_ENV,
    ProcessHandle,
    Spawner,
    describe_exit,
    failure_line,
    free_port,
    reap,
)
from modelgate.store.repo import InstanceRecord, Repository

log = logging.getLogger(__name__)

STOP_GRACE_SECONDS = 5.0
DEFAULT_CONCURRENT_STARTS = 4


TREE_REFRESH_SECONDS = 10.0


class ProcessTrees:
    """Resident memory of process trees, read every second on the event loop, so kept cheap: finding a
    process's descendants means reading every process's /proc/<pid>/stat (psutil's ``children``: 1.3 ms
    with 70 processes on the machine, more on a busy one), so each tree's list is refreshed every
    ``TREE_REFRESH_SECONDS``; the resident sizes themselves are read each time (/proc/<pid>/statm)."""

    def __init__(self, monotonic: Callable[[], float]) -> None:
        self._monotonic = monotonic
        self._trees: dict[int, tuple[float, list[psutil.Process]]] = {}

    def resident_bytes(self, pid: int) -> int:
        """Resident memory of a process and all its descendants (0 when it is gone)."""
        now = self._monotonic()
        cached = self._trees.get(pid)
        try:
            if cached is None or now - cached[0] >= TREE_REFRESH_SECONDS:
                root = psutil.Process(pid)
                cached = self._trees[pid] = (now, [root, *root.children(recursive=True)])
            root, *children = cached[1]
            total = int(root.memory_info().rss)
        except psutil.Error:
            self._trees.pop(pid, None)
            return 0
        for child in children:
            with contextlib.suppress(psutil.Error):
                total += int(child.memory_info().rss)
        return total

    def forget(self, pid: int) -> None:
        self._trees.pop(pid, None)


class InstanceFailure(Exception):
    """An instance could not start or did not become healthy; ``reason`` is for a FailureReason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _NotStarted(InstanceFailure):
    """A start given up before its spawn, because another start of the same scale-up failed."""


@dataclass(eq=False)
class RunningInstance:
    route: Instance
    handle: ProcessHandle
    log_path: Path
    exited: asyncio.Future[int]
    stopping: bool = False
    killed_for: str | None = None  # why modelgate killed it (e.g. over its memory limit)


@dataclass(frozen=True)
class FleetSpec:
    endpoint: str
    variant: ProductionVariant
    model: Model
    launch: LaunchSpec
    model_dir: Path
    health_timeout: float


@dataclass(eq=False)
class Fleet:
    id: str
    spec: FleetSpec
    desired: int
    instances: list[RunningInstance] = field(default_factory=list)
    retired: bool = False
    replacing: asyncio.Task[None] | None = None

    def route(self) -> FleetRoute:
        return FleetRoute(self.id, tuple(i.route for i in self.instances if i.route.alive and not i.stopping))

    @property
    def healthy_count(self) -> int:
        return sum(1 for i in self.instances if i.route.alive and not i.stopping)


class FleetManager:
    def __init__(
        self,
        repo: Repository,
        spawner: Spawner,
        client: InstanceClient,
        clock: Clock,
        logs_dir: Path,
        drain_timeout: float,
        allow_pip_install: bool,
        on_change: Callable[[str], None],
        memory_limit_scale: float = 1.0,
        base_env: Mapping[str, str] | None = None,
        homes_dir: Path | None = None,
        max_concurrent_starts: int = DEFAULT_CONCURRENT_STARTS,
    ) -> None:
        self.repo = repo
        self.spawner = spawner
        self.client = client
        self.clock = clock
        self.logs_dir = logs_dir
        self.drain_timeout = drain_timeout
        self.allow_pip_install = allow_pip_install
        self.on_change = on_change
        self.memory_limit_scale = memory_limit_scale
        self.base_env = dict(base_env) if base_env is not None else base_environment((), {})
        self.homes_dir = homes_dir if homes_dir is not None else logs_dir.parent / "homes"
        self._starts = asyncio.Semaphore(max_concurrent_starts)
        self._live: dict[str, tuple[Fleet, RunningInstance]] = {}
        self._trees = ProcessTrees(time.monotonic)
        self._dirs: Counter[Path] = Counter()  # model directory -> instance processes not yet exited

    def model_dirs_in_use(self) -> set[Path]:
        """The model directory of every instance process spawned and not yet exited (starting, serving,
        draining): the artifact cache must not remove these."""
        return set(self._dirs)

    def _track_dir(self, model_dir: Path, exited: asyncio.Future[int]) -> None:
        self._dirs[model_dir] += 1

        def done(_f: asyncio.Future[int]) -> None:
            self._dirs[model_dir] -= 1
            if self._dirs[model_dir] <= 0:
                del self._dirs[model_dir]

        exited.add_done_callback(done)

    def memory_limit(self, spec: FleetSpec) -> int:
        """The resident-memory limit of an instance: its type's memory (times the configured scale)."""
        return int(shape_of(spec.variant.instance_type).memory_bytes * self.memory_limit_scale)

    def _over_memory(self, spec: FleetSpec, inst: RunningInstance) -> str | None:
        rss = self._trees.resident_bytes(inst.route.pid)
        limit = self.memory_limit(spec)
        if rss <= limit:
            return None
        return (
            f"the instance used {rss / 2**20:.0f} MiB of memory, more than the {limit / 2**20:.0f} MiB "
            f"limit of {spec.variant.instance_type}"
        )

    async def watch_memory(self, interval: float = 1.0) -> None:
        """Stop any instance whose processes outgrow its instance type's memory; it is then replaced."""
        while True:
            await asyncio.sleep(interval)
            for fleet, inst in list(self._live.values()):
                if inst.stopping or inst.exited.done():
                    continue
                reason = self._over_memory(fleet.spec, inst)
                if reason is not None:
                    log.warning("stopping instance %s of %s: %s", inst.route.id, fleet.id, reason)
                    inst.killed_for = reason
                    inst.handle.signal_group(signal.SIGKILL)

    def _env(self, spec: FleetSpec, instance_id: str, port: int, home: Path) -> dict[str, str]:
        container = spec.model.containers[0]
        contract = {
            **spec.launch.env,
            "SAGEMAKER_BIND_TO_PORT": str(port),
            "SM_MODEL_DIR": str(spec.model_dir),
            "HOME": str(home),
            "MODELGATE_MODEL_DIR": str(spec.model_dir),
            INSTANCE_ENV: instance_id,
            "MODELGATE_ALLOW_PIP_INSTALL": "true" if self.allow_pip_install else "false",
            "PYTHONUNBUFFERED": "1",
        }
        defaults = {"SAGEMAKER_MODEL_SERVER_WORKERS": str(shape_of(spec.variant.instance_type).workers)}
        return instance_environment(self.base_env, container.environment, contract, defaults)

    def clear_homes(self) -> None:
        """Remove every instance's HOME (at start, once leftover instances were reaped)."""
        shutil.rmtree(self.homes_dir, ignore_errors=True)

    def _remove_home(self, instance_id: str) -> None:
        shutil.rmtree(self.homes_dir / instance_id, ignore_errors=True)

    async def start_instance(self, fleet: Fleet, give_up: Callable[[], bool] | None = None) -> RunningInstance:
        """Spawn one instance and wait until it answers /ping; add it to the fleet once healthy.

        Waits for a place in the start limiter first (``max_concurrent_starts``); once it has one, does not
        start when ``give_up()`` says so (another start of the same scale-up failed)."""
        async with self._starts:
            if give_up is not None and give_up():
                raise _NotStarted("not started: another instance of the fleet failed to start")
            return await self._start_instance(fleet)

    async def _start_instance(self, fleet: Fleet) -> RunningInstance:
        spec = fleet.spec
        instance_id = f"i-{uuid.uuid4().hex[:17]}"
        port = free_port()
        self.repo.add_instance(
            InstanceRecord(instance_id, spec.endpoint, spec.variant.variant_name, port, None, self.clock.now())
        )
        log_path = self.logs_dir / spec.endpoint / spec.variant.variant_name / f"{instance_id}.log"
        home = self.homes_dir / instance_id
        try:
            home.mkdir(mode=0o700, parents=True, exist_ok=True)
            handle = await self.spawner.spawn(
                spec.launch.argv, self._env(spec, instance_id, port, home), spec.model_dir, log_path
            )
        except OSError as exc:
            self.repo.remove_instance(instance_id)
            self._remove_home(instance_id)
            why = exc.strerror or type(exc).__name__
            raise InstanceFailure(f"the instance process could not be started: {why}") from exc
        self.repo.set_instance_pid(instance_id, handle.pid)
        exited: asyncio.Future[int] = asyncio.ensure_future(handle.wait())
        self._track_dir(spec.model_dir, exited)
        route = Instance(instance_id, spec.endpoint, spec.variant.variant_name, fleet.id, port, handle.pid)
        inst = RunningInstance(route, handle, log_path, exited)
        try:
            await self._wait_healthy(inst, spec)
        except BaseException:
            await self._kill(inst)
            raise
        fleet.instances.append(inst)
        self._live[instance_id] = (fleet, inst)
        exited.add_done_callback(lambda _f: self._exited(fleet, inst))
        return inst

    async def _wait_healthy(self, inst: RunningInstance, spec: FleetSpec) -> None:
        """Poll /ping until healthy; InstanceFailure when the instance exits, outgrows its memory or times
        out. The reason carries the instance's ``MODELGATE-FAILURE:`` line (sanitized) and nothing else
        of its log: the log may hold anything, and the reason is shown by DescribeEndpoint."""
        timeout = spec.health_timeout
        deadline = self.clock.monotonic() + timeout
        delay = 0.02
        iid = inst.route.id
        while True:
            if inst.exited.done():
                detail = failure_line(inst.log_path)
                raise InstanceFailure(
                    f"the instance {iid} {describe_exit(inst.exited.result())} before passing the ping health check"
                    + (f": {detail}" if detail else " (it wrote no MODELGATE-FAILURE line)")
                )
            over = self._over_memory(spec, inst)
            if over is not None:
                raise InstanceFailure(over)
            if await self.client.ping(inst.route.base_url):
                return
            if self.clock.monotonic() >= deadline:
                detail = failure_line(inst.log_path)
                raise InstanceFailure(
                    f"the instance {iid} did not pass the ping health check within {timeout:.0f} s"
                    + (f": {detail}" if detail else "")
                )
            await asyncio.wait([inst.exited], timeout=delay)
            delay = min(delay * 2, 0.5)

    def _exited(self, fleet: Fleet, inst: RunningInstance) -> None:
        inst.route.alive = False
        self._live.pop(inst.route.id, None)
        self._trees.forget(inst.route.pid)
        if inst.stopping:
            return
        self._remove_home(inst.route.id)
        code = inst.exited.result() if not inst.exited.cancelled() else -1
        log.warning(
            "instance %s of %s/%s exited unexpectedly (code %s): %s",
            inst.route.id,
            fleet.spec.endpoint,
            fleet.spec.variant.variant_name,
            code,
            inst.killed_for or failure_line(inst.log_path),
        )
        with contextlib.suppress(ValueError):
            fleet.instances.remove(inst)
        self.repo.remove_instance(inst.route.id)
        self.on_change(fleet.spec.endpoint)
        if not fleet.retired:
            self.ensure_replacing(fleet)

    def ensure_replacing(self, fleet: Fleet) -> None:
        if fleet.replacing is None or fleet.replacing.done():
            fleet.replacing = asyncio.create_task(self._replace(fleet))

    async def _replace(self, fleet: Fleet) -> None:
        backoff = 1.0
        while not fleet.retired and fleet.healthy_count < fleet.desired:
            try:
                await self.start_instance(fleet)
            except InstanceFailure as exc:
                log.warning("replacement for %s failed: %s; retrying in %.0f s", fleet.id, exc.reason, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)
                continue
            if fleet.retired:
                await self.stop_all(fleet)
                return
            self.on_change(fleet.spec.endpoint)
            backoff = 1.0

    async def stop_instance(self, fleet: Fleet, inst: RunningInstance, drain: bool = True) -> None:
        """Take the instance out of the route, let what is in flight finish, then stop it."""
        inst.stopping = True
        self.on_change(fleet.spec.endpoint)
        if drain:
            deadline = self.clock.monotonic() + self.drain_timeout
            while inst.route.outstanding > 0 and self.clock.monotonic() < deadline and not inst.exited.done():
                await asyncio.sleep(0.02)
        await self._kill(inst)
        with contextlib.suppress(ValueError):
            fleet.instances.remove(inst)

    async def _kill(self, inst: RunningInstance) -> None:
        self._live.pop(inst.route.id, None)
        self._trees.forget(inst.route.pid)
        inst.stopping = True
        inst.route.alive = False
        if not inst.exited.done():
            inst.handle.signal_group(signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(inst.exited), STOP_GRACE_SECONDS)
        if not inst.exited.done():
            inst.handle.signal_group(signal.SIGKILL)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(inst.exited), STOP_GRACE_SECONDS)
        self.client.forget(inst.route.base_url)
        # Whatever the instance forked into sessions of their own is not in its process group.
        reap({inst.route.id})
        self.repo.remove_instance(inst.route.id)
        self._remove_home(inst.route.id)

    async def stop_all(self, fleet: Fleet, drain: bool = True) -> None:
        fleet.retired = True
        if fleet.replacing is not None and not fleet.replacing.done():
            fleet.replacing.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await fleet.replacing
        await asyncio.gather(*(self.stop_instance(fleet, i, drain) for i in list(fleet.instances)))

    async def scale(self, fleet: Fleet, count: int) -> None:
        """Grow or shrink the fleet to ``count`` healthy instances; InstanceFailure undoes a failed growth."""
        current = [i for i in fleet.instances if i.route.alive and not i.stopping]
        if count > len(current):
            before = set(map(id, fleet.instances))
            failed: list[bool] = []

            async def one() -> RunningInstance:
                try:
                    return await self.start_instance(fleet, give_up=lambda: bool(failed))
                except BaseException:
                    failed.append(True)
                    raise

            results = await asyncio.gather(*(one() for _ in range(count - len(current))), return_exceptions=True)
            failures = [r for r in results if isinstance(r, BaseException)]
            if failures:
                added = [i for i in fleet.instances if id(i) not in before]
                await asyncio.gather(*(self.stop_instance(fleet, i, drain=False) for i in added))
                first = next((f for f in failures if not isinstance(f, _NotStarted)), failures[0])
                if isinstance(first, InstanceFailure):
                    raise first
                raise InstanceFailure(f"{type(first).__name__}: {first}")
            fleet.desired = count
        elif count < len(current):
            fleet.desired = count
            victims = current[count:]
            await asyncio.gather(*(self.stop_instance(fleet, i) for i in victims))
        fleet.desired = count
