"""Guarded deployments that go wrong in the worst places (issue 6), through boto3 against a real server:

- the server is killed (a real SIGKILL, at an exact point set by the test-only fault injection
  ``MODELGATE_FAULT_CRASH_AT``) during a traffic shift, and restarted on the same data directory without
  it: the endpoint ends consistent with no manual call;
- a rolling update whose rollback fails (the old model's image was removed meanwhile, so old instances
  cannot start again) leaves the endpoint in UpdateRollbackFailed, serving a mix; another UpdateEndpoint
  is the remedy, and it leaves only the new config's instances.
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import BotoCoreError, ClientError

from tests.e2e.conftest import ServerProcess, all_instance_pids, instance_pids
from tests.e2e.test_rollouts import (
    V,
    alarm_on_errors,
    canary,
    config,
    deploy,
    finished,
    linear,
    model,
    pending_status,
    rolling,
    traffic,
    wait_alarm,
    wait_for,
)

RESTART_REASON = "Deployment rolled back: the server restarted while traffic was shifted to the new fleet."


def instances_until_death(server: ServerProcess, timeout: float = 60) -> set[str]:
    """The ids of every instance the server ran while it lived; waits for it to die (by its own SIGKILL)."""
    assert server.proc is not None
    seen: set[str] = set()
    deadline = time.monotonic() + timeout
    while server.proc.poll() is None:
        seen |= set(instance_pids(server))
        if time.monotonic() > deadline:
            raise AssertionError(f"the server did not crash at the injected fault: {server.log()}")
        time.sleep(0.02)
    return seen


@contextmanager
def calls_until_death(server: ServerProcess, endpoint: str) -> Iterator[Counter[str]]:
    """A client invoking the endpoint without pause while the server lives; counts who answered."""
    served: Counter[str] = Counter()
    stop = threading.Event()
    rt = server.client("sagemaker-runtime")

    def loop() -> None:
        while not stop.is_set():
            try:
                served[rt.invoke_endpoint(EndpointName=endpoint, Body=b"x")["Body"].read().decode().split("|")[0]] += 1
            except (BotoCoreError, ClientError):  # the server is gone
                served["error"] += 1
                time.sleep(0.05)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield served
    finally:
        stop.set()
        thread.join(30)


def assert_rolled_back_to_v1(again: ServerProcess, endpoint: str, count: int, killed: set[str]) -> None:
    sm = again.client("sagemaker")
    d = wait_for(sm, endpoint, finished, 60)
    assert d["EndpointStatus"] == "InService" and d["EndpointConfigName"] == "v1", d
    assert d["FailureReason"] == RESTART_REASON
    assert "PendingDeploymentSummary" not in d
    (variant,) = d["ProductionVariants"]
    assert variant["VariantName"] == V
    assert (variant["CurrentWeight"], variant["DesiredWeight"]) == (1.0, 1.0)
    assert (variant["CurrentInstanceCount"], variant["DesiredInstanceCount"]) == (count, count)
    assert len(instance_pids(again)) == count
    # Every process of the killed server's fleets (the dropped green one and the old blue one) is gone.
    assert not set(all_instance_pids()) & killed
    rt = again.client("sagemaker-runtime")
    for _ in range(20):
        assert rt.invoke_endpoint(EndpointName=endpoint, Body=b"x")["Body"].read() == b"v1|-|x"


# --- kill -9 during a traffic shift ------------------------------------------------------------------------


@pytest.mark.slow
def test_kill_9_after_a_shift_is_stored_and_before_it_is_published_rolls_back(
    server_factory: Any, echo_image: str
) -> None:
    server = server_factory(MODELGATE_FAULT_CRASH_AT="traffic-shift")
    sm = server.client("sagemaker")
    deploy(sm, echo_image, "shift", "v1", 3)
    model(sm, echo_image, "v2")
    config(sm, "v2", "v2", 3)
    blue = set(instance_pids(server))
    assert len(blue) == 3
    sm.update_endpoint(EndpointName="shift", EndpointConfigName="v2", DeploymentConfig=canary(60, []))
    killed = instances_until_death(server)
    assert server.proc is not None and server.proc.returncode == -9  # a real SIGKILL
    assert "MODELGATE_FAULT_CRASH_AT=traffic-shift" in server.log()
    assert len(killed - blue) == 3  # the whole green fleet had started before the shift

    again = server_factory()  # same data directory, no fault injection, no manual call
    assert_rolled_back_to_v1(again, "shift", 3, killed)
    d = again.client("sagemaker").describe_endpoint(EndpointName="shift")
    assert d["LastDeploymentConfig"] == canary(60, [])


@pytest.mark.slow
def test_kill_9_right_after_a_shift_is_published_rolls_back(server_factory: Any, echo_image: str) -> None:
    server = server_factory(MODELGATE_FAULT_CRASH_AT="traffic-shifted")
    sm = server.client("sagemaker")
    deploy(sm, echo_image, "shifted", "v1", 3)
    model(sm, echo_image, "v2")
    config(sm, "v2", "v2", 3)
    blue = set(instance_pids(server))
    with calls_until_death(server, "shifted") as served:
        time.sleep(0.3)
        sm.update_endpoint(EndpointName="shifted", EndpointConfigName="v2", DeploymentConfig=linear(60, []))
        killed = instances_until_death(server)
    assert server.proc is not None and server.proc.returncode == -9
    assert "MODELGATE_FAULT_CRASH_AT=traffic-shifted" in server.log()
    assert len(killed - blue) == 3
    assert served["v1"] > 0 and served["error"] > 0  # served until the server died under the client

    again = server_factory()
    assert_rolled_back_to_v1(again, "shifted", 3, killed)
    with traffic(again, "shifted") as seen:
        time.sleep(1.0)
    assert seen.errors == Counter() and set(seen.served) == {"v1"}


# --- UpdateRollbackFailed, then UpdateEndpoint ---------------------------------------------------------------


def rollback_failed(server: ServerProcess, echo_image: str, tmp_path: Path, endpoint: str) -> tuple[set[str], set[str]]:
    """An endpoint in UpdateRollbackFailed, serving a mix of v1 (2 instances, 1/3 of the traffic) and v2
    (2 instances, 2/3), with good configs v3 and (below) a rolling config guarded by ``<endpoint>-guard``;
    returns the instance ids of v1 and of v2 that serve.

    The old model runs from an image of its own, removed once the endpoint serves (as an image deleted from
    its registry): its running instances serve on, but no new one can start. A rolling update, one instance
    per batch, trips its alarm in the second bake, once one old instance is gone; the rollback must start an
    old instance again, which fails."""
    sm, cw = server.client("sagemaker"), server.client("cloudwatch")
    old_image = tmp_path / "old-image"
    shutil.copy(echo_image.removeprefix("command:"), old_image)
    deploy(sm, f"command:{old_image}", endpoint, "v1", 3)
    model(sm, echo_image, "v2")
    config(sm, "v2", "v2", 3)
    model(sm, echo_image, "v3")
    config(sm, "v3", "v3", 3)
    guard = f"{endpoint}-guard"
    alarm_on_errors(cw, guard, endpoint)
    v1 = set(instance_pids(server))
    old_image.unlink()
    wait_alarm(cw, guard, "OK")

    sm.update_endpoint(EndpointName=endpoint, EndpointConfigName="v2", DeploymentConfig=rolling(3, [guard]))
    second_bake = ("Baking", "Baking for 3 seconds (WaitIntervalInSeconds) with traffic enabled on 2 of 3 instance(s).")
    wait_for(sm, endpoint, lambda d: pending_status(d) == second_bake, 60)
    while not finished(d := sm.describe_endpoint(EndpointName=endpoint)):
        cw.set_alarm_state(AlarmName=guard, StateValue="ALARM", StateReason="the operator says so")
        time.sleep(0.5)
    assert d["EndpointStatus"] == "UpdateRollbackFailed" and d["EndpointConfigName"] == "v1", d
    assert guard in d["FailureReason"] and "The rollback failed" in d["FailureReason"]
    assert "serves a mix of the old and new endpoint configurations" in d["FailureReason"]
    assert "PendingDeploymentSummary" not in d
    assert d["ProductionVariants"][0]["CurrentWeight"] == pytest.approx(1 / 3)  # 2/3 stayed on the new instances
    mixed = set(instance_pids(server))
    assert len(mixed & v1) == 2 and len(mixed - v1) == 2
    return mixed & v1, mixed - v1


@pytest.mark.slow
def test_update_endpoint_on_update_rollback_failed_retires_the_mix_and_serves_only_the_new_config(
    server_factory: Any, echo_image: str, tmp_path: Path
) -> None:
    server = server_factory()
    sm, cw = server.client("sagemaker"), server.client("cloudwatch")
    v1, v2 = rollback_failed(server, echo_image, tmp_path, "mixed")
    mixed = v1 | v2
    rt = server.client("sagemaker-runtime")
    answers = Counter(rt.invoke_endpoint(EndpointName="mixed", Body=b"x")["Body"].read()[:2] for _ in range(60))
    assert set(answers) == {b"v1", b"v2"}, answers
    with pytest.raises(ClientError) as refused:
        sm.update_endpoint_weights_and_capacities(
            EndpointName="mixed", DesiredWeightsAndCapacities=[{"VariantName": V, "DesiredInstanceCount": 3}]
        )
    assert refused.value.response["Error"]["Code"] == "ValidationException"
    assert "UpdateRollbackFailed" in refused.value.response["Error"]["Message"]

    # The remedy: UpdateEndpoint (here with the same rolling config and alarm) to a good config. It first
    # moves all traffic onto the two old instances that serve and stops the failed update's, then rolls.
    with traffic(server, "mixed") as seen:
        wait_alarm(cw, "mixed-guard", "OK")
        sm.update_endpoint(EndpointName="mixed", EndpointConfigName="v3", RetainDeploymentConfig=True)
        d = wait_for(sm, "mixed", lambda d: d["EndpointStatus"] != "UpdateRollbackFailed" and finished(d), 90)
        time.sleep(0.3)
    assert d["EndpointStatus"] == "InService" and d["EndpointConfigName"] == "v3", d
    assert "FailureReason" not in d and "PendingDeploymentSummary" not in d
    assert d["LastDeploymentConfig"] == rolling(3, ["mixed-guard"])
    (variant,) = d["ProductionVariants"]
    assert (variant["CurrentWeight"], variant["CurrentInstanceCount"], variant["DesiredInstanceCount"]) == (1.0, 3, 3)
    assert seen.errors == Counter(), seen.errors
    assert seen.served["v3"] > 0 and set(seen.served) <= {"v1", "v2", "v3"}
    now = set(instance_pids(server))
    assert len(now) == 3 and not now & mixed
    assert not set(all_instance_pids()) & mixed  # the old and the failed update's processes are gone
    for _ in range(20):
        assert rt.invoke_endpoint(EndpointName="mixed", Body=b"x")["Body"].read() == b"v3|-|x"


@pytest.mark.slow
def test_update_endpoint_on_update_rollback_failed_without_old_instances_does_not_start(
    server_factory: Any, echo_image: str, tmp_path: Path
) -> None:
    server = server_factory()
    sm = server.client("sagemaker")
    v1, v2 = rollback_failed(server, echo_image, tmp_path, "stuck")
    for iid, pid in instance_pids(server).items():  # the old instances crash, and cannot be replaced
        if iid in v1:
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while set(instance_pids(server)) & v1 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # the server has seen the exits (and failed to start replacements)

    sm.update_endpoint(EndpointName="stuck", EndpointConfigName="v3", RetainDeploymentConfig=True)
    d = wait_for(sm, "stuck", lambda d: d["EndpointStatus"] == "UpdateRollbackFailed", 30)
    assert d["EndpointConfigName"] == "v1" and "PendingDeploymentSummary" not in d
    assert d["FailureReason"] == (
        "The update was not started: no instance of endpoint config v1 serves production variant(s) AllTraffic, so "
        "the instances of the update that failed to roll back cannot be retired. The endpoint still serves a mix of "
        "the old and new endpoint configurations; delete it and create it again."
    )
    assert set(instance_pids(server)) == v2  # nothing was stopped nor started
    rt = server.client("sagemaker-runtime")
    answers: Counter[str] = Counter()
    for _ in range(30):
        try:
            answers[rt.invoke_endpoint(EndpointName="stuck", Body=b"x")["Body"].read().decode()[:2]] += 1
        except ClientError as e:  # the old instances' share has no instance left to take it
            answers[e.response["Error"]["Code"]] += 1
    assert answers["v2"] > 0 and set(answers) <= {"v2", "ServiceUnavailable"}, answers

    sm.delete_endpoint(EndpointName="stuck")  # the way out
    sm.get_waiter("endpoint_deleted").wait(EndpointName="stuck", WaiterConfig={"Delay": 0.5, "MaxAttempts": 40})
    deadline = time.monotonic() + 10
    while set(all_instance_pids()) & (v1 | v2) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not set(all_instance_pids()) & (v1 | v2)
    assert instance_pids(server) == {}
