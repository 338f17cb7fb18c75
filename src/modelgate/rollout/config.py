"""UpdateEndpoint's DeploymentConfig, typed, and its validation against the variants it deploys.

The names and limits follow botocore's ``DeploymentConfig`` shape of the 2017-07-24 SageMaker model;
``tests/rollout/test_config.py`` checks them against it. The wire shape is in ``rollout.wire``.

Two layers of checks, each raising :class:`~modelgate.errors.ValidationException`:

- :func:`modelgate.rollout.wire.parse_deployment_config`: the schema (required members, types,
  enums, ranges) in AWS's wording, plus what the config alone can tell (one policy only;
  ``CanarySize`` with ``CANARY`` only, ``LinearStepSize`` with ``LINEAR`` only; every alarm named);
- :func:`validate_deployment`: what depends on the variants, i.e. SageMaker's limits and exclusions
  (canary at most 50% of a variant's instances, linear steps 10-50%, rolling batches 5-50%, the same
  variant names for a guarded update, no rolling update of a multi-variant endpoint, a maximum
  execution time larger than the sum of the waits).

Capacity is counted in instances of the *new* (green) variant. A ``CAPACITY_PERCENT`` size becomes
``ceil(Value% x instances)``, at least 1, and never more than the limit the API documents for that
size (50% for canary, linear and rolling batches; 100% for the rollback batch). AWS rounds fleet
percentages up elsewhere (CodeDeploy's ``FLEET_PERCENT``), and SageMaker's one published conversion
("33% of 3 = 1 instance") fits it.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import NoReturn

from pydantic import BaseModel, ConfigDict, Field

from modelgate.errors import ValidationException

# Limits, as in botocore's model (checked by a test) or as the shape documentation states them.
WAIT_INTERVAL_RANGE = (0, 3600)  # WaitIntervalInSeconds
TERMINATION_WAIT_RANGE = (0, 3600)  # TerminationWaitInSeconds
MAX_EXECUTION_RANGE = (600, 28800)  # MaximumExecutionTimeoutInSeconds
ALARM_COUNT_RANGE = (1, 10)  # AutoRollbackConfiguration.Alarms
ALARM_NAME_LENGTH = (1, 255)  # Alarm.AlarmName
CAPACITY_VALUE_MIN = 1  # CapacitySize.Value
CANARY_PERCENT_MAX = 50  # "less than or equal to 50% of the variant's total instance count"
LINEAR_PERCENT_RANGE = (10, 50)  # "10-50% of the variant's total instance count"
ROLLING_PERCENT_RANGE = (5, 50)  # "between 5% to 50% of the variant's total instance count"
ROLLBACK_PERCENT_MAX = 100  # 100% (or absent) means a blue/green rollback of the whole capacity
# Not published: SageMaker's default when MaximumExecutionTimeoutInSeconds is omitted. modelgate uses
# the largest value the API accepts, so an omitted timeout never cuts a deployment short.
DEFAULT_MAX_EXECUTION_SECONDS = MAX_EXECUTION_RANGE[1]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CapacitySizeType(enum.StrEnum):
    INSTANCE_COUNT = "INSTANCE_COUNT"  # Value is a number of instances
    CAPACITY_PERCENT = "CAPACITY_PERCENT"  # Value is a percentage of the variant's instance count


class TrafficRoutingType(enum.StrEnum):
    ALL_AT_ONCE = "ALL_AT_ONCE"  # one shift of all traffic, then the final bake
    CANARY = "CANARY"  # a canary share, a bake, then the rest, then the final bake
    LINEAR = "LINEAR"  # equal steps with a bake after each but the last, then the final bake


class CapacitySize(_Frozen):
    type: CapacitySizeType
    value: int = Field(ge=CAPACITY_VALUE_MIN)

    def describe(self) -> str:
        unit = "%" if self.type is CapacitySizeType.CAPACITY_PERCENT else " instance(s)"
        return f"{self.value}{unit}"


class TrafficRoutingConfig(_Frozen):
    type: TrafficRoutingType
    wait_interval_in_seconds: int
    canary_size: CapacitySize | None = None
    linear_step_size: CapacitySize | None = None


class BlueGreenUpdatePolicy(_Frozen):
    traffic_routing_configuration: TrafficRoutingConfig
    termination_wait_in_seconds: int | None = None  # None: omitted on the wire (means 0)
    maximum_execution_timeout_in_seconds: int | None = None  # None: omitted on the wire

    @property
    def termination_wait_s(self) -> int:
        return self.termination_wait_in_seconds or 0

    @property
    def max_execution_s(self) -> int:
        return self.maximum_execution_timeout_in_seconds or DEFAULT_MAX_EXECUTION_SECONDS


class RollingUpdatePolicy(_Frozen):
    maximum_batch_size: CapacitySize
    wait_interval_in_seconds: int
    maximum_execution_timeout_in_seconds: int | None = None
    rollback_maximum_batch_size: CapacitySize | None = None  # None: the whole old fleet at once

    @property
    def max_execution_s(self) -> int:
        return self.maximum_execution_timeout_in_seconds or DEFAULT_MAX_EXECUTION_SECONDS


class AutoRollbackConfig(_Frozen):
    alarms: tuple[str, ...] = ()  # CloudWatch alarm names; any of them in ALARM during a bake rolls back


class DeploymentConfig(_Frozen):
    blue_green_update_policy: BlueGreenUpdatePolicy | None = None
    rolling_update_policy: RollingUpdatePolicy | None = None
    auto_rollback_configuration: AutoRollbackConfig | None = None

    @property
    def alarms(self) -> tuple[str, ...]:
        return self.auto_rollback_configuration.alarms if self.auto_rollback_configuration else ()

    def blue_green(self) -> BlueGreenUpdatePolicy:
        """The blue/green policy in force: the given one, or all at once with no waits when neither
        policy is given (SageMaker's behaviour for an update without a policy)."""
        if self.blue_green_update_policy is not None:
            return self.blue_green_update_policy
        return ALL_AT_ONCE_NO_WAIT


ALL_AT_ONCE_NO_WAIT = BlueGreenUpdatePolicy(
    traffic_routing_configuration=TrafficRoutingConfig(type=TrafficRoutingType.ALL_AT_ONCE, wait_interval_in_seconds=0)
)


def size_in_instances(size: CapacitySize, total: int, max_percent: int) -> int:
    """Instances a capacity size stands for in a variant of ``total`` instances.

    ``CAPACITY_PERCENT`` rounds up, is at least 1, and is capped at ``max_percent`` of ``total`` rounded
    down (but at least 1), so that a valid percentage never turns into a step larger than its limit
    (50% of 3 instances is 1 instance, not 2). ``INSTANCE_COUNT`` is taken as given, capped at ``total``.
    """
    if total <= 0:
        return 0
    if size.type is CapacitySizeType.INSTANCE_COUNT:
        return min(size.value, total)
    wanted = -(-size.value * total // 100)  # ceil without floats
    cap = max(1, max_percent * total // 100)
    return max(1, min(wanted, cap, total))


def raise_validation(errors: list[str]) -> NoReturn:
    """Raise one ValidationException that lists ``errors`` the way AWS does (at most 10 shown)."""
    n = len(errors)
    raise ValidationException(f"{n} validation error{'s' if n != 1 else ''} detected: " + "; ".join(errors[:10]))


# ---------------------------------------------------------------------------------------------------
# Validation against the variants
# ---------------------------------------------------------------------------------------------------


def validate_deployment(
    config: DeploymentConfig | None, old_variants: Mapping[str, int], new_variants: Mapping[str, int]
) -> None:
    """Check an update against SageMaker's limits and exclusions; raise ValidationException listing all.

    ``old_variants`` and ``new_variants`` map each production variant name of the current and of the
    new endpoint config to its instance count. ``config`` is None for an update without a
    DeploymentConfig (blue/green all at once, which may change the variant names).
    """
    problems: list[str] = []
    if not new_variants:
        problems.append("The new endpoint config has no production variants.")
    for name, count in new_variants.items():
        if count < 1:
            problems.append(f"Variant '{name}' of the new endpoint config has {count} instances; it needs at least 1.")
    if config is not None and set(old_variants) != set(new_variants):
        problems.append(
            "A deployment with a DeploymentConfig must keep the production variant names of the current "
            f"endpoint config: current [{', '.join(sorted(old_variants))}], "
            f"new [{', '.join(sorted(new_variants))}]."
        )
    if config is not None and not problems:
        if config.rolling_update_policy is not None:
            _check_rolling(config.rolling_update_policy, old_variants, new_variants, problems)
        else:
            _check_blue_green(config.blue_green(), new_variants, problems)
    if problems:
        raise_validation(problems)


def _check_share(
    what: str, size: CapacitySize, low: int, high: int, variants: Mapping[str, int], problems: list[str]
) -> bool:
    """Check that ``size`` is ``low``-``high`` percent of every variant's instances; True when it is."""
    limit = f"{low}-{high}%" if low else f"at most {high}%"
    before = len(problems)
    if size.type is CapacitySizeType.CAPACITY_PERCENT and not low <= size.value <= high:
        problems.append(f"{what} of {size.describe()} is out of range: it must be {limit} of the variant's instances.")
    for name, count in sorted(variants.items()):
        if count < 2:
            problems.append(
                f"{what} needs at least 2 instances in variant '{name}' (one step may take at most "
                f"{high}% of them); it has {count}."
            )
        elif size.type is CapacitySizeType.INSTANCE_COUNT and not low * count <= 100 * size.value <= high * count:
            share = 100 * size.value / count
            problems.append(
                f"{what} of {size.describe()} is {share:.0f}% of the {count} instances of variant '{name}'; "
                f"it must be {limit} of the variant's instances."
            )
    return len(problems) == before


def _check_timeout(timeout: int, given: int | None, waits: list[tuple[int, str]], problems: list[str]) -> None:
    total = sum(seconds for seconds, _ in waits)
    if timeout <= total:
        parts = " + ".join(label for seconds, label in waits if seconds) or "0"
        shown = f"{timeout}" if given is not None else f"{timeout}, the default when it is omitted,"
        problems.append(
            f"MaximumExecutionTimeoutInSeconds ({shown}) must be larger than the total waiting time of the "
            f"deployment: {total} seconds ({parts})."
        )


def _check_blue_green(policy: BlueGreenUpdatePolicy, variants: Mapping[str, int], problems: list[str]) -> None:
    routing = policy.traffic_routing_configuration
    wait = routing.wait_interval_in_seconds
    bakes = 0
    if routing.type is TrafficRoutingType.CANARY and routing.canary_size is not None:
        if not _check_share("CanarySize", routing.canary_size, 0, CANARY_PERCENT_MAX, variants, problems):
            return
        bakes = 1
    elif routing.type is TrafficRoutingType.LINEAR and routing.linear_step_size is not None:
        size = routing.linear_step_size
        if not _check_share("LinearStepSize", size, *LINEAR_PERCENT_RANGE, variants, problems):
            return
        steps = max(-(-n // size_in_instances(size, n, LINEAR_PERCENT_RANGE[1])) for n in variants.values())
        bakes = steps - 1  # the last step is followed by the final bake only
    waits = [
        (bakes * wait, f"{bakes} x WaitIntervalInSeconds {wait}"),
        (policy.termination_wait_s, f"TerminationWaitInSeconds {policy.termination_wait_s}"),
    ]
    _check_timeout(policy.max_execution_s, policy.maximum_execution_timeout_in_seconds, waits, problems)


def _check_rolling(
    policy: RollingUpdatePolicy,
    old_variants: Mapping[str, int],
    new_variants: Mapping[str, int],
    problems: list[str],
) -> None:
    if len(new_variants) != 1 or len(old_variants) != 1:
        problems.append(
            "RollingUpdatePolicy is not available for endpoints with more than one production variant; "
            "use a BlueGreenUpdatePolicy."
        )
        return
    rollback = policy.rollback_maximum_batch_size
    if (
        rollback is not None
        and rollback.type is CapacitySizeType.CAPACITY_PERCENT
        and rollback.value > ROLLBACK_PERCENT_MAX
    ):
        problems.append(f"RollbackMaximumBatchSize of {rollback.describe()} is more than 100% of the old fleet.")
    size = policy.maximum_batch_size
    if not _check_share("MaximumBatchSize", size, *ROLLING_PERCENT_RANGE, new_variants, problems):
        return
    (count,) = new_variants.values()
    batches = -(-count // size_in_instances(size, count, ROLLING_PERCENT_RANGE[1]))
    wait = policy.wait_interval_in_seconds
    waits = [(batches * wait, f"{batches} batches x WaitIntervalInSeconds {wait}")]
    _check_timeout(policy.max_execution_s, policy.maximum_execution_timeout_in_seconds, waits, problems)
