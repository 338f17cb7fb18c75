"""A compact, mergeable DDSketch for percentiles with a bounded relative error.

The bucket mapping is ddsketch's :class:`LogarithmicMapping` (the memory-optimal mapping of the DDSketch
paper, Masson et al., VLDB 2019): a value ``x > 0`` falls in bucket ``ceil(log_gamma(x))`` and every value
in a bucket is within ``RELATIVE_ACCURACY`` of the bucket's representative value. The library's own stores
keep bins in Python lists (a boxed float per bin, grown 128 bins at a time); one sketch per metric per
second for three hours, and per minute for fifteen days, would cost gigabytes, so the bins here are a
contiguous ``array('d')`` from the lowest to the highest non-empty bucket: 8 bytes per bucket, about 2 KB
for a latency distribution spanning two orders of magnitude.

Guarantee: for ``0 <= q <= 1`` over ``n`` values, :meth:`Sketch.quantile` returns ``v`` with
``|v - x| <= RELATIVE_ACCURACY * |x|``, where ``x`` is the exact value of rank ``floor(q * (n - 1))``
(0-based) in sorted order, the rank definition ddsketch uses.
"""

from __future__ import annotations

import math
import struct
import sys
from array import array
from collections import Counter

import cbor2
from ddsketch.mapping import LogarithmicMapping

RELATIVE_ACCURACY = 0.01
_MAPPING = LogarithmicMapping(RELATIVE_ACCURACY)
_MIN = _MAPPING.min_possible
_key = _MAPPING.key
_value = _MAPPING.value
ZERO_KEY = -(2**62)  # below every bucket key: where bucket_key puts values too small for the mapping


_MULTIPLIER = _MAPPING._multiplier  # LogarithmicMapping.key(v) is int(ceil(log(v, 2) * multiplier) + offset)
assert _MAPPING._offset == 0.0


def _keys(values: list[float]) -> list[int]:
    """``_MAPPING.key(v)`` for positive values, without a method call per value (tests check equality)."""
    m, log, ceil = _MULTIPLIER, math.log, math.ceil
    return [ceil(log(v, 2) * m) for v in values]


def bucket_key(value: float) -> int:
    """The bucket of a nonnegative value; keys are ordered as the values are (rank tests rely on it)."""
    return _key(value) if value > _MIN else ZERO_KEY


class _Bins:
    """Counts for a contiguous run of bucket keys starting at ``offset``."""

    __slots__ = ("counts", "offset")

    def __init__(self) -> None:
        self.offset = 0
        self.counts = array("d")

    def add(self, key: int, count: float) -> None:
        counts = self.counts
        i = key - self.offset
        if 0 <= i < len(counts):
            counts[i] += count
            return
        if not counts:
            self.offset = key
            counts.append(count)
        elif i < 0:
            grown = array("d", bytes(8 * -i))
            grown.extend(counts)
            grown[0] = count
            self.counts = grown
            self.offset = key
        else:
            counts.extend(array("d", bytes(8 * (i - len(counts)))))
            counts.append(count)

    def merge(self, other: _Bins) -> None:
        if not other.counts:
            return
        if not self.counts:
            self.offset = other.offset
            self.counts = array("d", other.counts)
            return
        self.add(other.offset, 0.0)  # grow to cover both ends
        self.add(other.offset + len(other.counts) - 1, 0.0)
        base = other.offset - self.offset
        counts = self.counts
        for i, c in enumerate(other.counts):
            if c:
                counts[base + i] += c

    def copy(self) -> _Bins:
        b = _Bins()
        b.offset = self.offset
        b.counts = array("d", self.counts)
        return b

    def encode(self) -> list[object]:
        data = array("d", self.counts)
        if sys.byteorder == "big":
            data.byteswap()
        return [self.offset, data.tobytes()]

    @staticmethod
    def decode(item: list[object]) -> _Bins:
        b = _Bins()
        offset, raw = item
        assert isinstance(offset, int) and isinstance(raw, bytes)
        b.offset = offset
        b.counts = array("d", raw)
        if sys.byteorder == "big":
            b.counts.byteswap()
        return b


_BINS_HEAD = struct.Struct("=cqI")  # typecode, offset, number of buckets (native order: packed forms stay in memory)


def _smallest_typecode(counts: array[float]) -> str:
    """The narrowest array type that holds every count exactly: counts are whole numbers unless a
    PutMetricData gave fractional Counts."""
    top = max(counts)
    if min(counts) < 0 or not all(c.is_integer() for c in counts):
        return "d"
    return "B" if top < 2**8 else "H" if top < 2**16 else "I" if top < 2**32 else "d"


