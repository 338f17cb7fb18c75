"""What the A/B event journal's choices cost on this disk: one append, and an fsync after each append.

    .venv/bin/python bench/fsync_cost.py [DIR]      # DIR: a directory on the disk of the data directory

Appends a 331-byte line (an A/B event's size) 300 times, timing the ``write`` and an ``fsync`` after
each; then, for 8 s, one append per millisecond next to an fsync of the file every second (what the
journal does), timing the appends. Prints medians and tails in microseconds. See bench/RESULTS.md, "A/B".
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
import time

LINE = b"x" * 330 + b"\n"


def _q(xs: list[float], p: float) -> float:
    return sorted(xs)[min(len(xs) - 1, int(p * len(xs)))] * 1e6


def main() -> None:
    directory = tempfile.mkdtemp(dir=sys.argv[1] if len(sys.argv) > 1 else None)
    fd = os.open(os.path.join(directory, "segment.jsonl"), os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    writes, syncs = [], []
    for _ in range(300):
        t = time.perf_counter()
        os.write(fd, LINE)
        writes.append(time.perf_counter() - t)
        t = time.perf_counter()
        os.fsync(fd)
        syncs.append(time.perf_counter() - t)
    print(f"append then fsync, 300 times: write p50 {_q(writes, .5):.0f} us; "
          f"fsync p50 {_q(syncs, .5):.0f} us, p90 {_q(syncs, .9):.0f} us, p99 {_q(syncs, .99):.0f} us")  # fmt: skip
    stop = threading.Event()

    def every_second() -> None:
        while not stop.wait(1.0):
            os.fsync(fd)

    threading.Thread(target=every_second, daemon=True).start()
    appends: list[float] = []
    end = time.monotonic() + 8
    while time.monotonic() < end:
        t = time.perf_counter()
        os.write(fd, LINE)
        appends.append(time.perf_counter() - t)
        time.sleep(0.001)
    stop.set()
    tail = f"p99 {_q(appends, 0.99):.0f} us, p99.9 {_q(appends, 0.999):.0f} us, max {max(appends) * 1e6:.0f} us"
    print(f"appends next to an fsync a second ({len(appends)}): p50 {_q(appends, 0.5):.0f} us, {tail}")


if __name__ == "__main__":
    main()
