"""Judging a deployment by comparing green with blue (issue 6, "beyond SageMaker"), through boto3.

The user's side is plain CloudWatch and SageMaker: an alarm on ``modelgate/Rollout``
``GreenWorseThanBlue`` listed in AutoRollbackConfiguration. The echo model fails at random with
probability ECHO_ERROR_RATE, so blue and green can differ in error rate only (a flaky new model that
a fixed "any 5XX" threshold could not tell from blue's own base rate).

The server runs the comparison every second with alpha = 0.001: the A/A test below fails spuriously
with probability at most 0.1% (the test's bound, docs/rollout-comparison.md), and a 2% → 25% error
rate is still caught within seconds at the request rates of these clients.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import pytest

from tests.e2e.test_rollouts import V, config, finished, model, traffic, wait_for

pytestmark = pytest.mark.slow

FAST = {"MODELGATE_ROLLOUT_COMPARISON_INTERVAL_SECONDS": "1", "MODELGATE_ROLLOUT_COMPARISON_ALPHA": "0.001"}


def comparison_alarm(cw: Any, name: str, endpoint: str) -> None:
    cw.put_metric_alarm(
        AlarmName=name,
        Namespace="modelgate/Rollout",
        MetricName="GreenWorseThanBlue",
        Dimensions=[{"Name": "EndpointName", "Value": endpoint}],
        Statistic="Maximum",
        Period=10,
        EvaluationPeriods=1,
        Threshold=1.0,
        ComparisonOperator="GreaterThanOrEqualToThreshold",
        TreatMissingData="notBreaching",
    )


def canary(wait: int, alarm: str) -> dict[str, Any]:
    return {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": {
                "Type": "CANARY",
                "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 50},
                "WaitIntervalInSeconds": wait,
            },
            "TerminationWaitInSeconds": 0,
        },
        "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": alarm}]},
    }


def flaky(sm: Any, image: str, name: str, rate: float) -> None:
    model(sm, image, name, {"ECHO_ERROR_RATE": str(rate)})
    config(sm, name, name, 2)


def statistic(cw: Any, endpoint: str, metric: str, stat: str, since: dt.datetime, variant: bool = False) -> list[float]:
    dims = [{"Name": "EndpointName", "Value": endpoint}]
    if variant:
        dims.append({"Name": "VariantName", "Value": V})
    points = cw.get_metric_statistics(
        Namespace="modelgate/Rollout",
        MetricName=metric,
        Dimensions=dims,
        StartTime=since,
        EndTime=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=60),
        Period=1,
        Statistics=[stat],
    )["Datapoints"]
    return [p[stat] for p in points]


def test_a_flakier_green_rolls_back_on_the_comparison_alarm(server_factory: Any, echo_image: str) -> None:
    server = server_factory(**FAST)
    sm, cw = server.client("sagemaker"), server.client("cloudwatch")
    flaky(sm, echo_image, "base-v1", 0.02)
    flaky(sm, echo_image, "flaky-v2", 0.25)
    sm.create_endpoint(EndpointName="cmp", EndpointConfigName="base-v1")
    wait_for(sm, "cmp", lambda d: d["EndpointStatus"] == "InService", 60)
    comparison_alarm(cw, "cmp-green-worse", "cmp")
    since = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)

    with traffic(server, "cmp", clients=4) as seen:
        time.sleep(0.5)
        started = time.monotonic()
        guarded = canary(300, "cmp-green-worse")
        sm.update_endpoint(EndpointName="cmp", EndpointConfigName="flaky-v2", DeploymentConfig=guarded)
        d = wait_for(sm, "cmp", finished, 120)
        took = time.monotonic() - started
    assert d["EndpointStatus"] == "InService" and d["EndpointConfigName"] == "base-v1", d
    assert "cmp-green-worse" in d["FailureReason"], d["FailureReason"]
    assert took < 120, took  # long before the 300 s bake would have ended
    print(f"rolled back {took:.1f} s after UpdateEndpoint; served {dict(seen.served)}, errors {dict(seen.errors)}")
    assert seen.served["flaky-v2"] > 0  # green did take its share before the rollback
    assert max(statistic(cw, "cmp", "GreenWorseThanBlue", "Maximum", since)) == 1.0
    assert min(statistic(cw, "cmp", "GreenErrorRatePValue", "Minimum", since, variant=True)) <= 0.001 / 2
    assert max(statistic(cw, "cmp", "GreenWorseThanBlueConfidence", "Maximum", since, variant=True)) >= 0.999


def test_an_a_a_update_completes_and_publishes_no_alarm(server_factory: Any, echo_image: str) -> None:
    server = server_factory(**FAST)
    sm, cw = server.client("sagemaker"), server.client("cloudwatch")
    flaky(sm, echo_image, "same-v1", 0.05)
    flaky(sm, echo_image, "same-v2", 0.05)
    sm.create_endpoint(EndpointName="aa", EndpointConfigName="same-v1")
    wait_for(sm, "aa", lambda d: d["EndpointStatus"] == "InService", 60)
    comparison_alarm(cw, "aa-green-worse", "aa")
    since = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)

    with traffic(server, "aa", clients=4) as seen:
        time.sleep(0.5)
        guarded = canary(15, "aa-green-worse")
        sm.update_endpoint(EndpointName="aa", EndpointConfigName="same-v2", DeploymentConfig=guarded)
        d = wait_for(sm, "aa", finished, 90)
    assert d["EndpointStatus"] == "InService" and d["EndpointConfigName"] == "same-v2", d
    assert "FailureReason" not in d
    assert seen.served["same-v2"] > 0 and seen.served["same-v1"] > 0
    worse = statistic(cw, "aa", "GreenWorseThanBlue", "Maximum", since)
    assert len(worse) >= 10 and max(worse) == 0.0  # published every second of the 15 s bake, never 1
    assert cw.describe_alarms(AlarmNames=["aa-green-worse"])["MetricAlarms"][0]["StateValue"] != "ALARM"
