"""After a kill: what the assignment store's write-behind lost, restored from the event journal.

The assignment cache writes assignments, served records and conversion marks behind, every second
(:mod:`~modelgate.experiments.assignment_cache`); a ``kill -9`` loses what it had not written. Every one
of those writes came with an event, and every acknowledged event is in the journal before its answer
(:mod:`~modelgate.experiments.journal`), whose segments are deleted only once the write-behind has caught
up. :func:`restore` reads the events a killed process left there and writes back, through the cache:

* each inference's served record (from its invocation event, failed or not, or the store's), with at
  least as many conversions as the store holds and as the events show, so that a conversion credited
  before the kill is not credited again;
* each user's assignment, as their latest invocation chose it (Manual and Fallback invocations choose
  none), unless the store holds one that lasts as long.

It reads the store (blocking): the gateway calls it while it builds the A/B subsystem, before serving.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import replace

from modelgate.experiments.assignment_cache import AssignmentCache
from modelgate.experiments.assignments import Served, StickyPolicy
from modelgate.experiments.entities import FALLBACK, MANUAL
from modelgate.experiments.events import Event


def restore(events: Iterable[Event], cache: AssignmentCache, policy: StickyPolicy, now: float) -> int:
    """Write back what the events show and the store lacks; return how many records were written."""
    reader = cache.reader()
    records: dict[tuple[str, str], Served] = {}
    conversions: Counter[tuple[str, str]] = Counter()
    chosen: dict[tuple[str, str], Event] = {}  # (user, endpoint) -> latest invocation with a strategy
    for e in events:
        key = (e.endpoint_name, e.inference_id)
        if e.type == "invocation" and e.endpoint_variant is not None:
            records[key] = policy.served(
                e.endpoint_name, e.inference_id, e.endpoint_variant, e.experiment_id, e.strategy, e.user_id,
                e.timestamp, failed=e.error is not None,
            )  # fmt: skip
            if e.target_variant is not None and e.strategy not in (MANUAL, FALLBACK):
                latest = chosen.get((e.user_id, e.endpoint_name))
                if latest is None or latest.timestamp <= e.timestamp:
                    chosen[(e.user_id, e.endpoint_name)] = e
        elif e.type == "conversion":
            conversions[key] += 1
    written = 0
    for key in records.keys() | conversions.keys():
        stored = reader.served(key[0], key[1], now)
        record = stored or records.get(key)
        if record is None or record.expires_at <= now:
            continue  # a conversion whose inference's record expired
        count = max(record.conversions, conversions[key])
        if stored is not None and stored.conversions >= count:
            continue
        cache.record_served(replace(record, conversions=count))
        written += 1
    for (user_id, endpoint_name), e in chosen.items():
        assert e.target_variant is not None
        assignment = policy.assign(user_id, endpoint_name, e.target_variant, e.timestamp)
        stored_assignment = reader.get(user_id, endpoint_name)
        if assignment.expires_at <= now or (
            stored_assignment is not None and stored_assignment.expires_at >= assignment.expires_at
        ):
            continue
        cache.put(assignment)
        written += 1
    return written
