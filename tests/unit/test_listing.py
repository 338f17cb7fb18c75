from __future__ import annotations

import base64

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


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode()


@pytest.mark.parametrize(
    "token",
    [
        _b64(b'{"o": 1e400}'),  # int(inf): OverflowError, a 500 before
        _b64(b'{"o": NaN}'),
        _b64(b'{"o": "5"}'),
        _b64(b'{"o": 5.5}'),
        _b64(b'{"o": true}'),
        _b64(b'{"o": 1234567890123456789}'),  # more digits than any list has items
        _b64(b"[" * 5000 + b"]" * 5000),  # deeper than the JSON parser's recursion
        _b64(b"\xff\xfe"),
        "ünïcode",
        "",
        "=",
        "a" * 10_000,
    ],
)
def test_d11_a_token_that_holds_no_offset_is_invalid(token: str) -> None:
    with pytest.raises(ValidationException, match=r"^Invalid pagination token: ") as caught:
        decode_token(token)
    assert len(caught.value.message) < 150  # a long token is cut in the message


@pytest.mark.parametrize("offset", [0, 3, 10**17])
def test_tokens_round_trip(offset: int) -> None:
    assert decode_token(encode_token(offset)) == offset
