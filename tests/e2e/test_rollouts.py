"""Guarded deployments through boto3: UpdateEndpoint with blue/green all at once, canary and linear shifts,
alarm rollbacks, the time limit and a killed server (seed 003 and issue 6).

The echo model answers "<ECHO_TAG>|-|<body>", so a response says which config's fleet served it; the
"bad" model answers every request with 500 (ECHO_ALWAYS_STATUS) and writes a line per request it answered
(ECHO_REQUEST_LOG), which is what the clients' error count is checked against.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.e2e.conftest import ServerProcess, all_instance_pids, instance_pids, wait_in_service

V = "AllTraffic"


def model(sm: Any, image: str, name: str, env: dict[str, str] | None = None) -> None:
    sm.create_model(ModelName=name, PrimaryContainer={"Image": image, "Environment": {"ECHO_TAG": name, **(env or {})}})


def config(sm: Any, name: str, model_name: str, count: int, variant: str = V) -> None:
    sm.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[
            {
                "VariantName": variant,
                "ModelName": model_name,
                "InitialInstanceCount": count,
                "InstanceType": "ml.m5.large",
            }
        ],
    )


def deploy(sm: Any, image: str, endpoint: str, tag: str, count: int, **create: Any) -> None:
    """Model ``tag``, config ``tag``, and the endpoint serving it."""
    model(sm, image, tag)
    config(sm, tag, tag, count)
    sm.create_endpoint(EndpointName=endpoint, EndpointConfigName=tag, **create)
    wait_in_service(sm, endpoint)


def alarm_on_errors(cw: Any, name: str, endpoint: str) -> None:
    """Seed 003's alarm: any 5XX error of the variant in a 10 s period."""
    cw.put_metric_alarm(
        AlarmName=name,
        Namespace="AWS/SageMaker",
        MetricName="Invocation5XXErrors",
        Dimensions=[{"Name": "EndpointName", "Value": endpoint}, {"Name": "VariantName", "Value": V}],
        Statistic="Sum",
        Period=10,
        EvaluationPeriods=1,
        Threshold=0.0,
        ComparisonOperator="GreaterThanThreshold",
        TreatMissingData="notBreaching",
    )


def canary(wait: int, alarms: list[str], size: int = 1, termination: int = 0) -> dict[str, Any]:
    wire: dict[str, Any] = {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": {
                "Type": "CANARY",
                "CanarySize": {"Type": "INSTANCE_COUNT", "Value": size},
                "WaitIntervalInSeconds": wait,
            },
            "TerminationWaitInSeconds": termination,
            "MaximumExecutionTimeoutInSeconds": 600,
        },
    }
    if alarms:
        wire["AutoRollbackConfiguration"] = {"Alarms": [{"AlarmName": a} for a in alarms]}
    return wire


@dataclass
class Traffic:
    """Clients invoking the endpoint without pause, each on its own thread, counting what they get."""

    served: Counter[str] = field(default_factory=Counter)  # ECHO_TAG of the model that answered
    errors: Counter[str] = field(default_factory=Counter)  # error code (and original status)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def error_count(self) -> int:
        with self.lock:
            return sum(self.errors.values())

    def snapshot(self) -> Counter[str]:
        with self.lock:
            return Counter(self.served)


@contextmanager
def traffic(server: ServerProcess, endpoint: str, clients: int = 3) -> Iterator[Traffic]:
    seen = Traffic()
    stop = threading.Event()
    runtimes = [server.client("sagemaker-runtime") for _ in range(clients)]

    def loop(rt: Any) -> None:
        while not stop.is_set():
            try:
                body = rt.invoke_endpoint(EndpointName=endpoint, Body=b"x")["Body"].read().decode()
                with seen.lock:
                    seen.served[body.split("|")[0]] += 1
            except ClientError as e:
                err = e.response
                code = f"{err['Error']['Code']}:{err.get('OriginalStatusCode', '')}"
                with seen.lock:
                    seen.errors[code] += 1
            time.sleep(0.005)

    threads = [threading.Thread(target=loop, args=(rt,), daemon=True) for rt in runtimes]
    for t in threads:
        t.start()
    try:
        yield seen
    finally:
        stop.set()
        for t in threads:
            t.join(30)


