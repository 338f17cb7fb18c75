from __future__ import annotations

import pytest

from modelgate.errors import ValidationException
from modelgate.services.listing import ListQuery, decode_token, encode_token, page

ITEMS = [("b", 2.0), ("a", 3.0), ("c", 1.0), ("ab", 4.0)]


def _names(query: ListQuery) -> tuple[list[str], str | None]:
    items, token = page(ITEMS, query, lambda i: i[0], lambda i: i[1])
    return [i[0] for i in items], token


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (ListQuery(), ["ab", "a", "b", "c"]),
        (ListQuery(sort_order="Ascending"), ["c", "b", "a", "ab"]),
        (ListQuery(sort_by="Name", sort_order="Ascending"), ["a", "ab", "b", "c"]),
        (ListQuery(name_contains="A"), ["ab", "a"]),
        (ListQuery(creation_time_after=1.5, creation_time_before=3.5), ["a", "b"]),
    ],
)
def test_filter_and_sort(query: ListQuery, expected: list[str]) -> None:
    assert _names(query) == (expected, None)


def test_paging_walks_every_item_once() -> None:
    seen: list[str] = []
    token: str | None = None
    while True:
        names, token = _names(ListQuery(max_results=3, next_token=token))
        seen += names
        if token is None:
            break
    assert seen == ["ab", "a", "b", "c"]


@pytest.mark.parametrize("token", ["garbage", encode_token(-1), "e30="])
def test_bad_tokens(token: str) -> None:
    with pytest.raises(ValidationException, match="Invalid pagination token"):
        decode_token(token)


def test_bad_sort_key() -> None:
    with pytest.raises(ValidationException, match="SortBy must be one of"):
        _names(ListQuery(sort_by="Status"))
