"""Guarded deployments that go wrong in the worst places (issue 6), through boto3 against a real server:

- the server is killed (a real SIGKILL, at an exact point set by the test-only fault injection
  ``MODELGATE_FAULT_CRASH_AT``) during a traffic shift, and restarted on the same data directory without
  it: the endpoint ends consistent with no manual call;
- a rolling update whose rollback fails (the old model's image was removed meanwhile, so old instances
  cannot start again) leaves the endpoint in UpdateRollbackFailed, serving a mix; another UpdateEndpoint
  is the remedy, and it leaves only the new config's instances.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from botocore.exceptions import BotoCoreError, ClientError

from tests.e2e.conftest import ServerProcess, all_instance_pids, instance_pids
from tests.e2e.test_rollouts import (
    V,
    canary,
    config,
    deploy,
    finished,
    linear,
    model,
    traffic,
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
