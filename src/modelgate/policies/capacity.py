"""Instance quotas: how many instances an endpoint and the whole server (the "account") may run. Pure.

Every instance is a process on this machine, so the quotas are what keep one API call from starting a
thousand of them. SageMaker answers a CreateEndpoint over an instance quota with ``ResourceLimitExceeded``
and "The account-level service limit '<quota>' is N Instances, with current utilization of U Instances
and a request delta of D Instances."; the same shape here, with the setting that raises the limit in
place of AWS's Service Quotas.

What counts (see docs/architecture.md, "Instance quotas"): per variant, the larger of the desired and
the current count (a variant scaling down still runs its old instances); plus, while an UpdateEndpoint
is in progress, every instance of the new fleet, since blue and green run side by side (SageMaker also
needs quota for both fleets of a blue/green update). An endpoint that failed runs nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from modelgate.domain.resources import VariantState

PER_ENDPOINT_SETTING = "MODELGATE_MAX_INSTANCES_PER_ENDPOINT"
TOTAL_SETTING = "MODELGATE_MAX_INSTANCES"


@dataclass(frozen=True)
class InstanceLimits:
    per_endpoint: int
    total: int


def usage(variants: Iterable[VariantState], green: Iterable[VariantState] = ()) -> int:
    """Instances an endpoint may be running: max(desired, current) per variant, plus the new fleet."""
    return sum(max(v.desired_instance_count, v.current_instance_count) for v in variants) + sum(
        v.desired_instance_count for v in green
    )


def _message(quota: str, limit: int, current: int, delta: int, setting: str) -> str:
    return (
        f"The account-level service limit '{quota}' is {limit} Instances, with current utilization of {current} "
        f"Instances and a request delta of {delta} Instances. Set {setting} on the modelgate server to raise "
        "this limit."
    )


def over_limit(
    limits: InstanceLimits, endpoint_before: int, endpoint_after: int, account_before: int, account_delta: int
) -> str | None:
    """The ResourceLimitExceeded message when a request takes an endpoint from ``endpoint_before`` to
    ``endpoint_after`` instances (what it will run once done) and the server's total by ``account_delta``;
    None when it fits. A request that does not grow a count is never refused by that count's limit (a
    limit lowered under what already runs does not block scaling down)."""
    growth = endpoint_after - endpoint_before
    if growth > 0 and endpoint_after > limits.per_endpoint:
        return _message(
            "Number of instances per endpoint", limits.per_endpoint, endpoint_before, growth, PER_ENDPOINT_SETTING
        )
    if account_delta > 0 and account_before + account_delta > limits.total:
        return _message(
            "Number of instances across all endpoints", limits.total, account_before, account_delta, TOTAL_SETTING
        )
    return None
