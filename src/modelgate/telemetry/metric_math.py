"""Metric math: the subset of CloudWatch's expression language modelgate evaluates.

Grammar (precedence low to high)::

    expr   := term (('+' | '-') term)*
    term   := power (('*' | '/') power)*
    power  := unary ('^' unary)*
    unary  := '-' unary | atom
    atom   := NUMBER | ID | FUNC '(' args ')' | '[' expr (',' expr)* ']' | '(' expr ')'

Values are scalars, time series (``{period start: value}``) or arrays of time series. Semantics, after the
CloudWatch metric-math reference:

* arithmetic applies per timestamp; two series combine on the timestamps both have; a scalar applies to
  every point; an array combines element-wise with a scalar or a series; non-finite results (x/0) drop the
  point.
* ``SUM``, ``AVG``, ``MIN``, ``MAX`` of one series give a scalar; of an array, a series (per timestamp, over
  the series that have a value there).
* ``FILL(x, v)`` gives every timestamp of the query grid a value: a number or scalar expression,
  ``REPEAT`` (the last earlier value; the first value before it) or ``LINEAR`` (interpolation; the nearest
  value at the edges).
* ``ABS``, ``CEIL``, ``FLOOR`` apply per point.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

Series = dict[int, float]
Value = float | Series | list[Series]

_TOKEN = re.compile(r"\s*(?:(\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+)|([A-Za-z_][A-Za-z0-9_]*)|(.))")
_AGGREGATES = ("SUM", "AVG", "MIN", "MAX")
_POINTWISE: dict[str, Callable[[float], float]] = {"ABS": abs, "CEIL": math.ceil, "FLOOR": math.floor}


class MathError(Exception):
    """The expression is malformed or cannot be evaluated; the message says why."""


@dataclass(frozen=True, slots=True)
class Num:
    value: float


@dataclass(frozen=True, slots=True)
class Ref:
    name: str


@dataclass(frozen=True, slots=True)
class Neg:
    operand: Node


@dataclass(frozen=True, slots=True)
class Bin:
    op: str
    left: Node
    right: Node


@dataclass(frozen=True, slots=True)
class Call:
    name: str
    args: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Arr:
    items: tuple[Node, ...]


Node = Num | Ref | Neg | Bin | Call | Arr


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens: list[tuple[str, str]] = []
        pos = 0
        text = text.rstrip()
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if m is None:  # pragma: no cover - the pattern matches any character
                raise MathError(f"Unexpected character at {pos}")
            pos = m.end()
            number, name, char = m.groups()
            if number is not None:
                self.tokens.append(("num", number))
            elif name is not None:
                self.tokens.append(("id", name))
            elif char is not None:
                if char not in "+-*/^()[],":
                    raise MathError(f"Unexpected character '{char}'")
                self.tokens.append(("op", char))
        self.i = 0

    def peek(self) -> str | None:
        return self.tokens[self.i][1] if self.i < len(self.tokens) else None

    def take(self, want: str | None = None) -> tuple[str, str]:
        if self.i >= len(self.tokens):
            raise MathError("Unexpected end of expression")
        tok = self.tokens[self.i]
        if want is not None and tok[1] != want:
            raise MathError(f"Expected '{want}' but found '{tok[1]}'")
        self.i += 1
        return tok

    def parse(self) -> Node:
        node = self.expr()
        if self.i != len(self.tokens):
            raise MathError(f"Unexpected '{self.tokens[self.i][1]}'")
        return node

    def expr(self) -> Node:
        node = self.term()
        while self.peek() in ("+", "-"):
            op = self.take()[1]
            node = Bin(op, node, self.term())
        return node

    def term(self) -> Node:
        node = self.power()
        while self.peek() in ("*", "/"):
            op = self.take()[1]
            node = Bin(op, node, self.power())
        return node

    def power(self) -> Node:
        node = self.unary()
        while self.peek() == "^":
            self.take()
            node = Bin("^", node, self.unary())
        return node

    def unary(self) -> Node:
        if self.peek() == "-":
            self.take()
            return Neg(self.unary())
        return self.atom()

    def atom(self) -> Node:
        kind, text = self.take()
        if kind == "num":
            return Num(float(text))
        if kind == "id":
            if self.peek() == "(":
                self.take("(")
                args = [self.expr()]
                while self.peek() == ",":
                    self.take()
                    args.append(self.expr())
                self.take(")")
                return Call(text.upper(), tuple(args))
            return Ref(text)
        if text == "(":
            node = self.expr()
            self.take(")")
            return node
        if text == "[":
            items = [self.expr()]
            while self.peek() == ",":
                self.take()
                items.append(self.expr())
            self.take("]")
            return Arr(tuple(items))
        raise MathError(f"Unexpected '{text}'")


def parse(text: str) -> Node:
    return _Parser(text).parse()


def references(node: Node) -> set[str]:
    """Ids the expression reads (FILL's REPEAT/LINEAR are keywords, not ids)."""
    if isinstance(node, Ref):
        return {node.name}
    if isinstance(node, Neg):
        return references(node.operand)
    if isinstance(node, Bin):
        return references(node.left) | references(node.right)
    if isinstance(node, Call):
        args = node.args[:1] if node.name == "FILL" and _fill_keyword(node) else node.args
        return set().union(*(references(a) for a in args))
    if isinstance(node, Arr):
        return set().union(*(references(a) for a in node.items))
    return set()


def _fill_keyword(node: Call) -> str | None:
    if len(node.args) == 2 and isinstance(node.args[1], Ref) and node.args[1].name.upper() in ("REPEAT", "LINEAR"):
        return node.args[1].name.upper()
    return None


_OPS: dict[str, Callable[[float, float], float]] = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": lambda a, b: a / b if b != 0 else math.nan,
    "^": lambda a, b: _pow(a, b),
}


