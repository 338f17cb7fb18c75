"""Variant, fleet and instance choice. Pure: the random draw is an argument."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence


def cumulative(weights: Sequence[float]) -> tuple[float, ...]:
    """Running sums of ``weights`` (each ≥ 0)."""
    out: list[float] = []
    total = 0.0
    for w in weights:
        total += w
        out.append(total)
    return tuple(out)


def choose_weighted(cum: Sequence[float], draw: float) -> int:
    """Index chosen with probability weight/total, for ``draw`` uniform in [0, 1).

    Returns -1 when every weight is zero. Zero-weight entries are never chosen.
    """
    total = cum[-1] if cum else 0.0
    if total <= 0.0:
        return -1
    i = bisect_right(cum, draw * total)
    # draw*total can round up to total; and bisect_right skips zero-width entries at equal sums.
    return min(i, len(cum) - 1)


def choose_least_outstanding(outstanding: Sequence[int], draw: float) -> int:
    """Index of the instance with the fewest requests in flight; ties broken by ``draw`` in [0, 1)."""
    best = min(outstanding)
    ties = [i for i, n in enumerate(outstanding) if n == best]
    if len(ties) == 1:
        return ties[0]
    return ties[min(int(draw * len(ties)), len(ties) - 1)]


def choose_random(n: int, draw: float) -> int:
    return min(int(draw * n), n - 1)
