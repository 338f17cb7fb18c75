"""Hypothesis strategies for *valid* operation inputs, derived from botocore's service models.

:class:`ShapeStrategies` walks an input shape (botocore's ``botocore.model`` classes, the full models the
installed botocore ships, the ones AWS's clients use) and gives a strategy whose values satisfy the
shape: required members present, strings within ``min``/``max`` and their ``pattern`` or ``enum``,
numbers within their range, lists and maps within their sizes. A :class:`Profile` tunes it per operation:

* ``overrides``: a strategy for a member, by ``"Owner.Member"`` (the structure shape's name) or by
  ``"Member"`` alone; the fuzzer uses them for references to resources that exist (a model name in
  CreateEndpointConfig), for values whose meaning the model does not say (an image modelgate can run) and
  to keep accepted requests cheap (instance counts of 1 or 2: every instance is a process);
* ``presence``: how often an optional member is present (default :data:`OPTIONAL_PRESENCE`); members
  that modelgate requires though the model does not (a variant's ``InstanceType``) are nearly always
  present, and members naming features modelgate refuses are rare, so that most requests are accepted;
* ``min_items``: lists the service needs filled though the model allows them empty (``MetricData``).

A :data:`Fixup` per operation then makes members agree where no shape can say so (EndTime after StartTime).

Values carry their type where the protocols differ: :class:`Stamp` for a timestamp (epoch seconds as a
float), ``bytes`` for a blob. Strings avoid lone surrogates (those are a mutation, not a valid value).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from botocore.model import ListShape, MapShape, Shape, StringShape, StructureShape
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

OPTIONAL_PRESENCE = 0.2
SHORT = 40  # usual longest generated string; the shape's max length is drawn now and then
LIST_EXTRA = 2  # lists and maps get at most this many items beyond their minimum
INT32 = 2**31 - 1


class Stamp(float):
    """A timestamp, as epoch seconds: JSON sends it as a number, CBOR as tag 1, the query protocol as ISO 8601."""


# Java regex classes that Python's ``re`` lacks, as the characters the fuzzer draws for them. The server
# skips patterns ``re`` cannot compile, so these only need to give values AWS would take.
_JAVA_CLASSES = {
    r"\p{L}\p{Z}\p{N}": r"a-zA-Z0-9 \u00e9\u00df\u4e2d",
    r"[\p{Print}]": r"[ -~]",
    r"\p{ASCII}": r"[ -~]",
    r"\z": r"\Z",
}


def python_pattern(pattern: str) -> re.Pattern[str] | None:
    for java, python in _JAVA_CLASSES.items():
        pattern = pattern.replace(java, python)
    try:
        return re.compile(pattern, re.DOTALL)
    except re.error:
        return None


UNIFORM = st.integers(0, 2**32 - 1).map(lambda n: ((n * 2654435761 + 2576980378) % 2**32) / 2**32)
"""A number in [0, 1), near enough uniform. Hypothesis draws integers with a bias to small and boundary values
(a plain ``integers(0, 999) < 20`` is true far more often than one time in fifty, and every optional member
would be present in its all-zero draws); a multiplicative hash of a 32-bit draw spreads them, with 0 landing
at 0.6."""


COINS = st.integers(0, 2**64 - 1)


def coins(n: int, k: int) -> list[float]:
    """``k`` numbers in [0, 1) from one 64-bit draw (splitmix64 steps; 0 gives a spread too)."""
    out = []
    for i in range(1, k + 1):
        z = (n + i * 0x9E3779B97F4A7C15) % 2**64
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) % 2**64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) % 2**64
        out.append((z ^ (z >> 31)) / 2**64)
    return out


def presence_strategy(p: float) -> SearchStrategy[bool]:
    """True with probability about ``p`` (see :data:`UNIFORM`)."""
    if p >= 1:
        return st.just(True)
    if p <= 0:
        return st.just(False)
    return UNIFORM.map(lambda u: u < p)


def weighted(*options: tuple[int, SearchStrategy[Any]]) -> SearchStrategy[Any]:
    """A draw from one of the strategies, chosen with the given weights (``st.one_of`` chooses evenly)."""
    table = [s for w, s in options for _ in range(w)]

    @st.composite
    def draw_weighted(draw: st.DrawFn) -> Any:
        return draw(table[int(draw(UNIFORM) * len(table))])

    return draw_weighted()


Fixup = Callable[[st.DrawFn, dict[str, Any]], dict[str, Any]]
"""Makes a drawn input coherent where the shapes cannot say how (EndTime after StartTime, the variants of
the named endpoint); it may draw, and must make the same draws whatever the server's state."""


def fixed(params: SearchStrategy[Any], fix: Fixup) -> SearchStrategy[Any]:
    @st.composite
    def draw_fixed(draw: st.DrawFn) -> Any:
        return fix(draw, draw(params))

    return draw_fixed()


@dataclass(frozen=True)
class Profile:
    overrides: Mapping[str, SearchStrategy[Any]] = field(default_factory=dict)
    presence: Mapping[str, float] = field(default_factory=dict)
    min_items: Mapping[str, int] = field(default_factory=dict)  # by list shape name: lists the service needs filled

    def lookup(self, table: Mapping[str, Any], owner: str, member: str) -> Any:
        hit = table.get(f"{owner}.{member}")
        return hit if hit is not None else table.get(member)


