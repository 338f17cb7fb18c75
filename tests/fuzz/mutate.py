"""Mutations of a valid input: the share of the fuzzer's requests that should be refused (and never 500).

A mutation takes a valid parameter tree and its shape and breaks one thing, named by its *kind* (which
the failure report groups by, and ``MODELGATE_FUZZ_SKIP`` can leave out):

* a value somewhere in the tree (or an absent optional member) replaced by a bad one for its shape:
  ``wrong-type``, ``overlong``, ``empty``, ``pattern``, ``enum``, ``unicode``, ``nul``, ``surrogate``,
  ``control``, ``below-min``, ``above-max``, ``fraction``, ``huge-int`` (beyond the float range),
  ``float-overflow`` (a literal like ``1e400``), ``beyond-int64``, ``nonfinite`` (NaN, Infinity),
  ``timestamp-string``, ``timestamp-range``, ``too-many``, ``bad-key``;
* the tree itself: ``missing-required``, ``extra-member``, ``member-case`` (``modelName``), ``null``.

Protocol-level mutations (malformed bodies, headers, paths) are the encoders' (:mod:`tests.fuzz.encode`).

Members listed in :data:`COUNT_MEMBERS` never get a large finite number: an accepted instance count is
that many processes (the review's D15: there is no cap), so they get only values that must be refused.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from botocore.model import ListShape, MapShape, Shape, StringShape, StructureShape
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from tests.fuzz.values import Stamp
from tests.fuzz.world import choice

COUNT_MEMBERS = frozenset({"InitialInstanceCount", "DesiredInstanceCount", "MinInstanceCount", "MaxInstanceCount"})


@dataclass(frozen=True)
class RawNumber:
    """A number written as this literal text (``1e400``): JSON and the query form send the text, CBOR its float."""

    text: str


@dataclass(frozen=True)
class Mutated:
    kind: str
    where: str
    params: Any


Slot = tuple[tuple[Any, ...], Shape, str]  # path from the root, the shape there, the member name


UNICODE = ["é", "名前", "🙂" * 8, "\u202etxt", "e\u0301", "\uffff", "\U0010ffff", "Ω≈ç√∫", "\u0000\u200b"]
CONTROL = ["\x01\x1b[31m", "line\r\nX-Injected: 1", "\t", "\x7f"]
WRONG_TYPES: list[Any] = [12, 1.5, True, [], {}, ["x"], {"a": 1}, "text", None]


def slots(shape: Shape, value: Any, path: tuple[Any, ...] = (), name: str = "") -> list[Slot]:
    """Every place a value can be put: present values and absent members of present structures."""
    out: list[Slot] = []
    if path:
        out.append((path, shape, name))
    if isinstance(shape, StructureShape) and isinstance(value, dict):
        for member, sub in shape.members.items():
            if member in value:
                out.extend(slots(sub, value[member], (*path, member), member))
            else:
                out.append(((*path, member), sub, member))
    elif isinstance(shape, ListShape) and isinstance(value, list):
        for i, item in enumerate(value):
            out.extend(slots(shape.member, item, (*path, i), name))
    elif isinstance(shape, MapShape) and isinstance(value, dict):
        for k, item in value.items():
            out.extend(slots(shape.value, item, (*path, k), name))
    return out


def structures(shape: Shape, value: Any, path: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], StructureShape]]:
    """Every present structure value in the tree, root included."""
    out: list[tuple[tuple[Any, ...], StructureShape]] = []
    if isinstance(shape, StructureShape) and isinstance(value, dict):
        out.append((path, shape))
        for member, sub in shape.members.items():
            if member in value:
                out.extend(structures(sub, value[member], (*path, member)))
    elif isinstance(shape, ListShape) and isinstance(value, list):
        for i, item in enumerate(value):
            out.extend(structures(shape.member, item, (*path, i)))
    elif isinstance(shape, MapShape) and isinstance(value, dict):
        for k, item in value.items():
            out.extend(structures(shape.value, item, (*path, k)))
    return out


def bad_values(shape: Shape, name: str) -> list[tuple[str, Any]]:
    """(kind, value) pairs that break ``shape``'s constraints, or at least its type."""
    meta = shape.metadata
    kind = shape.type_name
    wrong = "timestamp-string" if kind == "timestamp" else "wrong-type"  # a string is a timestamp's other form
    out: list[tuple[str, Any]] = [
        (wrong if isinstance(v, str) else "wrong-type", v) for v in WRONG_TYPES if not _fits(kind, v)
    ]
    if kind == "string":
        assert isinstance(shape, StringShape)
        hi = meta.get("max", 1024)
        out += [("overlong", "a" * (hi + 1)), ("overlong", "x" * 100_000)]
        if meta.get("min", 0) > 0:
            out.append(("empty", ""))
        if meta.get("pattern"):
            out += [("pattern", " bad value!/\\"), ("pattern", "-")]
        if shape.enum:
            out += [("enum", "NotAnEnumValue"), ("enum", shape.enum[0].lower() + "x")]
        out += [("unicode", u) for u in UNICODE]
        out += [("nul", "a\x00b"), ("surrogate", "\ud800"), ("surrogate", "x\udfffy")]
        out += [("control", c) for c in CONTROL]
    elif kind in ("integer", "long", "double", "float"):
        lo, hi = meta.get("min"), meta.get("max")
        if lo is not None:
            out.append(("below-min", lo - 1))
        if hi is not None and (name not in COUNT_MEMBERS or hi <= 10):
            out.append(("above-max", hi + 1))
        out += [("huge-int", 10**400), ("float-overflow", RawNumber("1e400")), ("float-overflow", RawNumber("-1e999"))]
        out += [("nonfinite", float("nan")), ("nonfinite", float("inf")), ("nonfinite", float("-inf"))]
        if name not in COUNT_MEMBERS:
            out += [("beyond-int64", 2**64), ("beyond-int64", -(2**63) - 1), ("huge", 1e308)]
        if kind in ("integer", "long"):
            out += [("fraction", 1.5), ("fraction", 1e-9)]
        out.append(("below-min", -1))
    elif kind == "timestamp":
        out += [("timestamp-string", s) for s in ("abc", "2020-13-45T00:00:00Z", "2024-02-30", "", "1e400")]
        out += [("timestamp-range", Stamp(-1e12)), ("timestamp-range", Stamp(1e15)), ("timestamp-range", 1e300)]
        out += [("huge-int", 10**400), ("nonfinite", float("nan")), ("float-overflow", RawNumber("1e400"))]
    elif kind == "list":
        hi = meta.get("max")
        if meta.get("min", 0) > 0:
            out.append(("empty", []))
        if hi is not None and hi <= 2000:
            out.append(("too-many", ["x"] * (hi + 1)))
        out.append(("wrong-type", [[["deep"]]]))
    elif kind == "map":
        hi = meta.get("max")
        if hi is not None and hi <= 2000:
            out.append(("too-many", {f"K{i}": "v" for i in range(hi + 1)}))
        out += [("bad-key", {"": "v"}), ("bad-key", {"a\x00": "v"}), ("bad-key", {"\ud800": "v"})]
    elif kind == "structure":
        out.append(("empty", {}))
    return out


