"""D15: instance quotas (policies/capacity.py) and the start limiter (controllers/fleets.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from modelgate.controllers.fleets import Fleet, FleetManager, FleetSpec, InstanceFailure
from modelgate.domain.resources import ContainerDefinition, Model, ProductionVariant, VariantState
from modelgate.policies.capacity import InstanceLimits, over_limit, usage
from modelgate.runtime.images import LaunchSpec
from modelgate.store.db import make_engine
from modelgate.store.repo import Repository
from tests.fakes import FakeClock, FakeInstanceClient, FakeSpawner

LIMITS = InstanceLimits(per_endpoint=5, total=8)
PER_ENDPOINT = (
    "The account-level service limit 'Number of instances per endpoint' is 5 Instances, with current utilization "
    "of {} Instances and a request delta of {} Instances. Set MODELGATE_MAX_INSTANCES_PER_ENDPOINT on the "
    "modelgate server to raise this limit."
)
TOTAL = (
    "The account-level service limit 'Number of instances across all endpoints' is 8 Instances, with current "
    "utilization of {} Instances and a request delta of {} Instances. Set MODELGATE_MAX_INSTANCES on the "
    "modelgate server to raise this limit."
)


@pytest.mark.parametrize(
    ("endpoint_before", "endpoint_after", "account_before", "delta", "expected"),
    [
        (0, 5, 3, 5, None),  # CreateEndpoint at both limits exactly
        (0, 6, 0, 6, PER_ENDPOINT.format(0, 6)),
        (0, 1_000_000, 0, 1_000_000, PER_ENDPOINT.format(0, 1_000_000)),
        (0, 2, 7, 2, TOTAL.format(7, 2)),
        (0, 6, 7, 6, PER_ENDPOINT.format(0, 6)),  # the per-endpoint limit is named first
        (2, 3, 8, 1, TOTAL.format(8, 1)),  # UpdateEndpointWeightsAndCapacities, one more
        (2, 5, 4, 3, None),
        (3, 3, 8, 0, None),  # weights only
        (7, 6, 12, 0, None),  # scaling down under lowered limits is never refused
        (7, 8, 12, 1, PER_ENDPOINT.format(7, 1)),
        (3, 3, 6, 3, TOTAL.format(6, 3)),  # UpdateEndpoint: green (3) runs beside blue (3)
        (3, 3, 5, 3, None),
    ],
)
def test_d15_over_limit(
    endpoint_before: int, endpoint_after: int, account_before: int, delta: int, expected: str | None
) -> None:
    assert over_limit(LIMITS, endpoint_before, endpoint_after, account_before, delta) == expected


def _v(desired: int, current: int) -> VariantState:
    return VariantState(
        variant_name="v", desired_weight=1.0, desired_instance_count=desired, current_instance_count=current
    )


@pytest.mark.parametrize(
    ("variants", "green", "expected"),
    [
        ([], [], 0),
        ([_v(2, 0)], [], 2),  # creating
        ([_v(2, 2), _v(3, 3)], [], 5),
        ([_v(1, 4)], [], 4),  # scaling down: the old instances still run
        ([_v(4, 1)], [], 4),
        ([_v(2, 2)], [_v(3, 0)], 5),  # a deployment in progress: blue and green
    ],
)
def test_d15_usage(variants: list[VariantState], green: list[VariantState], expected: int) -> None:
    assert usage(variants, green) == expected


def _manager(tmp_path: Path, limit: int, client: FakeInstanceClient) -> tuple[FleetManager, FakeSpawner]:
    spawner = FakeSpawner(client)
    fm = FleetManager(
        Repository(make_engine(tmp_path / "data")),
        spawner,
        client,  # type: ignore[arg-type]
        FakeClock(),  # type: ignore[arg-type]
        tmp_path / "data" / "logs",
        drain_timeout=0.0,
        allow_pip_install=False,
        on_change=lambda _name: None,
        max_concurrent_starts=limit,
    )
    return fm, spawner


def _fleet(tmp_path: Path) -> Fleet:
    pv = ProductionVariant(variant_name="v", model_name="m", initial_instance_count=1, instance_type="ml.m5.large")
    model = Model(name="m", arn="arn:m", containers=(ContainerDefinition(image="x"),), creation_time=0.0)
    spec = FleetSpec("ep", pv, model, LaunchSpec("command", ("/bin/true", "serve")), tmp_path, 5.0)
    return Fleet(id="ep/v/c", spec=spec, desired=0)


def test_d15_instance_starts_are_throttled(tmp_path: Path) -> None:
    async def run() -> tuple[list[int], int]:
        fm, spawner = _manager(tmp_path, 3, FakeInstanceClient(startup=0.05))
        fleet = _fleet(tmp_path)
        await fm.scale(fleet, 10)
        healthy = fleet.healthy_count
        await fm.stop_all(fleet, drain=False)
        return spawner.pending_at_spawn, healthy

    pending, healthy = asyncio.run(run())
    assert healthy == 10 and len(pending) == 10
    assert max(pending) == 3  # in waves: never more than the limit spawned and not yet healthy


def test_d15_a_failed_start_stops_the_waves_behind_it(tmp_path: Path) -> None:
    class OneFails(FakeInstanceClient):
        async def ping(self, base_url: str) -> bool:
            await asyncio.sleep(self.startup)
            if not self.healthy:
                self.healthy.add("failed")
                return False
            return await super().ping(base_url)

    async def run() -> tuple[int, str, int]:
        fm, spawner = _manager(tmp_path, 2, OneFails(startup=0.02))
        fleet = _fleet(tmp_path)
        fleet.spec = FleetSpec(
            fleet.spec.endpoint, fleet.spec.variant, fleet.spec.model, fleet.spec.launch, tmp_path, 0.0
        )  # the first ping decides
        with pytest.raises(InstanceFailure) as e:
            await fm.scale(fleet, 40)
        return len(spawner.spawned), e.value.reason, len(fleet.instances)

    spawned, reason, left = asyncio.run(run())
    assert spawned <= 6  # the first wave and the few started while the failed one was being stopped, not 40
    assert "did not pass the ping health check within 0 s" in reason
    assert left == 0
