"""boto3's cloudwatch client, unchanged, against a live server (JSON 1.0, and CBOR and query forced)."""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import random
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import cbor2
import pytest

from tests.cloudwatch.conftest import Webhook, client
from tests.cloudwatch.server import LiveServer, start_server

DIMS = [{"Name": "EndpointName", "Value": "ep"}, {"Name": "VariantName", "Value": "blue"}]


def window() -> dict[str, Any]:
    now = dt.datetime.now(dt.UTC)
    return {"StartTime": now - dt.timedelta(minutes=10), "EndTime": now + dt.timedelta(minutes=1)}


def test_put_metric_data_then_statistics(any_protocol_cw: Any) -> None:
    cw = any_protocol_cw
    for _ in range(3):
        cw.put_metric_data(Namespace="Shop", MetricData=[
            {"MetricName": "Orders", "Dimensions": [{"Name": "Store", "Value": "north"}], "Value": 2.0,
             "Unit": "Count"},
            {"MetricName": "Orders", "Dimensions": [{"Name": "Store", "Value": "north"}], "Values": [1.0, 3.0],
             "Counts": [2.0, 1.0], "Unit": "Count", "StorageResolution": 1},
        ])
    cw.put_metric_data(Namespace="Shop", MetricData=[{
        "MetricName": "Orders", "Dimensions": [{"Name": "Store", "Value": "north"}], "Unit": "Count",
        "StatisticValues": {"SampleCount": 4, "Sum": 10, "Minimum": 0.5, "Maximum": 4}}])
    out = cw.get_metric_statistics(Namespace="Shop", MetricName="Orders", Dimensions=[{"Name": "Store",
                                   "Value": "north"}], Period=3600, Statistics=["Sum", "SampleCount", "Maximum",
                                   "Minimum", "Average"], **window())
    assert out["Label"] == "Orders"
    total = {k: sum(d[k] for d in out["Datapoints"]) for k in ("Sum", "SampleCount")}
    assert total == {"Sum": 3 * (2 + 5) + 10, "SampleCount": 3 * 4 + 4}
    assert max(d["Maximum"] for d in out["Datapoints"]) == 4.0
    assert min(d["Minimum"] for d in out["Datapoints"]) == 0.5
    assert {d["Unit"] for d in out["Datapoints"]} == {"Count"}
    assert isinstance(out["Datapoints"][0]["Timestamp"], dt.datetime)
    metrics = cw.list_metrics(Namespace="Shop")["Metrics"]
    assert metrics == [{"Namespace": "Shop", "MetricName": "Orders", "Dimensions": [{"Name": "Store",
                                                                                    "Value": "north"}]}]


def test_invocations_sum_per_variant(server: LiveServer, cw: Any) -> None:
    for variant, n in (("blue", 37), ("green", 5)):
        for i in range(n):
            status = 500 if i < 3 else 200
            server.system.recorder.record_invocation("ep", variant, "fleet-1", status, 800.0, 40.0, 2)
    for variant, n in (("blue", 37), ("green", 5)):
        dims = [{"Name": "EndpointName", "Value": "ep"}, {"Name": "VariantName", "Value": variant}]
        sums = {}
        for name in ("Invocations", "Invocation5XXErrors", "Invocation4XXErrors", "InvocationsPerInstance"):
            out = cw.get_metric_statistics(Namespace="AWS/SageMaker", MetricName=name, Dimensions=dims, Period=60,
                                           Statistics=["Sum"], **window())
            sums[name] = sum(d["Sum"] for d in out["Datapoints"])
        assert sums == {"Invocations": n, "Invocation5XXErrors": 3, "Invocation4XXErrors": 0,
                        "InvocationsPerInstance": n / 2}
    latency = cw.get_metric_statistics(Namespace="AWS/SageMaker", MetricName="ModelLatency", Dimensions=DIMS,
                                       Period=60, Statistics=["Average"], **window())
    assert {d["Unit"] for d in latency["Datapoints"]} == {"Microseconds"}