def _pack_bins(b: _Bins) -> bytes:
    counts = b.counts
    if not counts:
        return b"-"
    code = _smallest_typecode(counts)
    data = counts if code == "d" else array(code, map(int, counts))
    return _BINS_HEAD.pack(code.encode(), b.offset, len(counts)) + data.tobytes()


def _unpack_bins(data: bytes, at: int) -> tuple[_Bins, int]:
    b = _Bins()
    if data[at : at + 1] == b"-":
        return b, at + 1
    code, offset, n = _BINS_HEAD.unpack_from(data, at)
    at += _BINS_HEAD.size
    stored = array(code.decode())
    end = at + n * stored.itemsize
    stored.frombytes(data[at:end])
    b.offset = offset
    b.counts = stored if stored.typecode == "d" else array("d", stored)
    return b, end


class Sketch:
    __slots__ = ("count", "neg", "pos", "zero")

    def __init__(self) -> None:
        self.pos = _Bins()
        self.neg = _Bins()
        self.zero = 0.0
        self.count = 0.0

    def add(self, value: float, count: float = 1.0) -> None:
        if value > _MIN:
            self.pos.add(_key(value), count)
        elif value < -_MIN:
            self.neg.add(_key(-value), count)
        else:
            self.zero += count
        self.count += count

    def add_many(self, values: list[float]) -> None:
        """``add(v)`` for each value, with the bucket keys computed and counted in bulk (the drain's path:
        ~4x faster than one call per value; the keys are the mapping's own, see ``_keys``)."""
        positive = [v for v in values if v > _MIN]
        if len(positive) != len(values):
            for v in values:
                if not v > _MIN:
                    self.add(v)
        pos = self.pos
        for key, count in Counter(_keys(positive)).items():
            pos.add(key, float(count))
        self.count += len(positive)

    def merge(self, other: Sketch) -> None:
        self.pos.merge(other.pos)
        self.neg.merge(other.neg)
        self.zero += other.zero
        self.count += other.count

    def copy(self) -> Sketch:
        s = Sketch()
        s.pos = self.pos.copy()
        s.neg = self.neg.copy()
        s.zero = self.zero
        s.count = self.count
        return s

    def quantile(self, q: float) -> float | None:
        """The value at quantile ``q`` (0..1), or None when the sketch is empty."""
        if self.count <= 0 or not 0.0 <= q <= 1.0:
            return None
        rank = q * (self.count - 1)
        seen = 0.0
        neg = self.neg
        # Negative values, most negative first: the highest key holds the largest magnitude.
        for i in range(len(neg.counts) - 1, -1, -1):
            seen += neg.counts[i]
            if seen > rank:
                return -float(_value(neg.offset + i))
        seen += self.zero
        if seen > rank:
            return 0.0
        pos = self.pos
        last = None
        for i, c in enumerate(pos.counts):
            if c:
                seen += c
                last = i
                if seen > rank:
                    return float(_value(pos.offset + i))
        # Float rounding in the counts: the answer is the highest bucket.
        return float(_value(pos.offset + last)) if last is not None else 0.0

    def pack(self) -> bytes:
        """A compact, immutable form for memory (not for storage: native byte order): each bucket in
        the narrowest integer type that holds its count, one bytes object instead of five objects.
        A second's latency sketch at a few thousand requests takes about 5 x less; see ``MetricStore.seal``."""
        return struct.pack("=d", self.zero) + _pack_bins(self.pos) + _pack_bins(self.neg)

    @staticmethod
    def unpack(data: bytes, at: int = 0) -> Sketch:
        """The sketch :meth:`pack` gave, mutable again."""
        s = Sketch()
        (s.zero,) = struct.unpack_from("=d", data, at)
        s.pos, at = _unpack_bins(data, at + 8)
        s.neg, at = _unpack_bins(data, at)
        s.count = s.zero + sum(s.pos.counts) + sum(s.neg.counts)
        return s

    def to_bytes(self) -> bytes:
        return cbor2.dumps([self.zero, self.pos.encode(), self.neg.encode()])

    @staticmethod
    def from_bytes(data: bytes) -> Sketch:
        zero, pos, neg = cbor2.loads(data)
        s = Sketch()
        s.zero = float(zero)
        s.pos = _Bins.decode(pos)
        s.neg = _Bins.decode(neg)
        s.count = s.zero + sum(s.pos.counts) + sum(s.neg.counts)
        return s
