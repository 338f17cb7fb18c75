"""The green-vs-blue sequential test: its likelihood ratios, its validity bound, slow-request counting."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from modelgate.rollout.compare import (
    ComparisonConfig,
    ComparisonState,
    Counts,
    log_lr_increment,
    log_mixture,
    new_comparison,
    slow_counts,
    slow_counts_dense,
    update,
    verdict,
)

CONFIG = ComparisonConfig()


def counts(ng: int, xg: int, nb: int, xb: int) -> Counts:
    return Counts(green_requests=ng, green_events=xg, blue_requests=nb, blue_events=xb)


@pytest.mark.parametrize(
    ("ng", "x", "nb", "y", "margin"),
    [(50, 3, 150, 2, 1.0), (10, 0, 90, 4, 1.0), (100, 7, 100, 1, 1.5), (1, 1, 999, 0, 1.0)],
)
def test_increment_is_the_binomial_likelihood_ratio_of_where_events_fell(
    ng: int, x: int, nb: int, y: int, margin: float
) -> None:
    q = ng / (ng + nb)
    p0 = margin * q / (margin * q + 1 - q)
    for k, rho in enumerate(CONFIG.risk_grid):
        p1 = rho * p0 / (rho * p0 + 1 - p0)  # odds of a green event multiplied by rho
        expected = stats.binom.logpmf(x, x + y, p1) - stats.binom.logpmf(x, x + y, p0)
        got = log_lr_increment(ng, x, nb, y, margin, CONFIG.risk_grid)[k]
        assert got == pytest.approx(expected, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize(("ng", "x", "nb", "y"), [(0, 0, 10, 3), (10, 2, 0, 0), (10, 0, 10, 0)])
def test_intervals_without_evidence_change_nothing(ng: int, x: int, nb: int, y: int) -> None:
    assert not np.any(log_lr_increment(ng, x, nb, y, 1.0, CONFIG.risk_grid))
    state = new_comparison(CONFIG)
    assert update(state, CONFIG, counts(ng, x, nb, y), None) == state


@settings(max_examples=100, deadline=None)
@given(ng=st.integers(1, 40), nb=st.integers(1, 40), data=st.data(), margin=st.sampled_from([1.0, 1.2, 2.0]))
def test_each_factor_has_expectation_at_most_one_under_aa(ng: int, nb: int, data: st.DataObject, margin: float) -> None:
    """The supermartingale property, exactly: given the events of an A/A interval, the green ones are
    hypergeometric, and the expected likelihood ratio over them is at most 1 for every risk."""
    events = data.draw(st.integers(1, ng + nb))
    x = np.arange(0, events + 1)
    pmf = stats.hypergeom.pmf(x, ng + nb, ng, events)
    ratio = np.exp(
        log_lr_increment(np.full(x.shape, ng), x, np.full(x.shape, nb), events - x, margin, CONFIG.risk_grid)
    )
    expectation = (pmf[:, None] * ratio).sum(axis=0)
    assert np.all(expectation <= 1.0 + 1e-9)


def test_more_green_events_is_more_evidence() -> None:
    steps = [log_lr_increment(100, x, 300, 4, 1.0, CONFIG.risk_grid) for x in range(6)]
    assert all(np.all(b > a) for a, b in itertools.pairwise(steps))


def test_mixture_is_the_log_of_the_mean() -> None:
    a = np.array([[0.0, 1.0, -3.0], [800.0, 799.0, -800.0]])
    assert log_mixture(a)[0] == pytest.approx(np.log(np.mean(np.exp(a[0]))))
    assert log_mixture(a)[1] == pytest.approx(800.0 + np.log((1 + np.exp(-1.0) + np.exp(-1600.0)) / 3))


def test_a_broken_green_is_caught_and_the_verdict_sticks() -> None:
    state = new_comparison(CONFIG)
    for _ in range(3):
        state = update(state, CONFIG, counts(50, 10, 150, 1), None)
    v = verdict(state, CONFIG)
    assert v.green_worse and v.reason is not None and v.reason.startswith("green's error rate is worse")
    assert v.errors_p_value == pytest.approx(1 / state.errors.e_value) and v.errors_p_value <= CONFIG.alpha / 2
    for _ in range(20):  # later good intervals lower the e-value, not the verdict: it was crossed once
        state = update(state, CONFIG, counts(50, 0, 150, 10), None)
    assert verdict(state, CONFIG).green_worse
    assert ComparisonState.model_validate_json(state.model_dump_json()) == state


def test_balanced_evidence_is_not_a_rejection() -> None:
    state = new_comparison(CONFIG)
    for _ in range(50):
        state = update(state, CONFIG, counts(50, 1, 150, 3), counts(50, 5, 150, 15))
    v = verdict(state, CONFIG)
    assert not v.green_worse and v.reason is None
    assert v.errors_p_value > 0.5 and v.latency_p_value > 0.5


def test_latency_rejection_is_named() -> None:
    state = new_comparison(CONFIG)
    for _ in range(5):
        state = update(state, CONFIG, None, counts(50, 15, 150, 5))
    v = verdict(state, CONFIG)
    assert v.green_worse and v.reason is not None and "latency" in v.reason and "error" not in v.reason


def test_a_margin_tolerates_a_small_regression() -> None:
    strict, lenient = ComparisonConfig(), ComparisonConfig(error_margin=2.0)
    s, t = new_comparison(strict), new_comparison(lenient)
    for _ in range(100):  # green errs 1.5 times as often as blue, steadily
        s = update(s, strict, counts(100, 3, 100, 2), None)
        t = update(t, lenient, counts(100, 3, 100, 2), None)
    assert verdict(s, strict).green_worse and not verdict(t, lenient).green_worse


@settings(max_examples=100, deadline=None)
@given(
    green=st.lists(st.integers(-5, 30), max_size=60),
    blue=st.lists(st.integers(-5, 30), max_size=60),
    quantile=st.sampled_from([0.5, 0.9, 0.99]),
)
def test_slow_counts_match_sorting_the_pooled_sample(green: list[int], blue: list[int], quantile: float) -> None:
    got = slow_counts(
        {k: float(green.count(k)) for k in set(green)}, {k: float(blue.count(k)) for k in set(blue)}, quantile
    )
    pooled = sorted(green + blue)
    if not pooled:
        assert got == counts(0, 0, 0, 0)
        return
    threshold = pooled[max(0, int(np.ceil(quantile * len(pooled) - 1e-9)) - 1)]
    assert got == counts(len(green), sum(k > threshold for k in green), len(blue), sum(k > threshold for k in blue))


def test_slow_counts_dense_is_vectorised_over_rows() -> None:
    rng = np.random.default_rng(7)
    g, b = rng.integers(0, 5, (4, 3, 20)), rng.integers(0, 5, (4, 3, 20))
    batched = slow_counts_dense(g, b, 0.9)
    for i in range(4):
        for j in range(3):
            row = slow_counts_dense(g[i, j], b[i, j], 0.9)
            assert [float(v[i, j]) for v in batched] == [float(v) for v in row]


def test_config_limits() -> None:
    with pytest.raises(ValueError, match="alpha"):
        ComparisonConfig(alpha=0.0)
    with pytest.raises(ValueError, match="error_margin"):
        ComparisonConfig(error_margin=0.9)
    assert ComparisonConfig(alpha=0.01).threshold == pytest.approx(200.0)