def test_percentiles_within_one_percent(cw: Any) -> None:
    rng = random.Random(5)
    values = [round(rng.lognormvariate(math.log(3000), 0.7), 3) for _ in range(3000)]
    at = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=2)
    for i in range(0, len(values), 150):
        cw.put_metric_data(Namespace="Lat", MetricData=[{"MetricName": "T", "Values": values[i:i + 150],
                                                         "Timestamp": at, "Unit": "Microseconds"}])
    out = cw.get_metric_statistics(Namespace="Lat", MetricName="T", Period=3600,
                                   ExtendedStatistics=["p50", "p90", "p99", "p99.9"], **window())
    [point] = out["Datapoints"]
    ordered = sorted(values)
    for name, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99.9", 0.999)):
        exact = ordered[math.floor(q * (len(ordered) - 1))]
        assert abs(point["ExtendedStatistics"][name] - exact) <= 0.01 * exact, name


def test_get_metric_data_with_math(cw: Any) -> None:
    at = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=2)
    for v in (4.0, 6.0):
        cw.put_metric_data(Namespace="M", MetricData=[{"MetricName": "a", "Value": v, "Timestamp": at},
                                                      {"MetricName": "b", "Value": 2.0, "Timestamp": at}])
    out = cw.get_metric_data(MetricDataQueries=[
        {"Id": "a", "MetricStat": {"Metric": {"Namespace": "M", "MetricName": "a"}, "Period": 60, "Stat": "Sum"},
         "ReturnData": False},
        {"Id": "b", "MetricStat": {"Metric": {"Namespace": "M", "MetricName": "b"}, "Period": 60, "Stat": "Sum"},
         "ReturnData": False},
        {"Id": "ratio", "Expression": "a / b", "Label": "a per b"},
        {"Id": "filled", "Expression": "FILL(a, 0)"},
    ], **window())
    results = {r["Id"]: r for r in out["MetricDataResults"]}
    assert set(results) == {"ratio", "filled"}
    assert sum(results["ratio"]["Values"]) == 2.5 and results["ratio"]["Label"] == "a per b"
    assert sum(results["filled"]["Values"]) == 10.0 and len(results["filled"]["Values"]) in (11, 12)


ERROR_CASES = [
    ("put_metric_data", {"Namespace": "AWS/EC2", "MetricData": [{"MetricName": "m", "Value": 1.0}]},
     "InvalidParameterValueException", "InvalidParameterValue"),
    ("put_metric_data", {"Namespace": "N", "MetricData": [{"MetricName": "m"}]},
     "MissingRequiredParameterException", "MissingParameter"),
    ("put_metric_data", {"Namespace": "N", "MetricData": [{"MetricName": "m", "Value": 1.0,
                                                           "StatisticValues": {"SampleCount": 1, "Sum": 1,
                                                                               "Minimum": 1, "Maximum": 1}}]},
     "InvalidParameterCombinationException", "InvalidParameterCombination"),
    ("get_metric_statistics", {"Namespace": "N", "MetricName": "m", "Period": 60, **window()},
     "InvalidParameterCombinationException", "InvalidParameterCombination"),
    ("put_metric_alarm", {"AlarmName": "a", "MetricName": "m", "Namespace": "N", "Statistic": "Sum", "Period": 60,
                          "EvaluationPeriods": 1, "Threshold": 1.0, "ComparisonOperator": "Above"},
     "ValidationException", "ValidationError"),
    ("put_metric_alarm", {"AlarmName": "a", "MetricName": "m", "Namespace": "N", "Statistic": "Sum", "Period": 60,
                          "EvaluationPeriods": 1, "DatapointsToAlarm": 2, "Threshold": 1.0,
                          "ComparisonOperator": "GreaterThanThreshold"}, "ValidationException", "ValidationError"),
    ("set_alarm_state", {"AlarmName": "ghost", "StateValue": "OK", "StateReason": "x"},
     "ResourceNotFound", "ResourceNotFound"),
    ("delete_alarms", {"AlarmNames": ["ghost"]}, "ResourceNotFound", "ResourceNotFound"),
    ("describe_alarms", {"NextToken": "not-a-token"}, "InvalidNextToken", "InvalidNextToken"),
]


@pytest.mark.parametrize(("operation", "params", "exception", "code"), ERROR_CASES)
def test_errors_are_catchable_as_modelled_exceptions(any_protocol_cw: Any, operation: str, params: dict[str, Any],
                                                     exception: str, code: str) -> None:
    cw = any_protocol_cw
    with pytest.raises(getattr(cw.exceptions, exception)) as caught:
        getattr(cw, operation)(**params)
    assert caught.value.response["Error"]["Code"] == code
    assert caught.value.response["Error"]["Message"]
    assert caught.value.response["ResponseMetadata"]["RequestId"]


