"""The event log's records: one JSON line per invocation and conversion, flushed as gzip files by date and hour.

Each line carries the anchor's fields (``timestamp, type, strategy, endpoint_name, target_variant,
endpoint_variant, inference_id, user_id, reward, source_ip, user_agent``) plus ``experiment_id`` and
``error``; every key is always present (``null`` when it does not apply), so DuckDB's ``read_json_auto``
and an Athena table see one schema. The anchor's ``predictions`` are not logged (they can be large or
personal). For a conversion, ``endpoint_variant`` is the variant credited (the one that served the
inference), and ``target_variant`` is null. An invocation that failed is an ``invocation`` whose
``error`` is the error's code (``ModelError``, ``ServiceUnavailable``): counted as a trial of its variant
with no reward, and as an error. Consumers of the anchor's schema count it as an invocation, as it is.

Where the lines go: :class:`~modelgate.experiments.journal.EventJournal` (an append-only local log, durable
before the answer, flushed to an :class:`EventSink` under ``year=YYYY/month=MM/day=DD/hour=HH/``), and
from there :mod:`modelgate.experiments.aggregator` folds each file exactly once.

:class:`EventFilter` names the source IPs (addresses or CIDR networks) and user agents (regular
expressions, case-insensitive) whose events the aggregator drops before they count; they stay in the log.
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from modelgate.experiments.errors import InvalidParameter

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
    "error",
)
_encode = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode


@dataclass(slots=True)  # not frozen: one is made per A/B request, and a frozen field costs a setattr call
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
    error: str | None = None  # an invocation that failed: the error's code

    def to_json(self) -> str:
        # A dict display and one encoder call: this runs on the event loop for every A/B request.
        return _encode(
            {
                "timestamp": self.timestamp,
                "type": self.type,
                "strategy": self.strategy,
                "endpoint_name": self.endpoint_name,
                "target_variant": self.target_variant,
                "endpoint_variant": self.endpoint_variant,
                "inference_id": self.inference_id,
                "user_id": self.user_id,
                "reward": self.reward,
                "source_ip": self.source_ip,
                "user_agent": self.user_agent,
                "experiment_id": self.experiment_id,
                "error": self.error,
            }
        )

    @classmethod
    def from_json(cls, line: str | bytes) -> Event:
        """Parse one line; ValueError if it is not an event this module wrote."""
        return cls.from_raw(json.loads(line))

    @classmethod
    def from_raw(cls, raw: Any) -> Event:
        """An event from a line already parsed as JSON; ValueError if it is not an event this module wrote."""
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
            error=_optional_text(raw, "error") if kind == "invocation" else None,
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
    def append(self, event: Event) -> None:
        """Make the event durable before returning (the answer goes out after it); StoreUnavailable if
        it cannot be."""
        ...


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


@dataclass(slots=True)  # not frozen: one is made per A/B request, and a frozen field costs a setattr call
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
