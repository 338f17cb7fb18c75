"""The comparison test by simulation: false alarms on A/A updates and detection delays.

Thousands of deployments, vectorised with numpy, run through the same cores the controller uses
(``log_lr_increment``, ``log_mixture``, ``slow_counts_dense``). Traffic: 20 requests/s, evaluated
every 10 s (200 requests per interval). ``python -m tests.rollout.test_compare_simulation`` prints the
figures quoted in docs/rollout-comparison.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import stats

from modelgate.rollout.compare import ComparisonConfig, log_lr_increment, log_mixture, slow_counts_dense

CONFIG = ComparisonConfig()  # alpha 0.05: 0.025 for errors, 0.025 for latency
INTERVAL_S = 10.0
PER_INTERVAL = 200  # 20 requests/s
CANARY = 0.25  # 1 instance of 4
LN_GAMMA = math.log((1 + 0.01) / (1 - 0.01))  # the DDSketch mapping of modelgate's sketches (1% accuracy)
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Scenario:
    reps: int
    intervals: int
    share: tuple[float, ...]  # green share per interval, cycled
    blue_error: float = 0.01
    error_ratio: float = 1.0  # green's error probability / blue's
    latency_ratio: float = 1.0  # green's median latency / blue's
    bursty: bool = False  # base error rate and latency drift from interval to interval (both fleets)


def _shares(s: Scenario) -> npt.NDArray[np.float64]:
    return np.resize(np.asarray(s.share), s.intervals)


def first_rejection_of_errors(rng: np.random.Generator, s: Scenario) -> tuple[IntArray, IntArray]:
    """Interval of the first rejection per run (``intervals`` if none), for the sequential test and for a
    naive one-sided two-proportion z-test on cumulative counts at the same level, checked each interval."""
    level = math.log(CONFIG.threshold)
    z_crit = stats.norm.ppf(1 - CONFIG.alpha / 2)
    log_lr = np.zeros((s.reps, len(CONFIG.risk_grid)))
    first, naive = np.full(s.reps, s.intervals), np.full(s.reps, s.intervals)
    tot = np.zeros((4, s.reps))
    for t, q in enumerate(_shares(s)):
        base = s.blue_error * (rng.lognormal(0.0, 0.5, s.reps) if s.bursty else 1.0)
        n_g = rng.binomial(PER_INTERVAL, q, s.reps)
        n_b = PER_INTERVAL - n_g
        x = rng.binomial(n_g, np.minimum(1.0, base * s.error_ratio))
        y = rng.binomial(n_b, np.minimum(1.0, base))
        log_lr += log_lr_increment(n_g, x, n_b, y, CONFIG.error_margin, CONFIG.risk_grid)
        first[(log_mixture(log_lr) >= level) & (first == s.intervals)] = t
        tot += np.array([n_g, x, n_b, y])
        with np.errstate(divide="ignore", invalid="ignore"):
            pg, pb = tot[1] / tot[0], tot[3] / tot[2]
            pooled = (tot[1] + tot[3]) / (tot[0] + tot[2])
            z = (pg - pb) / np.sqrt(pooled * (1 - pooled) * (1 / tot[0] + 1 / tot[2]))
        naive[(np.nan_to_num(z) > z_crit) & (naive == s.intervals)] = t
    return first, naive


def first_rejection_of_latency(rng: np.random.Generator, s: Scenario) -> IntArray:
    """Latencies are log-normal (median 50 ms, sigma 0.5), bucketed like DDSketch, per request."""
    level = math.log(CONFIG.threshold)
    log_lr = np.zeros((s.reps, len(CONFIG.risk_grid)))
    first = np.full(s.reps, s.intervals)
    rows = np.arange(s.reps)[:, None]
    for t, q in enumerate(_shares(s)):
        green = rng.random((s.reps, PER_INTERVAL), dtype=np.float32) < q
        drift = rng.normal(0.0, 0.2, (s.reps, 1)) if s.bursty else 0.0
        log_latency = math.log(0.05) + drift + 0.5 * rng.standard_normal((s.reps, PER_INTERVAL), dtype=np.float32)
        keys = np.ceil((log_latency + np.where(green, math.log(s.latency_ratio), 0.0)) / LN_GAMMA).astype(np.int64)
        low = int(keys.min())
        width = int(keys.max()) - low + 1
        flat = (rows * width + keys - low).ravel()
        hist_g = np.bincount(flat, weights=green.ravel(), minlength=s.reps * width).reshape(s.reps, width)
        hist_b = np.bincount(flat, weights=~green.ravel(), minlength=s.reps * width).reshape(s.reps, width)
        n_g, slow_g, n_b, slow_b = slow_counts_dense(hist_g, hist_b, CONFIG.latency_quantile)
        log_lr += log_lr_increment(n_g, slow_g, n_b, slow_b, CONFIG.latency_margin, CONFIG.risk_grid)
        first[(log_mixture(log_lr) >= level) & (first == s.intervals)] = t
    return first


# A/A: the shares of a linear deployment (10%, 25%, 50%) and a bursty base rate, for an hour (errors)
# or half an hour (latency) of continuous monitoring.
LINEAR_SHARES = (0.1,) * 30 + (0.25,) * 30 + (0.5,) * 30
AA_ERRORS = Scenario(reps=4000, intervals=360, share=LINEAR_SHARES, bursty=True)
AA_LATENCY = Scenario(reps=1000, intervals=180, share=LINEAR_SHARES, bursty=True)
ERROR_RATIOS = (2.0, 3.0, 5.0, 20.0, 100.0)  # blue errs 1%; green 2%, 3%, 5%, 20%, 100%
LATENCY_RATIOS = (1.1, 1.25, 1.5, 2.0)


def error_detection(rng: np.random.Generator, ratio: float) -> IntArray:
    return first_rejection_of_errors(rng, Scenario(reps=1000, intervals=180, share=(CANARY,), error_ratio=ratio))[0]


def latency_detection(rng: np.random.Generator, ratio: float) -> IntArray:
    return first_rejection_of_latency(rng, Scenario(reps=500, intervals=60, share=(CANARY,), latency_ratio=ratio))


def delay_seconds(first: IntArray) -> npt.NDArray[np.float64]:
    """Seconds from the start of the bake to the evaluation that rejects (the end of that interval)."""
    return ((first + 1) * INTERVAL_S).astype(np.float64)


def test_false_alarm_rate_on_aa_updates_stays_under_alpha() -> None:
    rng = np.random.default_rng(20240601)
    errors, naive = first_rejection_of_errors(rng, AA_ERRORS)
    latency = first_rejection_of_latency(rng, AA_LATENCY)
    fa_errors, fa_latency = float(np.mean(errors < AA_ERRORS.intervals)), float(np.mean(latency < AA_LATENCY.intervals))
    assert fa_errors <= CONFIG.alpha / 2
    assert fa_latency <= CONFIG.alpha / 2
    # the same simulation catches a test that is not valid under repeated looks
    assert float(np.mean(naive < AA_ERRORS.intervals)) > 2 * CONFIG.alpha


def test_detection_delay_shrinks_with_the_effect() -> None:
    rng = np.random.default_rng(7)
    errors = {r: delay_seconds(error_detection(rng, r)) for r in ERROR_RATIOS}
    latency = {r: delay_seconds(latency_detection(rng, r)) for r in LATENCY_RATIOS}
    medians = [float(np.median(errors[r])) for r in ERROR_RATIOS]
    assert medians == sorted(medians, reverse=True)
    assert float(np.mean(errors[100.0] <= INTERVAL_S)) >= 0.99  # a broken model: the first evaluation
    assert float(np.median(errors[3.0])) <= 300 and float(np.mean(errors[3.0] <= 1800)) >= 0.99
    lat_medians = [float(np.median(latency[r])) for r in LATENCY_RATIOS]
    assert lat_medians == sorted(lat_medians, reverse=True)
    assert float(np.median(latency[1.5])) <= 60
    assert float(np.mean(latency[1.1] <= 600)) >= 0.8


def main() -> None:  # pragma: no cover - prints the figures for the documentation
    rng = np.random.default_rng(20240601)
    errors, naive = first_rejection_of_errors(rng, AA_ERRORS)
    latency = first_rejection_of_latency(rng, AA_LATENCY)
    print(
        f"A/A errors, {AA_ERRORS.reps} runs x 1 h: {np.mean(errors < AA_ERRORS.intervals):.4f} "
        f"(naive z-test each 10 s: {np.mean(naive < AA_ERRORS.intervals):.4f})"
    )
    print(f"A/A latency, {AA_LATENCY.reps} runs x 30 min: {np.mean(latency < AA_LATENCY.intervals):.4f}")
    rng = np.random.default_rng(7)
    for r in ERROR_RATIOS:
        d = delay_seconds(error_detection(rng, r))
        print(
            f"errors 1% -> {r:g}%: median {np.median(d):.0f} s, p90 {np.percentile(d, 90):.0f} s, "
            f"detected within 10 min {np.mean(d <= 600):.3f}, 30 min {np.mean(d <= 1800):.3f}"
        )
    for r in LATENCY_RATIOS:
        d = delay_seconds(latency_detection(rng, r))
        print(
            f"latency x{r:g}: median {np.median(d):.0f} s, p90 {np.percentile(d, 90):.0f} s, "
            f"detected within 10 min {np.mean(d <= 600):.3f}"
        )


if __name__ == "__main__":  # pragma: no cover
    main()
