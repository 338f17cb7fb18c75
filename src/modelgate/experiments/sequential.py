"""Group-sequential comparison of each challenger with the control, valid however often it is read.

Method
------
For each challenger ``B`` against the control ``A`` the test statistic is the pooled two-proportion
z-score ``z = (p_B - p_A) / sqrt(p (1 - p) (1/n_A + 1/n_B))``, with ``p_X`` the reward rate (successes per
invocation, see :mod:`modelgate.experiments.entities`) and ``p`` the pooled rate. ``z > 0`` favours the
challenger.

The test is planned for ``horizon`` invocations per variant. Its *information fraction* is
``t = 2 / (horizon * (1/n_A + 1/n_B))`` (``n / horizon`` when both arms have ``n``). A *look* is taken
the first time ``t`` reaches the next of ``looks`` equally spaced marks ``1/K, 2/K, ..., 1``; a batch that
jumps over several marks takes a single look at its actual ``t``, and a look at ``t >= 1`` is the final
one, at ``t = 1``. Looks are recorded (the aggregator takes them after each fold) and never re-taken, so
reading the verdict a thousand times between two marks changes nothing: the verdict is a function of the
recorded looks only.

At look ``k`` the symmetric two-sided boundary ``c_k`` spends, on each side, the Lan-DeMets
O'Brien-Fleming-type function of ``alpha/2``, ``alpha_side(t) = 2 - 2 Phi(z_{1-alpha/4} / sqrt(t))``
(gsDesign's ``sfLDOF``; for five equal looks at alpha = 0.05 the boundaries are 4.877, 3.357, 2.680,
2.290, 2.031): ``c_k`` solves
``P(|Z_1| < c_1, ..., |Z_{k-1}| < c_{k-1}, |Z_k| >= c_k) = alpha(t_k) - alpha(t_{k-1})`` under the null,
for the canonical joint distribution of the z-scores (a Brownian motion in information time), computed by
numerical integration on a grid (Armitage, McPherson and Rowe's recursion; Jennison and Turnbull,
*Group Sequential Methods*, ch. 19). The comparison stops at the first look with ``|z_k| >= c_k``: the
challenger is ``better`` or ``worse`` than the control. It ends ``no_difference`` at the final look.

With ``m`` challengers each comparison gets ``alpha / m`` (Bonferroni).

Verdict: ``winner: <challenger>`` as soon as a challenger is better (if several at once, the one with the
highest rate); ``winner: <control>`` when every challenger is worse; ``inconclusive`` when every
comparison has ended otherwise; ``keep_running`` until then. Once a winner is named no further looks are
taken, so the verdict never changes afterwards.

Error guarantees
----------------
Under the null (all variants convert at the same rate) the probability that the procedure *ever* names a
winner, over all its looks, is at most ``alpha`` (up to the normal approximation of the z-score, which is
good once each arm has a few dozen successes and failures; the calibration test measures it). Each
individual claim "B is better than A" is wrong with probability at most ``alpha / (2 m)``. The guarantee
assumes the looks' timing does not depend on the data (the fold schedule does not) and that traffic is
split by fixed weights: under a bandit strategy the allocation depends on past outcomes and the z-test is
only approximate. Invocations are treated as independent trials; several invocations by one user are
correlated, which makes the test somewhat anti-conservative.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

import numpy as np

from modelgate.experiments.entities import VariantCounts
from modelgate.experiments.errors import InvalidParameter


def _optimize() -> Any:
    """scipy.optimize, imported on first use: scipy costs the gateway ~64 MB when loaded at start."""
    from scipy import optimize

    return optimize


def _special() -> Any:
    """scipy.special (the normal distribution's ndtr and ndtri), imported on first use. Not scipy.stats:
    its import builds every distribution's docstrings (a second of CPU in the aggregator's thread), and its
    ``norm`` wraps these same functions in argument checks that cost more than the functions."""
    from scipy import special

    return special


_PDF_C = math.sqrt(2.0 * math.pi)


def _norm_pdf(x: np.ndarray) -> np.ndarray:
    return np.exp(-(x**2) / 2.0) / _PDF_C  # scipy.stats.norm.pdf's formula


def _norm_sf(x: float | np.ndarray) -> Any:
    return _special().ndtr(-np.asarray(x))


def _norm_isf(p: float) -> float:
    return float(-_special().ndtri(p))


_GRID = 801  # grid points per look for the recursion; boundaries are accurate to about 1e-4
_C_MAX = 8.5  # a boundary this high spends less than 1e-16
_EPS = 1e-9

Decision = Literal["continue", "better", "worse", "no_difference"]


@dataclass(frozen=True, slots=True)
class Design:
    alpha: float
    horizon: int
    looks: int


@dataclass(frozen=True, slots=True)
class Look:
    """One interim analysis of one challenger against the control."""

    challenger: str
    t: float
    z: float
    n_control: int
    n_challenger: int


@dataclass(frozen=True, slots=True)
class Comparison:
    challenger: str
    decision: Decision
    looks: int
    z: float | None  # at the latest look
    boundary: float | None  # |z| needed at the latest look
    alpha: float  # this comparison's share of alpha


@dataclass(frozen=True, slots=True)
class Verdict:
    kind: Literal["keep_running", "winner", "inconclusive"]
    variant: str | None = None

    def __str__(self) -> str:
        return f"winner: {self.variant}" if self.kind == "winner" else self.kind


def obf_spending(t: float, alpha: float) -> float:
    """Two-sided alpha spent by information fraction ``t``: O'Brien-Fleming-type, alpha/2 per side."""
    if t <= 0:
        return 0.0
    if t >= 1:
        return alpha
    return float(4.0 * _norm_sf(_norm_isf(alpha / 4.0) / math.sqrt(t)))


