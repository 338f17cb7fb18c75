"""A sparse, mergeable DDSketch for percentiles with a bounded relative error.

The bucket mapping is ddsketch's :class:`LogarithmicMapping` (the memory-optimal mapping of the DDSketch
paper, Masson et al., VLDB 2019): a value ``x > 0`` falls in bucket ``ceil(log_gamma(x))`` and every value
in a bucket is within ``RELATIVE_ACCURACY`` of the bucket's representative value. The library's own
stores are dense arrays that grow in chunks of 128 bins; one sketch per metric per second for three hours
would cost hundreds of megabytes, so the counts live here in a dict holding only non-empty buckets.

Guarantee: for ``0 <= q <= 1`` over ``n`` values, :meth:`Sketch.quantile` returns ``v`` with
``|v - x| <= RELATIVE_ACCURACY * |x|``, where ``x`` is the exact value of rank ``floor(q * (n - 1))``
(0-based) in sorted order, the rank definition ddsketch uses.
"""

from __future__ import annotations

import math

import cbor2
from ddsketch.mapping import LogarithmicMapping

RELATIVE_ACCURACY = 0.01
_MAPPING = LogarithmicMapping(RELATIVE_ACCURACY)
_MIN = _MAPPING.min_possible
_key = _MAPPING.key
_value = _MAPPING.value


class Sketch:
    __slots__ = ("count", "neg", "pos", "zero")

    def __init__(self) -> None:
        self.pos: dict[int, float] = {}
        self.neg: dict[int, float] = {}
        self.zero = 0.0
        self.count = 0.0

    def add(self, value: float, count: float = 1.0) -> None:
        if value > _MIN:
            k = _key(value)
            self.pos[k] = self.pos.get(k, 0.0) + count
        elif value < -_MIN:
            k = _key(-value)
            self.neg[k] = self.neg.get(k, 0.0) + count
        else:
            self.zero += count
        self.count += count

    def merge(self, other: Sketch) -> None:
        for k, c in other.pos.items():
            self.pos[k] = self.pos.get(k, 0.0) + c
        for k, c in other.neg.items():
            self.neg[k] = self.neg.get(k, 0.0) + c
        self.zero += other.zero
        self.count += other.count

    def copy(self) -> Sketch:
        s = Sketch()
        s.pos = dict(self.pos)
        s.neg = dict(self.neg)
        s.zero = self.zero
        s.count = self.count
        return s

    def quantile(self, q: float) -> float | None:
        """The value at quantile ``q`` (0..1), or None when the sketch is empty."""
        if self.count <= 0 or not 0.0 <= q <= 1.0:
            return None
        rank = q * (self.count - 1)
        seen = 0.0
        # Negative values, most negative first: the largest key holds the largest magnitude.
        for k in sorted(self.neg, reverse=True):
            seen += self.neg[k]
            if seen > rank:
                return -float(_value(k))
        seen += self.zero
        if seen > rank:
            return 0.0
        last = None
        for k in sorted(self.pos):
            seen += self.pos[k]
            last = k
            if seen > rank:
                return float(_value(k))
        # Rounding in float counts: the answer is the largest bucket.
        return float(_value(last)) if last is not None else 0.0

    def to_bytes(self) -> bytes:
        return cbor2.dumps([self.zero, _flat(self.pos), _flat(self.neg)])

    @staticmethod
    def from_bytes(data: bytes) -> Sketch:
        zero, pos, neg = cbor2.loads(data)
        s = Sketch()
        s.zero = float(zero)
        s.pos = _unflat(pos)
        s.neg = _unflat(neg)
        s.count = s.zero + math.fsum(s.pos.values()) + math.fsum(s.neg.values())
        return s


def _flat(bins: dict[int, float]) -> list[float]:
    out: list[float] = []
    for k, c in bins.items():
        out.append(k)
        out.append(c)
    return out


def _unflat(flat: list[float]) -> dict[int, float]:
    return {int(flat[i]): float(flat[i + 1]) for i in range(0, len(flat), 2)}