def wait_for(sm: Any, endpoint: str, cond: Any, timeout: float = 60) -> dict[str, Any]:
    """Poll DescribeEndpoint until ``cond(description)``; returns that description."""
    deadline = time.monotonic() + timeout
    while True:
        d = sm.describe_endpoint(EndpointName=endpoint)
        if cond(d):
            return d  # type: ignore[no-any-return]
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met in {timeout} s: {d}")
        time.sleep(0.1)


def pending_status(d: dict[str, Any]) -> tuple[str, str] | None:
    pending = d.get("PendingDeploymentSummary")
    if not pending:
        return None
    statuses = pending["ProductionVariants"][0].get("VariantStatus") or []
    return (statuses[0]["Status"], statuses[0]["StatusMessage"]) if statuses else None


def finished(d: dict[str, Any]) -> bool:
    return d["EndpointStatus"] not in ("Updating", "RollingBack")


# --- validation ---------------------------------------------------------------------------------------


def test_update_endpoint_refuses_invalid_updates(server_factory: Any, echo_image: str) -> None:
    server = server_factory()
    sm = server.client("sagemaker")
    deploy(sm, echo_image, "guarded", "v1", 2)
    model(sm, echo_image, "v2")
    config(sm, "v2", "v2", 2)
    config(sm, "v2-renamed", "v2", 2, variant="Other")
    config(sm, "v2-single", "v2", 1)

    def refused(**kwargs: Any) -> str:
        with pytest.raises(ClientError) as caught:
            sm.update_endpoint(EndpointName="guarded", **kwargs)
        assert caught.value.response["Error"]["Code"] == "ValidationException"
        return str(caught.value.response["Error"]["Message"])

    cfg = canary(30, [])
    assert "at most 50%" in refused(EndpointConfigName="v2", DeploymentConfig=canary(30, [], size=2))
    assert "keep the production variant names" in refused(EndpointConfigName="v2-renamed", DeploymentConfig=cfg)
    assert "needs at least 2 instances" in refused(EndpointConfigName="v2-single", DeploymentConfig=cfg)
    assert "ghost-alarm" in refused(EndpointConfigName="v2", DeploymentConfig=canary(30, ["ghost-alarm"]))
    assert "no deployment configuration to retain" in refused(EndpointConfigName="v2", RetainDeploymentConfig=True)
    assert "Could not find endpoint configuration" in refused(EndpointConfigName="nope")
    linear = {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": {
                "Type": "LINEAR",
                "LinearStepSize": {"Type": "CAPACITY_PERCENT", "Value": 60},
                "WaitIntervalInSeconds": 10,
            }
        }
    }
    assert "LinearStepSize of 60% is out of range" in refused(EndpointConfigName="v2", DeploymentConfig=linear)
    timeout = canary(400, [])
    timeout["BlueGreenUpdatePolicy"]["TerminationWaitInSeconds"] = 300
    assert "must be larger than the total waiting time" in refused(EndpointConfigName="v2", DeploymentConfig=timeout)
    # Nothing was changed by the refused updates; an accepted one makes the endpoint Updating, and a second
    # update while it runs is refused.
    d = sm.describe_endpoint(EndpointName="guarded")
    assert d["EndpointStatus"] == "InService" and d["EndpointConfigName"] == "v1"
    sm.update_endpoint(EndpointName="guarded", EndpointConfigName="v2", DeploymentConfig=cfg)
    assert "Cannot update in-progress endpoint" in refused(EndpointConfigName="v1")
    sm.delete_endpoint(EndpointName="guarded")  # a deployment in progress can be deleted
    sm.get_waiter("endpoint_deleted").wait(EndpointName="guarded", WaiterConfig={"Delay": 0.5, "MaxAttempts": 40})
    deadline = time.monotonic() + 10
    while instance_pids(server) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert instance_pids(server) == {}


# --- all at once ----------------------------------------------------------------------------------------


