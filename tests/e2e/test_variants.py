"""Seed 001: production variants and traffic splitting, read from the invoked-variant header."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.e2e.conftest import deploy_echo, wait_in_service


def _spread(rt: Any, name: str, n: int, **kwargs: Any) -> Counter[str]:
    def one(_i: int) -> str:
        return str(rt.invoke_endpoint(EndpointName=name, Body=b"x", **kwargs)["InvokedProductionVariant"])

    with ThreadPoolExecutor(8) as pool:
        return Counter(pool.map(one, range(n)))


@pytest.mark.slow
def test_seed_001_ten_percent_to_the_new_variant(sm: Any, rt: Any, echo_image: str) -> None:
    deploy_echo(sm, echo_image, "existing-endpoint", [("current-model", 1.0, 1), ("new-model", 1.0, 1)])
    sm.update_endpoint_weights_and_capacities(
        EndpointName="existing-endpoint",
        DesiredWeightsAndCapacities=[
            {"VariantName": "current-model", "DesiredWeight": 0.9},
            {"VariantName": "new-model", "DesiredWeight": 0.1},
        ],
    )
    d = wait_in_service(sm, "existing-endpoint")
    assert {v["VariantName"]: v["CurrentWeight"] for v in d["ProductionVariants"]} == {
        "current-model": 0.9,
        "new-model": 0.1,
    }
    counts = _spread(rt, "existing-endpoint", 5000)
    share = counts["new-model"] / 5000
    print(f"seed 001: new-model share {share:.4f} of 5000 ({dict(counts)})")
    assert 0.085 <= share <= 0.115, counts
    targeted = _spread(rt, "existing-endpoint", 300, TargetVariant="new-model")
    assert targeted == Counter({"new-model": 300})


def test_zero_weight_variant_gets_nothing_but_can_be_targeted(sm: Any, rt: Any, echo_image: str) -> None:
    deploy_echo(sm, echo_image, "zw", [("A", 1.0, 1), ("B", 0.0, 1)])
    assert _spread(rt, "zw", 200) == Counter({"A": 200})
    assert _spread(rt, "zw", 20, TargetVariant="B") == Counter({"B": 20})


def test_random_routing_and_least_outstanding_spread_over_instances(
    sm: Any, rt: Any, echo_image: str
) -> None:
    sm.create_model(ModelName="m", PrimaryContainer={"Image": echo_image})
    sm.create_endpoint_config(
        EndpointConfigName="c",
        ProductionVariants=[
            {
                "VariantName": "R",
                "ModelName": "m",
                "InitialInstanceCount": 2,
                "InstanceType": "ml.m5.large",
                "RoutingConfig": {"RoutingStrategy": "RANDOM"},
            },
        ],
    )
    sm.create_endpoint(EndpointName="rr", EndpointConfigName="c")
    d = wait_in_service(sm, "rr")
    assert d["ProductionVariants"][0]["RoutingConfig"] == {"RoutingStrategy": "RANDOM"}
    assert _spread(rt, "rr", 50) == Counter({"R": 50})
