"""Is green worse than blue? A sequential test during the bakes, valid however often it is looked at.

Beyond SageMaker, whose bakes only watch fixed-threshold alarms. While both fleets take traffic (a
canary or linear step, a rolling batch), every interval of a bake gives, per fleet, the requests and
how many of them were *events*: errors (5XX or ModelError), or *slow* requests, i.e. above the pooled
``latency_quantile`` of both fleets' latencies in that interval (read off the DDSketch buckets).

The test. If green is no worse than blue (the A/A case: the same error probability, the same latency
distribution), then given an interval's request counts ``n_g, n_b`` and its number of events, which of
the events fell on green is hypergeometric: each event is green with probability about
``q = n_g / (n_g + n_b)``. If green's risk is ``rho`` times blue's, an event is green with probability
``rho q / (rho q + 1 - q)``. For each ``rho`` of a grid we multiply, interval after interval, the
likelihood ratio of the binomial at that probability against the binomial at ``q``, and average over
the grid (a mixture sequential probability ratio test). Under A/A each factor has expectation at most
1 (the ratio is convex in the count and the hypergeometric is dominated in convex order by the
binomial, Hoeffding 1963), so the mixture is a nonnegative supermartingale and, by Ville's inequality,
``P(it ever reaches 1/a) <= a``: an always-valid bound, whatever the number of intervals, looks,
traffic shares (which may change between intervals) or base error rate. Errors and latency each get
``alpha / 2``; "green is worse" is either test crossing ``2 / alpha``. ``1 / max(e-value)`` is an
always-valid p-value. The latency test compares tails (the share of slow requests), so it is a rank
test, immune to outliers and unit changes.

An interval must not straddle a traffic shift (feed the counts of each bake separately). Green's
and blue's requests must be routed at random (by share), as the router does. The evidence carries over
from bake to bake within one deployment; intervals where one fleet has no traffic (the final bake)
carry no evidence. ``margin`` allows green a relative risk up to ``margin`` before counting as worse;
the A/A bound holds for any ``margin >= 1``.

Everything is a pure function; the ``*_dense``/``*_increment`` cores are vectorised over leading axes,
so a simulation of thousands of deployments runs them directly.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

# numpy is imported by the functions that compute, not at start: a gateway that never runs a guarded
# deployment does not need it, and it adds about 12 MB to the gateway's RSS (bench/memory.py --imports).
if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    FloatArray = npt.NDArray[np.float64]
DEFAULT_RISK_GRID = (1.25, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0)  # relative risks the mixture bets on


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ComparisonConfig(_Frozen):
    alpha: float = Field(default=0.05, gt=0.0, lt=1.0)  # false-alarm bound of both tests together
    error_margin: float = Field(default=1.0, ge=1.0)  # green's error risk may be this many times blue's
    latency_margin: float = Field(default=1.0, ge=1.0)  # ... and so may its risk of a slow request
    latency_quantile: float = Field(default=0.9, gt=0.0, lt=1.0)  # slow: above this pooled quantile
    risk_grid: tuple[float, ...] = DEFAULT_RISK_GRID  # each > 1, equally weighted

    @property
    def threshold(self) -> float:
        """The e-value at which one of the two tests rejects (Bonferroni: alpha / 2 each)."""
        return 2.0 / self.alpha


class Counts(_Frozen):
    """One interval of one bake: requests and events (errors, or slow requests) on each fleet."""

    green_requests: int = Field(ge=0)
    green_events: int = Field(ge=0)
    blue_requests: int = Field(ge=0)
    blue_events: int = Field(ge=0)


class SequentialTest(_Frozen):
    log_lr: tuple[float, ...]  # accumulated log likelihood ratio for each risk of the grid
    max_log_e: float = 0.0  # the largest log mixture e-value so far (it starts at e = 1)
    intervals: int = 0  # intervals that carried evidence

    @property
    def e_value(self) -> float:
        import numpy as np

        return float(np.exp(self.max_log_e))

    @property
    def p_value(self) -> float:
        """Always-valid p-value: the chance under A/A of ever having seen this much evidence."""
        import numpy as np

        return float(min(1.0, np.exp(-self.max_log_e)))


class ComparisonState(_Frozen):
    errors: SequentialTest
    latency: SequentialTest


class Verdict(_Frozen):
    green_worse: bool
    errors_p_value: float
    latency_p_value: float
    reason: str | None = None  # which test rejected, for a FailureReason or an alarm description


def new_comparison(config: ComparisonConfig) -> ComparisonState:
    empty = SequentialTest(log_lr=(0.0,) * len(config.risk_grid))
    return ComparisonState(errors=empty, latency=empty)


def update(
    state: ComparisonState, config: ComparisonConfig, errors: Counts | None, slow: Counts | None
) -> ComparisonState:
    """Fold one interval's error counts and slow-request counts (either may be None) into the state."""
    return ComparisonState(
        errors=_fold(state.errors, config, config.error_margin, errors),
        latency=_fold(state.latency, config, config.latency_margin, slow),
    )


