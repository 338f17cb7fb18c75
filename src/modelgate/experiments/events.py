"""The event log: one JSON line per invocation and conversion, flushed as gzip files by date and hour.

Each line carries the anchor's fields (``timestamp, type, strategy, endpoint_name, target_variant,
endpoint_variant, inference_id, user_id, reward, source_ip, user_agent``) plus ``experiment_id``; every
key is always present (``null`` when it does not apply), so DuckDB's ``read_json_auto`` and an Athena
table see one schema. The anchor's ``predictions`` are not logged (they can be large or personal). For a
conversion, ``endpoint_variant`` is the variant credited (the one that served the user), and
``target_variant`` is null.

:class:`EventBuffer` collects lines in memory and seals a batch when it reaches ``max_bytes`` (1 MB) or
is ``max_age`` seconds old (60 s), as the anchor's Firehose did; :meth:`EventBuffer.flush` writes sealed
batches to an :class:`~modelgate.experiments.sinks.EventSink` under
``year=YYYY/month=MM/day=DD/hour=HH/`` (UTC, from the batch's first event). ``append`` never does I/O;
the caller runs ``flush`` from a background task or thread. A batch the sink refuses is kept and retried
at the next flush, up to ``max_pending_bytes``, beyond which the oldest batches are dropped and counted.
Events still in memory when the process dies are lost; files, once written, are folded exactly once
(:mod:`modelgate.experiments.aggregator`).

:class:`EventFilter` names the source IPs (addresses or CIDR networks) and user agents (regular
expressions, case-insensitive) whose events the aggregator drops before they count; they stay in the log.
"""

from __future__ import annotations

import gzip
import ipaddress
import json
import logging
import math
import re
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from modelgate.clock import Clock
from modelgate.experiments.errors import InvalidParameter

logger = logging.getLogger(__name__)

EventType = Literal["invocation", "conversion"]
_FIELDS = (
    "timestamp",
    "type",
    "strategy",
    "endpoint_name",
    "target_variant",
    "endpoint_variant",
    "inference_id",
    "user_id",
    "reward",
    "source_ip",
    "user_agent",
    "experiment_id",
)


@dataclass(frozen=True, slots=True)
class Event:
    timestamp: float
    type: EventType
    strategy: str
    endpoint_name: str
    target_variant: str | None
    endpoint_variant: str | None
    inference_id: str
    user_id: str
    reward: float | None
    source_ip: str | None
    user_agent: str | None
    experiment_id: int | None = None

    def to_json(self) -> str:
        return json.dumps({f: getattr(self, f) for f in _FIELDS}, separators=(",", ":"), allow_nan=False)

    @classmethod
    def from_json(cls, line: str | bytes) -> Event:
        """Parse one line; ValueError if it is not an event this module wrote."""
        raw = json.loads(line)
        if not isinstance(raw, dict):
            raise ValueError("an event line must be a JSON object")
        kind = raw.get("type")
        if kind not in ("invocation", "conversion"):
            raise ValueError(f"unknown event type {kind!r}")
        reward = raw.get("reward")
        if reward is not None and (not isinstance(reward, int | float) or not math.isfinite(reward)):
            raise ValueError(f"bad reward {reward!r}")
        experiment_id = raw.get("experiment_id")
        if experiment_id is not None and not isinstance(experiment_id, int):
            raise ValueError(f"bad experiment_id {experiment_id!r}")
        timestamp = raw.get("timestamp")
        if not isinstance(timestamp, int | float):
            raise ValueError(f"bad timestamp {timestamp!r}")
        return cls(
            timestamp=float(timestamp),
            type=kind,
            strategy=_text(raw, "strategy"),
            endpoint_name=_text(raw, "endpoint_name"),
            target_variant=_optional_text(raw, "target_variant"),
            endpoint_variant=_optional_text(raw, "endpoint_variant"),
            inference_id=_text(raw, "inference_id"),
            user_id=_text(raw, "user_id"),
            reward=None if reward is None else float(reward),
            source_ip=_optional_text(raw, "source_ip"),
            user_agent=_optional_text(raw, "user_agent"),
            experiment_id=experiment_id,
        )


def _text(raw: dict[str, Any], key: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str):
        raise ValueError(f"{key} must be a string, got {value!r}")
    return value


def _optional_text(raw: dict[str, Any], key: str) -> str | None:
    value = raw.get(key)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{key} must be a string or null, got {value!r}")
    return value


class EventLog(Protocol):
    def append(self, event: Event) -> None: ...


class EventSink(Protocol):
    """Where flushed files go. ``put`` is atomic: ``list_keys`` never lists a partial object."""

    def put(self, key: str, data: bytes) -> None: ...

    def list_keys(self) -> list[str]:
        """Every complete event file, sorted."""
        ...

    def get(self, key: str) -> bytes: ...