def test_all_at_once_updates_with_and_without_a_deployment_config(server_factory: Any, echo_image: str) -> None:
    server = server_factory()
    sm = server.client("sagemaker")
    deploy(sm, echo_image, "aao", "v1", 2)
    for tag in ("v2", "v3"):
        model(sm, echo_image, tag)
        config(sm, tag, tag, 2)
    blue = set(instance_pids(server))
    with traffic(server, "aao") as seen:
        time.sleep(0.3)
        # No DeploymentConfig: blue/green all at once, no bake.
        sm.update_endpoint(EndpointName="aao", EndpointConfigName="v2")
        d = wait_for(sm, "aao", finished, 30)
        assert d["EndpointStatus"] == "InService" and d["EndpointConfigName"] == "v2"
        assert "LastDeploymentConfig" not in d and "PendingDeploymentSummary" not in d and "FailureReason" not in d
        assert d["ProductionVariants"][0]["CurrentInstanceCount"] == 2
        green = set(instance_pids(server))
        assert len(green) == 2 and not green & blue
        time.sleep(0.3)
        # Explicit ALL_AT_ONCE with a final bake of 2 s: the new fleet bakes with full capacity.
        config_wire = {
            "BlueGreenUpdatePolicy": {
                "TrafficRoutingConfiguration": {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 0},
                "TerminationWaitInSeconds": 2,
            }
        }
        sm.update_endpoint(EndpointName="aao", EndpointConfigName="v3", DeploymentConfig=config_wire)
        d = wait_for(sm, "aao", lambda d: (pending_status(d) or ("", ""))[0] == "Baking", 30)
        assert d["EndpointStatus"] == "Updating" and d["EndpointConfigName"] == "v2"
        assert pending_status(d) == (
            "Baking",
            "Baking for 2 seconds (TerminationWaitInSeconds) with traffic enabled on full capacity of 2 instance(s).",
        )
        pending = d["PendingDeploymentSummary"]
        assert pending["EndpointConfigName"] == "v3"
        assert pending["ProductionVariants"][0]["CurrentInstanceCount"] == 2
        assert d["ProductionVariants"][0]["CurrentWeight"] == 0.0  # blue takes no traffic any more
        d = wait_for(sm, "aao", finished, 30)
        assert d["EndpointStatus"] == "InService" and d["EndpointConfigName"] == "v3"
        assert d["LastDeploymentConfig"] == config_wire
        time.sleep(0.3)
    assert seen.errors == Counter(), seen.errors
    assert set(seen.served) == {"v1", "v2", "v3"}
    assert set(instance_pids(server)) & (blue | green) == set()
    assert len(instance_pids(server)) == 2


# --- canary (seed 003) ----------------------------------------------------------------------------------


def wait_alarm(cw: Any, name: str, state: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while cw.describe_alarms(AlarmNames=[name])["MetricAlarms"][0]["StateValue"] != state:
        if time.monotonic() > deadline:
            raise AssertionError(f"alarm {name} did not reach {state}")
        time.sleep(0.2)


@pytest.mark.slow
def test_seed_003_canary_rolls_back_on_the_alarm_then_a_good_update_completes(
    server_factory: Any, echo_image: str, tmp_path: Path
) -> None:
    server = server_factory()
    sm, cw = server.client("sagemaker"), server.client("cloudwatch")
    deploy(sm, echo_image, "seed3", "good-v1", 3)
    answered = tmp_path / "bad-requests.log"
    model(sm, echo_image, "bad-v2", {"ECHO_ALWAYS_STATUS": "500", "ECHO_REQUEST_LOG": str(answered)})
    config(sm, "bad-v2", "bad-v2", 3)
    model(sm, echo_image, "good-v3")
    config(sm, "good-v3", "good-v3", 3)
    alarm_on_errors(cw, "seed3-5xx", "seed3")
    blue = set(instance_pids(server))
    assert len(blue) == 3

    with traffic(server, "seed3") as seen:
        time.sleep(0.5)
        guarded = canary(20, ["seed3-5xx"])
        sm.update_endpoint(EndpointName="seed3", EndpointConfigName="bad-v2", DeploymentConfig=guarded)
        d = wait_for(sm, "seed3", lambda d: (pending_status(d) or ("", ""))[0] == "Baking", 30)
        assert d["EndpointStatus"] == "Updating" and d["EndpointConfigName"] == "good-v1"
        assert pending_status(d) == (
            "Baking",
            "Baking for 20 seconds (WaitIntervalInSeconds) with traffic enabled on canary capacity of 1 instance(s).",
        )
        pending = d["PendingDeploymentSummary"]["ProductionVariants"][0]
        assert (pending["CurrentInstanceCount"], pending["DesiredInstanceCount"]) == (1, 3)
        assert pending["CurrentWeight"] == pytest.approx(1 / 3)
        assert d["ProductionVariants"][0]["CurrentWeight"] == pytest.approx(2 / 3)
        d = wait_for(sm, "seed3", finished, 40)
        # Blue's traffic, error-free, brings the alarm back to OK (its window holds blue's requests only).
        wait_alarm(cw, "seed3-5xx", "OK")
    assert d["EndpointStatus"] == "InService" and d["EndpointConfigName"] == "good-v1"
    assert "seed3-5xx" in d["FailureReason"] and "rolled back" in d["FailureReason"]
    assert "PendingDeploymentSummary" not in d
    assert d["LastDeploymentConfig"] == canary(20, ["seed3-5xx"])
    assert set(instance_pids(server)) == blue  # green is gone, blue never stopped
    # The only errors the clients saw are the requests the faulty fleet answered, and no more.
    bad_answers = len(answered.read_text().splitlines())
    assert bad_answers > 0
    assert seen.errors == Counter({"ModelError:500": bad_answers}), (seen.errors, bad_answers)
    assert set(seen.served) == {"good-v1"}

    with traffic(server, "seed3") as seen:
        time.sleep(0.3)
        sm.update_endpoint(EndpointName="seed3", EndpointConfigName="good-v3", RetainDeploymentConfig=True)
        d = wait_for(sm, "seed3", finished, 60)
        time.sleep(0.3)
    assert d["EndpointStatus"] == "InService" and d["EndpointConfigName"] == "good-v3", d
    assert "FailureReason" not in d
    assert d["LastDeploymentConfig"] == canary(20, ["seed3-5xx"])
    assert seen.errors == Counter()
    assert set(seen.served) == {"good-v1", "good-v3"}
    now = set(instance_pids(server))
    assert len(now) == 3 and not now & blue
    assert not set(all_instance_pids()) & blue  # the blue fleet's processes are gone


# --- linear ---------------------------------------------------------------------------------------------


def linear(wait: int, alarms: list[str]) -> dict[str, Any]:
    wire: dict[str, Any] = {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": {
                "Type": "LINEAR",
                "LinearStepSize": {"Type": "CAPACITY_PERCENT", "Value": 33},  # 33% of 3 = 1 instance
                "WaitIntervalInSeconds": wait,
            },
            "TerminationWaitInSeconds": 1,
        }
    }
    if alarms:
        wire["AutoRollbackConfiguration"] = {"Alarms": [{"AlarmName": a} for a in alarms]}
    return wire


