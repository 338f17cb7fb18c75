"""The steps of a deployment, planned from its config and the instance counts of blue and green. Pure.

Blue/green (``plan_blue_green``): the whole green fleet is provisioned first; each step then turns on
traffic on more green capacity and is followed by a bake. The share of a variant's traffic on green
is the share of its green instances that carry traffic (a canary of 1 instance of 4 takes 25%).

- ALL_AT_ONCE: one step to 100%, then the final bake of ``TerminationWaitInSeconds``.
- CANARY: the canary (``CanarySize``), a bake of ``WaitIntervalInSeconds``, then 100% and the final bake.
- LINEAR: steps of ``LinearStepSize`` instances; a bake of ``WaitIntervalInSeconds`` after each step
  but the last, whose step takes the remainder (40% of 5 instances: 2, 2, 1) and which is followed by
  the final bake only. With several variants of different sizes, the number of steps is the largest
  any variant needs; a variant that reached 100% stays there.

Rolling (``plan_rolling``, one variant): each batch provisions ``MaximumBatchSize`` new instances (the
last batch takes the remainder), moves the matching share of traffic to them, bakes for
``WaitIntervalInSeconds`` and terminates old instances so that the old fleet keeps at least the
capacity its share of traffic needs: ``ceil(old x (1 - share))``. Its rollback (``plan_rollback``)
goes the other way in batches of ``RollbackMaximumBatchSize`` old instances, or in one batch when
that is absent or 100%.

Percentages become instances as :func:`modelgate.rollout.config.size_in_instances` says: rounded up,
at least one, never above the 50% limit of the size.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict

from modelgate.rollout.config import (
    CANARY_PERCENT_MAX,
    LINEAR_PERCENT_RANGE,
    ROLLBACK_PERCENT_MAX,
    ROLLING_PERCENT_RANGE,
    BlueGreenUpdatePolicy,
    CapacitySizeType,
    DeploymentConfig,
    RollingUpdatePolicy,
    TrafficRoutingType,
    size_in_instances,
)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TrafficStep(_Frozen):
    """One blue/green traffic shift and the bake after it."""

    green_instances: dict[str, int]  # green instances per variant that carry traffic after the shift
    green_share: dict[str, float]  # share of each variant's traffic on green: green_instances / green size
    bake_seconds: int  # WaitIntervalInSeconds, or TerminationWaitInSeconds after the last step
    final: bool  # the shift to full capacity, followed by the final bake


class BlueGreenPlan(_Frozen):
    kind: Literal["blue_green"] = "blue_green"
    routing: TrafficRoutingType
    blue: dict[str, int]  # instances per variant of the current (old) fleet
    green: dict[str, int]  # instances per variant of the new fleet, all provisioned before any shift
    steps: tuple[TrafficStep, ...]  # never empty; the last one is final
    max_execution_seconds: int

    @property
    def total_wait_seconds(self) -> int:
        return sum(step.bake_seconds for step in self.steps)


class RollingBatch(_Frozen):
    """One batch of a rolling update: provision, shift, bake, terminate old capacity."""

    green_instances: int  # new instances running once this batch is provisioned (cumulative)
    green_share: float  # share of traffic on the new instances after the shift
    bake_seconds: int  # WaitIntervalInSeconds
    blue_instances: int  # old instances left once this batch's old capacity is terminated


class RollbackBatch(_Frozen):
    """One batch of a rolling rollback: provision old capacity, shift back, terminate new capacity."""

    blue_instances: int  # old instances running once this batch is provisioned (cumulative)
    green_share: float  # share of traffic left on the new instances after the shift back
    green_instances: int  # new instances left once this batch's new capacity is terminated


class RollingPlan(_Frozen):
    kind: Literal["rolling"] = "rolling"
    variant: str
    blue: int  # old instance count
    green: int  # new instance count
    batches: tuple[RollingBatch, ...]  # never empty; the last leaves no old instance
    rollback_batch_instances: int | None  # old instances per rollback batch; None: all at once
    max_execution_seconds: int

    @property
    def total_wait_seconds(self) -> int:
        return sum(batch.bake_seconds for batch in self.batches)


Plan = BlueGreenPlan | RollingPlan


def plan_deployment(
    config: DeploymentConfig | None,
    blue: Mapping[str, int],
    green: Mapping[str, int],
    *,
    all_at_once_fallback: bool = False,
) -> Plan:
    """The plan of a validated update (see :func:`modelgate.rollout.config.validate_deployment`).

    ``all_at_once_fallback`` is SageMaker's silent exclusion (Marketplace containers, Inf1 instances):
    blue/green all at once with no final bake, whatever the policy, within the same time limit.
    """
    config = config or DeploymentConfig()
    if all_at_once_fallback:
        policy = config.rolling_update_policy or config.blue_green()
        return _all_at_once(blue, green, bake_seconds=0, max_execution_seconds=policy.max_execution_s)
    if config.rolling_update_policy is not None:
        return plan_rolling(config.rolling_update_policy, blue, green)
    return plan_blue_green(config.blue_green(), blue, green)


def plan_blue_green(policy: BlueGreenUpdatePolicy, blue: Mapping[str, int], green: Mapping[str, int]) -> BlueGreenPlan:
    routing = policy.traffic_routing_configuration
    final_bake = policy.termination_wait_s
    if routing.type is TrafficRoutingType.ALL_AT_ONCE:
        return _all_at_once(blue, green, final_bake, policy.max_execution_s)
    if routing.type is TrafficRoutingType.CANARY:
        assert routing.canary_size is not None, "a validated CANARY config has a CanarySize"
        per_step = {v: size_in_instances(routing.canary_size, n, CANARY_PERCENT_MAX) for v, n in green.items()}
        step_count = 2
    else:
        assert routing.linear_step_size is not None, "a validated LINEAR config has a LinearStepSize"
        size = routing.linear_step_size
        per_step = {v: size_in_instances(size, n, LINEAR_PERCENT_RANGE[1]) for v, n in green.items()}
        step_count = max(-(-green[v] // k) for v, k in per_step.items())
    steps: list[TrafficStep] = []
    for i in range(1, step_count + 1):
        final = i == step_count
        active = {v: n if final else min(n, i * per_step[v]) for v, n in green.items()}
        steps.append(
            TrafficStep(
                green_instances=active,
                green_share={v: active[v] / n for v, n in green.items()},
                bake_seconds=final_bake if final else routing.wait_interval_in_seconds,
                final=final,
            )
        )
    return BlueGreenPlan(
        routing=routing.type,
        blue=dict(blue),
        green=dict(green),
        steps=tuple(steps),
        max_execution_seconds=policy.max_execution_s,
    )


def _all_at_once(
    blue: Mapping[str, int], green: Mapping[str, int], bake_seconds: int, max_execution_seconds: int
) -> BlueGreenPlan:
    step = TrafficStep(
        green_instances=dict(green),
        green_share=dict.fromkeys(green, 1.0),
        bake_seconds=bake_seconds,
        final=True,
    )
    return BlueGreenPlan(
        routing=TrafficRoutingType.ALL_AT_ONCE,
        blue=dict(blue),
        green=dict(green),
        steps=(step,),
        max_execution_seconds=max_execution_seconds,
    )


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def plan_rolling(policy: RollingUpdatePolicy, blue: Mapping[str, int], green: Mapping[str, int]) -> RollingPlan:
    """The batches of a validated rolling update of a single-variant endpoint."""
    ((variant, new),) = green.items()
    old = blue.get(variant, 0)
    step = size_in_instances(policy.maximum_batch_size, new, ROLLING_PERCENT_RANGE[1])
    batches: list[RollingBatch] = []
    for i in range(1, _ceil_div(new, step) + 1):
        provisioned = min(new, i * step)
        batches.append(
            RollingBatch(
                green_instances=provisioned,
                green_share=provisioned / new,
                bake_seconds=policy.wait_interval_in_seconds,
                blue_instances=_ceil_div(old * (new - provisioned), new),
            )
        )
    rollback = policy.rollback_maximum_batch_size
    rollback_batch: int | None = None
    if rollback is not None and not (
        rollback.type is CapacitySizeType.CAPACITY_PERCENT and rollback.value >= ROLLBACK_PERCENT_MAX
    ):
        rollback_batch = size_in_instances(rollback, old, ROLLBACK_PERCENT_MAX)
        if rollback_batch >= old:
            rollback_batch = None
    return RollingPlan(
        variant=variant,
        blue=old,
        green=new,
        batches=tuple(batches),
        rollback_batch_instances=rollback_batch,
        max_execution_seconds=policy.max_execution_s,
    )


def plan_rollback(
    plan: RollingPlan, blue_running: int, green_running: int, green_share: float
) -> tuple[RollbackBatch, ...]:
    """The batches that take a rolling update back to the old fleet, from where it stands.

    ``blue_running`` and ``green_running`` are the old and new instances that exist now (observed,
    not planned: a restart may have lost some), ``green_share`` the share of traffic now on green.
    Each batch brings the old fleet up by one rollback batch, moves the matching share of traffic
    back, and terminates the new instances that share no longer needs; green never grows, the share on
    green never rises nor exceeds what the green instances left can carry (none left: no share), and the
    last batch restores the whole old fleet with no traffic on green.
    """
    old, new = plan.blue, plan.green
    step = plan.rollback_batch_instances or old
    blue_now = min(max(blue_running, 0), old)
    batches: list[RollbackBatch] = []
    while True:
        blue_now = min(old, blue_now + step)
        share = 0.0 if blue_now >= old else min(green_share, (old - blue_now) / old, green_running / new)
        batches.append(
            RollbackBatch(
                blue_instances=blue_now,
                green_share=share,
                green_instances=min(green_running, instances_for_share(share, new)),
            )
        )
        if blue_now >= old:
            return tuple(batches)


def instances_for_share(share: float, total: int) -> int:
    """The fewest of ``total`` instances that can carry ``share`` of the traffic (0 for no traffic)."""
    return max(0, min(total, math.ceil(share * total - 1e-9)))
