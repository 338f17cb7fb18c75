"""D15 (fault-and-attack review): instance quotas answer ResourceLimitExceeded and store nothing; instance
starts are throttled, so a large fleet starts in waves."""

from __future__ import annotations

from typing import Any

import psutil
import pytest
from botocore.exceptions import ClientError

from tests.e2e.conftest import deploy_echo, instance_pids, wait_in_service

PER_ENDPOINT = (
    "The account-level service limit 'Number of instances per endpoint' is 3 Instances, with current utilization "
    "of {} Instances and a request delta of {} Instances. Set MODELGATE_MAX_INSTANCES_PER_ENDPOINT on the "
    "modelgate server to raise this limit."
)
TOTAL = (
    "The account-level service limit 'Number of instances across all endpoints' is 4 Instances, with current "
    "utilization of {} Instances and a request delta of {} Instances. Set MODELGATE_MAX_INSTANCES on the "
    "modelgate server to raise this limit."
)


def _refused(call: Any, **kwargs: Any) -> str:
    with pytest.raises(ClientError) as e:
        call(**kwargs)
    assert e.value.response["Error"]["Code"] == "ResourceLimitExceeded"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    return str(e.value.response["Error"]["Message"])


def _config(sm: Any, name: str, model: str, count: int) -> None:
    sm.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[
            {"VariantName": "A", "ModelName": model, "InitialInstanceCount": count, "InstanceType": "ml.m5.large"}
        ],
    )


def _state(sm: Any) -> list[tuple[str, str, int, float, str]]:
    out = []
    for e in sorted(sm.list_endpoints()["Endpoints"], key=lambda e: e["EndpointName"]):
        d = sm.describe_endpoint(EndpointName=e["EndpointName"])
        v = d["ProductionVariants"][0]
        out.append((d["EndpointName"], d["EndpointStatus"], v["DesiredInstanceCount"], v["DesiredWeight"],
                    d["EndpointConfigName"]))  # fmt: skip
    return out


def test_d15_instance_quotas_answer_resource_limit_exceeded(server_factory: Any, echo_image: str) -> None:
    server = server_factory(MODELGATE_MAX_INSTANCES_PER_ENDPOINT="3", MODELGATE_MAX_INSTANCES="4")
    sm = server.client("sagemaker")
    sm.create_model(ModelName="m", PrimaryContainer={"Image": echo_image})
    _config(sm, "huge", "m", 1_000_000)  # a config is only a description, as in SageMaker
    assert _refused(sm.create_endpoint, EndpointName="huge", EndpointConfigName="huge") == PER_ENDPOINT.format(
        0, 1_000_000
    )
    _config(sm, "four", "m", 4)
    assert _refused(sm.create_endpoint, EndpointName="four", EndpointConfigName="four") == PER_ENDPOINT.format(0, 4)
    assert sm.list_endpoints()["Endpoints"] == [] and instance_pids(server) == {}

    deploy_echo(sm, echo_image, "a", [("A", 1.0, 2)])
    deploy_echo(sm, echo_image, "b", [("A", 1.0, 2)])
    _config(sm, "one", "m", 1)
    assert _refused(sm.create_endpoint, EndpointName="c", EndpointConfigName="one") == TOTAL.format(4, 1)
    before = _state(sm)
    assert before == [("a", "InService", 2, 1.0, "a-config"), ("b", "InService", 2, 1.0, "b-config")]

    one_more = [{"VariantName": "A", "DesiredInstanceCount": 3}]
    message = _refused(
        sm.update_endpoint_weights_and_capacities, EndpointName="a", DesiredWeightsAndCapacities=one_more
    )
    assert message == TOTAL.format(4, 1)
    two_more = [{"VariantName": "A", "DesiredInstanceCount": 4}]
    message = _refused(
        sm.update_endpoint_weights_and_capacities, EndpointName="a", DesiredWeightsAndCapacities=two_more
    )
    assert message == PER_ENDPOINT.format(2, 2)
    _config(sm, "two", "m", 2)  # green runs beside blue during the update: 4 + 2 > 4
    assert _refused(sm.update_endpoint, EndpointName="a", EndpointConfigName="two") == TOTAL.format(4, 2)
    assert _state(sm) == before and len(instance_pids(server)) == 4  # nothing stored, nothing started

    # Weights alone, and scaling down, are never refused; freed instances can be used again.
    sm.update_endpoint_weights_and_capacities(
        EndpointName="a", DesiredWeightsAndCapacities=[{"VariantName": "A", "DesiredWeight": 2.0}]
    )
    wait_in_service(sm, "a")
    sm.update_endpoint_weights_and_capacities(
        EndpointName="b", DesiredWeightsAndCapacities=[{"VariantName": "A", "DesiredInstanceCount": 1}]
    )
    wait_in_service(sm, "b")
    sm.update_endpoint_weights_and_capacities(EndpointName="a", DesiredWeightsAndCapacities=one_more)
    d = wait_in_service(sm, "a")
    assert d["ProductionVariants"][0]["CurrentInstanceCount"] == 3
    assert len(instance_pids(server)) == 4


def test_d15_instance_starts_are_throttled(server_factory: Any, echo_image: str) -> None:
    server = server_factory(MODELGATE_MAX_CONCURRENT_INSTANCE_STARTS="2")
    sm = server.client("sagemaker")
    # Each instance takes 1 s to answer /ping: with 2 starts at a time, 6 instances start in 3 waves.
    deploy_echo(sm, echo_image, "wide", [("A", 1.0, 6)], env={"ECHO_LISTEN_DELAY": "1"})
    created = sorted(psutil.Process(pid).create_time() for pid in instance_pids(server).values())
    assert len(created) == 6
    for t in created:
        assert sum(1 for u in created if t <= u < t + 0.8) <= 2, created
    assert created[-1] - created[0] >= 1.6, created