def _trapezoid_weights(xs: np.ndarray) -> np.ndarray:
    h = xs[1] - xs[0]
    w = np.full(xs.shape, h)
    w[0] = w[-1] = h / 2.0
    return w


def boundaries(fractions: Sequence[float], alpha: float) -> tuple[float, ...]:
    """Two-sided critical |z| at looks taken at the given increasing information fractions."""
    key = tuple(round(t, 9) for t in fractions)
    if not 0 < alpha < 1:
        raise InvalidParameter(f"alpha must be in (0, 1), got {alpha}")
    if any(t <= 0 or t > 1 for t in key) or any(b <= a for a, b in itertools.pairwise(key)):
        raise InvalidParameter(f"information fractions must increase within (0, 1], got {list(fractions)}")
    return _boundaries(key, round(alpha, 12))


def _crossing(c: float, mass: np.ndarray, xs: np.ndarray, root_t: float, sigma: float) -> float:
    """P(not stopped before, |Z_k| >= c) given the sub-density mass at the previous look's B-values."""
    b = c * root_t
    ndtr = _special().ndtr
    tail = ndtr(-((b - xs) / sigma)) + ndtr((-b - xs) / sigma)
    return float(mass @ tail)


def _solve_boundary(spend: float, mass: np.ndarray, xs: np.ndarray, root_t: float, sigma: float) -> float:
    if spend <= _crossing(_C_MAX, mass, xs, root_t, sigma):
        return _C_MAX
    return float(_optimize().brentq(lambda c: _crossing(c, mass, xs, root_t, sigma) - spend, 0.0, _C_MAX, xtol=1e-7))


@lru_cache(maxsize=512)
def _boundaries(fractions: tuple[float, ...], alpha: float) -> tuple[float, ...]:
    return _state(fractions, alpha)[0]


_State = tuple[
    tuple[float, ...], np.ndarray, np.ndarray, np.ndarray, float
]  # boundaries, grid, weights, density, spent


@lru_cache(maxsize=128)
def _state(fractions: tuple[float, ...], alpha: float) -> _State:
    """The boundaries of ``fractions`` and the recursion's state after the last look, built from the state
    of all looks but the last: a new look costs one step of the recursion, not one per look taken so far
    (looks come one at a time, and the aggregator asks after every fold)."""
    t = fractions[-1]
    if len(fractions) == 1:
        cs: tuple[float, ...] = ()
        xs = w = dens = np.empty(0)
        t_prev = spent_prev = 0.0
    else:
        cs, xs, w, dens, spent_prev = _state(fractions[:-1], alpha)
        t_prev = fractions[-2]
    spend = max(obf_spending(t, alpha) - spent_prev, 0.0)
    sigma = math.sqrt(t - t_prev)
    if not cs:
        c = _norm_isf(spend / 2.0) if spend > 0 else _C_MAX
    else:
        c = _solve_boundary(spend, w * dens, xs, math.sqrt(t), sigma)
    c = min(c, _C_MAX)
    b = c * math.sqrt(t)
    new_xs = np.linspace(-b, b, _GRID)
    if not cs:
        new_dens = _norm_pdf(new_xs / math.sqrt(t)) / math.sqrt(t)
    else:
        kernel = _norm_pdf((new_xs[None, :] - xs[:, None]) / sigma) / sigma
        new_dens = (w * dens) @ kernel
    return (*cs, c), new_xs, _trapezoid_weights(new_xs), new_dens, obf_spending(t, alpha)


