"""Every error a user can cause: its code, its message, and that it changes nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.e2e.conftest import ServerProcess, deploy_echo, free_port


def _error(call: Any, **kwargs: Any) -> tuple[str, str]:
    with pytest.raises(ClientError) as e:
        call(**kwargs)
    err = e.value.response["Error"]
    return err["Code"], err["Message"]


def _variant(**over: Any) -> dict[str, Any]:
    v = {"VariantName": "v", "ModelName": "m", "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}
    v.update(over)
    return v


def _nothing_created(sm: Any) -> None:
    assert sm.list_endpoints()["Endpoints"] == []
    assert [c["EndpointConfigName"] for c in sm.list_endpoint_configs()["EndpointConfigs"]] == []


def test_create_model_errors(sm: Any, echo_image: str) -> None:
    code, msg = _error(sm.create_model, ModelName="bad_name!", PrimaryContainer={"Image": echo_image})
    assert code == "ValidationException"
    assert msg.startswith("1 validation error detected: Value 'bad_name!' at 'modelName' failed to satisfy")
    assert "regular expression pattern" in msg
    code, msg = _error(sm.create_model, ModelName="x" * 64, PrimaryContainer={"Image": echo_image})
    assert code == "ValidationException" and "length less than or equal to 63" in msg
    # Any well-formed Image is accepted (as SageMaker does); what runs it is decided at CreateEndpoint
    # (tests/e2e/test_images.py).
    code, msg = _error(
        sm.create_model,
        ModelName="m",
        PrimaryContainer={"Image": echo_image, "ModelDataUrl": "ftp://x/y.tar.gz"},
    )
    assert code == "ValidationException" and "modelDataUrl" in msg
    assert sm.list_models()["Models"] == []
    sm.create_model(ModelName="m", PrimaryContainer={"Image": echo_image})
    code, msg = _error(sm.create_model, ModelName="m", PrimaryContainer={"Image": echo_image})
    assert (code, msg) == (
        "ValidationException",
        'Cannot create already existing model "arn:aws:sagemaker:us-east-1:123456789012:model/m".',
    )
    code, msg = _error(sm.describe_model, ModelName="nope")
    assert msg == 'Could not find model "arn:aws:sagemaker:us-east-1:123456789012:model/nope".'
    code, msg = _error(sm.delete_model, ModelName="nope")
    assert code == "ValidationException"


def test_create_endpoint_config_errors(server: ServerProcess, echo_image: str) -> None:
    sm = server.client("sagemaker", validate=False)
    sm.create_model(ModelName="m", PrimaryContainer={"Image": echo_image})
    cases: list[tuple[list[dict[str, Any]], str]] = [
        ([], "length greater than or equal to 1"),
        ([_variant(VariantName=f"v{i}") for i in range(11)], "length less than or equal to 10"),
        ([_variant(), _variant()], "variant names must be unique"),
        ([_variant(InitialVariantWeight=-1.0)], "value greater than or equal to 0"),
        ([_variant(InitialInstanceCount=0)], "value greater than or equal to 1"),
        (
            [_variant(ModelName="missing")],
            'Could not find model "arn:aws:sagemaker:us-east-1:123456789012:model/missing"',
        ),
        ([_variant(InstanceType="ml.huge.nonsense")], "enum value set"),
        ([_variant(VariantName="bad variant")], "regular expression pattern"),
    ]
    for variants, expected in cases:
        code, msg = _error(sm.create_endpoint_config, EndpointConfigName="c", ProductionVariants=variants)
        assert code == "ValidationException", (variants, msg)
        assert expected in msg, (expected, msg)
    _nothing_created(sm)
    sm.create_endpoint_config(EndpointConfigName="c", ProductionVariants=[_variant()])
    code, msg = _error(sm.create_endpoint_config, EndpointConfigName="c", ProductionVariants=[_variant()])
    assert msg == (
        "Cannot create already existing endpoint configuration "
        '"arn:aws:sagemaker:us-east-1:123456789012:endpoint-config/c".'
    )
    code, msg = _error(sm.describe_endpoint_config, EndpointConfigName="nope")
    assert msg.startswith("Could not find endpoint configuration")


def test_create_endpoint_errors(server: ServerProcess, echo_image: str) -> None:
    sm = server.client("sagemaker", validate=False)
    code, msg = _error(sm.create_endpoint, EndpointName="e", EndpointConfigName="nope")
    assert (code, msg) == (
        "ValidationException",
        'Could not find endpoint configuration "arn:aws:sagemaker:us-east-1:123456789012:endpoint-config/nope".',
    )
    code, msg = _error(sm.describe_endpoint, EndpointName="nope")
    assert msg == 'Could not find endpoint "arn:aws:sagemaker:us-east-1:123456789012:endpoint/nope".'
    code, msg = _error(sm.delete_endpoint, EndpointName="nope")
    assert code == "ValidationException"
    code, msg = _error(
        sm.update_endpoint_weights_and_capacities,
        EndpointName="nope",
        DesiredWeightsAndCapacities=[{"VariantName": "v", "DesiredWeight": 1.0}],
    )
    assert msg.startswith("Could not find endpoint")
    deploy_echo(sm, echo_image, "e", [("A", 1.0, 1)])
    code, msg = _error(sm.create_endpoint, EndpointName="e", EndpointConfigName="e-config")
    assert (
        msg
        == 'Cannot create already existing endpoint "arn:aws:sagemaker:us-east-1:123456789012:endpoint/e".'
    )
    for updates, expected in [
        ([{"VariantName": "Z", "DesiredWeight": 1.0}], "The variant(s) Z are not present in endpoint e"),
        ([{"VariantName": "A", "DesiredWeight": -2.0}], "value greater than or equal to 0"),
        (
            [{"VariantName": "A", "DesiredInstanceCount": 0}],
            "DesiredInstanceCount of variant A must be at least 1",
        ),
        (
            [{"VariantName": "A", "DesiredWeight": 1.0}, {"VariantName": "A", "DesiredWeight": 2.0}],
            "more than once",
        ),
        (
            [{"VariantName": "A", "DesiredWeight": 0.0}],
            "At least one variant must keep a DesiredWeight above zero",
        ),
    ]:
        code, msg = _error(
            sm.update_endpoint_weights_and_capacities, EndpointName="e", DesiredWeightsAndCapacities=updates
        )
        assert code == "ValidationException" and expected in msg, (updates, msg)
    d = sm.describe_endpoint(EndpointName="e")
    assert d["EndpointStatus"] == "InService"
    assert d["ProductionVariants"][0]["DesiredWeight"] == 1.0


def _raw(
    server: ServerProcess, body: bytes, target: str | None, path: str = "/"
) -> tuple[int, dict[str, Any], Any]:
    req = urllib.request.Request(server.url + path, data=body, method="POST")
    req.add_header("Content-Type", "application/x-amz-json-1.1")
    if target:
        req.add_header("X-Amz-Target", target)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), json.loads(e.read() or b"{}")


def test_malformed_json_unknown_operation_and_missing_fields(server: ServerProcess) -> None:
    status, _, body = _raw(server, b"{not json", "SageMaker.ListModels")
    assert status == 400 and body["__type"] == "SerializationException"
    status, _, body = _raw(server, b"{}", "SageMaker.CreateTrainingJob")
    assert status == 400 and body["__type"] == "UnknownOperationException"
    assert "CreateTrainingJob is not supported" in body["message"]
    status, _, body = _raw(server, b"{}", "SageMaker.NoSuchOperation")
    assert status == 400 and body["__type"] == "UnknownOperationException"
    status, _, body = _raw(
        server, b'{"EndpointConfigName": "c", "ProductionVariants": []}', "SageMaker.CreateEndpointConfig"
    )
    assert status == 400 and body["__type"] == "ValidationException"
    assert "length greater than or equal to 1" in body["message"]
    status, _, body = _raw(server, b'{"EndpointName": "e"}', "SageMaker.CreateEndpoint")
    assert status == 400 and "Value null at 'endpointConfigName'" in body["message"]
    status, _, body = _raw(server, b'{"ModelName": 5}', "SageMaker.DescribeModel")
    assert status == 400 and "must be a string" in body["message"]


def test_runtime_errors(server_factory: Any, echo_image: str) -> None:
    server = server_factory(MODELGATE_INVOCATION_TIMEOUT_SECONDS="1")
    sm, rt = server.client("sagemaker"), server.client("sagemaker-runtime")
    code, msg = _error(rt.invoke_endpoint, EndpointName="nope", Body=b"x")
    assert (code, msg) == ("ValidationError", "Endpoint nope of account 123456789012 not found.")
    deploy_echo(sm, echo_image, "rt", [("A", 1.0, 1)])
    code, msg = _error(rt.invoke_endpoint, EndpointName="rt", Body=b"x" * (6 * 1024 * 1024 + 1))
    assert code == "ValidationError" and "larger than the limit of 6291456 bytes" in msg
    code, msg = _error(rt.invoke_endpoint, EndpointName="rt", Body=b"x", TargetVariant="Nope")
    assert (code, msg) == ("ValidationError", "The variant Nope is not a production variant of endpoint rt.")
    with pytest.raises(ClientError) as e:
        rt.invoke_endpoint(EndpointName="rt", Body=b"status:500")
    err = e.value.response
    assert err["Error"]["Code"] == "ModelError"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 424
    assert err["OriginalStatusCode"] == 500
    assert err["OriginalMessage"] == "the model refused with status 500"
    assert err["Error"]["Message"].startswith(
        'Received server error (500) from primary with message "the model'
    )
    assert err["LogStreamArn"].endswith("/aws/sagemaker/Endpoints/rt")
    with pytest.raises(ClientError) as e:
        rt.invoke_endpoint(EndpointName="rt", Body=b"status:400")
    assert e.value.response["OriginalStatusCode"] == 400
    assert "Received client error (400)" in e.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as e:
        rt.invoke_endpoint(EndpointName="rt", Body=b"sleep:3")
    assert e.value.response["Error"]["Code"] == "ModelError"
    assert "did not answer within the invocation timeout" in e.value.response["Error"]["Message"]
    # The instance stays usable after a timeout.
    assert rt.invoke_endpoint(EndpointName="rt", Body=b"again")["Body"].read() == b"A|-|again"
    assert sm.describe_endpoint(EndpointName="rt")["EndpointStatus"] == "InService"


def test_non_loopback_bind_is_refused(tmp_path: Any) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "modelgate",
            "serve",
            "--host",
            "0.0.0.0",
            "--port",
            str(free_port()),
            "--data-dir",
            str(tmp_path / "d"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert "not a loopback address; pass --allow-remote" in out.stderr


def test_an_invalid_setting_is_refused_with_its_name(tmp_path: Any) -> None:
    env = {**os.environ, "MODELGATE_PORT": "eighty", "MODELGATE_DATA_DIR": str(tmp_path / "d")}
    out = subprocess.run(
        [sys.executable, "-m", "modelgate", "serve"], capture_output=True, text=True, timeout=60, env=env
    )
    assert out.returncode == 2
    assert "modelgate: 1 validation error for Settings\nport\n  Input should be a valid integer" in out.stderr
    assert "Traceback" not in out.stderr