def partition(timestamp: float) -> str:
    t = time.gmtime(timestamp)
    return f"year={t.tm_year:04d}/month={t.tm_mon:02d}/day={t.tm_mday:02d}/hour={t.tm_hour:02d}/"


@dataclass(slots=True)
class _Batch:
    lines: list[bytes]
    size: int
    first_timestamp: float
    opened: float  # monotonic


class EventBuffer:
    """An in-memory :class:`EventLog` that flushes gzip JSON-lines files to a sink. Thread-safe."""

    def __init__(
        self,
        sink: EventSink,
        clock: Clock,
        *,
        max_bytes: int = 1024 * 1024,
        max_age: float = 60.0,
        max_pending_bytes: int = 64 * 1024 * 1024,
        writer_id: str | None = None,
    ) -> None:
        if max_bytes <= 0 or max_age <= 0:
            raise InvalidParameter("the event buffer needs max_bytes > 0 and max_age > 0")
        self._sink = sink
        self._clock = clock
        self._max_bytes = max_bytes
        self._max_age = max_age
        self._max_pending = max_pending_bytes
        self._writer = writer_id or uuid.uuid4().hex[:12]
        self._current: _Batch | None = None
        self._sealed: list[_Batch] = []
        self._seq = 0
        self._lock = threading.Lock()  # guards the batches; held for no I/O
        self._flush_lock = threading.Lock()  # one flush at a time
        self.dropped_events = 0

    def append(self, event: Event) -> None:
        line = event.to_json().encode() + b"\n"
        with self._lock:
            if self._current is None:
                self._current = _Batch([], 0, event.timestamp, self._clock.monotonic())
            self._current.lines.append(line)
            self._current.size += len(line)
            if self._current.size >= self._max_bytes:
                self._sealed.append(self._current)
                self._current = None

    def due(self) -> bool:
        with self._lock:
            return bool(self._sealed) or self._aged()

    def _aged(self) -> bool:
        current = self._current
        return current is not None and self._clock.monotonic() - current.opened >= self._max_age

    def flush(self, force: bool = False) -> list[str]:
        """Write every sealed batch, and the open one if it is old enough (or ``force``); return the keys.

        A batch the sink refuses stays queued for the next flush; the sink's error is logged.
        """
        with self._flush_lock:
            with self._lock:
                if self._current is not None and (force or self._aged()):
                    self._sealed.append(self._current)
                    self._current = None
                batches, self._sealed = self._sealed, []
            written: list[str] = []
            for i, batch in enumerate(batches):
                key = self._key(batch)
                try:
                    self._sink.put(key, gzip.compress(b"".join(batch.lines), mtime=0))
                except Exception:
                    logger.exception("event sink refused %s; %d batches kept for retry", key, len(batches) - i)
                    self._requeue(batches[i:])
                    break
                written.append(key)
            return written

    def _key(self, batch: _Batch) -> str:
        self._seq += 1
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(batch.first_timestamp))
        return f"{partition(batch.first_timestamp)}events-{stamp}-{self._writer}-{self._seq:08d}.jsonl.gz"

    def _requeue(self, batches: list[_Batch]) -> None:
        with self._lock:
            queue = batches + self._sealed
            while len(queue) > 1 and sum(b.size for b in queue) > self._max_pending:
                lost = queue.pop(0)
                self.dropped_events += len(lost.lines)
                logger.error("event buffer over %d bytes: dropped %d events", self._max_pending, len(lost.lines))
            self._sealed = queue


@dataclass(frozen=True, slots=True)
class EventFilter:
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    user_agents: tuple[re.Pattern[str], ...] = ()

    @classmethod
    def from_config(cls, source_ips: Iterable[str] = (), user_agents: Iterable[str] = ()) -> EventFilter:
        try:
            networks = tuple(ipaddress.ip_network(s.strip(), strict=False) for s in source_ips)
        except ValueError as exc:
            raise InvalidParameter(f"bad source IP filter: {exc}") from None
        try:
            agents = tuple(re.compile(p, re.IGNORECASE) for p in user_agents)
        except re.error as exc:
            raise InvalidParameter(f"bad user agent filter {exc.pattern!r}: {exc}") from None
        return cls(networks, agents)

    def drops(self, event: Event) -> bool:
        if event.source_ip and self.networks:
            try:
                address = ipaddress.ip_address(event.source_ip)
            except ValueError:
                address = None
            if address is not None and any(address in n for n in self.networks):
                return True
        return bool(event.user_agent) and any(p.search(event.user_agent or "") for p in self.user_agents)
