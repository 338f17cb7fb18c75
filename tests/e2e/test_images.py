"""D1 (fault-and-attack review): running local commands is the operator's decision, not an API caller's.

The operator's image map (MODELGATE_IMAGE_MAP) and MODELGATE_ALLOW_COMMAND_IMAGES decide what runs an
Image; a model's Environment cannot change how a program starts; an instance's environment holds none of
the server's; and no instance log text but the container's MODELGATE-FAILURE line reaches an API answer.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from modelgate.demo_models import build_churn_artifacts, make_churn_data
from tests.e2e.conftest import ServerProcess, deploy_echo, free_port, instance_pids, wait_in_service, wait_status

ECR_IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/my-model:latest"
PREFIX = "The primary container for production variant {} did not pass the ping health check: "


def _post(server: ServerProcess, target: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """A raw JSON 1.1 request, as in the review's repro (no boto3, no client-side validation)."""
    req = urllib.request.Request(
        server.url + "/", data=json.dumps(body).encode(), method="POST", headers={"X-Amz-Target": target}
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def _endpoint(sm: Any, name: str, image: str, env: dict[str, str] | None = None, url: str | None = None) -> None:
    container: dict[str, Any] = {"Image": image, "Environment": env or {}}
    if url is not None:
        container["ModelDataUrl"] = url
    sm.create_model(ModelName=name, PrimaryContainer=container)
    sm.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[
            {"VariantName": "A", "ModelName": name, "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}
        ],
    )
    sm.create_endpoint(EndpointName=name, EndpointConfigName=name)


def test_d1_bash_env_repro_is_refused_and_nothing_runs(server_factory: Any, tmp_path: Path) -> None:
    # Even on a server that allows command: images (the tests' default), the review's repro runs nothing.
    server = server_factory()
    sm = server.client("sagemaker")
    pwned = tmp_path / "PWNED"
    payload = f'$(id > {pwned}; echo "MODELGATE-FAILURE: exfil user=$(id -un)" >&2)'
    status, body = _post(
        server,
        "SageMaker.CreateModel",
        {"ModelName": "rce", "PrimaryContainer": {"Image": "command:/bin/bash", "Environment": {"BASH_ENV": payload}}},
    )
    assert (status, body["__type"]) == (400, "ValidationException")
    assert body["message"] == (
        "1 validation error detected: Value at 'primaryContainer.environment' failed to satisfy constraint: "
        "Environment variable BASH_ENV is not allowed: it changes how a program, the shell or the dynamic loader "
        "starts."
    )
    status, _ = _post(
        server,
        "SageMaker.CreateEndpointConfig",
        {
            "EndpointConfigName": "rce",
            "ProductionVariants": [
                {"VariantName": "v", "ModelName": "rce", "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}
            ],
        },
    )
    assert status == 400  # the model does not exist
    status, _ = _post(server, "SageMaker.CreateEndpoint", {"EndpointName": "rce", "EndpointConfigName": "rce"})
    assert status == 400
    # The same through boto3, and the other ways to run code at a program's start.
    for key, value in [
        ("BASH_ENV", payload),
        ("ENV", payload),
        ("LD_PRELOAD", str(tmp_path / "evil.so")),
        ("PYTHONSTARTUP", str(tmp_path / "evil.py")),
        ("NODE_OPTIONS", f"--require {tmp_path}/evil.js"),
        ("PERL5OPT", "-Mevil"),
        ("SAGEMAKER_BIND_TO_PORT", "22"),
        ("MODELGATE_ALLOW_PIP_INSTALL", "true"),
    ]:
        with pytest.raises(ClientError) as e:
            sm.create_model(
                ModelName="rce", PrimaryContainer={"Image": "command:/bin/bash", "Environment": {key: value}}
            )
        assert e.value.response["Error"]["Code"] == "ValidationException"
        assert f"Environment variable {key} is not allowed" in e.value.response["Error"]["Message"]
    assert sm.list_models()["Models"] == [] and sm.list_endpoints()["Endpoints"] == []
    time.sleep(1.0)
    assert not pwned.exists()
    assert instance_pids(server) == {}


def test_d1_command_images_are_off_unless_the_operator_allows_them(server_factory: Any, echo_image: str) -> None:
    server = server_factory(MODELGATE_ALLOW_COMMAND_IMAGES="false")  # the default of a real server
    sm = server.client("sagemaker")
    _endpoint(sm, "byo", echo_image)  # CreateModel accepts any well-formed image, as SageMaker does
    d = wait_status(sm, "byo", {"Failed", "InService"})
    assert d["EndpointStatus"] == "Failed"
    assert d["FailureReason"] == PREFIX.format("A") + (
        f"Image '{echo_image}' cannot be run: command: images are off on this server; the operator can allow them "
        "with MODELGATE_ALLOW_COMMAND_IMAGES=true, or map the image to an allowed executable or a built-in runtime "
        "in MODELGATE_IMAGE_MAP."
    )
    assert instance_pids(server) == {}
    # The review's image without its Environment: accepted as a model, never run.
    _endpoint(sm, "bash", "command:/bin/bash")
    d = wait_status(sm, "bash", {"Failed", "InService"})
    assert d["EndpointStatus"] == "Failed" and "MODELGATE_ALLOW_COMMAND_IMAGES=true" in d["FailureReason"]


def test_d1_an_unmapped_image_fails_at_create_endpoint_then_serves_once_mapped(
    server_factory: Any, echo_image: str, tmp_path: Path
) -> None:
    server = server_factory()
    sm = server.client("sagemaker")
    sm.create_model(ModelName="mine", PrimaryContainer={"Image": ECR_IMAGE})
    assert sm.describe_model(ModelName="mine")["PrimaryContainer"]["Image"] == ECR_IMAGE
    sm.create_endpoint_config(
        EndpointConfigName="mine",
        ProductionVariants=[
            {"VariantName": "A", "ModelName": "mine", "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}
        ],
    )
    sm.create_endpoint(EndpointName="unmapped", EndpointConfigName="mine")
    d = wait_status(sm, "unmapped", {"Failed", "InService"})
    assert d["EndpointStatus"] == "Failed"
    assert d["FailureReason"] == PREFIX.format("A") + (
        f"Image '{ECR_IMAGE}' is not mapped to anything modelgate can run: the operator can map it to a built-in "
        "runtime (xgboost, sklearn) or to an allowed local executable in MODELGATE_IMAGE_MAP."
    )
    server.stop()

    # The operator maps it: to the echo executable (with command: images off), and another image to XGBoost.
    rules = [
        {"image": "123456789012.dkr.ecr.*.amazonaws.com/my-model:*", "command": echo_image.removeprefix("command:")},
        {"image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/churn", "runtime": "xgboost"},
    ]
    server = server_factory(MODELGATE_ALLOW_COMMAND_IMAGES="false", MODELGATE_IMAGE_MAP=json.dumps(rules))
    sm, rt = server.client("sagemaker"), server.client("sagemaker-runtime")
    sm.create_endpoint(EndpointName="mapped", EndpointConfigName="mine")
    wait_in_service(sm, "mapped")
    assert rt.invoke_endpoint(EndpointName="mapped", Body=b"x")["Body"].read() == b"echo|-|x"
    # UpdateEndpoint to a model whose image nothing maps: the new fleet fails, the update rolls back.
    sm.create_model(ModelName="other", PrimaryContainer={"Image": "registry.example/other:1"})
    sm.create_endpoint_config(
        EndpointConfigName="other",
        ProductionVariants=[
            {"VariantName": "A", "ModelName": "other", "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}
        ],
    )
    sm.update_endpoint(EndpointName="mapped", EndpointConfigName="other")
    d = wait_status(sm, "mapped", {"InService", "Failed"})
    deadline = time.monotonic() + 30
    while d["EndpointStatus"] != "InService" or "FailureReason" not in d:
        assert time.monotonic() < deadline, d
        time.sleep(0.2)
        d = sm.describe_endpoint(EndpointName="mapped")
    assert d["EndpointConfigName"] == "mine"
    assert d["FailureReason"] == "Deployment rolled back: the new fleet failed: " + PREFIX.format("A") + (
        "Image 'registry.example/other:1' is not mapped to anything modelgate can run: the operator can map it to a "
        "built-in runtime (xgboost, sklearn) or to an allowed local executable in MODELGATE_IMAGE_MAP."
    )
    assert rt.invoke_endpoint(EndpointName="mapped", Body=b"y")["Body"].read() == b"echo|-|y"
    artifacts = build_churn_artifacts(tmp_path / "art", seed=3)
    _endpoint(sm, "churn", rules[1]["image"], url=f"file://{artifacts['churn-v1']}")
    wait_in_service(sm, "churn")
    x, _ = make_churn_data(2, seed=1)
    body = "\n".join(",".join(f"{v:.6g}" for v in row) for row in x)
    out = rt.invoke_endpoint(EndpointName="churn", ContentType="text/csv", Body=body)["Body"].read().decode()
    assert len(out.split()) == 2 and all(0.0 <= float(p) <= 1.0 for p in out.split())


def test_d1_a_bad_image_map_stops_the_server_at_start(tmp_path: Path) -> None:
    rules = json.dumps([{"image": "x", "command": "/no/such/executable"}])
    for value, message in [
        (rules, "MODELGATE_IMAGE_MAP (inline JSON), rule 1: command /no/such/executable cannot be used"),
        (str(tmp_path / "missing.json"), f"MODELGATE_IMAGE_MAP file {tmp_path / 'missing.json'} cannot be read"),
    ]:
        env = {
            **os.environ,
            "MODELGATE_DATA_DIR": str(tmp_path / "d"),
            "MODELGATE_PORT": str(free_port()),
            "MODELGATE_IMAGE_MAP": value,
        }
        out = subprocess.run(
            [sys.executable, "-m", "modelgate", "serve"], capture_output=True, text=True, timeout=60, env=env
        )
        assert out.returncode == 2, out.stderr
        assert f"modelgate: {message}" in out.stderr
        assert "Traceback" not in out.stderr


def test_d1_instances_get_none_of_the_servers_environment(server_factory: Any, echo_image: str) -> None:
    server = server_factory(
        AWS_SECRET_ACCESS_KEY="server-secret-key",
        AWS_ACCESS_KEY_ID="AKIASERVER",
        AWS_SESSION_TOKEN="server-token",
        MODELGATE_X="server-setting",
        GITHUB_TOKEN="ghp_server",
        HTTPS_PROXY="http://proxy.example:3128",
        MODELGATE_INSTANCE_ENV_PASSTHROUGH='["HTTPS_PROXY"]',
    )
    sm, rt = server.client("sagemaker"), server.client("sagemaker-runtime")
    deploy_echo(sm, echo_image, "env", [("A", 1.0, 1)], env={"GREETING": "hello"})
    env = json.loads(rt.invoke_endpoint(EndpointName="env", Body=b"environ")["Body"].read())
    for secret in ("AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "AWS_SESSION_TOKEN", "MODELGATE_X", "GITHUB_TOKEN"):
        assert secret not in env
    assert not {k for k in env if k.startswith("MODELGATE_")} - {
        "MODELGATE_INSTANCE_ID", "MODELGATE_MODEL_DIR", "MODELGATE_ALLOW_PIP_INSTALL"
    }  # fmt: skip
    assert "server-secret-key" not in json.dumps(env) and "PYTHONPATH" not in env
    assert env["HTTPS_PROXY"] == "http://proxy.example:3128"  # the operator passes it through
    assert env["GREETING"] == "hello" and env["ECHO_TAG"] == "A"
    assert (env["LANG"], env["LC_ALL"], env["TZ"]) == ("C.UTF-8", "C.UTF-8", "UTC")
    (iid,) = instance_pids(server)
    assert env["MODELGATE_INSTANCE_ID"] == iid
    home = Path(env["HOME"])
    assert home == server.data_dir / "homes" / iid and home.is_dir()
    assert re.fullmatch(r"\d+", env["SAGEMAKER_BIND_TO_PORT"]) and env["SM_MODEL_DIR"]
    sm.delete_endpoint(EndpointName="env")
    sm.get_waiter("endpoint_deleted").wait(EndpointName="env", WaiterConfig={"Delay": 0.5, "MaxAttempts": 60})
    assert not home.exists()  # an instance's HOME goes with it


def test_d1_failure_reason_never_carries_other_log_text(server_factory: Any, echo_image: str) -> None:
    server = server_factory(MODELGATE_MAX_STARTUP_HEALTH_TIMEOUT_SECONDS="2")
    sm = server.client("sagemaker")
    secret = "root:x:0:0:SECRET-LOG-LINE:/root:/bin/bash"
    # No MODELGATE-FAILURE line: the reason has the exit code and the instance id, no log text.
    _endpoint(sm, "crash", echo_image, {"ECHO_STDERR": secret, "ECHO_STARTUP": "crash"})
    # A contract line with terminal escapes, far too long: sanitized and bounded.
    long_line = "bad \x1b[31mred\x1b[0m model " + "y" * 900
    _endpoint(sm, "loud", echo_image, {"ECHO_STARTUP": "fail", "ECHO_FAILURE_TEXT": long_line})
    # Never healthy: the timeout, and no log text either.
    _endpoint(sm, "hang", echo_image, {"ECHO_STDERR": secret, "ECHO_STARTUP": "hang"})
    reasons = {
        name: wait_status(sm, name, {"Failed", "InService"})["FailureReason"] for name in ("crash", "loud", "hang")
    }
    assert re.fullmatch(
        re.escape(PREFIX.format("A"))
        + r"the instance i-[0-9a-f]{17} exited with code 7 before passing the ping health check \(it wrote no "
        r"MODELGATE-FAILURE line\)",
        reasons["crash"],
    ), reasons["crash"]
    assert re.fullmatch(
        re.escape(PREFIX.format("A"))
        + r"the instance i-[0-9a-f]{17} exited with code 1 before passing the ping health check: "
        + re.escape("bad ?[31mred?[0m model " + "y" * 230 + "..."),
        reasons["loud"],
    ), reasons["loud"]
    assert re.fullmatch(
        re.escape(PREFIX.format("A")) + r"the instance i-[0-9a-f]{17} did not pass the ping health check within 2 s",
        reasons["hang"],
    ), reasons["hang"]
    for reason in reasons.values():
        assert "SECRET-LOG-LINE" not in reason and "\x1b" not in reason and reason.isprintable()