def test_set_alarm_state_with_bad_json_is_invalid_format(cw: Any) -> None:
    cw.put_metric_alarm(AlarmName="a", MetricName="m", Namespace="N", Statistic="Sum", Period=60,
                        EvaluationPeriods=1, Threshold=1.0, ComparisonOperator="GreaterThanThreshold")
    with pytest.raises(cw.exceptions.InvalidFormatFault):
        cw.set_alarm_state(AlarmName="a", StateValue="ALARM", StateReason="x", StateReasonData="{nope")


def test_alarm_api_round_trip(any_protocol_cw: Any) -> None:
    cw = any_protocol_cw
    cw.put_metric_alarm(AlarmName="lat-p99", AlarmDescription="p99 latency", MetricName="ModelLatency",
                        Namespace="AWS/SageMaker", ExtendedStatistic="p99", Dimensions=DIMS, Period=60,
                        EvaluationPeriods=3, DatapointsToAlarm=2, Threshold=250000.0,
                        ComparisonOperator="GreaterThanOrEqualToThreshold", TreatMissingData="notBreaching",
                        EvaluateLowSampleCountPercentile="ignore",
                        AlarmActions=["arn:aws:sns:us-east-1:123456789012:oncall"],
                        Tags=[{"Key": "team", "Value": "ml"}])
    cw.put_metric_alarm(AlarmName="rate", EvaluationPeriods=1, Threshold=5.0,
                        ComparisonOperator="GreaterThanThreshold", Metrics=[
                            {"Id": "e", "MetricStat": {"Metric": {"Namespace": "AWS/SageMaker",
                                                                  "MetricName": "Invocation5XXErrors",
                                                                  "Dimensions": DIMS},
                                                       "Period": 60, "Stat": "Sum"}, "ReturnData": False},
                            {"Id": "r", "Expression": "e * 100", "Label": "rate", "ReturnData": True}])
    [alarm] = cw.describe_alarms(AlarmNames=["lat-p99"])["MetricAlarms"]
    assert alarm["StateValue"] == "INSUFFICIENT_DATA"
    assert alarm["StateReason"] == "Unchecked: Initial alarm creation"
    assert alarm["AlarmArn"] == "arn:aws:cloudwatch:us-east-1:123456789012:alarm:lat-p99"
    assert (alarm["ExtendedStatistic"], alarm["DatapointsToAlarm"], alarm["Threshold"]) == ("p99", 2, 250000.0)
    assert alarm["Dimensions"] == DIMS and alarm["ActionsEnabled"] is True
    assert isinstance(alarm["StateUpdatedTimestamp"], dt.datetime)
    [math_alarm] = cw.describe_alarms(AlarmNamePrefix="ra")["MetricAlarms"]
    assert math_alarm["Metrics"][1] == {"Id": "r", "Expression": "e * 100", "Label": "rate", "ReturnData": True}
    assert "MetricName" not in math_alarm
    for_metric = cw.describe_alarms_for_metric(MetricName="ModelLatency", Namespace="AWS/SageMaker",
                                               Dimensions=DIMS, ExtendedStatistic="p99")["MetricAlarms"]
    assert [a["AlarmName"] for a in for_metric] == ["lat-p99"]
    cw.disable_alarm_actions(AlarmNames=["lat-p99"])
    assert cw.describe_alarms(AlarmNames=["lat-p99"])["MetricAlarms"][0]["ActionsEnabled"] is False
    cw.enable_alarm_actions(AlarmNames=["lat-p99"])
    cw.set_alarm_state(AlarmName="lat-p99", StateValue="ALARM", StateReason="drill",
                       StateReasonData='{"drill": true}')
    assert cw.describe_alarms(StateValue="ALARM")["MetricAlarms"][0]["StateReason"] == "drill"
    items = cw.describe_alarm_history(AlarmName="lat-p99", ScanBy="TimestampAscending")["AlarmHistoryItems"]
    assert [i["HistoryItemType"] for i in items] == ["ConfigurationUpdate"] * 3 + ["StateUpdate", "Action"]
    assert items[3]["HistorySummary"] == "Alarm updated from INSUFFICIENT_DATA to ALARM"
    assert json.loads(items[3]["HistoryData"])["newState"]["stateReasonData"] == {"drill": True}
    only_state = cw.describe_alarm_history(AlarmName="lat-p99", HistoryItemType="StateUpdate")["AlarmHistoryItems"]
    assert len(only_state) == 1
    cw.delete_alarms(AlarmNames=["lat-p99", "rate"])
    assert cw.describe_alarms()["MetricAlarms"] == []


