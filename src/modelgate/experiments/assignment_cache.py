"""Assignments and served records in memory, written behind to the store: no store I/O on the event loop.

:class:`AssignmentCache` stands in front of an :class:`~modelgate.experiments.assignments.AssignmentStore`
(SQLite) for the service, which runs on the event loop:

* **Reads from memory.** A bounded LRU map holds the assignments written or read recently (``capacity``,
  100,000 by default, about 300 bytes each); :meth:`load` fills it at start (off the loop) with the
  unexpired assignments latest to expire first, that is, the most recently used. While memory holds
  every unexpired assignment the store holds (it all fitted at start and nothing was evicted since),
  memory is *complete* and a miss means "no assignment" without asking the store. That holds because
  this gateway is the store's only writer (one server per data directory) and every write goes through
  here. (Gateways sharing one store would each have to leave :meth:`load` out, so that every miss
  reads, and would not see each other's later writes for users they hold.) Otherwise a miss reads the
  store in a worker thread, one read per key at a time: concurrent requests of the same user wait for
  the same read, and each sees in memory what the ones that resumed before it wrote.
* **Writes behind.** :meth:`put` and :meth:`record_served` update memory and append to a
  :class:`~modelgate.experiments.backlog.Backlog`; :meth:`run` (a task on the loop) hands the backlog to
  a worker thread every ``flush_seconds`` (the gateway: 1 s) and the store writes it in one transaction. Batches
  are written one at a time, in order; a key written twice in a batch is written once, with its last
  value. Until its batch is committed a write stays in the backlog, where reads find it first: a
  conversion right after its invocation is credited, and a read after a write sees the write.
* **Failures.** A read that must reach the store and fails raises
  :class:`~modelgate.experiments.errors.StoreUnavailable` (the service falls back). A batch that fails
  is kept, logged (the first failure, then every 10 s while it lasts) and retried at the next flush,
  before newer writes. While the backlog holds ``max_backlog`` writes (100,000) it accepts no more:
  :meth:`put` and :meth:`record_served` raise StoreUnavailable, so the service answers Fallback (for an
  assignment) or logs the served record it could not keep; nothing accepted is dropped.
* **Durability.** What was committed survives a ``kill -9``; what the backlog holds dies with the
  process. Every write in it came with an event, which the event journal holds before the answer, and
  the gateway restores those writes from the journal at the next start
  (:mod:`~modelgate.experiments.recovery`); it delivers journal segments only after :meth:`flush` has
  written everything accepted before (:func:`~modelgate.experiments.pipeline.run_pipeline`). So the
  gateway writes behind every second (``flush_seconds``), in batches large enough that a row costs a
  fraction of what it did in small ones. :meth:`run` writes the backlog once more when it stops
  (graceful shutdown) and logs what it could not write.

:meth:`reader` is a blocking view (memory first, then the store) for worker threads, such as the
aggregator's. Memory is guarded by a lock, held for dictionary operations only, never across I/O.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import OrderedDict

from modelgate.clock import Clock
from modelgate.experiments.assignments import Assignment, AssignmentStore, Served
from modelgate.experiments.backlog import Backlog
from modelgate.experiments.errors import StoreUnavailable

logger = logging.getLogger(__name__)

AKey = tuple[str, str]  # (user_id, endpoint_name)
SKey = tuple[str, str]  # (endpoint_name, inference_id)
_LOG_EVERY = 10.0  # seconds between two logs of the same ongoing write failure


class _Memory:
    """What the cache holds, behind one lock: the LRU maps and the backlogs. No I/O."""

    def __init__(self, capacity: int, served_capacity: int, max_backlog: int) -> None:
        self.lock = threading.Lock()
        self.capacity = capacity
        self.served_capacity = served_capacity
        self.max_backlog = max_backlog
        self.assignments: OrderedDict[AKey, Assignment] = OrderedDict()
        self.served: OrderedDict[SKey, Served] = OrderedDict()
        self.pending_assignments: Backlog[AKey, Assignment] = Backlog()
        self.pending_served: Backlog[SKey, Served] = Backlog()
        self.complete = False  # memory holds every live assignment of the store (set by load)
        self.evicted = False  # an assignment left memory: complete no longer holds

    def assignment(self, key: AKey) -> tuple[bool, Assignment | None]:
        """(known, assignment): known is False when only the store can say."""
        with self.lock:
            found = self.assignments.get(key)
            if found is not None:
                self.assignments.move_to_end(key)
                return True, found
            found = self.pending_assignments.find(key)  # evicted before its batch was committed
            return (True, found) if found is not None else (self.complete, None)

    def served_record(self, key: SKey) -> Served | None:
        with self.lock:
            found = self.served.get(key)
            return found if found is not None else self.pending_served.find(key)

    def put(self, key: AKey, assignment: Assignment) -> None:
        with self.lock:
            self._check_room()
            self.pending_assignments.add(key, assignment)
            self._remember(key, assignment)

    def put_served(self, key: SKey, record: Served) -> None:
        with self.lock:
            self._check_room()
            self.pending_served.add(key, record)
            self.served[key] = record
            self.served.move_to_end(key)
            if len(self.served) > self.served_capacity:
                self.served.popitem(last=False)

    def fill(self, key: AKey, assignment: Assignment) -> None:
        """A row read from the store, kept unless the key was written meanwhile."""
        with self.lock:
            if key not in self.assignments and self.pending_assignments.find(key) is None:
                self._remember(key, assignment)

    def backlog(self) -> int:
        with self.lock:
            return len(self.pending_assignments) + len(self.pending_served)

    def _remember(self, key: AKey, assignment: Assignment) -> None:
        self.assignments[key] = assignment
        self.assignments.move_to_end(key)
        if len(self.assignments) > self.capacity:
            self.assignments.popitem(last=False)
            self.evicted = True
            self.complete = False  # a miss may now be an evicted assignment: ask the store

    def _check_room(self) -> None:
        waiting = len(self.pending_assignments) + len(self.pending_served)
        if waiting >= self.max_backlog:
            raise StoreUnavailable(f"the A/B store is behind: {waiting} writes wait to be written")


class AssignmentCache:
    def __init__(
        self,
        store: AssignmentStore,
        clock: Clock,
        *,
        capacity: int = 100_000,
        served_capacity: int = 10_000,
        max_backlog: int = 100_000,
        flush_seconds: float = 0.1,
    ) -> None:
        self._store = store
        self._clock = clock
        self._memory = _Memory(capacity, served_capacity, max_backlog)
        self.flush_seconds = flush_seconds
        self._reads: dict[AKey, asyncio.Future[Assignment | None]] = {}
        self._flushing = asyncio.Lock()
        self._failing_since: float | None = None
        self._last_failure_log = 0.0

    # --- start --------------------------------------------------------------------------------------

    def load(self, now: float) -> int:
        """Fill memory from the store (blocking: call it off the loop, before serving); how many were read."""
        m = self._memory
        rows, everything = self._store.recent(m.capacity, now)
        names: dict[str, str] = {}  # endpoint and variant names repeat: keep one copy of each
        for a in reversed(rows):  # latest expiry last: the most recently used end of the LRU
            endpoint = names.setdefault(a.endpoint_name, a.endpoint_name)
            m.fill((a.user_id, endpoint), Assignment(a.user_id, endpoint, names.setdefault(a.variant, a.variant),
                                                     a.expires_at))  # fmt: skip
        with m.lock:
            m.complete = everything and not m.evicted
        return len(rows)

    @property
    def complete(self) -> bool:
        """Whether a miss in memory means "no assignment" (no store read needed)."""
        return self._memory.complete

    @property
    def backlog(self) -> int:
        """Writes accepted and not yet committed."""
        return self._memory.backlog()

    # --- the loop's API: memory, or the store in a worker thread ----------------------------------------

    async def get(self, user_id: str, endpoint_name: str) -> Assignment | None:
        """The user's assignment, expired or not (the policy decides), or None."""
        key = (user_id, endpoint_name)
        known, found = self._memory.assignment(key)
        if known:
            return found
        read = self._reads.get(key)
        if read is None:
            read = asyncio.get_running_loop().run_in_executor(None, self._store.get, user_id, endpoint_name)
            self._reads[key] = read
            read.add_done_callback(lambda done: self._settle(key, done))
        await asyncio.shield(read)
        # The read's row, or what a request that waited for the same read wrote since (it resumed first).
        return self._memory.assignment(key)[1]

    def put(self, assignment: Assignment) -> None:
        """Replace the user's assignment now; it reaches the store with the next batch.

        Raises StoreUnavailable while the backlog is full."""
        self._memory.put((assignment.user_id, assignment.endpoint_name), assignment)

    def record_served(self, served: Served) -> None:
        """Record which variant served an inference; raises StoreUnavailable while the backlog is full."""
        self._memory.put_served((served.endpoint_name, served.inference_id), served)

    async def served(self, endpoint_name: str, inference_id: str, now: float) -> Served | None:
        """The unexpired record of an inference, or None."""
        record = self._memory.served_record((endpoint_name, inference_id))
        if record is not None:
            return record if record.expires_at > now else None
        return await asyncio.to_thread(self._store.served, endpoint_name, inference_id, now)

    def peek_served(self, endpoint_name: str, inference_id: str, now: float) -> Served | None:
        """The unexpired record of an inference if memory holds it (no store read)."""
        record = self._memory.served_record((endpoint_name, inference_id))
        return record if record is not None and record.expires_at > now else None

    def reader(self) -> CacheReader:
        """Blocking lookups, memory first, for worker threads (the aggregator)."""
        return CacheReader(self._memory, self._store)

    def _settle(self, key: AKey, read: asyncio.Future[Assignment | None]) -> None:
        """On the loop, before the readers resume: the store's row goes to memory, the read is done."""
        if self._reads.get(key) is read:
            del self._reads[key]
        if read.cancelled() or read.exception() is not None:
            return
        row = read.result()
        if row is not None:
            self._memory.fill(key, row)

    # --- writing behind ---------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event, *, final_attempts: int = 3) -> None:
        """Write the backlog every ``flush_seconds`` until ``stop`` is set, then write what is left."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.flush_seconds)
            await self.flush()
        for attempt in range(final_attempts):
            if await self.flush():
                return
            if attempt + 1 < final_attempts:
                await asyncio.sleep(self.flush_seconds)
        logger.error("A/B store: %d assignment and served-inference writes could not be written: lost", self.backlog)

    async def flush(self) -> bool:
        """Write what is pending in one transaction, in a worker thread; True unless that failed."""
        m = self._memory
        async with self._flushing:
            with m.lock:
                assignments, served = m.pending_assignments.take(), m.pending_served.take()
            if not assignments and not served:
                return True
            try:
                await asyncio.to_thread(self._store.write, assignments, served)
            except Exception as exc:
                with m.lock:
                    m.pending_assignments.failed()
                    m.pending_served.failed()
                self._log_failure(exc)
                return False
            with m.lock:
                m.pending_assignments.committed()
                m.pending_served.committed()
        if self._failing_since is not None:
            failed_for = self._clock.monotonic() - self._failing_since
            logger.info("A/B store: writing again after %.1f s of failures", failed_for)
            self._failing_since = None
        return True

    def _log_failure(self, exc: Exception) -> None:
        now = self._clock.monotonic()
        if self._failing_since is None:
            self._failing_since = now
        elif now - self._last_failure_log < _LOG_EVERY:
            return
        self._last_failure_log = now
        logger.warning(
            "A/B store: could not write %d assignment and served-inference writes (failing for %.1f s); "
            "kept in memory, retried every %.2f s: %r",
            self.backlog, now - self._failing_since, self.flush_seconds, exc,
        )  # fmt: skip


class CacheReader:
    """:class:`~modelgate.experiments.assignments.AssignmentReader` over the cache: blocking, for threads."""

    def __init__(self, memory: _Memory, store: AssignmentStore) -> None:
        self._memory = memory
        self._store = store

    def get(self, user_id: str, endpoint_name: str) -> Assignment | None:
        known, found = self._memory.assignment((user_id, endpoint_name))
        return found if known else self._store.get(user_id, endpoint_name)

    def served(self, endpoint_name: str, inference_id: str, now: float) -> Served | None:
        record = self._memory.served_record((endpoint_name, inference_id))
        if record is not None:
            return record if record.expires_at > now else None
        return self._store.served(endpoint_name, inference_id, now)