def _fits(kind: str, value: Any) -> bool:
    if value is None:
        return False  # null is always worth a try (it is "absent" to most validators)
    if kind == "string":
        return isinstance(value, str)
    if kind in ("integer", "long"):
        return isinstance(value, int) and not isinstance(value, bool)
    if kind in ("double", "float", "timestamp"):
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "list":
        return isinstance(value, list)
    if kind in ("map", "structure"):
        return isinstance(value, dict)
    return False


def _set(root: Any, path: Sequence[Any], value: Any) -> None:
    node = root
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value


def _get(root: Any, path: Sequence[Any]) -> Any:
    for key in path:
        root = root[key]
    return root


def _camel(name: str) -> str:
    return name[:1].lower() + name[1:]


def mutations(shape: StructureShape, params: dict[str, Any], skip: frozenset[str]) -> SearchStrategy[Mutated]:
    """One mutation of ``params`` (a valid value of ``shape``), of a kind not in ``skip``."""

    @st.composite
    def draw_mutation(draw: st.DrawFn) -> Mutated:
        tree = copy.deepcopy(params)
        how = choice(draw, ["value", "value", "value", "value", "tree"])
        if how == "value":
            candidates = [
                (path, kind, bad)
                for path, sub, name in slots(shape, tree)
                for kind, bad in bad_values(sub, name)
                if kind not in skip
            ]
            if candidates:
                path, kind, bad = choice(draw, candidates)
                _set(tree, path, bad)
                return Mutated(kind, ".".join(map(str, path)), tree)
        options: list[tuple[str, tuple[Any, ...], StructureShape]] = []
        for path, sub in structures(shape, tree):
            options += [("missing-required", path, sub)] if sub.required_members else []
            options += [("extra-member", path, sub), ("member-case", path, sub)]
        options = [o for o in options if o[0] not in skip]
        if not options:
            return Mutated("null", "", None) if "null" not in skip else Mutated("none", "", tree)
        kind, path, sub = choice(draw, options)
        node = _get(tree, path)
        if kind == "missing-required":
            member = choice(draw, sub.required_members)
            node.pop(member, None)
            return Mutated(kind, ".".join(map(str, (*path, member))), tree)
        if kind == "extra-member":
            extra = choice(draw, ["FuzzExtra", "__type", "__proto__", "", "ModelName "])
            node[extra] = choice(draw, WRONG_TYPES)
            return Mutated(kind, ".".join(map(str, (*path, extra))), tree)
        present = [m for m in sub.members if m in node]
        if not present:
            node["FuzzExtra"] = 1
            return Mutated("extra-member", ".".join(map(str, (*path, "FuzzExtra"))), tree)
        member = choice(draw, present)
        node[_camel(member) if member[:1].isupper() else member.upper()] = node.pop(member)
        return Mutated(kind, ".".join(map(str, (*path, member))), tree)

    return draw_mutation()
