"""Per-instance CPU and memory, sampled with psutil from the worker processes.

Namespace ``/aws/sagemaker/Endpoints``, dimensions EndpointName and VariantName, unit Percent. As in
SageMaker, CPUUtilization is summed over cores (a busy 4-core instance reads 400) and each instance adds
one sample per sampling round, so Average over a period is the mean over instances and Maximum the
busiest. A worker's children (e.g. a server's worker processes) count as part of the instance.

:meth:`InstanceSampler.sample` blocks (it reads /proc) and runs in a worker thread; :meth:`record` runs on
the event loop.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import psutil

from modelgate.telemetry.model import INSTANCE_NAMESPACE, MetricId
from modelgate.telemetry.store import MetricStore

InstanceInfo = tuple[str, str, str, int | None]  # endpoint, variant, instance id, pid
InstanceLister = Callable[[], Sequence[InstanceInfo]]


@dataclass(frozen=True, slots=True)
class InstanceSample:
    endpoint: str
    variant: str
    instance_id: str
    cpu_percent: float
    memory_percent: float


class InstanceSampler:
    def __init__(self, store: MetricStore) -> None:
        self._store = store
        self._procs: dict[int, psutil.Process] = {}
        # The latest sample per instance id, for the Prometheus gauges.
        self.latest: dict[str, InstanceSample] = {}

    def sample(self, instances: Sequence[InstanceInfo]) -> list[InstanceSample]:
        """Measure each live instance. A process seen for the first time has no CPU reading yet (psutil
        measures CPU between two calls), so it first appears in the next round."""
        out: list[InstanceSample] = []
        alive: set[int] = set()
        for endpoint, variant, instance_id, pid in instances:
            if pid is None:
                continue
            usage = self._tree_usage(pid, alive)
            if usage is not None:
                out.append(InstanceSample(endpoint, variant, instance_id, usage[0], usage[1]))
        for pid in [p for p in self._procs if p not in alive]:
            del self._procs[pid]
        return out

    def _tree_usage(self, pid: int, alive: set[int]) -> tuple[float, float] | None:
        fresh = pid not in self._procs
        try:
            root = self._process(pid)
            procs = [root, *root.children(recursive=True)]
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            return None
        cpu = mem = 0.0
        for p in procs:
            proc = self._procs.setdefault(p.pid, p)
            alive.add(p.pid)
            try:
                cpu += proc.cpu_percent(interval=None)
                mem += proc.memory_percent()
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
        return None if fresh else (cpu, mem)

    def _process(self, pid: int) -> psutil.Process:
        proc = self._procs.get(pid)
        if proc is None:
            proc = self._procs[pid] = psutil.Process(pid)
        return proc

    def record(self, samples: Sequence[InstanceSample], ts: float) -> None:
        store = self._store
        current: dict[str, InstanceSample] = {}
        for s in samples:
            dims = (("EndpointName", s.endpoint), ("VariantName", s.variant))
            cpu = store.series(MetricId.of(INSTANCE_NAMESPACE, "CPUUtilization", dims), "Percent", high_res=True)
            mem = store.series(MetricId.of(INSTANCE_NAMESPACE, "MemoryUtilization", dims), "Percent", high_res=True)
            store.add(cpu, ts, s.cpu_percent)
            store.add(mem, ts, s.memory_percent)
            current[s.instance_id] = s
        self.latest = current
