"""What the fuzz tests (tests/fuzz) found, each pinned down by hand: raw requests to a real server.

Each FZn test is one of the fuzzer's findings outside the review's defects: a 500, or a 4xx without an AWS error
code, or an answer its protocol cannot parse, with the smallest request that showed it.
"""

from __future__ import annotations

import json
import socket
import xml.etree.ElementTree as ET
from typing import Any

import cbor2
import pytest

from tests.e2e.conftest import ServerProcess, deploy_echo
from tests.fuzz.protocols import SDK_HEADER
from tests.fuzz.wire import Client, RawAnswer, request

CW = "GraniteServiceVersion20100801"
# What botocore sends with rpc-v2-cbor (the server refuses a request without smithy-protocol: D9).
CBOR_HEADERS = [("Content-Type", b"application/cbor"), ("smithy-protocol", b"rpc-v2-cbor")]


def _sagemaker(client: Client, op: str, body: bytes) -> RawAnswer:
    headers = [("X-Amz-Target", f"SageMaker.{op}".encode()), ("Content-Type", b"application/x-amz-json-1.1")]
    answer = client.send(request("POST", "/", body, headers))
    assert answer is not None
    return answer


def _cloudwatch_json(client: Client, op: str, body: bytes) -> RawAnswer:
    headers = [("X-Amz-Target", f"{CW}.{op}".encode()), ("Content-Type", b"application/x-amz-json-1.0")]
    answer = client.send(request("POST", "/", body, headers))
    assert answer is not None
    return answer


def _ab(client: Client, route: str, body: bytes, method: str = "POST") -> RawAnswer:
    headers = [("Content-Type", b"application/json")]
    if route in ("register", "promote"):  # administrative: with an AWS protocol header, as ab-promote sends
        headers.append(SDK_HEADER)
    answer = client.send(request(method, f"/{route}", body, headers))
    assert answer is not None
    return answer


def _error(answer: RawAnswer) -> tuple[int, str, str]:
    body = answer.json()
    return answer.status, body["__type"], body["message"]


@pytest.fixture
def client(server: ServerProcess) -> Any:
    c = Client(server.port)
    yield c
    c.close()