def test_raw_cbor_request(server: LiveServer) -> None:
    now = time.time()
    server.system.recorder.record_invocation("ep", "blue", "fleet-1", 200, 100.0, 10.0, 1)
    body = cbor2.dumps({"Namespace": "AWS/SageMaker", "MetricName": "Invocations", "Dimensions": DIMS,
                        "StartTime": cbor2.CBORTag(1, int(now) - 600), "EndTime": cbor2.CBORTag(1, int(now) + 60),
                        "Period": 60, "Statistics": ["Sum"]})
    request = urllib.request.Request(
        server.url + "/service/GraniteServiceVersion20100801/operation/GetMetricStatistics", data=body,
        headers={"Content-Type": "application/cbor", "Accept": "application/cbor", "smithy-protocol": "rpc-v2-cbor"},
    )
    with urllib.request.urlopen(request) as resp:
        assert resp.headers["Content-Type"] == "application/cbor"
        answer = cbor2.loads(resp.read())
    [point] = answer["Datapoints"]
    assert point["Sum"] == 1.0 and isinstance(point["Timestamp"], dt.datetime)
    bad = urllib.request.Request(server.url + "/service/GraniteServiceVersion20100801/operation/PutMetricData",
                                 data=cbor2.dumps({"Namespace": "AWS/X", "MetricData": [{"MetricName": "m",
                                                                                          "Value": 1.0}]}),
                                 headers={"Content-Type": "application/cbor", "smithy-protocol": "rpc-v2-cbor"})
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(bad)
    assert caught.value.code == 400
    assert caught.value.headers["x-amzn-query-error"] == "InvalidParameterValue;Sender"
    assert cbor2.loads(caught.value.read())["__type"] == "InvalidParameterValueException"
    unknown = urllib.request.Request(server.url + "/service/GraniteServiceVersion20100801/operation/Nope",
                                     data=cbor2.dumps({}), headers={"Content-Type": "application/cbor",
                                                                    "smithy-protocol": "rpc-v2-cbor"})
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(unknown)
    assert cbor2.loads(caught.value.read())["__type"] == "UnknownOperationException"
    # Without smithy-protocol (what a browser's text/plain post would be): refused (D9).
    bare = urllib.request.Request(server.url + "/service/GraniteServiceVersion20100801/operation/PutMetricData",
                                  data=cbor2.dumps({"Namespace": "N"}), headers={"Content-Type": "text/plain"})
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(bare)
    assert caught.value.code == 400
    assert "smithy-protocol: rpc-v2-cbor" in cbor2.loads(caught.value.read())["message"]


def test_raw_query_request(server: LiveServer) -> None:
    sdk = {"X-Amz-Date": "20261201T000000Z"}  # one of the headers every SDK sends (a browser form cannot)
    form = "Action=PutMetricData&Version=2010-08-01&Namespace=Q&MetricData.member.1.MetricName=m" \
           "&MetricData.member.1.Value=4.5&MetricData.member.1.Dimensions.member.1.Name=k" \
           "&MetricData.member.1.Dimensions.member.1.Value=v"
    with pytest.raises(urllib.error.HTTPError) as caught:  # a form post as a browser sends it: refused (D9)
        urllib.request.urlopen(urllib.request.Request(server.url + "/", data=form.encode()))
    assert caught.value.code == 403 and "<Code>MissingAuthenticationToken</Code>" in caught.value.read().decode()
    with urllib.request.urlopen(urllib.request.Request(server.url + "/", data=form.encode(), headers=sdk)) as resp:
        assert b"<PutMetricDataResponse" in resp.read()
    query = "Action=ListMetrics&Version=2010-08-01&Namespace=Q"
    with urllib.request.urlopen(urllib.request.Request(server.url + "/?" + query, headers=sdk)) as resp:
        text = resp.read().decode()
    assert "<ListMetricsResult><Metrics><member><Namespace>Q</Namespace><MetricName>m</MetricName>" in text
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(urllib.request.Request(server.url + "/?Action=DescribeAlarms&MaxRecords=500",
                                                      headers=sdk))
    assert "<Code>ValidationError</Code>" in caught.value.read().decode()
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(urllib.request.Request(server.url + "/?Action=Nope", headers={"Authorization": "x"}))
    assert caught.value.code == 400 and "<Code>UnknownOperationException</Code>" in caught.value.read().decode()


