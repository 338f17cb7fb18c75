"""The threads that fetch, hash and unpack model data, and the budget each piece of work carries.

A thread cannot be cancelled from outside, so the work cancels itself: every loop that reads, hashes, copies
or unpacks calls :meth:`Budget.check` on each chunk, which raises :class:`WorkStopped` once the deadline has
passed, the caller has gone (its endpoint was deleted), or the server is stopping. Work therefore ends by
itself when its ModelDataDownloadTimeoutInSeconds does, instead of burning a thread for ever.

:class:`WorkerPool` is a small pool of its own, not asyncio's default executor (which other parts of the server
use for short jobs: a model data URL must never be able to take those threads). Its threads are daemons and
``close`` sets the stop flag every budget sees, so SIGTERM ends the process promptly whatever the work is doing.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")

BACKSTOP_SECONDS = 5.0  # how long after its deadline a job that is stuck outside its loops is given up on


class WorkStopped(Exception):
    """The work ran out of time (``expired``) or was called off (the caller went away, or the server stops)."""

    def __init__(self, expired: bool) -> None:
        super().__init__("the deadline passed" if expired else "the work was called off")
        self.expired = expired


@dataclass
class Budget:
    """When one piece of work must stop: a monotonic deadline, its own stop flag and the pool's."""

    deadline: float
    stop: threading.Event = field(default_factory=threading.Event)
    closing: threading.Event = field(default_factory=threading.Event)

    @classmethod
    def lasting(cls, seconds: float) -> Budget:
        return cls(time.monotonic() + seconds)

    def remaining(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def check(self) -> None:
        if self.stop.is_set() or self.closing.is_set():
            raise WorkStopped(expired=False)
        if time.monotonic() >= self.deadline:
            raise WorkStopped(expired=True)


@dataclass
class _Job(Generic[T]):
    work: Callable[[Budget], T]
    budget: Budget
    future: asyncio.Future[T]
    loop: asyncio.AbstractEventLoop
    release: Callable[[T], None] | None


class WorkerPool:
    """``size`` daemon threads taking jobs from one queue; each job's result goes back to the awaiting loop."""

    def __init__(self, size: int, name: str = "artifacts") -> None:
        self.size = size
        self.name = name
        self.closing = threading.Event()
        self._jobs: queue.SimpleQueue[_Job[object] | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    async def run(self, work: Callable[[Budget], T], seconds: float, release: Callable[[T], None] | None = None) -> T:
        """Run ``work`` in a pool thread with a budget of ``seconds`` (queueing included). If the caller is
        cancelled, the work is told to stop; a result that arrives with nobody waiting goes to ``release``."""
        if self.closing.is_set():
            raise WorkStopped(expired=False)
        budget = Budget(time.monotonic() + seconds, closing=self.closing)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._start_threads()
        self._jobs.put(_Job(work, budget, future, loop, release))  # type: ignore[arg-type]
        try:
            # The work stops itself at its deadline; the backstop is for a thread stuck in one system call.
            return await asyncio.wait_for(future, seconds + BACKSTOP_SECONDS)  # cancels `future` if it gives up
        except TimeoutError as exc:
            budget.stop.set()
            raise WorkStopped(expired=True) from exc
        except asyncio.CancelledError:
            budget.stop.set()
            raise

    def close(self, wait: float = 2.0) -> None:
        """Tell every job to stop, then give the threads ``wait`` seconds to finish (they are daemons)."""
        self.closing.set()
        with self._lock:
            threads = list(self._threads)
        for _ in threads:
            self._jobs.put(None)
        deadline = time.monotonic() + wait
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))

    def _start_threads(self) -> None:
        with self._lock:
            while len(self._threads) < self.size:
                t = threading.Thread(target=self._serve, name=f"{self.name}-{len(self._threads)}", daemon=True)
                t.start()
                self._threads.append(t)

    def _serve(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            try:
                job.budget.check()  # it may have waited in the queue past its deadline
                result = job.work(job.budget)
            except BaseException as exc:  # handed to the awaiting coroutine, which re-raises it
                _deliver(job, None, exc)
            else:
                _deliver(job, result, None)


def _deliver(job: _Job[T], result: T | None, error: BaseException | None) -> None:
    def settle() -> None:
        if job.future.done():  # the caller was cancelled or gave up
            if error is None and job.release is not None:
                job.release(result)  # type: ignore[arg-type]
            return
        if error is not None:
            job.future.set_exception(error)
        else:
            job.future.set_result(result)  # type: ignore[arg-type]

    with contextlib.suppress(RuntimeError):  # the loop has closed: nobody is waiting any more
        job.loop.call_soon_threadsafe(settle)
