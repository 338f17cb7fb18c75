"""Where a prediction runs: on the event loop, or on one of ``SAGEMAKER_MODEL_SERVER_WORKERS`` threads.

Handing a call to a thread and back costs 100-200 us on the small VMs we run on, more than a
one-row XGBoost prediction itself. So a call runs directly on the event loop when nothing else is
in flight, its body is small, and calls have recently been cheap (an exponentially weighted mean of
measured durations); otherwise it goes to the thread pool, whose size bounds how many predictions
run at once. While an inline call runs nothing else is in flight, so the bound holds either way.
A slow call blocks ``/ping`` for at most its own duration: the next ones move to the pool.

The decision is a pure function (:func:`run_inline`) so it can be tested as a table.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor

from modelgate.containers.errors import InvocationError, describe
from modelgate.containers.protocol import Handler, Invocation, Reply

log = logging.getLogger(__name__)

INLINE_MAX_BODY = 64 * 1024  # bytes
INLINE_MAX_COST = 0.001  # seconds
COST_SMOOTHING = 0.2  # weight of the newest sample in the moving mean


def run_inline(in_flight: int, body_size: int, cost_estimate: float) -> bool:
    return in_flight == 0 and body_size <= INLINE_MAX_BODY and cost_estimate <= INLINE_MAX_COST


def next_cost(estimate: float, sample: float) -> float:
    return estimate + COST_SMOOTHING * (sample - estimate)


class Invoker:
    def __init__(self, handler: Handler, workers: int) -> None:
        self.handler = handler
        self.workers = workers
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="predict")
        self.in_flight = 0
        self.cost = float(handler.initial_cost_estimate)

    async def invoke(self, request: Invocation) -> Reply:
        reply = self.try_inline(request)
        if reply is None:
            reply = await self.in_pool(request)
        return reply

    def try_inline(self, request: Invocation) -> Reply | None:
        """The reply when the call ran right here on the event loop, None when it belongs on the pool."""
        if run_inline(self.in_flight, len(request.body), self.cost):
            return self._timed(request)
        return None

    async def in_pool(self, request: Invocation) -> Reply:
        self.in_flight += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self.pool, self._timed, request)
        finally:
            self.in_flight -= 1

    def _timed(self, request: Invocation) -> Reply:
        start = time.perf_counter()
        try:
            return self.handler.invoke(request)
        except InvocationError as exc:
            return Reply(exc.status, exc.message.encode("utf-8"), "text/plain; charset=utf-8" if exc.message else None)
        except Exception as exc:  # a handler bug: still one line, never a traceback page
            log.exception("Unhandled error in the model handler")
            return Reply(500, describe(exc).encode("utf-8"), "text/plain; charset=utf-8")
        finally:
            self.cost = next_cost(self.cost, time.perf_counter() - start)

    def shutdown(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
