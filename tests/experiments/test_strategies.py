"""Strategy tables: the anchor's own expectations (lambda/api/test_algorithm.py) with the draws passed in,
then the fixed bugs and the edge cases."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from modelgate.experiments import strategies as s
from modelgate.experiments.entities import Arm, ExperimentParams, Strategy, VariantCounts
from modelgate.experiments.errors import InvalidParameter, NoVariants


def arm(name: str, invocations: int = 0, reward: float = 0.0, weight: float = 1.0, conversions: int = 0) -> Arm:
    return Arm(name, weight, VariantCounts(invocations, conversions, reward))


def grid(n: int) -> list[float]:
    """n evenly spread uniform draws in [0, 1): a deterministic stand-in for n random ones."""
    return [(i + 0.5) / n for i in range(n)]


# --- the anchor's table -------------------------------------------------------------------------------


def test_anchor_epsilon_greedy_picks_the_better_variant_at_least_80_of_100() -> None:
    arms = [arm("v1", 10, 1), arm("v2", 10, 2)]
    picks = Counter(
        s.epsilon_greedy(arms, 0.1, u_explore, u_pick).variant
        for u_explore, u_pick in zip(grid(100), grid(10) * 10, strict=True)
    )
    assert picks["v1"] < 20
    assert picks["v2"] > 80
    assert picks == {"v2": 95, "v1": 5}  # 90 exploit + half of the 10 explorations


@pytest.mark.parametrize(
    ("counts", "expected"),
    [
        ([(100, 10), (100, 20), (100, 50)], "v3"),  # test_UCB1_exploit
        ([(10, 1), (10, 2), (100, 50)], "v2"),  # test_UCB1_explore
    ],
)
def test_anchor_ucb1(counts: list[tuple[int, float]], expected: str) -> None:
    arms = [arm(f"v{i + 1}", n, r) for i, (n, r) in enumerate(counts)]
    assert s.ucb1(arms).variant == expected


def test_anchor_thompson_mode_is_the_best_variant() -> None:
    arms = [arm("v1", 10, 1), arm("v2", 10, 2), arm("v3", 10, 5)]
    a, b = np.array(s.beta_posteriors(arms)).T
    rng = np.random.default_rng(7)
    picks = Counter(s.thompson_sampling(arms, list(rng.beta(a, b))).variant for _ in range(100))
    assert picks.most_common(1)[0][0] == "v3"


def test_anchor_weighted_sampling_mode_is_the_heavy_variant() -> None:
    arms = [arm("v1", weight=0.9), arm("v2", weight=0.1)]
    picks = Counter(s.weighted_sampling(arms, u).variant for u in grid(100))
    assert picks == {"v1": 90, "v2": 10}


# --- exact tables ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("weights", "u", "expected"),
    [
        ([0.9, 0.1], 0.0, "a"),
        ([0.9, 0.1], 0.899, "a"),
        ([0.9, 0.1], 0.9, "b"),
        ([0.9, 0.1], 0.999999, "b"),
        ([0.0, 1.0, 0.0], 0.0, "b"),  # zero weight is never chosen
        ([0.0, 1.0, 0.0], 0.999999, "b"),
        ([0.0, 0.0], 0.2, "a"),  # all zero: uniform
        ([0.0, 0.0], 0.7, "b"),
        ([2.0, 2.0, 4.0], 0.49, "b"),
        ([2.0, 2.0, 4.0], 0.5, "c"),
    ],
)
def test_weighted_sampling_table(weights: list[float], u: float, expected: str) -> None:
    arms = [arm(n, weight=w) for n, w in zip("abc", weights, strict=False)]
    choice = s.weighted_sampling(arms, u)
    assert (choice.variant, choice.strategy, choice.reason) == (
        expected,
        Strategy.WEIGHTED_SAMPLING,
        "weights",
    )


@pytest.mark.parametrize(
    ("u_explore", "u_pick", "expected", "reason"),
    [
        (0.11, 0.0, "b", "exploit"),  # > epsilon exploits
        (0.10, 0.0, "a", "explore"),  # == epsilon explores (the anchor's `>`)
        (0.05, 0.99, "b", "explore"),  # exploration covers every variant, the best included
        (0.05, 0.49, "a", "explore"),
    ],
)
def test_epsilon_greedy_table(u_explore: float, u_pick: float, expected: str, reason: str) -> None:
    arms = [arm("a", 10, 1), arm("b", 10, 2)]
    choice = s.epsilon_greedy(arms, 0.1, u_explore, u_pick)
    assert (choice.variant, choice.reason) == (expected, reason)


def test_epsilon_greedy_tries_an_unplayed_variant_instead_of_dividing_by_zero() -> None:
    arms = [arm("a", 10, 9), arm("b", 0, 0)]
    assert s.epsilon_greedy(arms, 0.1, 0.5, 0.0) == s.Choice("b", Strategy.EPSILON_GREEDY, "untried")


def test_epsilon_greedy_ties_take_the_first_variant() -> None:
    arms = [arm("a", 10, 5), arm("b", 20, 10)]
    assert s.epsilon_greedy(arms, 0.0, 0.5, 0.0).variant == "a"


def test_ucb1_scores_match_the_formula() -> None:
    arms = [arm("v1", 10, 1), arm("v2", 10, 2), arm("v3", 100, 50)]
    scores = s.ucb1_scores(arms)
    bonus_small = (2 * np.log(120) / 10) ** 0.5
    assert scores == pytest.approx([0.1 + bonus_small, 0.2 + bonus_small, 0.5 + (2 * np.log(120) / 100) ** 0.5])


def test_ucb1_tries_unplayed_variants_first() -> None:
    assert s.ucb1([arm("a", 5, 5), arm("b"), arm("c")]) == s.Choice("b", Strategy.UCB1, "untried")


@pytest.mark.parametrize(
    ("invocations", "reward", "expected"),
    [
        (10, 5.0, (6.0, 6.0)),
        (10, 2.5, (3.5, 8.5)),  # fractional rewards: alpha += r, beta += 1 - r
        (0, 0.0, (1.0, 1.0)),
        (10, 14.0, (11.0, 1.0)),  # more reward than invocations is clamped, never beta <= 0
        (10, -3.0, (1.0, 11.0)),
    ],
)
def test_beta_posteriors_table(invocations: int, reward: float, expected: tuple[float, float]) -> None:
    assert s.beta_posteriors([arm("a", invocations, reward)]) == [expected]


def test_thompson_takes_the_highest_draw_first_on_ties() -> None:
    arms = [arm("a"), arm("b"), arm("c")]
    assert s.thompson_sampling(arms, [0.2, 0.9, 0.9]).variant == "b"


@pytest.mark.parametrize(
    ("invocations", "warmup", "u", "expected"),
    [
        ((5, 5), 5, 0.0, None),  # each has `warmup` invocations: warm-up is over (the anchor needed 6)
        ((4, 5), 5, 0.99, "a"),  # only the cold variant is served
        ((0, 100), 100, 0.5, "a"),
        ((3, 3), 5, 0.9, "b"),  # all cold: by weight among them
        ((0, 0), 0, 0.1, None),  # warmup 0 never forces anything
    ],
)
def test_warmup_table(invocations: tuple[int, int], warmup: int, u: float, expected: str | None) -> None:
    arms = [arm("a", invocations[0]), arm("b", invocations[1])]
    choice = s.warmup(arms, warmup, u)
    if expected is None:
        assert choice is None
    else:
        assert choice == s.Choice(expected, Strategy.WEIGHTED_SAMPLING, "warmup")


def test_warmup_serves_a_zero_weight_variant_that_the_anchor_would_starve() -> None:
    arms = [arm("a", 500, weight=1.0), arm("b", 0, weight=0.0)]
    assert s.warmup(arms, 100, 0.3) == s.Choice("b", Strategy.WEIGHTED_SAMPLING, "warmup")


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda: s.weighted_sampling([], 0.1), NoVariants),
        (lambda: s.ucb1([]), NoVariants),
        (lambda: s.weighted_sampling([arm("a")], 1.0), InvalidParameter),
        (lambda: s.weighted_sampling([arm("a", weight=-1)], 0.1), InvalidParameter),
        (lambda: s.epsilon_greedy([arm("a", 1)], 1.5, 0.1, 0.1), InvalidParameter),
        (lambda: s.thompson_sampling([arm("a"), arm("b")], [0.1]), InvalidParameter),
    ],
)
def test_bad_inputs_raise_named_errors(call: object, error: type[Exception]) -> None:
    with pytest.raises(error) as info:
        call()  # type: ignore[operator]
    assert info.value.status == 400  # type: ignore[attr-defined]


@pytest.mark.parametrize("strategy", list(Strategy))
def test_choose_is_reproducible_with_the_same_generator_seed(strategy: Strategy) -> None:
    arms = [arm("a", 50, 10), arm("b", 50, 20), arm("c", 50, 15)]
    params = ExperimentParams(strategy=strategy)
    first = [s.choose(params, arms, g).variant for g in [np.random.default_rng(3)] for _ in range(50)]
    second = [s.choose(params, arms, g).variant for g in [np.random.default_rng(3)] for _ in range(50)]
    assert first == second
    assert {s.choose(params, arms, np.random.default_rng(0)).strategy} == {strategy}


def test_choose_warms_up_before_the_strategy() -> None:
    params = ExperimentParams(strategy=Strategy.UCB1, warmup=10)
    choice = s.choose(params, [arm("a", 10, 10), arm("b", 9, 0)], np.random.default_rng(0))
    assert choice == s.Choice("b", Strategy.WEIGHTED_SAMPLING, "warmup")
