"""Fuzz the SageMaker control plane (AWS JSON 1.1): every operation modelgate serves.

About 45 % of a run's requests (``MODELGATE_FUZZ_EXAMPLES``, default 2,400; ``MODELGATE_FUZZ_SEED``; see
``tests/fuzz/run.py``): mostly valid requests that name resources which exist, a share of mutated ones
and malformed envelopes. Asserted for each: no 5xx, an AWS error code on every 4xx, a strict JSON object
on every 2xx, the documented refusal of what a browser would send (another Host: 400 HostNotAllowed; another
Origin: 403), and the listed state unchanged after a rejected mutating request; after the run, the server
is alive and its log has no traceback. A longer run::

    MODELGATE_FUZZ_EXAMPLES=50000 MODELGATE_FUZZ_SEED=$RANDOM pytest tests/fuzz/test_sagemaker.py
"""

from __future__ import annotations

import pytest

from tests.fuzz.conftest import FuzzServer
from tests.fuzz.fuzzer import Fuzzer
from tests.fuzz.run import examples, finish, run, timeout
from tests.fuzz.sagemaker import SageMakerWorld, targets

SHARE = 0.45
ALARMS = ("fz-rollback-ok", "fz-rollback-alarm")
# Accepted requests the run must reach (else the generator no longer gets past validation).
REACHED = {
    "json CreateModel": 20,
    "json CreateEndpointConfig": 20,
    "json CreateEndpoint": 3,
    "json UpdateEndpoint": 1,  # these two need an endpoint InService, which takes its instances' start
    "json UpdateEndpointWeightsAndCapacities": 1,
    "json DeleteEndpoint": 1,
    "json AddTags": 5,
}


@pytest.mark.slow
@pytest.mark.timeout(timeout(SHARE))
def test_fuzz_sagemaker_control_plane(fuzz_server: FuzzServer) -> None:
    client = fuzz_server.client
    world = SageMakerWorld(client)
    for name in ALARMS:  # alarms that deployments' AutoRollbackConfiguration can name
        client.json_call(
            "GraniteServiceVersion20100801.PutMetricAlarm",
            {
                "AlarmName": name,
                "Namespace": "fuzz/rollback",
                "MetricName": "Errors",
                "Statistic": "Sum",
                "Period": 10,
                "EvaluationPeriods": 1,
                "Threshold": 1,
                "ComparisonOperator": "GreaterThanThreshold",
            },
            version="1.0",
        )
        world.alarms.add(name)
    client.json_call(
        "GraniteServiceVersion20100801.SetAlarmState",
        {"AlarmName": ALARMS[1], "StateValue": "ALARM", "StateReason": "fuzz"},
        version="1.0",
    )
    world.snapshot()
    fuzzer = Fuzzer(
        client,
        targets(world, fuzz_server.echo_image, fuzz_server.failing_image, fuzz_server.model_dir),
        fuzz_server.server.port,
    )
    n = examples(SHARE)
    run(fuzzer, n)
    finish(fuzzer, fuzz_server, n, REACHED)
