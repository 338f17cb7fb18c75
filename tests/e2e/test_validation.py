"""Bad input never reaches the store or a 500, a bad stored row never stops the server, names are SageMaker's.

D2 (non-finite numbers and a poisoned store), D11 (control-plane 500s) and the name-case item of the
fault-and-attack review, against a real server.
"""

from __future__ import annotations

import json
import sqlite3
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import cbor2
import pytest
from botocore.exceptions import ClientError

from tests.e2e.conftest import ServerProcess, deploy_echo

ACCOUNT_ARN = "arn:aws:sagemaker:us-east-1:123456789012"


def _post(server: ServerProcess, body: bytes, headers: dict[str, str], path: str = "/") -> tuple[int, bytes]:
    req = urllib.request.Request(server.url + path, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _sagemaker(server: ServerProcess, op: str, body: bytes) -> tuple[int, str, str]:
    headers = {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": f"SageMaker.{op}"}
    status, raw = _post(server, body, headers)
    answer = json.loads(raw or b"{}")
    return status, answer.get("__type", ""), answer.get("message", "")


def _cloudwatch_json(server: ServerProcess, op: str, body: bytes) -> tuple[int, str, str]:
    headers = {"Content-Type": "application/x-amz-json-1.0", "X-Amz-Target": f"GraniteServiceVersion20100801.{op}"}
    status, raw = _post(server, body, headers)
    answer = json.loads(raw)
    return status, answer["__type"], answer["message"]


def _cloudwatch_cbor(server: ServerProcess, op: str, params: dict[str, Any]) -> tuple[int, str, str]:
    path = f"/service/GraniteServiceVersion20100801/operation/{op}"
    headers = {"Content-Type": "application/cbor", "smithy-protocol": "rpc-v2-cbor"}  # as botocore sends (D9)
    status, raw = _post(server, cbor2.dumps(params), headers, path)
    answer = cbor2.loads(raw)
    return status, answer.get("__type", ""), answer.get("message", "")


def _cloudwatch_query(server: ServerProcess, params: dict[str, str]) -> tuple[int, str]:
    body = urllib.parse.urlencode({"Version": "2010-08-01", **params}).encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded", "X-Amz-Date": "20261207T000000Z"}  # D9
    status, raw = _post(server, body, headers)
    return status, raw.decode()


def _unhandled(server: ServerProcess) -> list[str]:
    text = server.log_path.read_text(errors="replace")
    return [line for line in text.splitlines() if "unhandled error" in line or "Traceback" in line]


# --- D2 --------------------------------------------------------------------------------------------------


def test_d2_nan_and_infinity_weights_are_refused_and_change_nothing(server: ServerProcess, echo_image: str) -> None:
    sm = server.client("sagemaker")
    deploy_echo(sm, echo_image, "w", [("A", 1.0, 1)])
    for token in (b"NaN", b"Infinity", b"-Infinity"):
        body = b'{"EndpointName":"w","DesiredWeightsAndCapacities":[{"VariantName":"A","DesiredWeight":%s}]}' % token
        status, code, message = _sagemaker(server, "UpdateEndpointWeightsAndCapacities", body)
        assert (status, code) == (400, "SerializationException"), message
        assert message == f"The request body is not valid JSON: {token.decode()} is not a JSON number"
        body = (
            b'{"EndpointConfigName":"c","ProductionVariants":[{"VariantName":"A","ModelName":"w-A",'
            b'"InitialInstanceCount":1,"InstanceType":"ml.m5.large","InitialVariantWeight":%s}]}' % token
        )
        assert _sagemaker(server, "CreateEndpointConfig", body)[:2] == (400, "SerializationException")
    # 1e400 is valid JSON, and infinite once parsed: the walk names the member.
    body = b'{"EndpointName":"w","DesiredWeightsAndCapacities":[{"VariantName":"A","DesiredWeight":1e400}]}'
    assert _sagemaker(server, "UpdateEndpointWeightsAndCapacities", body) == (
        400,
        "ValidationException",
        "1 validation error detected: Value 'Infinity' at 'desiredWeightsAndCapacities.1.member.desiredWeight' "
        "failed to satisfy constraint: Member must be a finite number",
    )
    d = sm.describe_endpoint(EndpointName="w")
    assert d["EndpointStatus"] == "InService" and d["ProductionVariants"][0]["DesiredWeight"] == 1.0
    assert [e["EndpointName"] for e in sm.list_endpoints()["Endpoints"]] == ["w"]
    assert [c["EndpointConfigName"] for c in sm.list_endpoint_configs()["EndpointConfigs"]] == ["w-config"]
    assert _unhandled(server) == []


def _poison(db: str, kind: str, name: str, change: Any) -> None:
    """Rewrite a stored document as an older modelgate stored a NaN weight: as null."""
    with sqlite3.connect(db) as conn:
        (body,) = conn.execute("SELECT body FROM resources WHERE kind = ? AND name = ?", (kind, name)).fetchone()
        doc = json.loads(body)
        change(doc)
        conn.execute("UPDATE resources SET body = ? WHERE kind = ? AND name = ?", (json.dumps(doc), kind, name))


def test_d2_a_row_that_does_not_load_is_quarantined_and_the_server_starts_and_serves_the_rest(
    server: ServerProcess, echo_image: str
) -> None:
    sm, rt = server.client("sagemaker"), server.client("sagemaker-runtime")
    deploy_echo(sm, echo_image, "good", [("A", 1.0, 1)])
    deploy_echo(sm, echo_image, "bad", [("A", 1.0, 1)])
    sm.add_tags(ResourceArn=f"{ACCOUNT_ARN}:endpoint/bad", Tags=[{"Key": "k", "Value": "v"}])
    server.stop()
    db = str(server.data_dir / "modelgate.db")

    def weight_null(doc: dict[str, Any]) -> None:
        doc["variants"][0]["desired_weight"] = None

    def config_weight_null(doc: dict[str, Any]) -> None:
        doc["production_variants"][0]["initial_variant_weight"] = None

    _poison(db, "endpoint", "bad", weight_null)
    _poison(db, "endpoint-config", "bad-config", config_weight_null)

    server.start()  # e5a212b exits with status 3 here: "validation errors for Endpoint"
    assert [e["EndpointName"] for e in sm.list_endpoints()["Endpoints"]] == ["good"]
    assert [c["EndpointConfigName"] for c in sm.list_endpoint_configs()["EndpointConfigs"]] == ["good-config"]
    assert sm.describe_endpoint(EndpointName="good")["EndpointStatus"] == "InService"
    with pytest.raises(ClientError) as caught:
        sm.describe_endpoint(EndpointName="bad")
    assert caught.value.response["Error"]["Code"] == "ValidationException"
    deadline_body = b""
    for _ in range(100):  # the good endpoint's instance starts again after the restart
        try:
            deadline_body = rt.invoke_endpoint(EndpointName="good", Body=b"hi")["Body"].read()
            break
        except ClientError as e:
            assert e.response["Error"]["Code"] == "ServiceUnavailable", e.response
            time.sleep(0.1)
    assert deadline_body == b"A|-|hi"
    log = server.log_path.read_text(errors="replace")
    assert "stored endpoint 'bad' does not load; moved to the quarantine table" in log
    assert "stored endpoint-config 'bad-config' does not load; moved to the quarantine table" in log
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT kind, name, tags, body FROM quarantine ORDER BY id").fetchall()
    assert [(k, n) for k, n, _, _ in rows] == [("endpoint", "bad"), ("endpoint-config", "bad-config")]
    assert json.loads(rows[0][2]) == [["k", "v"]]  # its tags went with it
    assert json.loads(rows[0][3])["variants"][0]["desired_weight"] is None  # the raw text, for the operator
    # The name is free again, and the new endpoint does not inherit the quarantined one's tags.
    sm.create_endpoint_config(
        EndpointConfigName="bad-config",
        ProductionVariants=[
            {"VariantName": "A", "ModelName": "bad-A", "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}
        ],
    )
    sm.create_endpoint(EndpointName="bad", EndpointConfigName="bad-config")
    assert sm.list_tags(ResourceArn=f"{ACCOUNT_ARN}:endpoint/bad")["Tags"] == []
    assert _unhandled(server) == []


# --- D11 -------------------------------------------------------------------------------------------------


def test_d11_the_reviews_control_plane_500s_are_named_400s(server: ServerProcess, echo_image: str) -> None:
    server.client("sagemaker").create_model(ModelName="m", PrimaryContainer={"Image": echo_image})
    huge = b"9" * 400
    cases: list[tuple[str, bytes, str, str]] = [
        (
            "ListModels",
            b'{"CreationTimeBefore":"abc"}',
            "ValidationException",
            "1 validation error detected: Value 'abc' at 'creationTimeBefore' failed to satisfy constraint: "
            "Member must be a timestamp: epoch seconds or ISO 8601, years 1 to 9999",
        ),
        (
            "ListEndpoints",
            b'{"LastModifiedTimeAfter":"2024-13-45T00:00:00Z"}',
            "ValidationException",
            "1 validation error detected: Value '2024-13-45T00:00:00Z' at 'lastModifiedTimeAfter' failed to "
            "satisfy constraint: Member must be a timestamp: epoch seconds or ISO 8601, years 1 to 9999",
        ),
        (
            "ListModels",
            b'{"MaxResults": %s}' % huge,
            "ValidationException",
            f"1 validation error detected: Value '{'9' * 117}...' at 'maxResults' failed to satisfy constraint: "
            "Member must have value less than or equal to 2147483647",
        ),
        (
            "ListModels",
            b'{"NextToken":"eyJvIjogMWU0MDB9"}',  # {"o": 1e400}
            "ValidationException",
            "Invalid pagination token: 'eyJvIjogMWU0MDB9'.",
        ),
        (
            "ListTags",
            b'{"ResourceArn":"%s:model/m","NextToken":"eyJvIjogMWU0MDB9"}' % ACCOUNT_ARN.encode(),
            "ValidationException",
            "Invalid pagination token: 'eyJvIjogMWU0MDB9'.",
        ),
        (
            "ListModels",
            b"[" * 100_000 + b"]" * 100_000,
            "SerializationException",
            "The request body is not valid JSON: it is nested too deeply.",
        ),
        (
            "ListModels",
            b'{"NameContains":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
            "SerializationException",
            "The request body is not valid JSON: it is nested too deeply.",
        ),
    ]
    # A lone surrogate (valid JSON escape, not Unicode) in a member without a pattern: UTF-8 cannot store it.
    cases.append(
        (
            "CreateModel",
            b'{"ModelName":"s","PrimaryContainer":{"Image":"x"},"Tags":[{"Key":"k","Value":"\\ud800"}]}',
            "ValidationException",
            "1 validation error detected: Value at 'tags.1.member.value' failed to satisfy constraint: "
            "Member must be Unicode text (it holds an unpaired surrogate)",
        )
    )
    for op, body, code, message in cases:
        assert _sagemaker(server, op, body) == (400, code, message), (op, body[:80])
    assert _unhandled(server) == []


def test_d11_cloudwatch_json_cbor_and_query_answer_the_same_causes_with_400s(server: ServerProcess) -> None:
    stats = {"Namespace": "N", "MetricName": "m", "StartTime": 0, "EndTime": 60, "Period": 60, "Statistics": ["Sum"]}
    alarm = {
        "AlarmName": "a", "MetricName": "m", "Namespace": "N", "Statistic": "Sum", "Period": 60,
        "EvaluationPeriods": 1, "ComparisonOperator": "GreaterThanThreshold",
    }  # fmt: skip
    # JSON 1.0: a bad timestamp string, an integer beyond float range, deep nesting, a NaN token, 1e400.
    status, code, message = _cloudwatch_json(
        server, "GetMetricStatistics", json.dumps({**stats, "EndTime": "x"}).encode()
    )
    assert (status, code) == (400, "ValidationException") and "Value 'x' at 'endTime'" in message
    body = json.dumps({**stats, "Period": 0}).replace('"Period": 0', '"Period": ' + "9" * 400).encode()
    status, code, message = _cloudwatch_json(server, "GetMetricStatistics", body)
    assert (status, code) == (400, "ValidationException") and "at 'period'" in message
    assert _cloudwatch_json(server, "ListMetrics", b"[" * 100_000 + b"]" * 100_000)[:2] == (
        400,
        "SerializationException",
    )
    assert _cloudwatch_json(
        server, "PutMetricAlarm", json.dumps({**alarm, "Threshold": "T"}).encode().replace(b'"T"', b"NaN")
    )[:2] == (400, "SerializationException")
    body = json.dumps({**alarm, "Threshold": 1}).replace('"Threshold": 1', '"Threshold": 1e400').encode()
    assert _cloudwatch_json(server, "PutMetricAlarm", body) == (
        400,
        "InvalidParameterValueException",
        "The value Infinity for parameter Threshold is invalid.",
    )
    # A NextToken that is "digits" only to str.isdigit (int("²") raises).
    assert _cloudwatch_json(server, "ListMetrics", b'{"NextToken": "\\u00b2"}')[:2] == (
        400,
        "InvalidParameterValueException",
    )
    assert _cloudwatch_json(server, "DescribeAlarms", b'{"NextToken": "\\u00b2"}')[:2] == (400, "InvalidNextToken")
    # rpc-v2-cbor: a bignum, NaN and infinity (CBOR has them), a bad timestamp string.
    assert _cloudwatch_cbor(server, "GetMetricStatistics", {**stats, "Period": 10**400})[:2] == (
        400,
        "ValidationException",
    )
    for value, shown in ((float("nan"), "NaN"), (float("-inf"), "-Infinity")):
        assert _cloudwatch_cbor(server, "PutMetricAlarm", {**alarm, "Threshold": value}) == (
            400,
            "InvalidParameterValueException",
            f"The value {shown} for parameter Threshold is invalid.",
        )
    status, code, message = _cloudwatch_cbor(server, "GetMetricStatistics", {**stats, "StartTime": "soon"})
    assert (status, code) == (400, "ValidationException") and "Value 'soon' at 'startTime'" in message
    # query: the same, as form fields.
    form = {k: str(v) for k, v in stats.items() if k != "Statistics"}
    form = {**form, "Action": "GetMetricStatistics", "Statistics.member.1": "Sum"}
    status, text = _cloudwatch_query(server, {**form, "Period": "9" * 400})
    assert status == 400 and "<Code>ValidationError</Code>" in text and "at &apos;period&apos;" not in text
    assert "at 'period'" in text
    status, text = _cloudwatch_query(server, {**form, "EndTime": "1e400"})
    assert status == 400 and "<Code>ValidationError</Code>" in text
    status, text = _cloudwatch_query(server, {**{k: str(v) for k, v in alarm.items()}, "Action": "PutMetricAlarm",
                                              "Threshold": "NaN"})  # fmt: skip
    assert status == 400 and "<Message>The value NaN for parameter Threshold is invalid.</Message>" in text
    assert _unhandled(server) == []


def test_d11_a_query_parameter_name_nested_deeply_is_not_taken_apart(server: ServerProcess) -> None:
    """Every prefix of every dotted name was kept: quadratic time and memory in a name's length (15,000
    dots: seconds and 200 MB; the 8 MiB body limit allows 4 million)."""
    started = time.monotonic()
    status, text = _cloudwatch_query(server, {"Action": "ListMetrics", "a" + ".a" * 15_000: "x"})
    assert status == 200 and "<ListMetricsResponse" in text
    assert time.monotonic() - started < 1.0
    assert _unhandled(server) == []


# --- names -----------------------------------------------------------------------------------------------


def _refused(call: Any, **kwargs: Any) -> tuple[str, str]:
    with pytest.raises(ClientError) as caught:
        call(**kwargs)
    err = caught.value.response["Error"]
    return err["Code"], err["Message"]


def test_names_case_unique_case_insensitively_kept_as_given_found_in_any_case(
    server: ServerProcess, echo_image: str
) -> None:
    sm, rt = server.client("sagemaker"), server.client("sagemaker-runtime")
    sm.create_model(ModelName="CaseC", PrimaryContainer={"Image": echo_image})
    for other in ("casec", "CASEC"):
        assert _refused(sm.create_model, ModelName=other, PrimaryContainer={"Image": echo_image}) == (
            "ValidationException",
            f'Cannot create already existing model "{ACCOUNT_ARN}:model/casec".',
        )
    assert [m["ModelName"] for m in sm.list_models()["Models"]] == ["CaseC"]
    d = sm.describe_model(ModelName="CASEC")
    assert (d["ModelName"], d["ModelArn"]) == ("CaseC", f"{ACCOUNT_ARN}:model/casec")
    # Tags by the ARN with the name in its original case, and by the lower-cased ARN SageMaker returns.
    sm.add_tags(ResourceArn=f"{ACCOUNT_ARN}:model/CaseC", Tags=[{"Key": "team", "Value": "a"}])
    assert sm.list_tags(ResourceArn=f"{ACCOUNT_ARN}:model/casec")["Tags"] == [{"Key": "team", "Value": "a"}]
    sm.delete_tags(ResourceArn=f"{ACCOUNT_ARN}:model/CASEC", TagKeys=["team"])
    assert sm.list_tags(ResourceArn=f"{ACCOUNT_ARN}:model/CaseC")["Tags"] == []

    variant = {"VariantName": "A", "ModelName": "casec", "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}
    sm.create_endpoint_config(EndpointConfigName="CfgC", ProductionVariants=[variant])
    assert _refused(sm.create_endpoint_config, EndpointConfigName="cfgC", ProductionVariants=[variant]) == (
        "ValidationException",
        f'Cannot create already existing endpoint configuration "{ACCOUNT_ARN}:endpoint-config/cfgc".',
    )
    c = sm.describe_endpoint_config(EndpointConfigName="CFGC")
    assert c["EndpointConfigName"] == "CfgC"
    assert c["ProductionVariants"][0]["ModelName"] == "CaseC"  # the reference names the stored model

    sm.create_endpoint(EndpointName="EpC", EndpointConfigName="cfgc")
    assert _refused(sm.create_endpoint, EndpointName="EPC", EndpointConfigName="CfgC") == (
        "ValidationException",
        f'Cannot create already existing endpoint "{ACCOUNT_ARN}:endpoint/epc".',
    )
    sm.get_waiter("endpoint_in_service").wait(EndpointName="epc", WaiterConfig={"Delay": 0.5, "MaxAttempts": 60})
    d = sm.describe_endpoint(EndpointName="EPC")
    assert (d["EndpointName"], d["EndpointConfigName"], d["EndpointStatus"]) == ("EpC", "CfgC", "InService")
    assert [e["EndpointName"] for e in sm.list_endpoints()["Endpoints"]] == ["EpC"]
    # InvokeEndpoint matches the name exactly, as SageMaker documents for CreateEndpoint's EndpointName.
    assert rt.invoke_endpoint(EndpointName="EpC", Body=b"x")["Body"].read() == b"echo|-|x"
    assert _refused(rt.invoke_endpoint, EndpointName="epc", Body=b"x") == (
        "ValidationError",
        "Endpoint epc of account 123456789012 not found.",
    )
    sm.update_endpoint_weights_and_capacities(
        EndpointName="epC", DesiredWeightsAndCapacities=[{"VariantName": "A", "DesiredWeight": 2.0}]
    )
    sm.get_waiter("endpoint_in_service").wait(EndpointName="EpC", WaiterConfig={"Delay": 0.5, "MaxAttempts": 60})
    assert sm.describe_endpoint(EndpointName="EpC")["ProductionVariants"][0]["CurrentWeight"] == 2.0
    sm.add_tags(ResourceArn=f"{ACCOUNT_ARN}:endpoint/EpC", Tags=[{"Key": "k", "Value": "v"}])
    assert sm.list_tags(ResourceArn=d["EndpointArn"])["Tags"] == [{"Key": "k", "Value": "v"}]

    sm.delete_endpoint(EndpointName="epc")
    sm.get_waiter("endpoint_deleted").wait(EndpointName="EpC", WaiterConfig={"Delay": 0.5, "MaxAttempts": 60})
    sm.delete_endpoint_config(EndpointConfigName="cfgc")
    sm.delete_model(ModelName="casec")
    assert sm.list_endpoints()["Endpoints"] == []
    assert sm.list_endpoint_configs()["EndpointConfigs"] == []
    assert sm.list_models()["Models"] == []
    assert _unhandled(server) == []
