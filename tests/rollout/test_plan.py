"""Step planning: table tests of steps, sizes and rounding, and properties over all valid inputs."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelgate.errors import ValidationException
from modelgate.rollout.config import DeploymentConfig, validate_deployment
from modelgate.rollout.plan import (
    BlueGreenPlan,
    RollingPlan,
    instances_for_share,
    plan_deployment,
    plan_rollback,
)
from modelgate.rollout.wire import parse_deployment_config


def blue_green(kind: str, size: tuple[str, int] | None = None, wait: int = 60, term: int = 30) -> DeploymentConfig:
    routing: dict[str, Any] = {"Type": kind, "WaitIntervalInSeconds": wait}
    if size is not None:
        routing["CanarySize" if kind == "CANARY" else "LinearStepSize"] = {"Type": size[0], "Value": size[1]}
    return parse_deployment_config(
        {"BlueGreenUpdatePolicy": {"TrafficRoutingConfiguration": routing, "TerminationWaitInSeconds": term}}
    )


def rolling(batch: tuple[str, int], rollback: tuple[str, int] | None = None, wait: int = 60) -> DeploymentConfig:
    policy: dict[str, Any] = {
        "MaximumBatchSize": {"Type": batch[0], "Value": batch[1]},
        "WaitIntervalInSeconds": wait,
    }
    if rollback is not None:
        policy["RollbackMaximumBatchSize"] = {"Type": rollback[0], "Value": rollback[1]}
    return parse_deployment_config({"RollingUpdatePolicy": policy})


IC, PCT = "INSTANCE_COUNT", "CAPACITY_PERCENT"


def bg_plan(config: DeploymentConfig | None, blue: dict[str, int], green: dict[str, int]) -> BlueGreenPlan:
    plan = plan_deployment(config, blue, green)
    assert isinstance(plan, BlueGreenPlan)
    return plan


# (case, config, instances, expected green instances with traffic after each step)
BLUE_GREEN_STEPS: list[tuple[str, DeploymentConfig | None, int, list[int]]] = [
    ("no config", None, 3, [3]),
    ("all at once", blue_green("ALL_AT_ONCE"), 4, [4]),
    ("canary 1 of 4", blue_green("CANARY", (IC, 1)), 4, [1, 4]),
    ("canary 2 of 4", blue_green("CANARY", (IC, 2)), 4, [2, 4]),
    ("canary 30% of 10", blue_green("CANARY", (PCT, 30)), 10, [3, 10]),
    ("canary 25% of 3 rounds up", blue_green("CANARY", (PCT, 25)), 3, [1, 3]),
    ("canary 10% of 4 rounds up to 1", blue_green("CANARY", (PCT, 10)), 4, [1, 4]),
    ("canary 1% of 2 is at least 1", blue_green("CANARY", (PCT, 1)), 2, [1, 2]),
    ("canary 50% of 3 capped at 1", blue_green("CANARY", (PCT, 50)), 3, [1, 3]),
    ("canary 45% of 5 capped at 2", blue_green("CANARY", (PCT, 45)), 5, [2, 5]),
    ("canary 50% of 2", blue_green("CANARY", (PCT, 50)), 2, [1, 2]),
    ("linear 33% of 3 (seed)", blue_green("LINEAR", (PCT, 33)), 3, [1, 2, 3]),
    ("linear 40% of 5 remainder last", blue_green("LINEAR", (PCT, 40)), 5, [2, 4, 5]),
    ("linear 50% of 3 capped at 1", blue_green("LINEAR", (PCT, 50)), 3, [1, 2, 3]),
    ("linear 10% of 10", blue_green("LINEAR", (PCT, 10)), 10, list(range(1, 11))),
    ("linear 10% of 15 rounds up", blue_green("LINEAR", (PCT, 10)), 15, [2, 4, 6, 8, 10, 12, 14, 15]),
    ("linear 25% of 8", blue_green("LINEAR", (PCT, 25)), 8, [2, 4, 6, 8]),
    ("linear 1 of 2", blue_green("LINEAR", (IC, 1)), 2, [1, 2]),
    ("linear 3 of 7", blue_green("LINEAR", (IC, 3)), 7, [3, 6, 7]),
]


@pytest.mark.parametrize(("case", "config", "n", "expected"), BLUE_GREEN_STEPS, ids=[c[0] for c in BLUE_GREEN_STEPS])
def test_blue_green_steps(case: str, config: DeploymentConfig | None, n: int, expected: list[int]) -> None:
    variants = {"AllTraffic": n}
    validate_deployment(config, variants, variants)
    plan = plan_deployment(config, variants, variants)
    assert isinstance(plan, BlueGreenPlan)
    assert [s.green_instances["AllTraffic"] for s in plan.steps] == expected
    assert [s.green_share["AllTraffic"] for s in plan.steps] == [k / n for k in expected]
    assert [s.final for s in plan.steps] == [False] * (len(expected) - 1) + [True]


def test_bakes_wait_interval_then_termination_wait() -> None:
    plan = bg_plan(blue_green("LINEAR", (PCT, 25), wait=180, term=120), {"v": 8}, {"v": 8})
    assert [s.bake_seconds for s in plan.steps] == [180, 180, 180, 120]
    assert plan.total_wait_seconds == 660
    canary = bg_plan(blue_green("CANARY", (IC, 1), wait=300, term=0), {"v": 4}, {"v": 4})
    assert [s.bake_seconds for s in canary.steps] == [300, 0]
    once = bg_plan(blue_green("ALL_AT_ONCE", wait=999, term=45), {"v": 4}, {"v": 4})
    assert [s.bake_seconds for s in once.steps] == [45]


def test_canary_share_is_25_percent_for_one_of_four() -> None:
    plan = plan_deployment(blue_green("CANARY", (IC, 1)), {"v": 4}, {"v": 4})
    assert isinstance(plan, BlueGreenPlan)
    assert plan.steps[0].green_share == {"v": 0.25}


def test_variants_of_different_sizes_step_together() -> None:
    variants = {"small": 2, "large": 10}
    config = blue_green("LINEAR", (IC, 1))
    validate_deployment(config, variants, variants)
    plan = bg_plan(config, variants, variants)
    assert [s.green_instances for s in plan.steps][:3] == [
        {"small": 1, "large": 1},
        {"small": 2, "large": 2},
        {"small": 2, "large": 3},
    ]
    assert len(plan.steps) == 10
    percent = bg_plan(blue_green("CANARY", (PCT, 20)), variants, variants)
    assert percent.steps[0].green_instances == {"small": 1, "large": 2}


def test_unguarded_update_may_change_variants() -> None:
    plan = bg_plan(None, {"old": 2}, {"a": 1, "b": 3})
    assert isinstance(plan, BlueGreenPlan)
    assert plan.steps[0].green_share == {"a": 1.0, "b": 1.0}
    assert (plan.blue, plan.green) == ({"old": 2}, {"a": 1, "b": 3})


def test_green_fleet_size_differs_from_blue() -> None:
    plan = bg_plan(blue_green("CANARY", (IC, 1)), {"v": 1}, {"v": 3})
    assert [s.green_share["v"] for s in plan.steps] == [1 / 3, 1.0]


def test_exclusion_fallback_is_all_at_once_without_final_bake() -> None:
    for config in (blue_green("LINEAR", (PCT, 20), term=600), rolling((IC, 1))):
        plan = plan_deployment(config, {"v": 5}, {"v": 5}, all_at_once_fallback=True)
        assert isinstance(plan, BlueGreenPlan)
        assert [(s.green_share, s.bake_seconds) for s in plan.steps] == [({"v": 1.0}, 0)]


# (case, config, old, new, expected [(green, blue)] per batch, rollback batch instances)
ROLLING: list[tuple[str, DeploymentConfig, int, int, list[tuple[int, int]], int | None]] = [
    ("2 of 5", rolling((IC, 2)), 5, 5, [(2, 3), (4, 1), (5, 0)], None),
    ("1 of 2", rolling((IC, 1)), 2, 2, [(1, 1), (2, 0)], None),
    ("20% of 10", rolling((PCT, 20)), 10, 10, [(2, 8), (4, 6), (6, 4), (8, 2), (10, 0)], None),
    ("5% of 10 rounds up to 1", rolling((PCT, 5)), 10, 10, [(i, 10 - i) for i in range(1, 11)], None),
    ("50% of 3 capped at 1", rolling((PCT, 50)), 3, 3, [(1, 2), (2, 1), (3, 0)], None),
    ("growing 4 to 6", rolling((IC, 2)), 4, 6, [(2, 3), (4, 2), (6, 0)], None),
    ("shrinking 6 to 4", rolling((IC, 2)), 6, 4, [(2, 3), (4, 0)], None),
    ("rollback 1 instance", rolling((IC, 1), (IC, 1)), 4, 4, [(1, 3), (2, 2), (3, 1), (4, 0)], 1),
    ("rollback 50% of 5 rounds up", rolling((IC, 2), (PCT, 50)), 5, 5, [(2, 3), (4, 1), (5, 0)], 3),
    ("rollback 100% is all at once", rolling((IC, 2), (PCT, 100)), 4, 4, [(2, 2), (4, 0)], None),
    ("rollback of the whole fleet", rolling((IC, 2), (IC, 4)), 4, 4, [(2, 2), (4, 0)], None),
]


@pytest.mark.parametrize(("case", "config", "old", "new", "expected", "rollback"), ROLLING, ids=[c[0] for c in ROLLING])
def test_rolling_batches(
    case: str,
    config: DeploymentConfig,
    old: int,
    new: int,
    expected: list[tuple[int, int]],
    rollback: int | None,
) -> None:
    validate_deployment(config, {"v": old}, {"v": new})
    plan = plan_deployment(config, {"v": old}, {"v": new})
    assert isinstance(plan, RollingPlan)
    assert [(b.green_instances, b.blue_instances) for b in plan.batches] == expected
    assert [b.green_share for b in plan.batches] == [g / new for g, _ in expected]
    assert all(b.bake_seconds == 60 for b in plan.batches)
    assert plan.rollback_batch_instances == rollback


# (case, rollback batch, old=new=n, blue running, green running, share, expected [(blue, share, green)])
ROLLBACK: list[tuple[str, tuple[str, int] | None, int, int, int, float, list[tuple[int, float, int]]]] = [
    ("all at once", None, 4, 2, 2, 0.5, [(4, 0.0, 0)]),
    ("one by one from half", (IC, 1), 4, 2, 2, 0.5, [(3, 0.25, 1), (4, 0.0, 0)]),
    ("one by one from the first batch", (IC, 1), 4, 3, 1, 0.25, [(4, 0.0, 0)]),
    ("two at a time from none left", (IC, 2), 5, 0, 5, 1.0, [(2, 0.6, 3), (4, 0.2, 1), (5, 0.0, 0)]),
    ("share lower than blue's gap", (IC, 1), 4, 1, 3, 0.5, [(2, 0.5, 2), (3, 0.25, 1), (4, 0.0, 0)]),
    ("green lost on restart", (IC, 1), 4, 2, 0, 0.5, [(3, 0.0, 0), (4, 0.0, 0)]),
    ("some green lost", (IC, 1), 4, 1, 1, 0.75, [(2, 0.25, 1), (3, 0.25, 1), (4, 0.0, 0)]),
    ("before any traffic", (IC, 1), 4, 4, 1, 0.0, [(4, 0.0, 0)]),
]


@pytest.mark.parametrize(
    ("case", "batch", "n", "blue", "green", "share", "expected"), ROLLBACK, ids=[c[0] for c in ROLLBACK]
)
def test_rolling_rollback_batches(
    case: str,
    batch: tuple[str, int] | None,
    n: int,
    blue: int,
    green: int,
    share: float,
    expected: list[tuple[int, float, int]],
) -> None:
    plan = plan_deployment(rolling((IC, 1), batch), {"v": n}, {"v": n})
    assert isinstance(plan, RollingPlan)
    got = [(b.blue_instances, b.green_share, b.green_instances) for b in plan_rollback(plan, blue, green, share)]
    assert got == expected


@pytest.mark.parametrize(
    ("share", "total", "expected"),
    [(0.0, 4, 0), (0.25, 4, 1), (0.26, 4, 2), (1 / 3, 3, 1), (2 / 3, 3, 2), (1.0, 7, 7), (0.7, 10, 7)],
)
def test_instances_for_share(share: float, total: int, expected: int) -> None:
    assert instances_for_share(share, total) == expected


# --- properties over every valid input --------------------------------------------------------------

sizes = st.tuples(st.sampled_from([IC, PCT]), st.integers(1, 60))


@given(
    kind=st.sampled_from(["ALL_AT_ONCE", "CANARY", "LINEAR"]),
    size=sizes,
    counts=st.lists(st.integers(1, 40), min_size=1, max_size=3),
)
def test_blue_green_plan_properties(kind: str, size: tuple[str, int], counts: list[int]) -> None:
    config = blue_green(kind, None if kind == "ALL_AT_ONCE" else size, wait=10, term=5)
    variants = {f"v{i}": n for i, n in enumerate(counts)}
    try:
        validate_deployment(config, variants, variants)
    except ValidationException:
        return
    plan = plan_deployment(config, variants, variants)
    assert isinstance(plan, BlueGreenPlan)
    assert plan.steps[-1].green_share == dict.fromkeys(variants, 1.0)
    for v, n in variants.items():
        counts_v = [s.green_instances[v] for s in plan.steps]
        assert counts_v == sorted(counts_v) and counts_v[-1] == n and counts_v[0] >= 1
        assert all(s.green_share[v] == s.green_instances[v] / n for s in plan.steps)
        if kind != "ALL_AT_ONCE":
            assert 2 * counts_v[0] <= n  # the first step never exceeds half the variant
        if kind == "LINEAR":
            steps = [b - a for a, b in zip([0, *counts_v], counts_v, strict=False) if b > a]
            assert all(x == steps[0] for x in steps[:-1]) and steps[-1] <= steps[0]
            assert 10 * steps[0] >= n  # at least 10% per step
    assert [s.bake_seconds for s in plan.steps] == [10] * (len(plan.steps) - 1) + [5]


@given(
    batch=sizes,
    rollback=st.none() | sizes,
    old=st.integers(2, 30),
    new=st.integers(2, 30),
    progress=st.floats(0, 1),
    lost=st.integers(0, 30),
)
def test_rolling_plan_and_rollback_properties(
    batch: tuple[str, int], rollback: tuple[str, int] | None, old: int, new: int, progress: float, lost: int
) -> None:
    config = rolling(batch, rollback)
    try:
        validate_deployment(config, {"v": old}, {"v": new})
    except ValidationException:
        return
    plan = plan_deployment(config, {"v": old}, {"v": new})
    assert isinstance(plan, RollingPlan)
    greens = [b.green_instances for b in plan.batches]
    blues = [b.blue_instances for b in plan.batches]
    assert greens == sorted(greens) and greens[-1] == new and blues == sorted(blues, reverse=True) and blues[-1] == 0
    for b in plan.batches:  # old capacity left always covers the share of traffic left on it
        assert b.blue_instances >= old * (1 - b.green_share) - 1e-9
    # roll back from any batch, with some instances lost
    at = plan.batches[min(len(plan.batches) - 1, int(progress * len(plan.batches)))]
    blue_now, green_now = max(0, at.blue_instances - lost), max(0, at.green_instances - lost)
    back = plan_rollback(plan, blue_now, green_now, at.green_share)
    assert (back[-1].blue_instances, back[-1].green_share, back[-1].green_instances) == (old, 0.0, 0)
    step = plan.rollback_batch_instances or old
    previous_blue, previous_share, previous_green = blue_now, at.green_share, green_now
    for r in back:
        assert previous_blue < r.blue_instances <= previous_blue + step or r.blue_instances == old
        assert r.green_share <= previous_share and r.green_instances <= previous_green
        # blue can carry what it gets back, unless green lost the capacity for it first
        assert r.blue_instances >= old * (1 - r.green_share) - 1e-9 or r.green_share >= green_now / new - 1e-9
        assert r.green_instances >= new * r.green_share - 1e-9  # and so can green what it keeps
        previous_blue, previous_share, previous_green = r.blue_instances, r.green_share, r.green_instances
