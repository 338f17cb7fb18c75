"""The experiment aggregator: folds flushed event files into per-(experiment, variant) counts.

Each pass lists the sink, skips the files already folded, and for every other file:

1. parses its lines (a malformed line is counted and skipped, not fatal as in the anchor);
2. drops events the :class:`~modelgate.experiments.events.EventFilter` rejects (they stay in the log);
3. attributes each event to an experiment (its ``experiment_id``, else the endpoint's experiment that
   was open at the event's timestamp) and a variant: an invocation to the variant that answered it (or
   failed: a failed invocation counts as an invocation with no reward, and as an error); a
   conversion to the variant it names, which the service resolved from the served inference or the
   user's assignment, or, if the service could not (its store was down), to the variant that served its
   ``inference_id``, else the user's live assignment, looked up now. Never to a freshly drawn one.
   Events with no experiment or variant are counted as unattributed and skipped;
4. adds the file's counts and records its key in one transaction
   (:meth:`~modelgate.experiments.store.ExperimentStore.fold`), so a crash at any point counts every
   file exactly once after restart;
5. publishes Invocations, Conversions and Rewards per endpoint and variant to the metrics publisher
   (namespace ``aws/sagemaker/Endpoints/ab-testing``, the anchor's), and Errors when some failed. Metrics
   are sent after the commit
   and at most once: a crash between the two loses that file's metric points, never its counts.

After the pass it takes the sequential looks that became due for the experiments it touched
(:func:`~modelgate.experiments.sequential.next_looks`). A crash between a fold and its look delays the
look to the next fold of that experiment, at a later information fraction; the test stays valid.
"""

from __future__ import annotations

import gzip
import json
import logging
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from modelgate.clock import Clock
from modelgate.experiments.analysis import design_of
from modelgate.experiments.assignments import AssignmentReader
from modelgate.experiments.entities import Experiment, VariantCounts
from modelgate.experiments.events import Event, EventFilter, EventSink
from modelgate.experiments.ports import MetricsPublisher
from modelgate.experiments.sequential import next_looks
from modelgate.experiments.store import ExperimentStore

logger = logging.getLogger(__name__)

NAMESPACE = "aws/sagemaker/Endpoints/ab-testing"
# The fold runs in a worker thread of the gateway, pure Python for ~30 us per event, and so holds the GIL:
# the event loop, which lets go of the GIL at every socket call, then waited up to the interpreter's
# switch interval (5 ms) to get it back each time, for the whole fold of a file (~0.1 s for 4,000
# events). Giving the GIL away every few events keeps the loop's waits to tens of microseconds.
_YIELD_EVERY = 16
_PARSE_CHUNK = 128  # lines per call to the JSON parser, which holds the GIL for the whole call


def _counts(tally: list[float]) -> VariantCounts:
    return VariantCounts(int(tally[0]), int(tally[1]), float(tally[2]), int(tally[3]))


@dataclass
class FoldReport:
    files: int = 0
    events: int = 0
    filtered: int = 0
    malformed: int = 0
    unattributed: int = 0
    corrupt_files: int = 0
    looks: int = 0
    experiments: set[int] = field(default_factory=set)


_MALFORMED = object()  # a line that is not JSON


def _parse(lines: list[bytes]) -> Iterator[Any]:
    """Each non-empty line parsed as JSON (``_MALFORMED`` where it is not). A chunk of lines goes to the C
    parser in one call (most of the fold's time saved over a call per line); chunks stay small, since the
    parser holds the GIL the event loop waits for; a chunk that does not parse whole is parsed line by line."""
    lines = [line for line in lines if line.strip()]
    for start in range(0, len(lines), _PARSE_CHUNK):
        chunk = lines[start : start + _PARSE_CHUNK]
        try:
            parsed = json.loads(b"[" + b",".join(chunk) + b"]")
        except ValueError:
            parsed = None
        if isinstance(parsed, list) and len(parsed) == len(chunk):
            yield from parsed
        else:
            for line in chunk:
                try:
                    yield json.loads(line)
                except ValueError:
                    yield _MALFORMED


class _Resolver:
    """Experiment and variant lookups for one pass, cached."""

    def __init__(self, store: ExperimentStore, assignments: AssignmentReader | None, now: float) -> None:
        self._store = store
        self._assignments = assignments
        self._now = now
        self._by_id: dict[int, Experiment | None] = {}
        self._history: dict[str, list[Experiment]] = {}

    def experiment(self, event: Event, experiment_id: int | None) -> Experiment | None:
        if experiment_id is not None:
            if experiment_id not in self._by_id:
                self._by_id[experiment_id] = self._store.get(experiment_id)
            found = self._by_id[experiment_id]
            return found if found is not None and found.endpoint_name == event.endpoint_name else None
        if event.endpoint_name not in self._history:
            self._history[event.endpoint_name] = self._store.history(event.endpoint_name)
        for e in reversed(self._history[event.endpoint_name]):
            if e.created_at <= event.timestamp and (e.closed_at is None or event.timestamp < e.closed_at):
                return e
        return None

    def conversion_variant(self, event: Event) -> tuple[str | None, int | None]:
        """(variant, experiment id) for a conversion the service could not attribute."""
        if self._assignments is None:
            return None, event.experiment_id
        record = self._assignments.served(event.endpoint_name, event.inference_id, self._now)
        if record is not None:
            return record.variant, record.experiment_id
        assignment = self._assignments.get(event.user_id, event.endpoint_name)
        if assignment is not None and assignment.expires_at > self._now:
            return assignment.variant, event.experiment_id
        return None, event.experiment_id


