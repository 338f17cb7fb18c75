"""What recording adds to one invocation: the cost of ``InvocationRecorder.record_invocation``.

Run: ``.venv/bin/python bench/record_cost.py``. Prints nanoseconds per call for

* ``record_invocation``: the call the router makes on the request path (append to a deque);
* ``no-op call``: a method with the same signature that does nothing (the floor of any Python call);
* ``drain per sample``: the deferred work done off the request path (fold into 1 s and 60 s aggregates
  of six metrics, with sketches), for comparison.

Each figure is the best of 7 runs of 100,000 calls (timeit), the recorder drained between runs.
"""

from __future__ import annotations

import platform
import timeit

from modelgate.clock import SystemClock
from modelgate.telemetry.recorder import InvocationRecorder
from modelgate.telemetry.store import MetricStore

N = 100_000
REPEAT = 7


class NoOp:
    def record_invocation(
        self, endpoint: str, variant: str, fleet: str, status: int, model_latency_us: float, overhead_latency_us: float,
        instance_count: int,
    ) -> None:
        return None


def best_ns(stmt: str, setup: str, env: dict[str, object]) -> float:
    times = timeit.Timer(stmt, setup, globals=env).repeat(repeat=REPEAT, number=N)
    return min(times) / N * 1e9


def main() -> None:
    recorder = InvocationRecorder(MetricStore(), SystemClock())
    env: dict[str, object] = {"rec": recorder, "noop": NoOp()}
    call = 'rec.record_invocation("ep", "blue", "fleet-1", 200, 1234.5, 56.7, 2)'
    record = best_ns(call, "rec.drain()", env)
    noop = best_ns('noop.record_invocation("ep", "blue", "fleet-1", 200, 1234.5, 56.7, 2)', "pass", env)

    drains: list[float] = []
    for _ in range(REPEAT):
        for i in range(N):
            recorder.record_invocation(
                "ep", "blue", "fleet-1", 500 if i % 50 == 0 else 200, 1000.0 + i % 977, 50.0, 2
            )
        t = timeit.default_timer()
        recorder.drain()
        drains.append((timeit.default_timer() - t) / N * 1e9)

    print(f"python {platform.python_version()} on {platform.machine()}")
    print(f"record_invocation : {record:8.0f} ns/call")
    print(f"no-op call        : {noop:8.0f} ns/call")
    print(f"added by recording: {record - noop:8.0f} ns/call")
    print(f"drain per sample  : {min(drains):8.0f} ns (off the request path)")


if __name__ == "__main__":
    main()