@pytest.mark.slow
def test_seed_003_linear_rolls_back_on_the_alarm_then_shifts_one_instance_at_a_time(
    server_factory: Any, echo_image: str, tmp_path: Path
) -> None:
    server = server_factory()
    sm, cw = server.client("sagemaker"), server.client("cloudwatch")
    deploy(sm, echo_image, "lin", "v1", 3)
    answered = tmp_path / "bad-requests.log"
    model(sm, echo_image, "bad", {"ECHO_ALWAYS_STATUS": "500", "ECHO_REQUEST_LOG": str(answered)})
    config(sm, "bad", "bad", 3)
    model(sm, echo_image, "v2")
    config(sm, "v2", "v2", 3)
    alarm_on_errors(cw, "lin-5xx", "lin")
    blue = set(instance_pids(server))
    with traffic(server, "lin") as seen:
        wait_alarm(cw, "lin-5xx", "OK")
        sm.update_endpoint(EndpointName="lin", EndpointConfigName="bad", DeploymentConfig=linear(15, ["lin-5xx"]))
        d = wait_for(sm, "lin", finished, 40)
        wait_alarm(cw, "lin-5xx", "OK")
    assert d["EndpointStatus"] == "InService" and d["EndpointConfigName"] == "v1"
    assert "lin-5xx" in d["FailureReason"]
    bad_answers = len(answered.read_text().splitlines())
    assert bad_answers > 0
    assert seen.errors == Counter({"ModelError:500": bad_answers}), (seen.errors, bad_answers)
    assert set(instance_pids(server)) == blue

    messages: list[str] = []
    shares: list[float] = []
    with traffic(server, "lin") as seen:
        sm.update_endpoint(EndpointName="lin", EndpointConfigName="v2", DeploymentConfig=linear(3, ["lin-5xx"]))
        while not finished(d := sm.describe_endpoint(EndpointName="lin")):
            status = pending_status(d)
            if status is not None and status[1] not in messages:
                messages.append(status[1])
                shares.append(d["PendingDeploymentSummary"]["ProductionVariants"][0]["CurrentWeight"])
            time.sleep(0.05)
        time.sleep(0.3)
    assert d["EndpointStatus"] == "InService" and d["EndpointConfigName"] == "v2", d
    bakes = [m for m in messages if m.startswith("Baking")]
    assert bakes == [
        "Baking for 3 seconds (WaitIntervalInSeconds) with traffic enabled on canary capacity of 1 instance(s).",
        "Baking for 3 seconds (WaitIntervalInSeconds) with traffic enabled on canary capacity of 2 instance(s).",
        "Baking for 1 seconds (TerminationWaitInSeconds) with traffic enabled on full capacity of 3 instance(s).",
    ], messages
    baking_shares = [s for m, s in zip(messages, shares, strict=True) if m.startswith("Baking")]
    assert baking_shares == pytest.approx([1 / 3, 2 / 3, 1.0])
    assert seen.errors == Counter()
    assert seen.served["v1"] > 0 and seen.served["v2"] > 0
    assert not set(instance_pids(server)) & blue


