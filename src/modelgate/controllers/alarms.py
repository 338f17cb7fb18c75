"""The alarm evaluator: a loop around :meth:`AlarmService.evaluate_due`.

Each tick (1 s) it first drains the invocation recorder, so every sample recorded before a window closed
is in the store, then evaluates each alarm whose newest window (CloudWatch's cadence: 10 s for periods
under a minute, 60 s otherwise, hourly beyond a day) closed at least ``settle`` seconds ago and was not
evaluated yet. A state change is therefore visible at most ``settle + tick`` (2 s) after the window that
causes it closes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from modelgate.clock import Clock
from modelgate.services.alarms import AlarmService

log = logging.getLogger(__name__)


class AlarmEvaluator:
    def __init__(
        self,
        alarms: AlarmService,
        clock: Clock,
        drain: Callable[[], object],
        tick: float = 1.0,
        settle: float = 1.0,
    ) -> None:
        self.alarms = alarms
        self.clock = clock
        self.drain = drain
        self.tick = tick
        self.settle = settle

    def step(self) -> int:
        """One round; returns how many alarms were evaluated."""
        self.drain()
        return self.alarms.evaluate_due(self.clock.now(), self.settle)

    async def run(self) -> None:
        while True:
            try:
                self.step()
            except Exception:
                log.exception("alarm evaluation round failed")
            await asyncio.sleep(self.tick)
