"""Calibration of the verdict by simulation (no server): equal weights, 5,000 users per variant.

Users arrive in batches of 500 (250 per variant); after each batch the aggregator's step runs (take the
looks that are due) and the verdict is read, as ``/stats`` would. The experiment stops at the first
winner. The figures are printed (``pytest -s``) for the record.
"""

from __future__ import annotations

import numpy as np

from modelgate.experiments.analysis import design_of, summarize
from modelgate.experiments.entities import Experiment, ExperimentParams, Strategy, VariantCounts, VariantSpec
from modelgate.experiments.sequential import Look, Verdict, evaluate, next_looks

USERS_PER_VARIANT = 5_000
BATCH_PER_VARIANT = 250
EXPERIMENTS = 200


def _experiment() -> Experiment:
    params = ExperimentParams(strategy=Strategy.WEIGHTED_SAMPLING, horizon=USERS_PER_VARIANT, looks=10)
    return Experiment(1, "ep", params, (VariantSpec("A", 1.0), VariantSpec("B", 1.0)), created_at=0.0)


def _run(experiment: Experiment, successes: np.ndarray, check_summary: bool) -> Verdict:
    """successes[r, v]: cumulative conversions of variant v after read r."""
    design = design_of(experiment)
    looks: list[Look] = []
    verdict = Verdict("keep_running")
    for r in range(successes.shape[0]):
        n = (r + 1) * BATCH_PER_VARIANT
        counts = {
            name: VariantCounts(n, int(successes[r, v]), float(successes[r, v]))
            for v, name in enumerate(experiment.variant_names)
        }
        looks.extend(next_looks(design, experiment.control, counts, looks))
        rates = {k: c.successes / c.invocations for k, c in counts.items()}
        _, verdict = evaluate(design, experiment.control, ["B"], looks, rates)
        if verdict.kind == "winner":
            break
    if check_summary:  # the full /stats answer agrees with the loop's verdict
        assert summarize(experiment, counts, looks).verdict == verdict
    return verdict


def simulate(rates: tuple[float, float], experiments: int, seed: int) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    reads = USERS_PER_VARIANT // BATCH_PER_VARIANT
    batches = rng.binomial(BATCH_PER_VARIANT, rates, size=(experiments, reads, 2))
    cumulative = batches.cumsum(axis=1)
    experiment = _experiment()
    named = {"A": 0, "B": 0, "none": 0}
    for i in range(experiments):
        verdict = _run(experiment, cumulative[i], check_summary=experiments <= EXPERIMENTS)
        named[verdict.variant if verdict.kind == "winner" and verdict.variant else "none"] += 1
    return {k: v / experiments for k, v in named.items()}


def test_aa_names_a_winner_in_at_most_5_percent() -> None:
    result = simulate((0.30, 0.30), EXPERIMENTS, seed=701)
    print(f"\nA/A over {EXPERIMENTS}: {result}")
    assert result["A"] + result["B"] <= 0.05


def test_better_challenger_is_named_in_80_percent_and_the_control_never() -> None:
    result = simulate((0.30, 0.33), EXPERIMENTS, seed=702)
    print(f"\n0.30 (control) vs 0.33 over {EXPERIMENTS}: {result}")
    assert result["B"] >= 0.80
    assert result["A"] == 0.0


def test_better_control_is_named_in_80_percent_and_the_challenger_never() -> None:
    result = simulate((0.33, 0.30), EXPERIMENTS, seed=703)
    print(f"\n0.33 (control) vs 0.30 over {EXPERIMENTS}: {result}")
    assert result["A"] >= 0.80
    assert result["B"] == 0.0


def test_error_rates_over_many_experiments_match_the_design() -> None:
    """With 2,000 experiments each rate is known to about +-1 point: size close to alpha, power near 84%."""
    alpha = ExperimentParams().alpha
    aa = simulate((0.30, 0.30), 2_000, seed=704)
    ab = simulate((0.30, 0.33), 2_000, seed=705)
    print(f"\nA/A over 2000: {aa}\n0.30 vs 0.33 over 2000: {ab}")
    false_rate = aa["A"] + aa["B"]
    se = (alpha * (1 - alpha) / 2_000) ** 0.5
    assert false_rate <= alpha + 3 * se
    assert false_rate >= alpha - 3 * se  # not wastefully conservative either
    assert ab["B"] >= 0.80
    assert ab["A"] == 0.0
