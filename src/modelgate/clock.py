"""Clocks. Policies never read the time themselves; services and controllers get a Clock."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Wall-clock seconds since the epoch (for timestamps users see)."""
        ...

    def monotonic(self) -> float:
        """Monotonic seconds (for durations and timeouts)."""
        ...


class SystemClock:
    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()
