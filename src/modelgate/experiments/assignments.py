"""Sticky assignment of a user to a variant, per (user_id, endpoint), and the served-inference record.

A user keeps the variant first chosen for them on an endpoint until the assignment expires (``ttl``, 90
days by default) or the variant leaves the endpoint's experiment, when a strategy chooses again. The
expiry is computed from the clock at every write (the anchor froze it at import time) and is pushed
forward on use, at most once per ``refresh_after`` (a day by default) so that a busy user does not cost a
write per request. An expired assignment is treated as absent even if the store still holds it.

Every invocation also records which variant served its ``inference_id`` and to which user (for
``served_ttl``, 7 days by default), whether it failed, and how many conversions were credited to it, so
that a later conversion is credited to that variant (even if the user has since been reassigned), only
by the user it was issued to, never for a failed invocation, and no more often than the experiment allows.

Storage sits behind :class:`AssignmentStore`; ``sqlstore.SqlAssignmentStore`` implements it. Stores raise
:class:`~modelgate.experiments.errors.StoreUnavailable` when they cannot answer, and the service falls
back to the endpoint's own weights. Store calls block: the service reaches the store through
:class:`~modelgate.experiments.assignment_cache.AssignmentCache` (memory, writes behind, reads in a
worker thread), never on the event loop. :class:`AssignmentReader` is the read-only part the aggregator
needs.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Protocol

DAY = 86_400.0


@dataclass(slots=True)  # not frozen: one is made per A/B request, and a frozen field costs a setattr call
class Assignment:
    user_id: str
    endpoint_name: str
    variant: str
    expires_at: float


@dataclass(slots=True)  # not frozen: one is made per A/B request, and a frozen field costs a setattr call
class Served:
    """Which variant answered one inference, for whom, and what was credited to it (for its conversions)."""

    endpoint_name: str
    inference_id: str
    variant: str
    experiment_id: int | None
    strategy: str
    user_id: str
    expires_at: float
    failed: bool = False  # the invocation failed: nothing can be credited to it
    conversions: int = 0  # conversions credited so far


class AssignmentReader(Protocol):
    def get(self, user_id: str, endpoint_name: str) -> Assignment | None:
        """The stored assignment, expired or not (the policy decides), or None."""
        ...

    def served(self, endpoint_name: str, inference_id: str, now: float) -> Served | None:
        """The unexpired record of an inference, or None."""
        ...


class AssignmentStore(AssignmentReader, Protocol):
    def put(self, assignment: Assignment) -> None:
        """Insert or replace the assignment of (user_id, endpoint_name)."""
        ...

    def record_served(self, served: Served) -> None:
        """Insert or replace the record of (endpoint_name, inference_id)."""
        ...

    def write(self, assignments: Sequence[Assignment], served: Sequence[Served]) -> None:
        """Insert or replace every assignment and served record given, in one transaction (all or none).

        At most one of each key per call (the cache's batches are coalesced)."""
        ...

    def recent(self, limit: int, now: float) -> tuple[list[Assignment], bool]:
        """Up to ``limit`` unexpired assignments, latest expiry (most recently used) first, and whether
        that is all of the unexpired ones."""
        ...

    def purge_expired(self, now: float) -> int:
        """Delete expired assignments and served records; return how many rows went."""
        ...


@dataclass(frozen=True, slots=True)
class StickyPolicy:
    ttl: float = 90 * DAY
    refresh_after: float = DAY
    served_ttl: float = 7 * DAY

    def current(self, existing: Assignment | None, variants: Collection[str], now: float) -> str | None:
        """The user's variant if the assignment is live and the variant still in the experiment."""
        if existing is None or existing.expires_at <= now or existing.variant not in variants:
            return None
        return existing.variant

    def assign(self, user_id: str, endpoint_name: str, variant: str, now: float) -> Assignment:
        return Assignment(user_id, endpoint_name, variant, now + self.ttl)

    def renewal(self, existing: Assignment, now: float) -> Assignment | None:
        """The refreshed assignment to write on use, or None while the stored expiry is recent enough."""
        expires_at = now + self.ttl
        if expires_at - existing.expires_at < self.refresh_after:
            return None
        return Assignment(existing.user_id, existing.endpoint_name, existing.variant, expires_at)

    def served(
        self,
        endpoint_name: str,
        inference_id: str,
        variant: str,
        experiment_id: int | None,
        strategy: str,
        user_id: str,
        now: float,
        failed: bool = False,
    ) -> Served:
        return Served(
            endpoint_name, inference_id, variant, experiment_id, strategy, user_id, now + self.served_ttl, failed
        )
