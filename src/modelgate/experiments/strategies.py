"""Variant-selection strategies as pure functions.

Every function takes the arms (each variant's initial weight and folded counts, see
:class:`~modelgate.experiments.entities.Arm`) and the random draws it needs as arguments, and returns a
:class:`Choice`: the variant, the strategy to report, and why. Nothing here reads a clock or a global
random generator; :func:`choose` is the one entry point that takes a ``numpy.random.Generator`` and
draws exactly what the configured strategy needs.

Rules (the anchor's, ``lambda/api/algorithm.py``, with its bugs fixed):

- **WeightedSampling**: variant ``i`` with probability ``w_i / sum(w)``; zero-weight variants are never
  chosen; if every weight is zero, all variants are equally likely.
- **EpsilonGreedy(epsilon)**: if ``u_explore > epsilon`` exploit the best mean reward (ties: first
  variant), else pick uniformly over *all* variants with ``u_pick``. A variant never invoked has no mean
  and is tried first (the anchor divided by zero).
- **UCB1**: ``argmax(mean_i + sqrt(2 ln N / n_i))``; variants never invoked are tried first.
- **ThompsonSampling**: ``argmax`` of one draw per variant from Beta(1 + s_i, 1 + n_i - s_i), where
  ``s_i`` is the reward sum clamped to ``[0, n_i]`` (the anchor's beta parameter went non-positive when
  rewards exceeded invocations, and the request fell into Fallback).
- **Warm-up(w)**: while some variant has fewer than ``w`` invocations, choose among those variants only,
  by their weights (uniformly if their weights are all zero), and report WeightedSampling. The anchor
  used ``<=`` (so ``warmup=100`` needed 101) and sampled over all variants by weight, so a variant of
  weight 0 (or a small one) kept every user in warm-up for ever.

Counts reach the strategies in batches (the aggregator folds every flush), so the deterministic rules
(UCB1, greedy exploitation, untried-first) send every user to the same variant until the next fold;
Thompson sampling and warm-up stay randomised between folds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from modelgate.experiments.entities import Arm, ExperimentParams, Strategy
from modelgate.experiments.errors import InvalidParameter, NoVariants


@dataclass(frozen=True, slots=True)
class Choice:
    variant: str
    strategy: Strategy
    reason: str  # "weights", "warmup", "exploit", "explore", "untried", "ucb", "sample"


def _check(arms: Sequence[Arm]) -> None:
    if not arms:
        raise NoVariants("an experiment needs at least one variant")
    for arm in arms:
        if not math.isfinite(arm.initial_weight) or arm.initial_weight < 0:
            raise InvalidParameter(f"variant {arm.name} has an invalid weight {arm.initial_weight}")


def _check_unit(name: str, u: float) -> None:
    if not 0.0 <= u < 1.0:
        raise InvalidParameter(f"{name} must be a uniform draw in [0, 1), got {u}")


def _argmax(values: Sequence[float]) -> int:
    """Index of the largest value, the first one on ties (the anchor's rule)."""
    best = 0
    for i, v in enumerate(values):
        if v > values[best]:
            best = i
    return best


def _by_weight(arms: Sequence[Arm], u: float) -> int:
    weights = [a.initial_weight for a in arms]
    total = sum(weights)
    if total <= 0:
        return min(int(u * len(arms)), len(arms) - 1)
    threshold = u * total
    cumulative = 0.0
    last_positive = 0
    for i, w in enumerate(weights):
        if w <= 0:
            continue
        last_positive = i
        cumulative += w
        if threshold < cumulative:
            return i
    return last_positive  # only reachable through rounding when u is just below 1


def weighted_sampling(arms: Sequence[Arm], u: float) -> Choice:
    _check(arms)
    _check_unit("u", u)
    return Choice(arms[_by_weight(arms, u)].name, Strategy.WEIGHTED_SAMPLING, "weights")


def warmup(arms: Sequence[Arm], warmup: int, u: float) -> Choice | None:
    """The warm-up choice while some variant has fewer than ``warmup`` invocations, else None."""
    _check(arms)
    _check_unit("u", u)
    cold = [a for a in arms if a.invocations < warmup]
    if not cold:
        return None
    return Choice(cold[_by_weight(cold, u)].name, Strategy.WEIGHTED_SAMPLING, "warmup")


def _untried(arms: Sequence[Arm]) -> Arm | None:
    return next((a for a in arms if a.invocations == 0), None)


def epsilon_greedy(arms: Sequence[Arm], epsilon: float, u_explore: float, u_pick: float) -> Choice:
    _check(arms)
    _check_unit("u_explore", u_explore)
    _check_unit("u_pick", u_pick)
    if not 0.0 <= epsilon <= 1.0:
        raise InvalidParameter(f"epsilon must be in [0, 1], got {epsilon}")
    if u_explore > epsilon:
        untried = _untried(arms)
        if untried is not None:
            return Choice(untried.name, Strategy.EPSILON_GREEDY, "untried")
        means = [a.successes / a.invocations for a in arms]
        return Choice(arms[_argmax(means)].name, Strategy.EPSILON_GREEDY, "exploit")
    index = min(int(u_pick * len(arms)), len(arms) - 1)
    return Choice(arms[index].name, Strategy.EPSILON_GREEDY, "explore")


def ucb1_scores(arms: Sequence[Arm]) -> list[float]:
    """UCB1 score per arm; an arm never invoked scores +inf."""
    total = sum(a.invocations for a in arms)
    scores = []
    for a in arms:
        if a.invocations == 0:
            scores.append(math.inf)
        else:
            bonus = math.sqrt(2.0 * math.log(total) / a.invocations)
            scores.append(a.successes / a.invocations + bonus)
    return scores


def ucb1(arms: Sequence[Arm]) -> Choice:
    _check(arms)
    untried = _untried(arms)
    if untried is not None:
        return Choice(untried.name, Strategy.UCB1, "untried")
    return Choice(arms[_argmax(ucb1_scores(arms))].name, Strategy.UCB1, "ucb")


def beta_posteriors(arms: Sequence[Arm]) -> list[tuple[float, float]]:
    """Beta(1 + s, 1 + n - s) per arm: a uniform prior updated by fractional rewards."""
    return [(1.0 + a.successes, 1.0 + a.invocations - a.successes) for a in arms]


def thompson_sampling(arms: Sequence[Arm], samples: Sequence[float]) -> Choice:
    """Choose the arm whose posterior draw (``samples[i]`` from ``beta_posteriors(arms)[i]``) is highest."""
    _check(arms)
    if len(samples) != len(arms):
        raise InvalidParameter(f"expected {len(arms)} posterior draws, got {len(samples)}")
    return Choice(arms[_argmax(samples)].name, Strategy.THOMPSON_SAMPLING, "sample")


def choose(params: ExperimentParams, arms: Sequence[Arm], rng: np.random.Generator) -> Choice:
    """Warm-up, then the configured strategy, with the draws taken from ``rng``."""
    _check(arms)
    warm = warmup(arms, params.warmup, float(rng.random()))
    if warm is not None:
        return warm
    match params.strategy:
        case Strategy.WEIGHTED_SAMPLING:
            return weighted_sampling(arms, float(rng.random()))
        case Strategy.EPSILON_GREEDY:
            return epsilon_greedy(arms, params.epsilon, float(rng.random()), float(rng.random()))
        case Strategy.UCB1:
            return ucb1(arms)
        case Strategy.THOMPSON_SAMPLING:
            a, b = np.array(beta_posteriors(arms)).T
            return thompson_sampling(arms, [float(x) for x in rng.beta(a, b)])