def information_fraction(n_control: int, n_challenger: int, horizon: int) -> float:
    if n_control <= 0 or n_challenger <= 0:
        return 0.0
    return 2.0 / (horizon * (1.0 / n_control + 1.0 / n_challenger))


def z_score(control: VariantCounts, challenger: VariantCounts) -> float:
    """Pooled two-proportion z of the challenger's reward rate over the control's (0 without evidence)."""
    n_a, n_b = control.invocations, challenger.invocations
    if n_a == 0 or n_b == 0:
        return 0.0
    s_a, s_b = control.successes, challenger.successes
    pooled = (s_a + s_b) / (n_a + n_b)
    variance = pooled * (1.0 - pooled) * (1.0 / n_a + 1.0 / n_b)
    if variance <= 0:
        return 0.0
    return (s_b / n_b - s_a / n_a) / math.sqrt(variance)


def comparison(design: Design, challenger: str, looks: Sequence[Look], alpha: float) -> Comparison:
    """The state of one challenger's comparison after its recorded looks."""
    if not looks:
        return Comparison(challenger, "continue", 0, None, None, alpha)
    cs = boundaries([look.t for look in looks], alpha)
    for i, (look, c) in enumerate(zip(looks, cs, strict=True)):
        if abs(look.z) >= c:
            decision: Decision = "better" if look.z > 0 else "worse"
            return Comparison(challenger, decision, i + 1, look.z, c, alpha)
    last = looks[-1]
    decision = "no_difference" if last.t >= 1.0 - _EPS else "continue"
    return Comparison(challenger, decision, len(looks), last.z, cs[-1], alpha)


def evaluate(
    design: Design,
    control: str,
    challengers: Sequence[str],
    looks: Sequence[Look],
    rates: Mapping[str, float],
) -> tuple[list[Comparison], Verdict]:
    """Comparisons and verdict from the recorded looks (``rates`` breaks ties between winners)."""
    alpha = design.alpha / max(len(challengers), 1)
    results = [comparison(design, c, [lk for lk in looks if lk.challenger == c], alpha) for c in challengers]
    better = [r.challenger for r in results if r.decision == "better"]
    if better:
        return results, Verdict("winner", max(better, key=lambda v: rates.get(v, 0.0)))
    if results and all(r.decision == "worse" for r in results):
        return results, Verdict("winner", control)
    if all(r.decision != "continue" for r in results):
        return results, Verdict("inconclusive")
    return results, Verdict("keep_running")


def next_looks(
    design: Design,
    control: str,
    counts: Mapping[str, VariantCounts],
    looks: Sequence[Look],
) -> list[Look]:
    """The looks due now, given the current counts and the looks already recorded (pure)."""
    challengers = [v for v in counts if v != control]
    rates = {v: c.successes / c.invocations if c.invocations else 0.0 for v, c in counts.items()}
    results, verdict = evaluate(design, control, challengers, looks, rates)
    if verdict.kind != "keep_running":
        return []
    base = counts.get(control, VariantCounts())
    due = []
    for result in results:
        if result.decision != "continue":
            continue
        other = counts[result.challenger]
        t = information_fraction(base.invocations, other.invocations, design.horizon)
        previous = [lk.t for lk in looks if lk.challenger == result.challenger]
        last_t = previous[-1] if previous else 0.0
        next_mark = (math.floor(last_t * design.looks + _EPS) + 1) / design.looks
        if t <= 0 or t + _EPS < next_mark:
            continue
        t = 1.0 if t >= 1.0 - _EPS else round(t, 9)
        due.append(Look(result.challenger, t, z_score(base, other), base.invocations, other.invocations))
    return due