# --- the time limit ---------------------------------------------------------------------------------------


def test_a_rollout_that_exceeds_its_maximum_time_rolls_back(server_factory: Any, echo_image: str) -> None:
    # MaximumExecutionTimeoutInSeconds is at least 600 s in the API; the server caps it for this test.
    server = server_factory(MODELGATE_MAX_ROLLOUT_EXECUTION_SECONDS="3")
    sm = server.client("sagemaker")
    deploy(sm, echo_image, "slowpoke", "v1", 2)
    model(sm, echo_image, "v2")
    config(sm, "v2", "v2", 2)
    blue = set(instance_pids(server))
    with traffic(server, "slowpoke") as seen:
        sm.update_endpoint(EndpointName="slowpoke", EndpointConfigName="v2", DeploymentConfig=canary(60, []))
        d = wait_for(sm, "slowpoke", finished, 20)
        time.sleep(0.3)
    assert d["EndpointStatus"] == "InService" and d["EndpointConfigName"] == "v1"
    assert d["FailureReason"] == (
        "Deployment rolled back: it exceeded MaximumExecutionTimeoutInSeconds (3 seconds)."
    )
    assert seen.errors == Counter() and seen.served["v2"] > 0  # the canary served, then lost its share
    assert set(instance_pids(server)) == blue


# --- a killed server --------------------------------------------------------------------------------------


@pytest.mark.slow
def test_kill_9_during_a_bake_then_restart_rolls_back(server_factory: Any, echo_image: str) -> None:
    server = server_factory()
    sm = server.client("sagemaker")
    deploy(sm, echo_image, "crash", "v1", 2)
    model(sm, echo_image, "v2")
    config(sm, "v2", "v2", 2)
    sm.update_endpoint(EndpointName="crash", EndpointConfigName="v2", DeploymentConfig=canary(60, []))
    wait_for(sm, "crash", lambda d: (pending_status(d) or ("", ""))[0] == "Baking", 30)
    before = set(instance_pids(server))
    assert len(before) == 4  # blue and green
    server.kill9()

    again = server_factory()  # same data directory, no manual call
    sm = again.client("sagemaker")
    d = wait_for(sm, "crash", finished, 60)
    assert d["EndpointStatus"] == "InService" and d["EndpointConfigName"] == "v1"
    assert d["FailureReason"] == (
        "Deployment rolled back: the server restarted while traffic was shifted to the new fleet."
    )
    assert "PendingDeploymentSummary" not in d
    assert d["ProductionVariants"][0]["CurrentInstanceCount"] == 2
    assert len(instance_pids(again)) == 2
    assert not set(all_instance_pids()) & before  # the killed server's instances were reaped
    rt = again.client("sagemaker-runtime")
    for _ in range(20):
        assert rt.invoke_endpoint(EndpointName="crash", Body=b"x")["Body"].read() == b"v1|-|x"


