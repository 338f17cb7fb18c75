from __future__ import annotations

from typing import Any

import pytest

from modelgate.api.awsjson import without_nulls
from modelgate.api.query import escape
from modelgate.api.surrogates import holds_unpaired, is_unpaired


@pytest.mark.parametrize(
    ("text", "unpaired"),
    [
        ("", False),
        ("ascii", False),
        ("é名前🙂", False),
        ("\ud83d\ude42", True),  # a pair written as two escapes stays two code points in Python: not text
        ("a\ud800", True),
        ("\udfff", True),
    ],
)
def test_is_unpaired(text: str, unpaired: bool) -> None:
    assert is_unpaired(text) is unpaired


@pytest.mark.parametrize(
    ("value", "unpaired"),
    [
        ({"a": ["b", {"c": "d"}], "e": 1, "f": None}, False),
        ({"a": ["b", {"c": "\ud800"}]}, True),
        ({"\ud800": 1}, True),
        (["x", 1.5, True], False),
        ("\udc00", True),
    ],
)
def test_holds_unpaired(value: Any, unpaired: bool) -> None:
    assert holds_unpaired(value) is unpaired


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"A": None, "B": 1}, {"B": 1}),
        ({"A": {"B": None, "C": [{"D": None, "E": "x"}]}}, {"A": {"C": [{"E": "x"}]}}),
        ([1, None], [1, None]),  # list items are validation's (a null item is refused before)
        ("x", "x"),
    ],
)
def test_without_nulls(value: Any, expected: Any) -> None:
    assert without_nulls(value) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a<b>&c", "a&lt;b&gt;&amp;c"),
        ("tab\tlf\ncr\r", "tab\tlf\ncr\r"),
        ("\x00\x01\x08\x0b\x0c\x0e\x1f", "\ufffd" * 7),
        ("\ud800x\uffff\ufffe", "\ufffdx\ufffd\ufffd"),
        ("é🙂\u0080\x7f", "é🙂\u0080\x7f"),
    ],
)
def test_query_escape_keeps_xml_well_formed(text: str, expected: str) -> None:
    assert escape(text) == expected
