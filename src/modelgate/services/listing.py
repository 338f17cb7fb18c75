"""Filtering, sorting and paging of List* operations (pure)."""

from __future__ import annotations

import base64
import json
import re
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


# What encode_token writes, and nothing else: a token is not parsed as general JSON (a crafted one could hold
# 1e400, a nesting deeper than the parser's recursion, or a string), only matched. 18 digits stay far below
# any overflow.
_TOKEN = re.compile(rb'\{"o": ?(\d{1,18})\}')


def decode_token(token: str) -> int:
    """The offset a NextToken holds; ValidationException (SageMaker's answer to bad input) if it holds none."""
    try:
        raw = base64.urlsafe_b64decode(token.encode("ascii"))
    except ValueError:  # binascii.Error, and UnicodeEncodeError for a token that is not ASCII
        raw = b""
    m = _TOKEN.fullmatch(raw)
    if m is None:
        raise ValidationException(f"Invalid pagination token: {_shown(token)}.")
    return int(m.group(1))


def _shown(token: str) -> str:
    return repr(token if len(token) <= 100 else token[:97] + "...")


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
