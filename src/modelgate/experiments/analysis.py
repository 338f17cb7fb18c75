"""The answer to "which variant is better?": Bayesian summaries plus the sequential verdict.

Per variant (successes are reward sums, see :mod:`modelgate.experiments.entities`; with the default reward
of 1 they are the conversions):

- ``rate``: successes / invocations (0 with no invocations).
- a 95% equal-tailed credible interval from the posterior Beta(1 + s, 1 + n - s) (uniform prior). The
  anchor's Beta(1 + conversions, 1 + invocations - conversions) is the same when every reward is 1;
  crediting reward sums keeps the interval right when callers send reward-0 conversions, as the anchor's
  notebook does for every unhelpful answer.
- ``prob_best``: P(theta_i is the largest) = integral of f_i(x) prod_{j != i} F_j(x) dx, and
- ``expected_loss``: E[max_j theta_j - theta_i] = E[max] - E[theta_i], with
  E[max] = integral of (1 - prod_j F_j(x)) dx,

both by deterministic numerical integration (trapezoid rule on the union of each posterior's
1e-12..1-1e-12 quantile range, 1,201 points each), so the same counts always give the same numbers,
to about 1e-6. These are statements about the posterior, not error guarantees: they are for reading, and
the verdict comes from the frequentist test.

The verdict and its error guarantees are those of :mod:`modelgate.experiments.sequential`: a
group-sequential two-proportion z-test of each challenger against the control with O'Brien-Fleming-type
alpha spending, whose looks are recorded and never re-taken, so that the false-winner rate stays below
``alpha`` however often the answer is read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelgate.experiments.entities import Experiment, VariantCounts
from modelgate.experiments.sequential import Comparison, Design, Look, Verdict, evaluate


def _stats() -> Any:
    """scipy.stats, imported on first use: scipy costs the gateway ~64 MB when loaded at start."""
    from scipy import stats

    return stats


_POINTS = 1201
_TAIL = 1e-12


@dataclass(frozen=True, slots=True)
class VariantSummary:
    name: str
    initial_weight: float
    invocations: int
    conversions: int
    reward_sum: float
    rate: float
    ci_low: float
    ci_high: float
    prob_best: float
    expected_loss: float
    errors: int = 0  # failed invocations (counted in ``invocations``, with no reward)


@dataclass(frozen=True, slots=True)
class Summary:
    experiment: Experiment
    control: str
    variants: list[VariantSummary]
    comparisons: list[Comparison]
    verdict: Verdict


def credible_interval(successes: float, invocations: int, level: float = 0.95) -> tuple[float, float]:
    a, b = 1.0 + successes, 1.0 + invocations - successes
    tail = (1.0 - level) / 2.0
    return float(_stats().beta.ppf(tail, a, b)), float(_stats().beta.isf(tail, a, b))


def best_and_loss(posteriors: Sequence[tuple[float, float]]) -> tuple[list[float], list[float]]:
    """Probability of being best and expected loss for each Beta(a, b) posterior."""
    if not posteriors:
        return [], []
    a = np.array([p[0] for p in posteriors], dtype=float)
    b = np.array([p[1] for p in posteriors], dtype=float)
    lo = _stats().beta.ppf(_TAIL, a, b)
    hi = _stats().beta.isf(_TAIL, a, b)
    grid = np.unique(np.concatenate([np.linspace(x0, x1, _POINTS) for x0, x1 in zip(lo, hi, strict=True)]))
    pdf = _stats().beta.pdf(grid[None, :], a[:, None], b[:, None])
    cdf = _stats().beta.cdf(grid[None, :], a[:, None], b[:, None])
    k = len(posteriors)
    probs = np.empty(k)
    for i in range(k):
        others = np.prod(np.delete(cdf, i, axis=0), axis=0) if k > 1 else np.ones_like(grid)
        probs[i] = np.trapezoid(pdf[i] * others, grid)
    probs = probs / probs.sum()
    all_below = np.prod(cdf, axis=0)
    expected_max = grid[0] + np.trapezoid(1.0 - all_below, grid)
    means = a / (a + b)
    losses = np.maximum(expected_max - means, 0.0)
    return [float(p) for p in probs], [float(x) for x in losses]


def variant_summaries(experiment: Experiment, counts: Mapping[str, VariantCounts]) -> list[VariantSummary]:
    arms = experiment.arms(counts)
    probs, losses = best_and_loss([(1.0 + a.successes, 1.0 + a.invocations - a.successes) for a in arms])
    out = []
    for arm, p_best, loss in zip(arms, probs, losses, strict=True):
        c = arm.counts
        low, high = credible_interval(arm.successes, arm.invocations)
        rate = arm.successes / arm.invocations if arm.invocations else 0.0
        out.append(
            VariantSummary(
                arm.name,
                arm.initial_weight,
                c.invocations,
                c.conversions,
                c.reward_sum,
                rate,
                low,
                high,
                p_best,
                loss,
                c.errors,
            )
        )
    return out


def design_of(experiment: Experiment) -> Design:
    p = experiment.params
    return Design(alpha=p.alpha, horizon=p.horizon, looks=p.looks)


def summarize(experiment: Experiment, counts: Mapping[str, VariantCounts], looks: Sequence[Look]) -> Summary:
    """Everything ``/stats`` reports beyond the anchor's counts."""
    variants = variant_summaries(experiment, counts)
    control = experiment.control
    challengers = [v for v in experiment.variant_names if v != control]
    rates = {v.name: v.rate for v in variants}
    comparisons, verdict = evaluate(design_of(experiment), control, challengers, looks, rates)
    return Summary(experiment, control, variants, comparisons, verdict)
