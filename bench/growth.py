"""How fast the gateway's memory grows under steady load, and how much of it is the metric store.

    .venv/bin/python bench/growth.py                 # both parts: about 5 minutes
    .venv/bin/python bench/growth.py --minutes 10    # a longer real run
    .venv/bin/python bench/growth.py --no-server     # the store part only (seconds)

1. **The store alone** (no server): the recorder and the store of ``modelgate.telemetry`` are fed a
   simulated second of traffic at a time (3,000 invocations a second of one variant, log-normal latencies,
   drained every 0.1 s of simulated time, sealed and taken for persistence after each second as the
   server's flush does) and ``tracemalloc`` says how many bytes the store keeps per second of traffic.
   Those points are kept for three hours (CloudWatch's retention of 1-second data), so the figure times
   10,800 is the store's plateau at that load.
2. **The real gateway** (``--minutes``): a ``modelgate serve`` with the churn model behind one endpoint,
   wrk at concurrency 16 in 30-second runs, and the gateway's resident memory after each; the growth
   per second over the run, after the first 30 s (warm-up, caches filling).

Needs wrk (``apt-get install -y wrk``) for the second part.
"""

from __future__ import annotations

import argparse
import gc
import random
import shutil
import subprocess
import sys
import tempfile
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import churn
import psutil
import servers

from modelgate.telemetry.recorder import InvocationRecorder
from modelgate.telemetry.store import MetricStore

RATE = 3000  # invocations a second in the store simulation


class _Clock:
    def __init__(self) -> None:
        self.t = 1_700_000_000.0

    def now(self) -> float:
        return self.t

    def monotonic(self) -> float:
        return self.t


def store_bytes_per_second(seconds: int = 300) -> float:
    clock = _Clock()
    store = MetricStore()
    recorder = InvocationRecorder(store, clock)
    rng = random.Random(1)

    def one_second() -> None:
        for i in range(RATE):
            clock.t += 1 / RATE
            model = rng.lognormvariate(5.6, 0.5)  # about 270 us
            overhead = rng.lognormvariate(4.3, 0.6)  # about 75 us
            recorder.record_invocation("ep", "v1", "fleet", 200, model, overhead, 1)
            if i % (RATE // 10) == RATE // 10 - 1:
                recorder.drain()
        store.seal(clock.t)
        store.take_dirty()

    for _ in range(30):  # past the first minute's open points
        one_second()
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for _ in range(seconds):
        one_second()
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return (after - before) / seconds


def gateway_growth(minutes: float) -> list[float]:
    work = Path(tempfile.mkdtemp(prefix="mg-growth-"))
    logs = work / "logs"
    logs.mkdir()
    models = churn.prepare(work)
    mg = servers.Modelgate(work, logs)
    try:
        m = models["churn-v1"]
        mg.create_model(m.name, m.tarball)
        mg.deploy("growth", [(m.name, 1.0, 1)])
        url = mg.invocations_url("growth")
        script = work / "post.lua"
        script.write_text(f'wrk.method = "POST"\nwrk.body = "{churn.ROW}"\nwrk.headers["Content-Type"] = "text/csv"\n')
        gateway = psutil.Process(mg.proc.pid)
        rss: list[float] = []
        for i in range(max(2, round(minutes * 2))):
            subprocess.run(["wrk", "-t1", "-c16", "-d30s", "-s", str(script), url], capture_output=True, check=True)
            rss.append(gateway.memory_info().rss / 2**20)
            print(f"{(i + 1) * 30:5d} s  gateway RSS {rss[-1]:.1f} MB", flush=True)
        return rss
    finally:
        mg.stop()
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=4.0, help="minutes of c=16 on a real gateway (default 4)")
    parser.add_argument("--no-server", action="store_true", help="only the store simulation")
    args = parser.parse_args()
    per_second = store_bytes_per_second()
    print(
        f"metric store: {per_second:,.0f} bytes kept per second of traffic at {RATE:,} invocations/s "
        f"(one variant); {per_second * 10_800 / 2**20:,.1f} MB at the 3-hour plateau"
    )
    if args.no_server:
        return 0
    if shutil.which("wrk") is None:
        print("wrk is missing: apt-get update && apt-get install -y wrk", file=sys.stderr)
        return 3
    rss = gateway_growth(args.minutes)
    span = 30 * (len(rss) - 1)
    print(
        f"gateway: {rss[0]:.1f} MB after 30 s, {rss[-1]:.1f} MB after {30 * len(rss)} s: "
        f"{(rss[-1] - rss[0]) * 1024 / span:.1f} KB/s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