def verdict(state: ComparisonState, config: ComparisonConfig) -> Verdict:
    import numpy as np

    level = np.log(config.threshold)
    reasons = [
        f"green's {what} is worse than blue's (always-valid p = {test.p_value:.2g})"
        for what, test in (("error rate", state.errors), ("latency", state.latency))
        if test.max_log_e >= level
    ]
    return Verdict(
        green_worse=bool(reasons),
        errors_p_value=state.errors.p_value,
        latency_p_value=state.latency.p_value,
        reason="; ".join(reasons) or None,
    )


def _fold(test: SequentialTest, config: ComparisonConfig, margin: float, counts: Counts | None) -> SequentialTest:
    import numpy as np

    if counts is None:
        return test
    step = log_lr_increment(
        np.float64(counts.green_requests),
        np.float64(counts.green_events),
        np.float64(counts.blue_requests),
        np.float64(counts.blue_events),
        margin,
        config.risk_grid,
    )
    if not np.any(step):
        return test
    log_lr = np.asarray(test.log_lr) + step
    log_e = float(log_mixture(log_lr))
    return SequentialTest(
        log_lr=tuple(float(x) for x in log_lr),
        max_log_e=max(test.max_log_e, log_e),
        intervals=test.intervals + 1,
    )


# --- vectorised cores -------------------------------------------------------------------------------


def log_lr_increment(
    green_requests: npt.ArrayLike,
    green_events: npt.ArrayLike,
    blue_requests: npt.ArrayLike,
    blue_events: npt.ArrayLike,
    margin: float,
    risk_grid: tuple[float, ...],
) -> FloatArray:
    """Log likelihood ratio of one interval for each risk of the grid, shape ``(..., len(grid))``.

    Zero where an interval carries no evidence (no events, or no traffic on one of the fleets).
    """
    import numpy as np

    n_g, x = np.asarray(green_requests, np.float64)[..., None], np.asarray(green_events, np.float64)[..., None]
    n_b, y = np.asarray(blue_requests, np.float64)[..., None], np.asarray(blue_events, np.float64)[..., None]
    informative = (n_g > 0) & (n_b > 0) & (x + y > 0)
    q = np.where(informative, n_g / np.where(informative, n_g + n_b, 1.0), 0.5)
    rho = np.asarray(risk_grid, np.float64)
    p0 = margin * q / (margin * q + 1.0 - q)
    p1 = rho * margin * q / (rho * margin * q + 1.0 - q)
    step = x * np.log(p1 / p0) + y * np.log((1.0 - p1) / (1.0 - p0))
    return np.where(informative, step, 0.0)


def log_mixture(log_lr: npt.ArrayLike) -> FloatArray:
    """Log of the equally weighted mixture of ``exp(log_lr)`` over the last axis."""
    import numpy as np

    a = np.asarray(log_lr, np.float64)
    top = a.max(axis=-1)
    return np.asarray(top + np.log(np.mean(np.exp(a - top[..., None]), axis=-1)), np.float64)


def slow_counts_dense(green: npt.ArrayLike, blue: npt.ArrayLike, quantile: float) -> tuple[FloatArray, ...]:
    """Requests and slow requests per fleet from histograms over the same ascending buckets.

    ``green`` and ``blue`` have shape ``(..., buckets)``. The threshold is the bucket holding the
    pooled ``quantile`` (the first whose cumulative pooled count reaches ``quantile x total``); slow
    means in a higher bucket. Being a function of the pooled histogram only, it keeps the two fleets
    exchangeable under A/A. Returns ``(green_requests, green_slow, blue_requests, blue_slow)``.
    """
    import numpy as np

    g = np.asarray(green, np.float64)
    b = np.asarray(blue, np.float64)
    cum_g, cum_b = np.cumsum(g, axis=-1), np.cumsum(b, axis=-1)
    pooled = cum_g + cum_b
    total = pooled[..., -1:]
    at = np.argmax(pooled >= quantile * total - 1e-9, axis=-1)[..., None]
    n_g, n_b = cum_g[..., -1], cum_b[..., -1]
    slow_g = n_g - np.take_along_axis(cum_g, at, axis=-1)[..., 0]
    slow_b = n_b - np.take_along_axis(cum_b, at, axis=-1)[..., 0]
    return n_g, slow_g, n_b, slow_b


def slow_counts(green_bins: Mapping[int, float], blue_bins: Mapping[int, float], quantile: float) -> Counts:
    """:func:`slow_counts_dense` over two sparse sketches' buckets (DDSketch key -> count).

    Keys must come from the same mapping, so that their order is the order of the latencies (pass
    ``Sketch.pos``; a zero-latency bucket, if any, under a key below every other).
    """
    import numpy as np

    keys = sorted(set(green_bins) | set(blue_bins))
    if not keys:
        return Counts(green_requests=0, green_events=0, blue_requests=0, blue_events=0)
    g = np.array([green_bins.get(k, 0.0) for k in keys])
    b = np.array([blue_bins.get(k, 0.0) for k in keys])
    n_g, slow_g, n_b, slow_b = (round(float(v)) for v in slow_counts_dense(g, b, quantile))
    return Counts(green_requests=n_g, green_events=slow_g, blue_requests=n_b, blue_events=slow_b)