@pytest.mark.slow
def test_kill_9_while_blue_drains_then_restart_rolls_forward(server_factory: Any, echo_image: str) -> None:
    server = server_factory(MODELGATE_DRAIN_TIMEOUT_SECONDS="20")
    sm = server.client("sagemaker")
    deploy(sm, echo_image, "forward", "v1", 1)
    model(sm, echo_image, "v2")
    config(sm, "v2", "v2", 1)
    rt = server.client("sagemaker-runtime")
    slow = threading.Thread(target=lambda: _ignore_errors(rt, "forward", b"sleep:15"), daemon=True)
    slow.start()  # keeps blue draining once all traffic is on green
    time.sleep(0.3)
    sm.update_endpoint(EndpointName="forward", EndpointConfigName="v2")
    wait_for(sm, "forward", lambda d: (pending_status(d) or ("", ""))[0] == "Deleting", 30)
    server.kill9()

    again = server_factory()
    sm = again.client("sagemaker")
    d = wait_for(sm, "forward", finished, 60)
    assert d["EndpointStatus"] == "InService" and d["EndpointConfigName"] == "v2", d
    assert "FailureReason" not in d
    assert len(instance_pids(again)) == 1
    rt = again.client("sagemaker-runtime")
    assert rt.invoke_endpoint(EndpointName="forward", Body=b"x")["Body"].read() == b"v2|-|x"


def _ignore_errors(rt: Any, endpoint: str, body: bytes) -> None:
    with contextlib.suppress(Exception):  # the server is killed under this request
        rt.invoke_endpoint(EndpointName=endpoint, Body=body)


# --- rolling --------------------------------------------------------------------------------------------------


def rolling(wait: int, alarms: list[str]) -> dict[str, Any]:
    wire: dict[str, Any] = {
        "RollingUpdatePolicy": {
            "MaximumBatchSize": {"Type": "INSTANCE_COUNT", "Value": 1},
            "WaitIntervalInSeconds": wait,
            "RollbackMaximumBatchSize": {"Type": "INSTANCE_COUNT", "Value": 1},
        }
    }
    if alarms:
        wire["AutoRollbackConfiguration"] = {"Alarms": [{"AlarmName": a} for a in alarms]}
    return wire


def test_rolling_update_rolls_back_on_the_alarm_then_completes_batch_by_batch(
    server_factory: Any, echo_image: str
) -> None:
    server = server_factory()
    sm, cw = server.client("sagemaker"), server.client("cloudwatch")
    deploy(sm, echo_image, "roll", "v1", 2)
    model(sm, echo_image, "v2")
    config(sm, "v2", "v2", 2)
    alarm_on_errors(cw, "roll-guard", "roll")
    blue = set(instance_pids(server))
    with traffic(server, "roll") as seen:
        wait_alarm(cw, "roll-guard", "OK")  # evaluated once, so that nothing overwrites the state set below soon
        sm.update_endpoint(EndpointName="roll", EndpointConfigName="v2", DeploymentConfig=rolling(30, ["roll-guard"]))
        d = wait_for(sm, "roll", lambda d: (pending_status(d) or ("", ""))[0] == "Baking", 30)
        assert pending_status(d) == (
            "Baking",
            "Baking for 30 seconds (WaitIntervalInSeconds) with traffic enabled on 1 of 2 instance(s).",
        )
        assert len(instance_pids(server)) == 3  # one new instance besides the old ones
        # The alarm holds this state until its next evaluation (at most 10 s later), and is set again until
        # the rollout has seen it.
        while not finished(d := sm.describe_endpoint(EndpointName="roll")) and pending_status(d) is not None:
            cw.set_alarm_state(AlarmName="roll-guard", StateValue="ALARM", StateReason="the operator says so")
            time.sleep(0.5)
        d = wait_for(sm, "roll", finished, 30)
        assert d["EndpointStatus"] == "InService" and d["EndpointConfigName"] == "v1"
        assert "roll-guard" in d["FailureReason"]
        assert set(instance_pids(server)) == blue
        messages: list[str] = []
        sm.update_endpoint(EndpointName="roll", EndpointConfigName="v2", DeploymentConfig=rolling(1, []))
        while not finished(d := sm.describe_endpoint(EndpointName="roll")):
            status = pending_status(d)
            if status is not None and status[1] not in messages:
                messages.append(status[1])
            time.sleep(0.05)
        time.sleep(0.3)
    assert d["EndpointStatus"] == "InService" and d["EndpointConfigName"] == "v2", d
    assert "FailureReason" not in d
    assert [m for m in messages if m.startswith("Baking")] == [
        "Baking for 1 seconds (WaitIntervalInSeconds) with traffic enabled on 1 of 2 instance(s).",
        "Baking for 1 seconds (WaitIntervalInSeconds) with traffic enabled on 2 of 2 instance(s).",
    ], messages
    assert seen.errors == Counter()
    assert seen.served["v2"] > 0
    now = set(instance_pids(server))
    assert len(now) == 2 and not now & blue