def test_prometheus_metrics(server: LiveServer) -> None:
    server.system.recorder.record_invocation("ep", "blue", "fleet-1", 200, 100.0, 10.0, 1)
    with urllib.request.urlopen(server.url + "/metrics") as resp:
        assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = resp.read().decode()
    assert 'modelgate_invocations_total{endpoint="ep",variant="blue"} 1' in text


def test_instance_metrics(tmp_path: Path) -> None:
    srv = start_server(tmp_path, instances=[("ep", "blue", "i-0", os.getpid())])
    try:
        cw = client(srv.url)
        deadline = time.monotonic() + 10
        points: list[Any] = []
        while not points and time.monotonic() < deadline:
            time.sleep(0.3)
            points = cw.get_metric_statistics(Namespace="/aws/sagemaker/Endpoints", MetricName="MemoryUtilization",
                                              Dimensions=DIMS, Period=60, Statistics=["Maximum"],
                                              **window())["Datapoints"]
        assert points and 0 < points[0]["Maximum"] < 100 and points[0]["Unit"] == "Percent"
        with urllib.request.urlopen(srv.url + "/metrics") as resp:
            assert 'instance="i-0"' in resp.read().decode()
    finally:
        srv.stop()


@pytest.mark.slow
def test_alarm_goes_to_alarm_and_back_with_webhook(server: LiveServer, cw: Any, webhook: Webhook) -> None:
    cw.put_metric_alarm(AlarmName="5xx", MetricName="Invocation5XXErrors", Namespace="AWS/SageMaker",
                        Dimensions=DIMS, Statistic="Sum", Period=10, EvaluationPeriods=1, Threshold=0.0,
                        ComparisonOperator="GreaterThanThreshold",
                        AlarmActions=[webhook.url + "/alarm"], OKActions=[webhook.url + "/ok"])

    def state() -> str:
        return str(cw.describe_alarms(AlarmNames=["5xx"])["MetricAlarms"][0]["StateValue"])

    def drive(status: int, until: str, limit: float) -> float:
        start = time.monotonic()
        while time.monotonic() - start < limit:
            for _ in range(5):
                server.system.recorder.record_invocation("ep", "blue", "fleet-1", status, 900.0, 30.0, 1)
            if state() == until:
                return time.monotonic() - start
            time.sleep(0.2)
        raise AssertionError(f"alarm did not reach {until} within {limit} s")

    assert state() == "INSUFFICIENT_DATA"
    assert drive(500, "ALARM", limit=10 + 10) <= 20  # one period plus 10 s
    assert drive(200, "OK", limit=2 * 10 + 10) <= 30  # the window with the last errors must pass first
    history = cw.describe_alarm_history(AlarmName="5xx", HistoryItemType="StateUpdate",
                                        ScanBy="TimestampAscending")["AlarmHistoryItems"]
    assert [h["HistorySummary"] for h in history] == ["Alarm updated from INSUFFICIENT_DATA to ALARM",
                                                      "Alarm updated from ALARM to OK"]
    deadline = time.monotonic() + 5
    while len(webhook.received) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [r["path"] for r in webhook.received] == ["/alarm", "/ok"]
    messages = [json.loads(r["body"]["Message"]) for r in webhook.received]
    assert [(m["OldStateValue"], m["NewStateValue"]) for m in messages] == [("INSUFFICIENT_DATA", "ALARM"),
                                                                           ("ALARM", "OK")]
    assert webhook.received[0]["body"]["Subject"] == 'ALARM: "5xx" in US East (N. Virginia)'
    assert messages[0]["Trigger"]["MetricName"] == "Invocation5XXErrors"
    actions = cw.describe_alarm_history(AlarmName="5xx", HistoryItemType="Action")["AlarmHistoryItems"]
    assert {a["HistorySummary"] for a in actions} == {f"Successfully executed action {webhook.url}/alarm",
                                                      f"Successfully executed action {webhook.url}/ok"}
