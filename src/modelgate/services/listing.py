"""Filtering, sorting and paging of List* operations (pure)."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from modelgate.errors import ValidationException

T = TypeVar("T")


@dataclass(frozen=True)
class ListQuery:
    name_contains: str | None = None
    sort_by: str = "CreationTime"
    sort_order: str = "Descending"
    max_results: int | None = None
    next_token: str | None = None
    creation_time_before: float | None = None
    creation_time_after: float | None = None
    status_equals: str | None = None
    last_modified_before: float | None = None
    last_modified_after: float | None = None


def encode_token(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"o": offset}).encode()).decode()


def decode_token(token: str) -> int:
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
        offset = int(data["o"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ValidationException(f"Invalid pagination token: {token!r}.") from exc
    if offset < 0:
        raise ValidationException(f"Invalid pagination token: {token!r}.")
    return offset


def page(
    items: Sequence[T],
    query: ListQuery,
    name: Callable[[T], str],
    created: Callable[[T], float],
    sort_keys: dict[str, Callable[[T], Any]] | None = None,
) -> tuple[list[T], str | None]:
    selected = [
        i
        for i in items
        if (query.name_contains is None or query.name_contains.lower() in name(i).lower())
        and (query.creation_time_before is None or created(i) < query.creation_time_before)
        and (query.creation_time_after is None or created(i) > query.creation_time_after)
    ]
    keys: dict[str, Callable[[T], Any]] = {"Name": name, "CreationTime": created, **(sort_keys or {})}
    key = keys.get(query.sort_by)
    if key is None:
        raise ValidationException(f"SortBy must be one of {', '.join(keys)}.")
    selected.sort(key=lambda i: (key(i), name(i)), reverse=query.sort_order == "Descending")
    start = decode_token(query.next_token) if query.next_token else 0
    limit = query.max_results or 100
    chunk = selected[start : start + limit]
    nxt = encode_token(start + limit) if start + limit < len(selected) else None
    return chunk, nxt
