"""The background loop that flushes the event journal and runs the aggregator.

One task per gateway: every ``poll`` seconds it flushes the journal if a segment is due (by size or age),
else fsyncs the open segment if events arrived since the last round (so a power loss loses about
``poll`` seconds of events at most; a kill loses none, see :mod:`~modelgate.experiments.journal`),
and folds right after each flush so the strategies see new counts within about ``max_age + poll``
seconds. It also folds every ``fold_interval`` seconds regardless, to pick up files other gateways
wrote to a shared sink. Blocking work (gzip, file or S3 writes, database transactions) runs in a
worker thread; a failure is logged and retried on the next round, never fatal. On stop it flushes what
is left and folds once more.

``before_delivery`` (the assignment cache's flush) runs before segments are delivered, and they are
delivered (and deleted) only once it has written everything accepted so far: a segment deleted from the
journal is then never needed to restore a served record or an assignment after a kill.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from modelgate.clock import Clock
from modelgate.experiments.aggregator import Aggregator
from modelgate.experiments.journal import EventJournal

logger = logging.getLogger(__name__)


async def run_pipeline(
    journal: EventJournal,
    aggregator: Aggregator,
    clock: Clock,
    stop: asyncio.Event,
    *,
    poll: float = 1.0,
    fold_interval: float = 60.0,
    before_delivery: Callable[[], Awaitable[bool]] | None = None,
) -> None:
    async def ready() -> bool:
        return before_delivery is None or await before_delivery()

    last_fold = clock.monotonic()
    while not stop.is_set():
        flushed = False
        try:
            if journal.due() and await ready():
                flushed = bool(await asyncio.to_thread(journal.flush))
            else:
                await asyncio.to_thread(journal.sync)
            if flushed or clock.monotonic() - last_fold >= fold_interval:
                last_fold = clock.monotonic()
                await asyncio.to_thread(aggregator.run_once)
        except Exception:
            logger.exception("A/B event pipeline round failed; retrying in %.1f s", poll)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=poll)
    try:
        if await ready():  # else the segments stay for the next start, which restores from them
            await asyncio.to_thread(journal.flush, True)
        await asyncio.to_thread(aggregator.run_once)
    except Exception:
        logger.exception("A/B event pipeline could not flush and fold on stop")