class Aggregator:
    def __init__(
        self,
        sink: EventSink,
        store: ExperimentStore,
        clock: Clock,
        *,
        assignments: AssignmentReader | None = None,
        event_filter: EventFilter | None = None,
        metrics: MetricsPublisher | None = None,
    ) -> None:
        self._sink = sink
        self._store = store
        self._clock = clock
        self._assignments = assignments
        self._filter = event_filter or EventFilter()
        self._metrics = metrics
        self._folded: set[str] | None = None

    def run_once(self) -> FoldReport:
        """Fold every file not yet folded. Safe to call again after any failure or crash."""
        report = FoldReport()
        if self._folded is None:
            self._folded = self._store.folded_keys()
        for key in self._sink.list_keys():
            if key in self._folded:
                continue
            self._fold_file(key, report)
        self._take_looks(report)
        return report

    def _fold_file(self, key: str, report: FoldReport) -> None:
        assert self._folded is not None
        try:
            lines = gzip.decompress(self._sink.get(key)).splitlines()
        except (OSError, EOFError, zlib.error):
            logger.error("event file %s is not valid gzip; left unfolded", key)
            report.corrupt_files += 1
            return
        now = self._clock.now()
        resolver = _Resolver(self._store, self._assignments, now)
        # Tallies as plain lists, [invocations, conversions, reward sum, errors], made VariantCounts once at the
        # end: a frozen dataclass per event and key was a third of the fold's time.
        tallies: dict[tuple[int, str], list[float]] = {}
        per_endpoint: dict[tuple[str, str], list[float]] = {}
        counted = filtered = malformed = unattributed = 0
        for i, raw in enumerate(_parse(lines)):
            if i % _YIELD_EVERY == _YIELD_EVERY - 1:
                time.sleep(0)  # let the event loop have the GIL (see _YIELD_EVERY)
            try:
                event = Event.from_raw(raw)
            except ValueError:
                malformed += 1
                continue
            if self._filter.drops(event):
                filtered += 1
                continue
            variant, experiment_id = event.endpoint_variant, event.experiment_id
            if event.type == "conversion" and variant is None:
                variant, experiment_id = resolver.conversion_variant(event)
            experiment = resolver.experiment(event, experiment_id)
            if experiment is None or variant is None or variant not in experiment.variant_names:
                unattributed += 1
                continue
            for tally in (
                tallies.setdefault((experiment.id, variant), [0, 0, 0.0, 0]),
                per_endpoint.setdefault((event.endpoint_name, variant), [0, 0, 0.0, 0]),
            ):
                if event.type == "invocation":
                    tally[0] += 1
                    if event.error is not None:
                        tally[3] += 1
                else:
                    tally[1] += 1
                    tally[2] += event.reward if event.reward is not None else 1.0
            counted += 1
        deltas = {k: _counts(t) for k, t in tallies.items()}
        published = {k: _counts(t) for k, t in per_endpoint.items()}
        if self._store.fold(key, deltas, now):
            report.files += 1
            report.events += counted
            report.filtered += filtered
            report.malformed += malformed
            report.unattributed += unattributed
            report.experiments.update(e for e, _ in deltas)
            self._publish(published, now)
        self._folded.add(key)

    def _publish(self, published: dict[tuple[str, str], VariantCounts], now: float) -> None:
        if self._metrics is None:
            return
        try:
            for (endpoint, variant), c in sorted(published.items()):
                dims = {"EndpointName": endpoint, "VariantName": variant}
                if c.invocations > 0:
                    self._metrics.put(NAMESPACE, "Invocations", dims, float(c.invocations), "Count", now)
                if c.conversions > 0:
                    self._metrics.put(NAMESPACE, "Conversions", dims, float(c.conversions), "Count", now)
                    self._metrics.put(NAMESPACE, "Rewards", dims, c.reward_sum, "Count", now)
                if c.errors > 0:
                    self._metrics.put(NAMESPACE, "Errors", dims, float(c.errors), "Count", now)
        except Exception:
            logger.exception("publishing A/B metrics failed; the counts are folded")

    def _take_looks(self, report: FoldReport) -> None:
        for experiment_id in sorted(report.experiments):
            experiment = self._store.get(experiment_id)
            if experiment is None or not experiment.is_open:
                continue
            counts = self._store.counts(experiment_id)
            due = next_looks(design_of(experiment), experiment.control, counts, self._store.looks(experiment_id))
            if due:
                self._store.add_looks(experiment_id, due)
                report.looks += len(due)
