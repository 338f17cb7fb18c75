"""The background loop that flushes the event buffer and runs the aggregator.

One task per gateway: every ``poll`` seconds it flushes the buffer if a batch is due (by size or age),
and folds right after each flush so the strategies see new counts within about ``max_age + poll``
seconds. It also folds every ``fold_interval`` seconds regardless, to pick up files other gateways
wrote to a shared sink. Blocking work (gzip, file or S3 writes, database transactions) runs in a
worker thread; a failure is logged and retried on the next round, never fatal. On stop it flushes what
is left and folds once more.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from modelgate.clock import Clock
from modelgate.experiments.aggregator import Aggregator
from modelgate.experiments.events import EventBuffer

logger = logging.getLogger(__name__)


async def run_pipeline(
    buffer: EventBuffer,
    aggregator: Aggregator,
    clock: Clock,
    stop: asyncio.Event,
    *,
    poll: float = 1.0,
    fold_interval: float = 60.0,
) -> None:
    last_fold = clock.monotonic()
    while not stop.is_set():
        flushed = False
        try:
            if buffer.due():
                flushed = bool(await asyncio.to_thread(buffer.flush))
            if flushed or clock.monotonic() - last_fold >= fold_interval:
                last_fold = clock.monotonic()
                await asyncio.to_thread(aggregator.run_once)
        except Exception:
            logger.exception("A/B event pipeline round failed; retrying in %.1f s", poll)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=poll)
    try:
        await asyncio.to_thread(buffer.flush, True)
        await asyncio.to_thread(aggregator.run_once)
    except Exception:
        logger.exception("A/B event pipeline could not flush and fold on stop")
