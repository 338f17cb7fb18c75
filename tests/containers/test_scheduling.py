"""Where a prediction runs: a table for the pure decision."""

from __future__ import annotations

import pytest

from modelgate.containers.scheduling import INLINE_MAX_BODY, INLINE_MAX_COST, next_cost, run_inline


@pytest.mark.parametrize(
    ("in_flight", "body_size", "cost", "inline"),
    [
        (0, 100, 0.0, True),  # idle, small, cheap: on the event loop
        (0, INLINE_MAX_BODY, INLINE_MAX_COST, True),
        (1, 100, 0.0, False),  # something already running: the pool bounds concurrency
        (0, INLINE_MAX_BODY + 1, 0.0, False),  # big body: parsing alone takes a while
        (0, 100, INLINE_MAX_COST * 1.01, False),  # recent calls were slow
        (3, 10**6, 1.0, False),
    ],
)
def test_run_inline(in_flight: int, body_size: int, cost: float, inline: bool) -> None:
    assert run_inline(in_flight, body_size, cost) is inline


def test_cost_moves_a_fifth_of_the_way_to_each_sample() -> None:
    assert next_cost(0.0, 1.0) == pytest.approx(0.2)
    cost = 0.01
    for _ in range(11):
        cost = next_cost(cost, 0.0)
    assert cost < INLINE_MAX_COST  # a script that proves cheap moves to the event loop
