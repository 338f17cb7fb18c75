"""Fuzz the runtime (InvokeEndpoint, rest-json) and the A/B REST routes against deployed echo endpoints.

About 20 % of a run's requests (``MODELGATE_FUZZ_EXAMPLES``, default 2,400; ``MODELGATE_FUZZ_SEED``; see
``tests/fuzz/run.py``). The module deploys ``fz-ab`` (variants ``a`` and ``b``) and ``fz-bad`` (a variant
whose model always answers 500), both tagged for A/B testing, then sends InvokeEndpoint requests (path,
headers and body from botocore's model) and A/B requests. Asserted for each: no 5xx but a 503
``ServiceUnavailable``, an AWS error code on every 4xx (``x-amzn-ErrorType``, or the A/B API's ``code``),
a strict JSON object from every A/B 2xx, the predicted outcome of every valid conversion (accepted for an
inference the fuzzer was issued, the documented refusal for a forged one) and of every request a browser or a
client without the AWS headers would send, and weights and experiments unchanged after a rejected
``/promote`` or ``/register``; after the run, the server is alive and its log has no traceback. A longer run::

    MODELGATE_FUZZ_EXAMPLES=50000 MODELGATE_FUZZ_SEED=$RANDOM pytest tests/fuzz/test_runtime_ab.py
"""

from __future__ import annotations

import json
import time

import pytest

from tests.fuzz.conftest import FuzzServer
from tests.fuzz.fuzzer import Fuzzer
from tests.fuzz.run import examples, finish, run, timeout
from tests.fuzz.runtime_ab import ENDPOINTS, AbRest, AbWorld, targets

SHARE = 0.20
REACHED = {"runtime InvokeEndpoint": 20, "ab invocation": 10, "ab conversion": 5, "ab stats": 3, "ab register": 1}


def deploy(env: FuzzServer) -> None:
    """The endpoints of :data:`ENDPOINTS`, InService and registered for A/B testing."""
    call = env.client.json_call
    for endpoint, variants in ENDPOINTS.items():
        for variant in variants:
            environment = {"ECHO_TAG": variant, **({"ECHO_ALWAYS_STATUS": "500"} if variant == "bad" else {})}
            call(
                "SageMaker.CreateModel",
                {
                    "ModelName": f"{endpoint}-{variant}",
                    "PrimaryContainer": {"Image": env.echo_image, "Environment": environment},
                },
            )
        pvs = [
            {
                "VariantName": v,
                "ModelName": f"{endpoint}-{v}",
                "InitialInstanceCount": 1,
                "InstanceType": "ml.m5.large",
                "InitialVariantWeight": 1.0,
            }
            for v in variants
        ]
        call("SageMaker.CreateEndpointConfig", {"EndpointConfigName": endpoint, "ProductionVariants": pvs})
        tags = [{"Key": "ab-testing:enabled", "Value": "true"}]
        call("SageMaker.CreateEndpoint", {"EndpointName": endpoint, "EndpointConfigName": endpoint, "Tags": tags})
    deadline = time.monotonic() + 60
    for endpoint in ENDPOINTS:
        while call("SageMaker.DescribeEndpoint", {"EndpointName": endpoint})["EndpointStatus"] != "InService":
            assert time.monotonic() < deadline, f"{endpoint} did not reach InService"
            time.sleep(0.2)
        answer = env.client.send(AbRest().raw("register", json.dumps({"endpoint_name": endpoint}).encode()))
        assert answer is not None and answer.status in (200, 201, 304), answer


@pytest.mark.slow
@pytest.mark.timeout(timeout(SHARE))
def test_fuzz_runtime_and_ab_routes(fuzz_server: FuzzServer) -> None:
    deploy(fuzz_server)
    world = AbWorld(fuzz_server.client)
    fuzzer = Fuzzer(fuzz_server.client, targets(world), fuzz_server.server.port)
    n = examples(SHARE)
    run(fuzzer, n)
    finish(fuzzer, fuzz_server, n, REACHED)
