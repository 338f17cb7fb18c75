"""How many requests a fuzz run sends, with which seed, and what is checked when it ends.

``MODELGATE_FUZZ_EXAMPLES`` (default :data:`DEFAULT_EXAMPLES`) is the number of requests of a whole run,
shared among the modules by their ``SHARE``; ``MODELGATE_FUZZ_SEED`` (default :data:`DEFAULT_SEED`)
seeds hypothesis. The default run is the same inputs every time: a red CI run then means the code
changed, not that the dice did, and it replays with the same command. The server's timing (endpoints
becoming InService, alarms evaluating) still varies a little between runs. Exploration is the longer
run's job: a new seed finds new inputs, e.g.
``MODELGATE_FUZZ_EXAMPLES=50000 MODELGATE_FUZZ_SEED=$RANDOM pytest tests/fuzz``.
"""

from __future__ import annotations

import os
import re
import time
import urllib.request
from collections.abc import Mapping
from typing import Any

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from tests.fuzz.conftest import FuzzServer, log_of
from tests.fuzz.fuzzer import Fuzzer, Target

DEFAULT_EXAMPLES = 2400
DEFAULT_SEED = 20261201


def examples(share: float) -> int:
    return max(1, round(int(os.environ.get("MODELGATE_FUZZ_EXAMPLES", DEFAULT_EXAMPLES)) * share))


def timeout(share: float) -> float:
    """pytest-timeout's limit for a module sending ``examples(share)`` requests: the suite's 300 s, or a
    generous 100 ms a request for the longer runs."""
    return max(300.0, examples(share) * 0.1)


def run_seed() -> int:
    return int(os.environ.get("MODELGATE_FUZZ_SEED", DEFAULT_SEED))


def run(fuzzer: Fuzzer, n: int) -> None:
    """Send ``n`` requests (one per hypothesis example)."""

    @seed(run_seed())
    @settings(
        max_examples=n,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
        derandomize=False,
    )
    @given(st.data())
    def loop(data: st.DataObject) -> None:
        fuzzer.step(data)

    try:
        loop()
    except Exception:
        # A broken run (RunBroken, and hypothesis's complaints when it replays the example that raised it)
        # is reported by finish() with its cause; anything else is the fuzzer's own failure.
        if fuzzer.broken is None:
            raise


def top_up(fuzzer: Fuzzer, reached: Mapping[str, int], seconds: float = 90.0) -> None:
    """Targets of ``reached`` that need a state only time brings (an endpoint InService takes its instances'
    start, longer on a loaded machine) may have had every request before it came: send valid requests of each
    short target again, judged like all others, a second apart, until it is reached or ``seconds`` pass. What
    the generator makes is unchanged; only the moment of sending moves."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and fuzzer.broken is None:
        short = [
            t for t in fuzzer.targets if t.label in reached and accepted(fuzzer, t.label) < reached[t.label]
        ]
        if not short:
            return
        for target in short:
            _send_valid(fuzzer, target, reached[target.label])
        time.sleep(1.0)


def _send_valid(fuzzer: Fuzzer, target: Target, least: int) -> None:
    """Up to five valid requests of ``target``, until it has ``least`` accepted."""

    @seed(run_seed())
    @settings(max_examples=5, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(target.params)
    def send(params: Any) -> None:
        if accepted(fuzzer, target.label) < least:
            fuzzer.exchange(target, target.protocol.build(target.op, params), "valid", params)

    send()


def accepted(fuzzer: Fuzzer, label: str) -> int:
    """Accepted requests of the target ``label`` (``"json PutMetricData"``), or of ``"* PutMetricData"`` in any
    protocol."""
    if label.startswith("* "):
        return sum(n for target, n in fuzzer.accepted.items() if target.split(" ", 1)[1] == label[2:])
    return fuzzer.accepted[label]


def finish(fuzzer: Fuzzer, env: FuzzServer, n: int, reached: Mapping[str, int]) -> None:
    """Fail with everything that went wrong: failed requests, a dead or broken server, a traceback in its
    log, fewer requests than asked, or too few accepted requests of the targets in ``reached`` (then the
    generator stopped reaching the services' deep paths)."""
    top_up(fuzzer, reached)
    print(f"\nseed {run_seed()}: {fuzzer.summary()}")
    problems = []
    if fuzzer.broken is not None:
        problems.append(f"the run stopped early: {fuzzer.broken}")
    if fuzzer.failures:
        problems.append(fuzzer.report())
    proc = env.server.proc
    if proc is None or proc.poll() is not None:
        problems.append(f"the server exited (status {None if proc is None else proc.returncode})")
    else:
        try:
            with urllib.request.urlopen(env.server.url + "/healthz", timeout=5) as r:
                if r.status != 200:
                    problems.append(f"/healthz answered {r.status}")
        except OSError as exc:
            problems.append(f"/healthz failed after the run: {exc}")
    log = log_of(env.server)
    tracebacks = [m.start() for m in re.finditer(r"Traceback \(most recent call last\)", log)]
    if tracebacks:
        first = log[max(0, tracebacks[0] - 300) : tracebacks[0] + 3000]
        problems.append(f"the server log has {len(tracebacks)} tracebacks; the first:\n{first}")
    if fuzzer.sent < n and fuzzer.broken is None:
        problems.append(f"only {fuzzer.sent} of {n} requests were sent")
    few = {label: n for label, least in reached.items() if (n := accepted(fuzzer, label)) < least}
    if few and fuzzer.broken is None:
        problems.append(f"too few accepted requests to reach the services (want {dict(reached)}): {few}")
    assert not problems, f"seed {run_seed()}\n" + "\n\n".join(problems) + "\n\n" + fuzzer.summary()
