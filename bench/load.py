"""Load from wrk, and what the server side spent meanwhile (CPU time, peak resident memory)."""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil

CHECK_LUA = Path(__file__).with_name("check.lua")
CHECK_AB_LUA = Path(__file__).with_name("check_ab.lua")  # mode "ab": a user id per request
WRK_INSTALL = "wrk is not installed: on Debian/Ubuntu run `apt-get update && apt-get install -y wrk`"


def require_wrk() -> str:
    """The wrk executable; without it, say how to install it and exit non-zero (never fake numbers)."""
    path = shutil.which("wrk")
    if path is None:
        print(WRK_INSTALL, file=sys.stderr)
        raise SystemExit(3)
    return path


def tree(pids: list[int]) -> list[psutil.Process]:
    """The given processes and all their descendants that are alive now."""
    procs: dict[int, psutil.Process] = {}
    for pid in pids:
        try:
            root = psutil.Process(pid)
            for p in [root, *root.children(recursive=True)]:
                procs[p.pid] = p
        except psutil.NoSuchProcess:
            continue
    return list(procs.values())


def cpu_seconds(procs: list[psutil.Process]) -> dict[int, float]:
    out = {}
    for p in procs:
        try:
            t = p.cpu_times()
            out[p.pid] = t.user + t.system
        except psutil.NoSuchProcess:
            continue
    return out


def rss_bytes(procs: list[psutil.Process]) -> int:
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total


class RssSampler:
    """Sums the resident memory of a process tree every ``interval`` seconds; keeps the peak."""

    def __init__(self, pids: list[int], interval: float = 0.1) -> None:
        self.pids, self.interval = pids, interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes(tree(self.pids)))
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()


@dataclass(frozen=True)
class Probe:
    """What wrk sends and how an answer is judged right."""

    url: str
    body: Path
    content_type: str
    mode: str  # "exact": the body equals an expected answer; "contains": it contains one
    expected: tuple[Path, ...]


@dataclass
class Run:
    scenario: str
    concurrency: int
    load1: float  # machine load average (1 min) when the run started
    requests: int
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    non200: int
    wrong: int
    socket_errors: int
    matched: list[int]  # right answers per expected body (e.g. per variant)
    sample: str  # the first wrong answer, if any
    server_cpu_ms_per_req: float
    cpu_ms_per_req_by_process: dict[str, float]  # "pid command" -> ms per request
    server_processes: int
    peak_rss_mb: float
    machine_busy_pct: float  # both cores, everything running on the machine
    client_cpu_ms_per_req: float  # wrk's own CPU time
    round: int = 1
    rps_min: float = 0.0  # over rounds, once aggregated
    rps_max: float = 0.0

    @property
    def ok(self) -> bool:
        return self.requests > 0 and self.non200 == 0 and self.wrong == 0 and self.socket_errors == 0

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "ok": self.ok}


def _parse(stdout: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in stdout.splitlines():
        if line.startswith("BENCH "):
            fields.update(kv.split("=", 1) for kv in line[len("BENCH ") :].split())
        elif line.startswith("BENCH-SAMPLE "):
            fields["sample"] = line[len("BENCH-SAMPLE ") :]
    if "requests" not in fields:
        raise RuntimeError(f"wrk printed no result:\n{stdout}")
    return fields


def wrk(probe: Probe, concurrency: int, seconds: float) -> tuple[dict[str, str], float]:
    """Run wrk once (one thread, ``concurrency`` connections); its parsed result and its CPU seconds."""
    cmd = [
        require_wrk(),
        "-t1",
        f"-c{concurrency}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "-s",
        str(CHECK_AB_LUA if probe.mode == "ab" else CHECK_LUA),
        probe.url,
        "--",
        str(probe.body),
        probe.content_type,
        probe.mode,
        *map(str, probe.expected),
    ]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    client_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return _parse(done.stdout), client_cpu


def _label(p: psutil.Process) -> str:
    try:
        args = p.cmdline()
    except psutil.Error:
        return str(p.pid)
    return f"{p.pid} " + " ".join([Path(args[0]).name, *args[1:4]] if args else [p.name()])


def _busy(t: Any) -> float:
    return float(t.user + t.nice + t.system + t.irq + t.softirq)


def measure(
    scenario: str, probe: Probe, server_pids: list[int], concurrency: int, seconds: float, warmup: float
) -> Run:
    """Warm up, then one timed wrk run; server CPU from the process tree's CPU times before and after."""
    if warmup > 0:
        wrk(probe, concurrency, warmup)
    load1 = os.getloadavg()[0]
    procs = tree(server_pids)
    cpu0, machine0 = cpu_seconds(procs), psutil.cpu_times()
    t0 = time.monotonic()
    with RssSampler(server_pids) as rss:
        fields, client_cpu = wrk(probe, concurrency, seconds)
    wall = time.monotonic() - t0
    cpu1, machine1 = cpu_seconds(procs), psutil.cpu_times()
    spent = {pid: cpu1[pid] - cpu0[pid] for pid in cpu0 if pid in cpu1}
    server_cpu = sum(spent.values())
    busy0, busy1 = _busy(machine0), _busy(machine1)
    n = int(fields["requests"])
    per_req = 1000.0 / n if n else 0.0
    duration = int(fields["duration_us"]) / 1e6
    return Run(
        scenario=scenario,
        concurrency=concurrency,
        load1=load1,
        requests=n,
        rps=n / duration if duration else 0.0,
        p50_ms=int(fields["p50_us"]) / 1000,
        p90_ms=int(fields["p90_us"]) / 1000,
        p99_ms=int(fields["p99_us"]) / 1000,
        max_ms=int(fields["max_us"]) / 1000,
        non200=int(fields["non200"]),
        wrong=int(fields["wrong"]),
        socket_errors=sum(int(fields[k]) for k in ("connect", "read", "write", "timeout")),
        matched=[int(m) for m in fields.get("matched", "").split(",") if m],
        sample=fields.get("sample", '""'),
        server_cpu_ms_per_req=server_cpu * per_req,
        cpu_ms_per_req_by_process={_label(p): spent[p.pid] * per_req for p in procs if p.pid in spent},
        server_processes=len(procs),
        peak_rss_mb=rss.peak / 2**20,
        machine_busy_pct=100.0 * (busy1 - busy0) / (wall * (psutil.cpu_count() or 1)),
        client_cpu_ms_per_req=client_cpu * per_req,
    )
