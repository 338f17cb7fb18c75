"""Nothing is lost: dead instances are replaced, a killed server comes back on its own."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import urllib.error
import urllib.request
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.e2e.conftest import (
    ServerProcess,
    all_instance_pids,
    deploy_echo,
    instance_pids,
    wait_in_service,
    wait_status,
)


def _wait_for(cond: Any, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.1)


def _invoke_eventually(rt: Any, name: str, body: bytes, timeout: float = 20) -> bytes:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return bytes(rt.invoke_endpoint(EndpointName=name, Body=body)["Body"].read())
        except ClientError as e:
            if e.response["Error"]["Code"] != "ServiceUnavailable" or time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_killed_instance_is_replaced_and_endpoint_keeps_answering(
    server: ServerProcess, sm: Any, rt: Any, echo_image: str
) -> None:
    deploy_echo(sm, echo_image, "heal", [("A", 1.0, 2)])
    before = instance_pids(server)
    assert len(before) == 2
    victim_id, victim_pid = next(iter(before.items()))
    os.kill(victim_pid, signal.SIGKILL)
    # A request racing the kill may still reach the dying instance (it is in flight and fails with
    # ServiceUnavailable); once the server has seen the exit, a few milliseconds later, the router no longer
    # chooses it: every request succeeds while the replacement starts.
    time.sleep(0.3)
    for _ in range(50):
        assert rt.invoke_endpoint(EndpointName="heal", Body=b"hi")["Body"].read() == b"A|-|hi"
    _wait_for(lambda: len(instance_pids(server)) == 2 and victim_id not in instance_pids(server))
    assert sm.describe_endpoint(EndpointName="heal")["ProductionVariants"][0]["CurrentInstanceCount"] == 2


# A request in flight to an instance that dies: tests/e2e/test_instance_death.py (ServiceUnavailable, not the
# ModelError this file once expected).


def test_kill_9_of_the_server_then_restart_serves_again_without_any_call(
    server: ServerProcess, echo_image: str
) -> None:
    sm, rt = server.client("sagemaker"), server.client("sagemaker-runtime")
    deploy_echo(sm, echo_image, "durable", [("A", 0.5, 1), ("B", 0.5, 2)])
    old = instance_pids(server)
    assert len(old) == 3
    server.kill9()
    # PR_SET_PDEATHSIG ends the orphans; the restarted server would reap any that survived.
    _wait_for(lambda: not (set(old) & set(all_instance_pids())), timeout=10)
    server.start()
    d = wait_in_service(sm, "durable")
    assert {v["VariantName"]: v["CurrentInstanceCount"] for v in d["ProductionVariants"]} == {"A": 1, "B": 2}
    _wait_for(lambda: len(instance_pids(server)) == 3)
    seen = set()
    deadline = time.monotonic() + 20
    while seen != {"A", "B"} and time.monotonic() < deadline:
        try:
            seen.add(rt.invoke_endpoint(EndpointName="durable", Body=b"x")["InvokedProductionVariant"])
        except ClientError as e:  # instances may still be starting right after the restart
            assert e.response["Error"]["Code"] == "ServiceUnavailable", e.response
            time.sleep(0.1)
    assert seen == {"A", "B"}


def test_restart_reaps_processes_the_killed_server_left(server: ServerProcess, echo_image: str) -> None:
    """The death signal ends the instance itself, not what it forked; the restart reaps those by record."""
    sm = server.client("sagemaker")
    deploy_echo(sm, echo_image, "reap", [("A", 1.0, 1)], env={"ECHO_GRANDCHILD": "1"})
    (iid,) = instance_pids(server)
    _wait_for(lambda: len([i for i in all_instance_pids() if i == iid]) >= 1)
    server.kill9()
    time.sleep(0.5)
    leftovers = {pid for i, pid in _instance_processes().items() if i == iid}
    assert leftovers, "the forked child should survive the server's death"
    server.start()
    wait_in_service(sm, "reap")
    _wait_for(lambda: not any(_alive(pid) for pid in leftovers), timeout=10)


def _instance_processes() -> dict[str, int]:
    return all_instance_pids()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return False


@pytest.mark.slow
def test_kill_9_during_creating_then_restart_finishes_the_create(
    server: ServerProcess, echo_image: str
) -> None:
    sm = server.client("sagemaker")
    deploy_echo(sm, echo_image, "half", [("A", 1.0, 2)], wait=False)
    server.kill9()
    server.start()
    d = wait_status(sm, "half", {"InService", "Failed"})
    assert d["EndpointStatus"] == "InService", d
    _wait_for(lambda: len(instance_pids(server)) == 2)


def test_kill_9_during_update_then_restart_completes_it(server: ServerProcess, echo_image: str) -> None:
    sm = server.client("sagemaker")
    deploy_echo(sm, echo_image, "upd", [("A", 1.0, 1)])
    sm.update_endpoint_weights_and_capacities(
        EndpointName="upd", DesiredWeightsAndCapacities=[{"VariantName": "A", "DesiredInstanceCount": 2}]
    )
    server.kill9()
    server.start()
    d = wait_in_service(sm, "upd")
    assert d["ProductionVariants"][0]["CurrentInstanceCount"] == 2
    _wait_for(lambda: len(instance_pids(server)) == 2)


def test_kill_9_during_delete_then_restart_finishes_deleting(server: ServerProcess, echo_image: str) -> None:
    sm = server.client("sagemaker")
    deploy_echo(sm, echo_image, "del", [("A", 1.0, 1)])
    sm.delete_endpoint(EndpointName="del")
    server.kill9()
    server.start()
    sm.get_waiter("endpoint_deleted").wait(EndpointName="del", WaiterConfig={"Delay": 0.5, "MaxAttempts": 60})
    assert instance_pids(server) == {}


def test_instance_over_its_memory_limit_fails_with_a_reason(server_factory: Any, echo_image: str) -> None:
    # Scale 0.01: ml.m5.large's 8 GiB becomes an 82 MiB limit.
    server = server_factory(MODELGATE_MEMORY_LIMIT_SCALE="0.01")
    sm, rt = server.client("sagemaker"), server.client("sagemaker-runtime")
    deploy_echo(sm, echo_image, "fat", [("A", 1.0, 1)], env={"ECHO_ALLOCATE_MB": "200"}, wait=False)
    d = wait_status(sm, "fat", {"Failed", "InService"})
    assert d["EndpointStatus"] == "Failed"
    assert "more than the 82 MiB limit of ml.m5.large" in d["FailureReason"], d["FailureReason"]
    # An instance that grows past its limit while serving is stopped and replaced.
    deploy_echo(sm, echo_image, "grows", [("A", 1.0, 1)])
    (pid,) = instance_pids(server).values()
    try:
        rt.invoke_endpoint(EndpointName="grows", Body=b"alloc:200")
    except ClientError as e:  # the watchdog may stop the instance before it has answered: not the model's error
        assert e.response["Error"]["Code"] == "ServiceUnavailable", e.response
        message = e.response["Error"]["Message"]
        assert "stopped" in message or "no healthy instance" in message, message
    _wait_for(lambda: pid not in instance_pids(server).values() and len(instance_pids(server)) == 1)
    assert _invoke_eventually(rt, "grows", b"after") == b"A|-|after"
    assert "more than the 82 MiB limit" in server.log()


def test_d3_invocations_across_a_restart_get_a_retryable_error_never_not_found(
    server: ServerProcess, echo_image: str
) -> None:
    """Between a kill -9 and the restarted instance passing /ping (3 s here), DescribeEndpoint says InService:
    the runtime answers 503 ServiceUnavailable (botocore retries it), not "Endpoint ... not found"."""
    sm = server.client("sagemaker")
    deploy_echo(sm, echo_image, "slowstart", [("A", 1.0, 1)], env={"ECHO_LISTEN_DELAY": "3"})
    answers: list[tuple[str, int, str, str]] = []  # (phase, status, error type, message)
    phase = ["before"]
    stop = threading.Event()

    def invoke_forever() -> None:
        while not stop.is_set():
            req = urllib.request.Request(
                f"{server.url}/endpoints/slowstart/invocations", data=b"x", method="POST",
                headers={"Content-Type": "text/plain"},
            )  # fmt: skip
            try:
                with urllib.request.urlopen(req, timeout=10) as r:
                    answers.append((phase[0], r.status, "", r.read().decode()))
            except urllib.error.HTTPError as e:
                answers.append((phase[0], e.code, e.headers.get("x-amzn-ErrorType", ""), e.read().decode()))
            except OSError:  # the server is down: connection refused or reset
                answers.append((phase[0], 0, "", ""))
                time.sleep(0.01)

    thread = threading.Thread(target=invoke_forever)
    thread.start()
    try:
        _wait_for(lambda: any(a[1] == 200 for a in answers))
        server.kill9()
        phase[0] = "restart"
        server.start()
        phase[0] = "restarted"
        described = sm.describe_endpoint(EndpointName="slowstart")["EndpointStatus"]
        _wait_for(lambda: any(a[0] == "restarted" and a[1] == 200 for a in answers), timeout=30)
    finally:
        stop.set()
        thread.join(20)
    assert described == "InService"
    restarted = [a for a in answers if a[0] == "restarted"]
    first_ok = next(i for i, a in enumerate(restarted) if a[1] == 200)
    refused = restarted[:first_ok]
    assert refused, "the restarted server served at once: the instance did not delay its start"
    assert {(a[1], a[2]) for a in refused} == {(503, "ServiceUnavailable")}, {(a[1], a[2], a[3]) for a in refused}
    assert json.loads(refused[0][3])["message"] == (
        "Endpoint slowstart of account 123456789012 is starting after a server restart and cannot serve yet; "
        "retry shortly."
    )
    assert not [a for a in answers if "not found" in a[3]]
    assert all(a[1] == 200 for a in restarted[first_ok:]), {(a[1], a[3]) for a in restarted[first_ok:]}
