"""The endpoint lifecycle through boto3, against a real server process."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError, WaiterError

from tests.e2e.conftest import (
    ServerProcess,
    deploy_echo,
    instance_pids,
    model_tar,
    wait_in_service,
    wait_status,
)


def test_creating_then_in_service_with_arns_and_fields(sm: Any, echo_image: str) -> None:
    arn = sm.create_model(ModelName="m1", PrimaryContainer={"Image": echo_image})["ModelArn"]
    assert arn == "arn:aws:sagemaker:us-east-1:123456789012:model/m1"
    cfg = sm.create_endpoint_config(
        EndpointConfigName="c1",
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": "m1",
                "InitialInstanceCount": 1,
                "InstanceType": "ml.m5.large",
            }
        ],
    )
    assert cfg["EndpointConfigArn"] == "arn:aws:sagemaker:us-east-1:123456789012:endpoint-config/c1"
    ep = sm.create_endpoint(EndpointName="Ep-1", EndpointConfigName="c1")
    assert ep["EndpointArn"] == "arn:aws:sagemaker:us-east-1:123456789012:endpoint/ep-1"
    first = sm.describe_endpoint(EndpointName="Ep-1")
    assert first["EndpointStatus"] == "Creating"
    d = wait_in_service(sm, "Ep-1")
    assert d["EndpointConfigName"] == "c1"
    (v,) = d["ProductionVariants"]
    assert v["VariantName"] == "AllTraffic"
    assert v["CurrentWeight"] == 1.0 and v["DesiredWeight"] == 1.0
    assert v["CurrentInstanceCount"] == 1 and v["DesiredInstanceCount"] == 1
    assert v["DeployedImages"][0]["SpecifiedImage"] == echo_image
    assert d["LastModifiedTime"] >= d["CreationTime"]
    model = sm.describe_model(ModelName="m1")
    assert model["PrimaryContainer"]["Image"] == echo_image
    config = sm.describe_endpoint_config(EndpointConfigName="c1")
    assert config["ProductionVariants"][0]["InitialVariantWeight"] == 1.0


def test_invoke_passes_headers_through(sm: Any, rt: Any, echo_image: str) -> None:
    deploy_echo(sm, echo_image, "hdr", [("A", 1.0, 1)])
    resp = rt.invoke_endpoint(
        EndpointName="hdr",
        Body=b"x,y",
        ContentType="text/csv",
        Accept="application/json",
        CustomAttributes="trace=abc",
        InferenceId="inf-1",
    )
    assert resp["Body"].read() == b"A|-|x,y"
    assert resp["ContentType"] == "text/csv"
    assert resp["CustomAttributes"] == "echo:trace=abc"
    assert resp["InvokedProductionVariant"] == "A"


def test_failed_when_instance_cannot_start(sm: Any, echo_image: str) -> None:
    deploy_echo(sm, echo_image, "bad", [("Broken", 1.0, 1)], env={"ECHO_STARTUP": "fail"}, wait=False)
    with pytest.raises(WaiterError):
        sm.get_waiter("endpoint_in_service").wait(
            EndpointName="bad", WaiterConfig={"Delay": 0.5, "MaxAttempts": 60}
        )
    d = sm.describe_endpoint(EndpointName="bad")
    assert d["EndpointStatus"] == "Failed"
    assert "production variant Broken" in d["FailureReason"]
    assert "the echo model refused to load on purpose" in d["FailureReason"]
    # Only DeleteEndpoint is allowed on a Failed endpoint.
    with pytest.raises(ClientError) as e:
        sm.update_endpoint_weights_and_capacities(
            EndpointName="bad", DesiredWeightsAndCapacities=[{"VariantName": "Broken", "DesiredWeight": 2.0}]
        )
    assert e.value.response["Error"]["Code"] == "ValidationException"
    assert "only DeleteEndpoint is allowed" in e.value.response["Error"]["Message"]
    sm.delete_endpoint(EndpointName="bad")
    sm.get_waiter("endpoint_deleted").wait(EndpointName="bad", WaiterConfig={"Delay": 0.5, "MaxAttempts": 60})


def test_failed_when_not_healthy_within_timeout(server_factory: Any, echo_image: str) -> None:
    server = server_factory(MODELGATE_MAX_STARTUP_HEALTH_TIMEOUT_SECONDS="2")
    sm = server.client("sagemaker")
    deploy_echo(sm, echo_image, "slow", [("V1", 1.0, 1)], env={"ECHO_STARTUP": "hang"}, wait=False)
    d = wait_status(sm, "slow", {"Failed", "InService"}, timeout=30)
    assert d["EndpointStatus"] == "Failed"
    assert "production variant V1" in d["FailureReason"]
    assert "did not pass the ping health check within 2 s" in d["FailureReason"]
    assert instance_pids(server) == {}


@pytest.mark.parametrize(
    ("files", "reason"),
    [
        (None, "does not exist"),
        ("corrupt", "not a valid tar.gz archive"),
        ("escape", "unsafe entry"),
    ],
)
def test_failed_on_bad_model_data(
    sm: Any, echo_image: str, tmp_path: Path, files: str | None, reason: str
) -> None:
    path = tmp_path / "model.tar.gz"
    if files == "corrupt":
        path.write_bytes(b"\x1f\x8b this is not gzip at all")
    elif files == "escape":
        model_tar(path, {"../../escaped.txt": "x"})
    deploy_echo(sm, echo_image, "data", [("V", 1.0, 1)], model_data=f"file://{path}", wait=False)
    d = wait_status(sm, "data", {"Failed", "InService"})
    assert d["EndpointStatus"] == "Failed"
    assert reason in d["FailureReason"]
    assert "production variant V" in d["FailureReason"]
    assert not (tmp_path.parent / "escaped.txt").exists()


def test_update_weights_and_capacities_starts_and_stops_processes(
    server: ServerProcess, sm: Any, rt: Any, echo_image: str
) -> None:
    deploy_echo(sm, echo_image, "scale", [("A", 1.0, 1), ("B", 1.0, 1)])
    assert len(instance_pids(server)) == 2
    sm.update_endpoint_weights_and_capacities(
        EndpointName="scale",
        DesiredWeightsAndCapacities=[{"VariantName": "A", "DesiredInstanceCount": 3, "DesiredWeight": 3.0}],
    )
    d = sm.describe_endpoint(EndpointName="scale")
    assert d["EndpointStatus"] == "Updating"
    a = next(v for v in d["ProductionVariants"] if v["VariantName"] == "A")
    assert a["DesiredInstanceCount"] == 3 and a["DesiredWeight"] == 3.0
    assert a["CurrentWeight"] == 1.0
    d = wait_in_service(sm, "scale")
    a = next(v for v in d["ProductionVariants"] if v["VariantName"] == "A")
    b = next(v for v in d["ProductionVariants"] if v["VariantName"] == "B")
    assert (a["CurrentInstanceCount"], a["CurrentWeight"]) == (3, 3.0)
    assert (b["CurrentInstanceCount"], b["CurrentWeight"]) == (1, 1.0)
    assert len(instance_pids(server)) == 4
    # Updating while updating is refused.
    sm.update_endpoint_weights_and_capacities(
        EndpointName="scale", DesiredWeightsAndCapacities=[{"VariantName": "A", "DesiredInstanceCount": 1}]
    )
    with pytest.raises(ClientError) as e:
        sm.update_endpoint_weights_and_capacities(
            EndpointName="scale", DesiredWeightsAndCapacities=[{"VariantName": "B", "DesiredWeight": 1.0}]
        )
    assert "Cannot update in-progress endpoint" in e.value.response["Error"]["Message"]
    d = wait_in_service(sm, "scale")
    a = next(v for v in d["ProductionVariants"] if v["VariantName"] == "A")
    assert a["CurrentInstanceCount"] == 1 and a["CurrentWeight"] == 3.0
    deadline = time.monotonic() + 10
    while len(instance_pids(server)) != 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(instance_pids(server)) == 2
    for _ in range(20):
        assert rt.invoke_endpoint(EndpointName="scale", Body=b"ok")["Body"].read().endswith(b"|ok")


def test_delete_stops_instances(server: ServerProcess, sm: Any, echo_image: str) -> None:
    deploy_echo(sm, echo_image, "gone", [("A", 1.0, 2)])
    assert len(instance_pids(server)) == 2
    sm.delete_endpoint(EndpointName="gone")
    sm.get_waiter("endpoint_deleted").wait(
        EndpointName="gone", WaiterConfig={"Delay": 0.5, "MaxAttempts": 60}
    )
    assert instance_pids(server) == {}
    with pytest.raises(ClientError) as e:
        sm.describe_endpoint(EndpointName="gone")
    assert e.value.response["Error"]["Code"] == "ValidationException"
    assert e.value.response["Error"]["Message"] == (
        'Could not find endpoint "arn:aws:sagemaker:us-east-1:123456789012:endpoint/gone".'
    )


def test_list_operations_paginate_filter_and_sort(sm: Any, echo_image: str) -> None:
    for i in range(7):
        sm.create_model(ModelName=f"model-{i}", PrimaryContainer={"Image": echo_image})
        time.sleep(0.01)
    sm.create_model(ModelName="other", PrimaryContainer={"Image": echo_image})
    pages = list(sm.get_paginator("list_models").paginate(PaginationConfig={"PageSize": 3}))
    assert [len(p["Models"]) for p in pages] == [3, 3, 2]
    names = [m["ModelName"] for p in pages for m in p["Models"]]
    assert names == ["other"] + [f"model-{i}" for i in range(6, -1, -1)]  # newest first by default
    asc = sm.list_models(SortBy="Name", SortOrder="Ascending", NameContains="model")["Models"]
    assert [m["ModelName"] for m in asc] == [f"model-{i}" for i in range(7)]
    sm.create_endpoint_config(
        EndpointConfigName="cfg-a",
        ProductionVariants=[
            {
                "VariantName": "v",
                "ModelName": "model-0",
                "InitialInstanceCount": 1,
                "InstanceType": "ml.t2.medium",
            }
        ],
    )
    assert [
        c["EndpointConfigName"] for c in sm.list_endpoint_configs(NameContains="cfg")["EndpointConfigs"]
    ] == ["cfg-a"]
    deploy_echo(sm, echo_image, "listed", [("A", 1.0, 1)])
    eps = sm.list_endpoints(StatusEquals="InService", SortBy="Status")["Endpoints"]
    assert [e["EndpointName"] for e in eps] == ["listed"]
    assert sm.list_endpoints(StatusEquals="Failed")["Endpoints"] == []


def test_tags(sm: Any, echo_image: str) -> None:
    arn = sm.create_model(
        ModelName="tagged", PrimaryContainer={"Image": echo_image}, Tags=[{"Key": "team", "Value": "risk"}]
    )["ModelArn"]
    sm.add_tags(ResourceArn=arn, Tags=[{"Key": "stage", "Value": "prod"}, {"Key": "team", "Value": "fraud"}])
    tags = sm.list_tags(ResourceArn=arn)["Tags"]
    assert tags == [{"Key": "team", "Value": "fraud"}, {"Key": "stage", "Value": "prod"}]
    sm.delete_tags(ResourceArn=arn, TagKeys=["team"])
    assert sm.list_tags(ResourceArn=arn)["Tags"] == [{"Key": "stage", "Value": "prod"}]
    sm.add_tags(ResourceArn=arn, Tags=[{"Key": f"k{i}", "Value": "v"} for i in range(49)])
    pages = list(sm.get_paginator("list_tags").paginate(ResourceArn=arn, PaginationConfig={"PageSize": 50}))
    assert sum(len(p["Tags"]) for p in pages) == 50
    with pytest.raises(ClientError) as e:
        sm.add_tags(ResourceArn=arn, Tags=[{"Key": "one-too-many", "Value": "v"}])
    assert e.value.response["Error"]["Code"] == "ResourceLimitExceeded"
    with pytest.raises(ClientError) as e:
        sm.list_tags(ResourceArn="arn:aws:sagemaker:us-east-1:123456789012:model/nope")
    assert e.value.response["Error"]["Code"] == "ValidationException"
