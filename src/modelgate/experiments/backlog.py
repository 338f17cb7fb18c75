"""Writes accepted in memory and not yet committed to the store: coalesced by key, handed out in batches.

A :class:`Backlog` has two parts: ``pending`` (accepted since the last batch was taken) and ``flushing``
(the batch being written). :meth:`take` moves pending into flushing; :meth:`committed` forgets
flushing once the store has committed it; :meth:`failed` puts it back *before* what was accepted
meanwhile, so a retried batch never overwrites a newer write of the same key. A write replaces an
earlier one of its key (the store's upsert would too): one row per key per batch, the last written.
:meth:`find` sees both parts, newest first, so a read right after a write finds it even while it is
being written. No I/O, no lock: :mod:`~modelgate.experiments.assignment_cache` holds its lock around it.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Backlog(Generic[K, V]):
    def __init__(self) -> None:
        self.pending: dict[K, V] = {}
        self.flushing: dict[K, V] = {}

    def __len__(self) -> int:
        return len(self.pending) + len(self.flushing)

    def add(self, key: K, value: V) -> None:
        self.pending.pop(key, None)  # re-inserted at the end: batches keep the order of last writes
        self.pending[key] = value

    def find(self, key: K) -> V | None:
        found = self.pending.get(key)
        return found if found is not None else self.flushing.get(key)

    def take(self) -> list[V]:
        """The next batch (everything pending), now being written. Call only once the last batch settled."""
        if self.flushing:
            raise RuntimeError("a batch is already being written")
        self.flushing, self.pending = self.pending, {}
        return list(self.flushing.values())

    def committed(self) -> None:
        self.flushing = {}

    def failed(self) -> None:
        """The batch was not written: keep it, older than what was accepted meanwhile."""
        merged = self.flushing
        for key, value in self.pending.items():
            merged.pop(key, None)
            merged[key] = value
        self.pending, self.flushing = merged, {}
