"""Fuzz CloudWatch in its three protocols: JSON 1.0 (``X-Amz-Target: GraniteServiceVersion20100801.<Op>``),
rpc-v2-cbor (``/service/GraniteServiceVersion20100801/operation/<Op>``) and the query protocol (form posts).

About 35 % of a run's requests (``MODELGATE_FUZZ_EXAMPLES``, default 2,400; ``MODELGATE_FUZZ_SEED``; see
``tests/fuzz/run.py``): the twelve operations modelgate serves and a few it does not, mostly valid and
naming metrics and alarms that exist, a share mutated or in malformed envelopes. Asserted for each: no
5xx, an AWS error code on every 4xx (``__type`` in JSON and CBOR, ``<Code>`` in XML), a well-formed 2xx
body, the documented refusal of a request no SDK sends (a query request without an SDK header: 403
MissingAuthenticationToken; rpc-v2-cbor without ``smithy-protocol``: 400; a browser's Host or Origin), and
alarms and metrics unchanged after a rejected mutating request; after the run, the server is alive and its
log has no traceback. A longer run::

    MODELGATE_FUZZ_EXAMPLES=50000 MODELGATE_FUZZ_SEED=$RANDOM pytest tests/fuzz/test_cloudwatch.py
"""

from __future__ import annotations

import pytest

from tests.fuzz.cloudwatch import CloudWatchWorld, targets
from tests.fuzz.conftest import FuzzServer
from tests.fuzz.fuzzer import Fuzzer
from tests.fuzz.run import examples, finish, run, timeout

SHARE = 0.35
REACHED = {
    "* PutMetricData": 20,
    "json PutMetricData": 3,
    "cbor PutMetricData": 3,
    "query PutMetricData": 3,
    "* PutMetricAlarm": 10,
    "* GetMetricStatistics": 10,
    "* GetMetricData": 5,
    "* SetAlarmState": 2,
    "* DeleteAlarms": 1,
}


@pytest.mark.slow
@pytest.mark.timeout(timeout(SHARE))
def test_fuzz_cloudwatch_three_protocols(fuzz_server: FuzzServer) -> None:
    world = CloudWatchWorld(fuzz_server.client)
    world.snapshot()
    fuzzer = Fuzzer(fuzz_server.client, targets(world), fuzz_server.server.port)
    n = examples(SHARE)
    run(fuzzer, n)
    finish(fuzzer, fuzz_server, n, REACHED)
