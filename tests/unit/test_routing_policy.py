from __future__ import annotations

import pytest

from modelgate.policies.routing import choose_least_outstanding, choose_random, choose_weighted, cumulative


@pytest.mark.parametrize(
    ("weights", "draw", "expected"),
    [
        ([1.0], 0.0, 0),
        ([1.0], 0.999, 0),
        ([0.9, 0.1], 0.0, 0),
        ([0.9, 0.1], 0.8999, 0),
        ([0.9, 0.1], 0.9, 1),
        ([0.9, 0.1], 0.99999, 1),
        ([1.0, 0.0, 1.0], 0.5, 2),  # a zero-weight variant is never chosen, even at its boundary
        ([1.0, 0.0, 1.0], 0.4999, 0),
        ([0.0, 2.0], 0.0, 1),
        ([0.0, 0.0], 0.3, -1),
        ([1.0, 1.0], 1.0 - 1e-17, 1),
    ],
)
def test_choose_weighted(weights: list[float], draw: float, expected: int) -> None:
    assert choose_weighted(cumulative(weights), draw) == expected


def test_choose_weighted_proportions() -> None:
    cum = cumulative([0.9, 0.1])
    n = 10_000
    picks = [choose_weighted(cum, i / n) for i in range(n)]
    assert picks.count(1) == 1000


@pytest.mark.parametrize(
    ("outstanding", "draw", "expected"),
    [
        ([0], 0.7, 0),
        ([3, 1, 2], 0.0, 1),
        ([2, 0, 0], 0.0, 1),
        ([2, 0, 0], 0.49, 1),
        ([2, 0, 0], 0.5, 2),
        ([1, 1, 1, 1], 0.99, 3),
    ],
)
def test_choose_least_outstanding(outstanding: list[int], draw: float, expected: int) -> None:
    assert choose_least_outstanding(outstanding, draw) == expected


@pytest.mark.parametrize(
    ("n", "draw", "expected"), [(1, 0.9, 0), (2, 0.49, 0), (2, 0.5, 1), (3, 0.999999, 2)]
)
def test_choose_random(n: int, draw: float, expected: int) -> None:
    assert choose_random(n, draw) == expected
