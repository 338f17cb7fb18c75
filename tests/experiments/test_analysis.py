"""The Bayesian summaries and the group-sequential test, checked against known values and simulation."""

from __future__ import annotations

import numpy as np
import pytest

from modelgate.experiments.analysis import best_and_loss, credible_interval, summarize
from modelgate.experiments.entities import Experiment, ExperimentParams, VariantCounts, VariantSpec
from modelgate.experiments.errors import InvalidParameter
from modelgate.experiments.sequential import (
    Design,
    Look,
    Verdict,
    boundaries,
    evaluate,
    information_fraction,
    next_looks,
    obf_spending,
    z_score,
)

# --- credible interval, probability of being best, expected loss ------------------------------------


def test_credible_interval_of_a_uniform_posterior_is_its_quantiles() -> None:
    assert credible_interval(0, 0) == pytest.approx((0.025, 0.975))


def test_credible_interval_narrows_around_the_rate() -> None:
    low, high = credible_interval(300, 1000)
    assert low < 0.3 < high
    assert high - low == pytest.approx(2 * 1.96 * (0.3 * 0.7 / 1000) ** 0.5, rel=0.03)


def test_two_identical_uniform_posteriors() -> None:
    probs, losses = best_and_loss([(1, 1), (1, 1)])
    assert probs == pytest.approx([0.5, 0.5], abs=1e-9)
    assert losses == pytest.approx([1 / 6, 1 / 6], abs=1e-6)  # E[max of two uniforms] - 1/2


@pytest.mark.parametrize(
    "posteriors",
    [
        [(2.0, 10.0), (3.0, 9.0), (6.0, 6.0)],
        [(1501.0, 3501.0), (1651.0, 3351.0)],
        [(1.0, 1.0), (30.0, 70.0), (300.0, 700.0), (2.0, 2.0)],
        [(11.5, 1.0), (1.0, 11.5)],
    ],
)
def test_best_and_loss_agree_with_monte_carlo(posteriors: list[tuple[float, float]]) -> None:
    probs, losses = best_and_loss(posteriors)
    rng = np.random.default_rng(11)
    draws = np.stack([rng.beta(a, b, 400_000) for a, b in posteriors])
    mc_probs = np.bincount(draws.argmax(axis=0), minlength=len(posteriors)) / draws.shape[1]
    mc_losses = (draws.max(axis=0) - draws).mean(axis=1)
    assert probs == pytest.approx(mc_probs, abs=0.004)
    assert losses == pytest.approx(mc_losses, abs=0.001)
    assert sum(probs) == pytest.approx(1.0)


def test_best_and_loss_are_deterministic() -> None:
    posteriors = [(31.0, 71.0), (41.0, 61.0)]
    assert best_and_loss(posteriors) == best_and_loss(posteriors)


# --- group-sequential boundaries ----------------------------------------------------------------------


def test_boundaries_match_the_published_five_look_obrien_fleming_table() -> None:
    # Lan-DeMets O'Brien-Fleming, two-sided alpha 0.05, five equal looks (gsDesign / ldbounds).
    assert boundaries([0.2, 0.4, 0.6, 0.8, 1.0], 0.05) == pytest.approx([4.877, 3.357, 2.680, 2.290, 2.031], abs=2e-3)


def test_one_look_is_the_fixed_sample_test() -> None:
    assert boundaries([1.0], 0.05) == pytest.approx([1.95996], abs=1e-4)


def test_spending_function_endpoints() -> None:
    assert obf_spending(0.0, 0.05) == 0.0
    assert obf_spending(1.0, 0.05) == 0.05
    assert 0 < obf_spending(0.5, 0.05) < obf_spending(0.8, 0.05) < 0.05


def test_irregular_looks_spend_exactly_alpha_under_the_null() -> None:
    """Brownian motion in information time, crossing the computed boundaries: about alpha of paths."""
    fractions = [0.15, 0.5, 0.52, 0.9, 1.0]
    cs = np.array(boundaries(fractions, 0.05))
    rng = np.random.default_rng(5)
    steps = rng.normal(size=(400_000, len(fractions))) * np.sqrt(np.diff([0.0, *fractions]))
    z = steps.cumsum(axis=1) / np.sqrt(fractions)
    rate = (np.abs(z) >= cs).any(axis=1).mean()
    assert rate == pytest.approx(0.05, abs=3 * (0.05 * 0.95 / 400_000) ** 0.5)


@pytest.mark.parametrize("fractions", [[0.5, 0.4], [0.0, 1.0], [0.5, 1.2]])
def test_boundaries_refuse_bad_fractions(fractions: list[float]) -> None:
    with pytest.raises(InvalidParameter):
        boundaries(fractions, 0.05)