class ShapeStrategies:
    """Strategies for valid values of botocore shapes, tuned by a :class:`Profile`."""

    def __init__(self, profile: Profile, now: Callable[[], float] = time.time) -> None:
        self.profile = profile
        self.now = now
        self._cache: dict[tuple[str, str, str], SearchStrategy[Any]] = {}

    def member(self, owner: StructureShape, name: str) -> SearchStrategy[Any]:
        override = self.profile.lookup(self.profile.overrides, owner.name, name)
        if override is not None:
            return override  # type: ignore[no-any-return]
        return self.shape(owner.members[name], owner.name, name)

    def shape(self, shape: Shape, owner: str = "", member: str = "") -> SearchStrategy[Any]:
        key = (shape.name, owner, member)
        cached = self._cache.get(key)
        if cached is None:
            cached = self._cache[key] = self._build(shape)
        return cached

    def _build(self, shape: Shape) -> SearchStrategy[Any]:
        kind = shape.type_name
        meta = shape.metadata
        if kind == "structure":
            assert isinstance(shape, StructureShape)
            return self._structure(shape)
        if kind == "list":
            assert isinstance(shape, ListShape)
            lo = max(meta.get("min", 0), self.profile.min_items.get(shape.name, 0))
            hi = min(meta.get("max", lo + LIST_EXTRA), lo + LIST_EXTRA)
            return st.lists(self.shape(shape.member, shape.name, "member"), min_size=lo, max_size=hi)
        if kind == "map":
            assert isinstance(shape, MapShape)
            lo = meta.get("min", 0)
            hi = min(meta.get("max", lo + LIST_EXTRA), lo + LIST_EXTRA)
            return st.dictionaries(
                self.shape(shape.key, shape.name, "key"),
                self.shape(shape.value, shape.name, "value"),
                min_size=lo,
                max_size=hi,
            )
        if kind == "string":
            assert isinstance(shape, StringShape)
            return string_strategy(shape)
        if kind in ("integer", "long"):
            return st.integers(meta.get("min", -INT32 - 1), meta.get("max", INT32 if kind == "integer" else 2**63 - 1))
        if kind in ("double", "float"):
            lo, hi = meta.get("min"), meta.get("max")
            return st.floats(lo, hi, allow_nan=False, allow_infinity=False)
        if kind == "boolean":
            return st.booleans()
        if kind == "timestamp":
            return timestamps(self.now)
        if kind == "blob":
            return st.binary(max_size=64)
        raise ValueError(f"no strategy for {kind} shape {shape.name}")

    def _structure(self, shape: StructureShape) -> SearchStrategy[dict[str, Any]]:
        """Required members always; each optional one with its presence probability. Members likely to be
        present get a coin each (:data:`UNIFORM`: its favourite draw, zero, lands at 0.6, so they are present
        then). The many unlikely ones share one draw (see :func:`coins`): a draw per member made structures
        with many optional members (a ProductionVariant has 19) slow to generate."""
        required = set(shape.required_members)
        likely: list[tuple[str, float, SearchStrategy[Any]]] = []
        unlikely: list[tuple[str, float, SearchStrategy[Any]]] = []
        for name in shape.members:
            p = 1.0 if name in required else self.profile.lookup(self.profile.presence, shape.name, name)
            p = OPTIONAL_PRESENCE if p is None else p
            if p > 0:
                (likely if p >= 0.5 else unlikely).append((name, p, self.member(shape, name)))
        union = bool(shape.metadata.get("union"))
        parts = likely + unlikely

        @st.composite
        def draw_structure(draw: st.DrawFn) -> dict[str, Any]:
            if union:  # exactly one member is set
                name, _, value = parts[int(draw(UNIFORM) * len(parts))]
                return {name: draw(value)}
            present = [p >= 1 or draw(UNIFORM) < p for _, p, _ in likely]
            present += [u < p for (_, p, _), u in zip(unlikely, coins(draw(COINS), len(unlikely)), strict=True)]
            return {name: draw(value) for (name, _, value), here in zip(parts, present, strict=True) if here}

        return draw_structure()


def string_strategy(shape: StringShape) -> SearchStrategy[str]:
    meta = shape.metadata
    if shape.enum:
        return st.sampled_from(shape.enum)
    lo: int = meta.get("min", 0)
    hi: int = meta.get("max", 1024)
    header = shape.serialization.get("location") == "header"
    pattern = meta.get("pattern")
    if header and pattern:
        pattern = pattern.replace(r"\S", "[!-~]")  # HTTP header values: visible ASCII and spaces
    rx = python_pattern(pattern) if pattern else None
    if header:
        if rx is None:
            return st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=lo, max_size=min(hi, SHORT))
        visible = re.compile(r"[ -~]*")
        return st.from_regex(rx, fullmatch=True).filter(lambda s: lo <= len(s) <= hi and visible.fullmatch(s))
    if rx is None or rx.pattern in (".*", ".+", r"[\S\s]*", r"[\s\S]+", r"[\s\S]*"):
        short = st.text(min_size=lo, max_size=min(hi, SHORT))
        longest = st.text(min_size=hi, max_size=hi) if hi <= 4096 else st.nothing()
        return st.one_of(short, short, short, longest)
    return st.from_regex(rx, fullmatch=True).filter(lambda s: lo <= len(s) <= hi)


def timestamps(now: Callable[[], float]) -> SearchStrategy[Stamp]:
    """Times around now: the last two weeks (CloudWatch keeps high-resolution data for three hours) and the
    next hour, as epoch seconds with milliseconds."""
    return st.integers(-14 * 86_400_000, 3_600_000).map(lambda ms: Stamp(round(now() + ms / 1000, 3)))
