"""Unpaired surrogates: text that JSON can carry and nothing after it can.

JSON's ``\\ud800`` escape decodes (Python's ``json`` takes it) to a string that is not Unicode text: UTF-8
cannot encode it, so SQLite, CBOR and the XML answers all fail on it, and a value stored in memory fails
every later write of it (a metric name made the metrics flush fail on every round). Input is refused
where it is parsed; the other protocols cannot produce one (CBOR and the query form decode UTF-8).
"""

from __future__ import annotations

from typing import Any


def is_unpaired(text: str) -> bool:
    """True when ``text`` holds a surrogate code point (which UTF-8 cannot encode)."""
    if text.isascii():
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def holds_unpaired(value: Any) -> bool:
    """True when a string anywhere in the JSON value ``value`` (keys included) holds a surrogate."""
    if isinstance(value, str):
        return is_unpaired(value)
    if isinstance(value, dict):
        return any(is_unpaired(k) or holds_unpaired(v) for k, v in value.items())
    if isinstance(value, list):
        return any(holds_unpaired(v) for v in value)
    return False