def test_fz1_unsupported_routing_strategy_is_a_validation_error(client: Client, echo_image: str) -> None:
    assert (
        _sagemaker(
            client, "CreateModel", json.dumps({"ModelName": "m", "PrimaryContainer": {"Image": "xgboost"}}).encode()
        ).status
        == 200
    )
    for strategy in ("PREFIX_AWARE", "KV_AWARE"):  # in botocore's enum, not routed by modelgate
        variant = {"VariantName": "v", "ModelName": "m", "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}
        body = {
            "EndpointConfigName": "c",
            "ProductionVariants": [{**variant, "RoutingConfig": {"RoutingStrategy": strategy}}],
        }
        status, code, message = _error(_sagemaker(client, "CreateEndpointConfig", json.dumps(body).encode()))
        assert (status, code) == (400, "ValidationException")
        assert message == (
            f"RoutingStrategy {strategy} of production variant v is not supported by modelgate yet; "
            "use LEAST_OUTSTANDING_REQUESTS or RANDOM."
        )
    assert _sagemaker(client, "ListEndpointConfigs", b"{}").json()["EndpointConfigs"] == []


def test_fz2_null_members_are_absent_and_null_items_refused(client: Client) -> None:
    # A null member is an absent one: here InitialInstanceCount, which modelgate requires.
    assert (
        _sagemaker(
            client,
            "CreateModel",
            b'{"ModelName": "m", "PrimaryContainer": {"Image": "xgboost"}, "ExecutionRoleArn": null}',
        ).status
        == 200
    )
    variant = b'{"VariantName": "v", "ModelName": "m", "InitialInstanceCount": null, "InstanceType": "ml.m5.large"}'
    body = b'{"EndpointConfigName": "c", "ProductionVariants": [' + variant + b"]}"
    assert _error(_sagemaker(client, "CreateEndpointConfig", body)) == (
        400,
        "ValidationException",
        "Production variant v must set InitialInstanceCount.",
    )
    # A null list item is refused by validation, as a null required member is.
    status, code, message = _error(
        _sagemaker(
            client, "AddTags", b'{"ResourceArn": "arn:aws:sagemaker:us-east-1:123456789012:model/m", "Tags": [null]}'
        )
    )
    assert (status, code) == (400, "ValidationException")
    assert "Value null at 'tags.1.member' failed to satisfy constraint: Member must not be null" in message
    assert (
        _sagemaker(client, "ListTags", b'{"ResourceArn": "arn:aws:sagemaker:us-east-1:123456789012:model/m"}').json()[
            "Tags"
        ]
        == []
    )
    assert [
        c["EndpointConfigName"] for c in _sagemaker(client, "ListEndpointConfigs", b"{}").json()["EndpointConfigs"]
    ] == []


def test_fz3_query_protocol_by_get_and_unknown_paths_have_an_error_code(client: Client) -> None:
    answer = client.send(request("GET", "/?Action=ListMetrics&Version=2010-08-01", headers=[SDK_HEADER]))
    assert answer is not None and answer.status == 200, answer
    assert ET.fromstring(answer.body).tag.endswith("ListMetricsResponse")
    for method, path in (("GET", "/nowhere"), ("PUT", "/"), ("POST", "/service/Other/operation/ListMetrics")):
        answer = client.send(request(method, path))
        assert answer is not None
        assert (answer.status, answer.header("x-amzn-errortype")) == (404, "UnknownOperationException")
        assert answer.json() == {
            "__type": "UnknownOperationException",
            "message": f"Not Found: no operation is served at {method} {path}.",
        }


def test_fz4_ab_routes_answer_wrong_methods_with_a_code(client: Client) -> None:
    answer = _ab(client, "promote", b'{"endpoint_name": "x"}', method="GET")
    assert (answer.status, answer.json()) == (405, {"code": "MethodNotAllowed", "message": "Method Not Allowed"})


def test_fz5_ab_invocation_header_values_are_checked(server_factory: Any, echo_image: str) -> None:
    server = server_factory(MODELGATE_ALLOW_COMMAND_IMAGES="true")
    deploy_echo(server.client("sagemaker"), echo_image, "ep", [("a", 1.0, 1)])
    client = Client(server.port)
    base = {"endpoint_name": "ep", "data": "x", "user_id": "u1"}
    assert _ab(client, "invocation", json.dumps(base).encode()).status in (200, 201, 202)
    refused = [
        ({"inference_id": "e\u0301"}, "inferenceId"),  # not Latin-1: the forward to the instance failed (500)
        ({"inference_id": " x"}, "inferenceId"),
        ({"content_type": "text/plain\r\nX-Injected: 1"}, "contentType"),  # a header of the caller's, injected
        ({"content_type": "caf\u00e9"}, "contentType"),
    ]
    for extra, member in refused:
        answer = _ab(client, "invocation", json.dumps({**base, **extra}).encode())
        assert answer.status == 400, (extra, answer)
        assert answer.json()["code"] == "ValidationError"
        assert answer.json()["message"].startswith(f"1 validation error detected: Value at '{member}' failed")
    client.close()


def test_fz6_query_answers_stay_xml_with_control_characters(client: Client) -> None:
    body = json.dumps({"Namespace": "fz", "MetricData": [{"MetricName": "a\x01b\x1f", "Value": 1}]}).encode()
    assert _cloudwatch_json(client, "PutMetricData", body).status == 200
    answer = client.send(
        request(
            "POST",
            "/",
            b"Action=ListMetrics&Version=2010-08-01",
            [("Content-Type", b"application/x-www-form-urlencoded"), SDK_HEADER],
        )
    )
    assert answer is not None and answer.status == 200
    names = [e.text for e in ET.fromstring(answer.body).iter() if e.tag.endswith("MetricName")]
    assert names == ["a\ufffdb\ufffd"]
    # The JSON answer keeps the name as it was put.
    assert _cloudwatch_json(client, "ListMetrics", b"{}").json()["Metrics"][0]["MetricName"] == "a\x01b\x1f"


def test_fz7_unpaired_surrogates_are_refused(server: ServerProcess, client: Client) -> None:
    status, code, message = _error(
        _sagemaker(
            client,
            "CreateModel",
            b'{"ModelName": "m", "PrimaryContainer": {"Image": "xgboost"}, '
            b'"Tags": [{"Key": "k\\ud800", "Value": "v"}]}',
        )
    )
    assert (status, code) == (400, "ValidationException")
    assert message == (
        "1 validation error detected: Value at 'tags.1.member.key' failed to satisfy constraint: "
        "Member must be Unicode text (it holds an unpaired surrogate)"
    )
    assert _sagemaker(client, "ListModels", b"{}").json()["Models"] == []
    put = b'{"Namespace": "fz", "MetricData": [{"MetricName": "a\\udfffb", "Value": 1}]}'
    status, code, message = _error(_cloudwatch_json(client, "PutMetricData", put))
    assert (status, code) == (400, "ValidationException")
    assert "at 'metricData.1.member.metricName'" in message
    # Nothing was stored: the CBOR answer (which cannot hold a surrogate) is whole.
    cbor = client.send(request("POST", f"/service/{CW}/operation/ListMetrics", cbor2.dumps({}), CBOR_HEADERS))
    assert cbor is not None and (cbor.status, cbor2.loads(cbor.body)) == (200, {"Metrics": []})
    for route in ("register", "stats", "promote", "invocation", "conversion"):
        answer = _ab(client, route, b'{"endpoint_name": "e\\ud800", "data": "x"}')
        assert (answer.status, answer.json()) == (
            400,
            {
                "code": "InvalidRequest",
                "message": "Require json body of Unicode text: a string holds an unpaired surrogate",
            },
        ), route
    assert "Traceback" not in server.log()


def test_fz8_malformed_http_is_refused_with_an_error_code(server: ServerProcess) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(
            b"POST /endpoints/x/invocations HTTP/1.1\r\nHost: x\r\n"
            b"X-Amzn-SageMaker-Target-Model: \x7f\r\nContent-Length: 0\r\n\r\n"
        )
        head = s.recv(65536).split(b"\r\n\r\n")[0].split(b"\r\n")
    assert head[0] == b"HTTP/1.1 400 Bad Request"
    assert b"x-amzn-errortype: BadRequest" in head


def test_fz9_non_finite_times_are_refused(client: Client) -> None:
    # CBOR carries a NaN: the input walk refuses it as a timestamp (D11).
    cbor_put = cbor2.dumps(
        {"Namespace": "fz", "MetricData": [{"MetricName": "m", "Value": 1.0, "Timestamp": float("nan")}]}
    )
    answer = client.send(request("POST", f"/service/{CW}/operation/PutMetricData", cbor_put, CBOR_HEADERS))
    assert answer is not None
    assert (answer.status, cbor2.loads(answer.body)) == (
        400,
        {
            "__type": "ValidationException",
            "message": "1 validation error detected: Value 'NaN' at 'metricData.1.member.timestamp' failed to "
            "satisfy constraint: Member must be a timestamp: epoch seconds or ISO 8601, years 1 to 9999",
        },
    )
    # JSON's NaN and Infinity tokens are not JSON: refused when the body is read (D2), whatever the member.
    for op, body, token in (
        (
            "GetMetricStatistics",
            b'{"Namespace": "fz", "MetricName": "m", "StartTime": NaN, "EndTime": 9, "Period": 60, '
            b'"Statistics": ["Sum"]}',
            "NaN",
        ),
        (
            "GetMetricData",
            b'{"MetricDataQueries": [{"Id": "e1", "Expression": "1"}], "StartTime": 0, "EndTime": Infinity}',
            "Infinity",
        ),
        ("DescribeAlarmHistory", b'{"StartDate": -Infinity}', "-Infinity"),
    ):
        assert _error(_cloudwatch_json(client, op, body)) == (
            400,
            "SerializationException",
            f"The request body is not valid JSON: {token} is not a JSON number",
        ), op
    # Nothing was stored.
    assert _cloudwatch_json(client, "ListMetrics", b"{}").json()["Metrics"] == []


def test_fz10_ab_register_with_an_infinite_count_is_refused(client: Client) -> None:
    for value in (b"Infinity", b"-Infinity", b"1e400"):
        answer = _ab(client, "register", b'{"endpoint_name": "x", "looks": ' + value + b"}")
        assert (answer.status, answer.json()) == (
            400,
            {
                "code": "InvalidParameter",
                "message": "epsilon, alpha must be numbers; warmup, horizon, looks, max_rewards_per_inference integers",
            },
        ), value


def test_fz12_ab_body_nested_deep_is_refused(server: ServerProcess, client: Client) -> None:
    for depth in (1000, 100_000):
        body = b'{"endpoint_name": "x", "a": ' + b"[" * depth + b"]" * depth + b"}"
        answer = _ab(client, "stats", body)
        assert (answer.status, answer.json()) == (
            400,
            {"code": "InvalidRequest", "message": "Require HTTP POST with json body"},
        ), depth
    assert "Traceback" not in server.log()


HUGE = "9" * 400  # an integer literal beyond a float's range: float() of it raises OverflowError


def test_fz13_an_integer_beyond_the_float_range_in_a_double_member_is_refused(
    server: ServerProcess, client: Client
) -> None:
    alarm = (
        '{"AlarmName": "a", "MetricName": "m", "Namespace": "fz", "Statistic": "Sum", "Period": 60, '
        '"EvaluationPeriods": 1, "ComparisonOperator": "GreaterThanThreshold", "Threshold": %s}'
    )
    assert _error(_cloudwatch_json(client, "PutMetricAlarm", (alarm % HUGE).encode())) == (
        400,
        "InvalidParameterValueException",
        "The value Infinity for parameter Threshold is invalid.",
    )
    put = cbor2.dumps({"Namespace": "fz", "MetricData": [{"MetricName": "m", "Value": -int(HUGE)}]})  # a bignum
    answer = client.send(request("POST", f"/service/{CW}/operation/PutMetricData", put, CBOR_HEADERS))
    assert answer is not None
    assert (answer.status, cbor2.loads(answer.body)) == (
        400,
        {
            "__type": "InvalidParameterValueException",
            "message": "The value -Infinity for parameter MetricData.member.1.Value is invalid.",
        },
    )
    weights = '{"EndpointName": "e", "DesiredWeightsAndCapacities": [{"VariantName": "a", "DesiredWeight": %s}]}'
    status, code, message = _error(_sagemaker(client, "UpdateEndpointWeightsAndCapacities", (weights % HUGE).encode()))
    assert (status, code) == (400, "ValidationException")
    assert message.endswith(
        "at 'desiredWeightsAndCapacities.1.member.desiredWeight' failed to satisfy constraint: "
        "Member must be a finite number"
    )
    # Nothing was stored.
    assert _cloudwatch_json(client, "ListMetrics", b"{}").json()["Metrics"] == []
    assert _cloudwatch_json(client, "DescribeAlarms", b"{}").json()["MetricAlarms"] == []
    assert "Traceback" not in server.log()


def test_fz14_ab_reward_beyond_the_float_range_is_refused(server: ServerProcess, client: Client) -> None:
    for sign in ("", "-"):
        body = '{"endpoint_name": "x", "user_id": "u1", "inference_id": "i1", "reward": ' + sign + HUGE + "}"
        answer = _ab(client, "conversion", body.encode())
        assert (answer.status, answer.json()) == (
            400,
            {
                "code": "InvalidReward",
                "message": "reward must be in [0, 1] (1 is a full conversion), got a number beyond the float range",
            },
        ), sign
    assert "Traceback" not in server.log()


def test_fz15_ab_register_counts_beyond_the_store_are_refused(server_factory: Any, echo_image: str) -> None:
    server = server_factory(MODELGATE_ALLOW_COMMAND_IMAGES="true")
    deploy_echo(server.client("sagemaker"), echo_image, "ep", [("a", 1.0, 1), ("b", 1.0, 1)])
    client = Client(server.port)
    assert _ab(client, "register", b'{"endpoint_name": "ep", "warmup": 5}').status in (200, 201)
    before = _ab(client, "stats", b'{"endpoint_name": "ep"}').json()
    for member, value, shown in (
        ("warmup", str(2**63).encode(), "warmup must be in [0, 1000000000], got 9223372036854775808"),
        ("warmup", b"1e300", "warmup must be in [0, 1000000000], got 1000000000000000052504760255204420248704"),
        ("horizon", HUGE.encode(), "horizon must be in [1, 1000000000] invocations per variant, got 9999"),
    ):
        answer = _ab(client, "register", b'{"endpoint_name": "ep", "%s": %s}' % (member.encode(), value))
        assert (answer.status, answer.json()["code"]) == (400, "InvalidParameter"), (member, value)
        assert answer.json()["message"].startswith(shown)
    after = _ab(client, "stats", b'{"endpoint_name": "ep"}').json()
    assert (after["experiment_id"], after["warmup"], after["horizon"]) == (before["experiment_id"], 5, 10_000)
    assert "Traceback" not in server.log()
    client.close()