def test_information_fraction_and_z() -> None:
    assert information_fraction(500, 500, 5000) == pytest.approx(0.1)
    assert information_fraction(0, 500, 5000) == 0.0
    # unequal arms carry the information of their harmonic mean
    assert information_fraction(250, 750, 1000) == pytest.approx(2 / (1000 * (1 / 250 + 1 / 750)))
    z = z_score(VariantCounts(1000, 300, 300.0), VariantCounts(1000, 350, 350.0))
    pooled = 0.325
    assert z == pytest.approx(0.05 / (pooled * (1 - pooled) * 2 / 1000) ** 0.5)
    assert z_score(VariantCounts(10, 0, 0.0), VariantCounts(10, 0, 0.0)) == 0.0


# --- looks and verdicts -------------------------------------------------------------------------------

DESIGN = Design(alpha=0.05, horizon=1000, looks=4)


def counts(n_a: int, s_a: float, n_b: int, s_b: float) -> dict[str, VariantCounts]:
    return {"A": VariantCounts(n_a, int(s_a), s_a), "B": VariantCounts(n_b, int(s_b), s_b)}


def test_reading_between_marks_takes_no_extra_look() -> None:
    looks: list[Look] = []
    for n in (100, 200, 249, 250, 251, 300, 400, 499):
        looks += next_looks(DESIGN, "A", counts(n, n * 0.3, n, n * 0.3), looks)
    assert [lk.t for lk in looks] == [0.25]
    looks += next_looks(DESIGN, "A", counts(500, 150, 500, 150), looks)
    assert [lk.t for lk in looks] == [0.25, 0.5]


def test_a_batch_that_jumps_marks_takes_one_look_at_its_own_fraction() -> None:
    looks = next_looks(DESIGN, "A", counts(700, 210, 700, 210), [])
    assert [lk.t for lk in looks] == [0.7]
    looks += next_looks(DESIGN, "A", counts(760, 228, 760, 228), looks)
    assert [lk.t for lk in looks] == [0.7, 0.76]  # the next mark (0.75) was reached


def test_the_final_look_is_at_full_information_and_ends_the_comparison() -> None:
    looks = next_looks(DESIGN, "A", counts(1200, 360, 1200, 360), [])
    assert [lk.t for lk in looks] == [1.0]
    assert next_looks(DESIGN, "A", counts(5000, 1500, 5000, 1500), looks) == []
    _, verdict = evaluate(DESIGN, "A", ["B"], looks, {})
    assert verdict == Verdict("inconclusive")


def test_a_winner_stops_the_looks_and_stays_named() -> None:
    looks = next_looks(DESIGN, "A", counts(500, 100, 500, 200), [])
    comparisons, verdict = evaluate(DESIGN, "A", ["B"], looks, {})
    assert str(verdict) == "winner: B"
    assert comparisons[0].decision == "better"
    assert next_looks(DESIGN, "A", counts(1000, 500, 1000, 200), looks) == []


def test_control_wins_only_when_every_challenger_is_worse() -> None:
    looks = [Look("B", 0.5, -5.0, 500, 500), Look("C", 0.5, -1.0, 500, 500)]
    comparisons, verdict = evaluate(DESIGN, "A", ["B", "C"], looks, {})
    assert verdict == Verdict("keep_running")
    assert [c.decision for c in comparisons] == ["worse", "continue"]
    assert comparisons[0].alpha == pytest.approx(0.025)  # Bonferroni over two challengers
    looks.append(Look("C", 0.75, -4.0, 750, 750))
    assert evaluate(DESIGN, "A", ["B", "C"], looks, {})[1] == Verdict("winner", "A")


def test_two_better_challengers_the_higher_rate_wins() -> None:
    looks = [Look("B", 0.5, 5.0, 500, 500), Look("C", 0.5, 6.0, 500, 500)]
    assert evaluate(DESIGN, "A", ["B", "C"], looks, {"B": 0.5, "C": 0.4})[1] == Verdict("winner", "B")


def test_summarize_reports_every_variant_and_the_verdict() -> None:
    params = ExperimentParams(horizon=1000, looks=4, alpha=0.05)
    experiment = Experiment(3, "ep", params, (VariantSpec("A", 0.5), VariantSpec("B", 0.5)), 0.0)
    current = counts(500, 100, 500, 200)
    summary = summarize(experiment, current, next_looks(DESIGN, "A", current, []))
    assert summary.control == "A"
    assert [v.name for v in summary.variants] == ["A", "B"]
    a, b = summary.variants
    assert (a.rate, b.rate) == (0.2, 0.4)
    assert a.ci_low < 0.2 < a.ci_high
    assert b.prob_best > 0.999 and a.expected_loss == pytest.approx(0.2, abs=0.01)
    assert str(summary.verdict) == "winner: B"