def _pow(a: float, b: float) -> float:
    try:
        result = a**b
    except (OverflowError, ZeroDivisionError):
        return math.nan
    return result if isinstance(result, float | int) else math.nan


def evaluate(node: Node, resolve: Callable[[str], Value], grid: Sequence[int]) -> Value:
    """Evaluate ``node``; ``resolve`` returns the value of another query id; ``grid`` is every period start
    of the query range (for FILL)."""
    if isinstance(node, Num):
        return node.value
    if isinstance(node, Ref):
        return resolve(node.name)
    if isinstance(node, Neg):
        return _binary("*", -1.0, evaluate(node.operand, resolve, grid))
    if isinstance(node, Bin):
        return _binary(node.op, evaluate(node.left, resolve, grid), evaluate(node.right, resolve, grid))
    if isinstance(node, Arr):
        out: list[Series] = []
        for item in node.items:
            v = evaluate(item, resolve, grid)
            if isinstance(v, float | int):
                raise MathError("An array may hold only time series")
            out.extend(v if isinstance(v, list) else [v])
        return out
    return _call(node, resolve, grid)


def _binary(op: str, a: Value, b: Value) -> Value:
    f = _OPS[op]
    if isinstance(a, list):
        if isinstance(b, list):
            raise MathError(f"Cannot apply '{op}' to two arrays of time series")
        return [_series_op(f, x, b) for x in a]
    if isinstance(b, list):
        return [_series_op(f, a, y) for y in b]
    if isinstance(a, float | int) and isinstance(b, float | int):
        return f(float(a), float(b))
    return _series_op(f, a, b)


def _series_op(f: Callable[[float, float], float], a: float | Series, b: float | Series) -> Series:
    if isinstance(a, dict) and isinstance(b, dict):
        pairs = ((t, a[t], b[t]) for t in a if t in b)
    elif isinstance(a, dict):
        pairs = ((t, v, float(b)) for t, v in a.items())  # type: ignore[arg-type]
    else:
        assert isinstance(b, dict)
        pairs = ((t, float(a), v) for t, v in b.items())
    out: Series = {}
    for t, x, y in pairs:
        r = f(x, y)
        if math.isfinite(r):
            out[t] = r
    return out


def _reduce(name: str, values: Sequence[float]) -> float:
    if not values:
        return math.nan
    if name == "SUM":
        return math.fsum(values)
    if name == "AVG":
        return math.fsum(values) / len(values)
    return min(values) if name == "MIN" else max(values)


def _call(node: Call, resolve: Callable[[str], Value], grid: Sequence[int]) -> Value:
    name = node.name
    if name == "FILL":
        if len(node.args) != 2:
            raise MathError("FILL takes two arguments")
        target = evaluate(node.args[0], resolve, grid)
        keyword = _fill_keyword(node)
        fill = keyword if keyword else evaluate(node.args[1], resolve, grid)
        if not isinstance(fill, str | float | int):
            raise MathError("FILL's second argument must be a number, REPEAT or LINEAR")
        if isinstance(target, list):
            return [_fill(s, fill, grid) for s in target]
        if isinstance(target, dict):
            return _fill(target, fill, grid)
        raise MathError("FILL's first argument must be a time series")
    if len(node.args) != 1:
        raise MathError(f"{name} takes one argument")
    arg = evaluate(node.args[0], resolve, grid)
    if name in _AGGREGATES:
        if isinstance(arg, dict):
            return _reduce(name, list(arg.values()))
        if isinstance(arg, list):
            stamps = sorted(set().union(*(s.keys() for s in arg)))
            return {t: _reduce(name, [s[t] for s in arg if t in s]) for t in stamps}
        return float(arg)
    if name in _POINTWISE:
        g = _POINTWISE[name]
        if isinstance(arg, dict):
            return {t: float(g(v)) for t, v in arg.items()}
        if isinstance(arg, list):
            return [{t: float(g(v)) for t, v in s.items()} for s in arg]
        return float(g(arg))
    raise MathError(f"Unsupported function {name}")


def _fill(series: Series, fill: str | float, grid: Sequence[int]) -> Series:
    if isinstance(fill, float | int):
        return {t: series.get(t, float(fill)) for t in grid}
    known = sorted(series)
    if not known:
        return {}
    out: Series = {}
    j = 0  # index of the first known timestamp >= t
    for t in grid:
        while j < len(known) and known[j] < t:
            j += 1
        if j < len(known) and known[j] == t:
            out[t] = series[t]
        elif j == 0:
            out[t] = series[known[0]]
        elif j == len(known) or fill == "REPEAT":
            out[t] = series[known[j - 1]]
        else:
            t0, t1 = known[j - 1], known[j]
            v0, v1 = series[t0], series[t1]
            out[t] = v0 + (v1 - v0) * (t - t0) / (t1 - t0)
    return out


def evaluate_queries(
    expressions: Mapping[str, Node], stats: Mapping[str, Series], grid: Sequence[int]
) -> Callable[[str], Value]:
    """A resolver over query ids: MetricStat results from ``stats``, expressions evaluated on demand
    (memoised; a cycle is an error)."""
    memo: dict[str, Value] = dict(stats)
    active: set[str] = set()

    def resolve(name: str) -> Value:
        if name in memo:
            return memo[name]
        node = expressions.get(name)
        if node is None:
            raise MathError(f"Unknown metric id {name}")
        if name in active:
            raise MathError(f"Circular reference through {name}")
        active.add(name)
        value = evaluate(node, resolve, grid)
        active.discard(name)
        memo[name] = value
        return value

    return resolve
