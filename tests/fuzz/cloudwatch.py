"""CloudWatch's targets: the twelve operations modelgate serves, each in its three protocols (JSON 1.0
``GraniteServiceVersion20100801``, rpc-v2-cbor, query), a few it does not serve, and its world.

Requests come from botocore's ``cloudwatch`` input shapes with a :class:`Profile` that makes most of them
succeed: metrics and alarms named by a request exist (namespaces and names from small pools, and the
metrics ListMetrics gives, modelgate's own included), periods are ones CloudWatch takes, time ranges run
forwards and ask for at most a few hundred datapoints, statistics and percentiles are spelled as
CloudWatch spells them, and alarm actions point at a closed port on this machine (never elsewhere).

The state a rejected request must not change: each alarm's configuration time and ActionsEnabled
(DescribeAlarms), and the metrics ListMetrics gives outside modelgate's own namespaces (those grow on their
own as invocations and instances are measured).
"""

from __future__ import annotations

import re
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

import botocore.session
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from tests.fuzz.fuzzer import Target, WireProtocol
from tests.fuzz.protocols import AwsJson, AwsQuery, RpcV2Cbor
from tests.fuzz.values import Fixup, Profile, ShapeStrategies, Stamp, fixed, presence_strategy, weighted
from tests.fuzz.wire import Client, RawAnswer
from tests.fuzz.world import INDEX, Pool, pick, reference

PREFIX = "GraniteServiceVersion20100801"
OPERATIONS = {  # operation: (weight, mutating)
    "PutMetricData": (4, True),
    "PutMetricAlarm": (4, True),
    "GetMetricStatistics": (3, False),
    "GetMetricData": (3, False),
    "ListMetrics": (1, False),
    "DescribeAlarms": (1, False),
    "DescribeAlarmsForMetric": (1, False),
    "DescribeAlarmHistory": (1, False),
    "SetAlarmState": (2, True),
    "DeleteAlarms": (1, True),
    "EnableAlarmActions": (1, True),
    "DisableAlarmActions": (1, True),
}
UNSERVED = ("PutCompositeAlarm", "ListDashboards", "TagResource", "PutDashboard")
OWN_NAMESPACES = ("AWS/", "/aws/", "aws/", "modelgate/")  # metrics modelgate writes itself, at any time
NAMESPACES = ["fuzz/A", "fuzz/B", "fuzz/é"]
METRIC_NAMES = ["Latency", "Errors", "Invocations", "m"]
DIMENSIONS = st.lists(
    st.fixed_dictionaries({"Name": st.sampled_from(["Host", "Variant"]), "Value": st.sampled_from(["a", "b"])}),
    max_size=2,
)
PERIODS = [1, 5, 10, 30, 60, 300]
STATISTICS = ["SampleCount", "Average", "Sum", "Minimum", "Maximum"]
EXTENDED = ["p50", "p90", "p99", "p99.9", "tm90", "TM(10%:90%)", "wm99", "IQM", "PR(:300)", "TC(1:2)", "ts99", "p100"]
EXPRESSIONS = ["m1*2", "SUM(METRICS())", "RATE(m1)", "m1+m2", "FILL(m1, 0)", "AVG([m1, m2])", "m1/0", "IF(m1 > 1, m1)"]
ACTIONS = ["arn:aws:sns:us-east-1:123456789012:fuzz", "http://127.0.0.1:9/alarm", "arn:aws:automate:us-east-1:ec2:stop"]
COMPARISONS = [
    "GreaterThanThreshold",
    "GreaterThanOrEqualToThreshold",
    "LessThanThreshold",
    "LessThanOrEqualToThreshold",
]
ALL_COMPARISONS = [
    *COMPARISONS,
    "LessThanLowerOrGreaterThanUpperThreshold",
    "LessThanLowerThreshold",
    "GreaterThanUpperThreshold",
]
ALARM_NAMES = [f"fz-alarm-{i}" for i in range(12)]
RARE = 0.03


@dataclass
class CloudWatchWorld:
    client: Client
    alarms: Pool = field(default_factory=Pool)
    metrics: Pool = field(default_factory=Pool)  # repr key -> (namespace, name, dimensions)
    tokens: Pool = field(default_factory=Pool)

    def call(self, op: str, params: dict[str, Any]) -> Any:
        return self.client.json_call(f"{PREFIX}.{op}", params, version="1.0")

    def snapshot(self) -> Hashable:
        alarms: dict[str, tuple[Any, Any]] = {}
        params: dict[str, Any] = {"MaxRecords": 100}
        while True:
            page = self.call("DescribeAlarms", params)
            for a in page["MetricAlarms"]:
                alarms[a["AlarmName"]] = (a.get("AlarmConfigurationUpdatedTimestamp"), a.get("ActionsEnabled"))
            if not page.get("NextToken"):
                break
            params["NextToken"] = page["NextToken"]
        metrics = []
        params = {}
        while True:
            page = self.call("ListMetrics", params)
            metrics += page["Metrics"]
            if not page.get("NextToken"):
                break
            params["NextToken"] = page["NextToken"]
        self.alarms.replace(alarms)
        known = {}
        for m in metrics:
            dims = tuple(sorted((d["Name"], d["Value"]) for d in m.get("Dimensions", [])))
            known[repr((m["Namespace"], m["MetricName"], dims))] = (m["Namespace"], m["MetricName"], dims)
        self.metrics.items = known
        ours = frozenset(k for k, (ns, _, _) in known.items() if not ns.startswith(OWN_NAMESPACES))
        return (frozenset(alarms.items()), ours)

    def known_metrics(self) -> list[Any]:
        return [self.metrics.items[k] for k in self.metrics.names()]


def _tokens(world: CloudWatchWorld, answer: RawAnswer) -> None:
    for m in re.finditer(rb'"NextToken":\s*"([^"]+)"|<NextToken>([^<]+)</NextToken>', answer.body):
        world.tokens.add((m.group(1) or m.group(2)).decode("utf-8", "replace"))
    body = answer.cbor() if answer.header("content-type") == "application/cbor" else None
    if isinstance(body, dict):
        world.tokens.add(body.get("NextToken"))


def profile(world: CloudWatchWorld) -> Profile:
    alarm = weighted(
        (6, st.sampled_from(ALARM_NAMES)),
        (3, reference(world.alarms.names, st.sampled_from(ALARM_NAMES), existing=1.0)),
        (1, st.text(min_size=1, max_size=40)),
    )
    existing_alarm = reference(world.alarms.names, alarm, existing=0.9)
    overrides: dict[str, SearchStrategy[Any]] = {
        "Namespace": weighted((8, st.sampled_from(NAMESPACES)), (1, st.from_regex(r"[^:].{0,30}", fullmatch=True))),
        "MetricName": weighted((8, st.sampled_from(METRIC_NAMES)), (1, st.text(min_size=1, max_size=30))),
        "Dimensions": weighted(
            (8, DIMENSIONS),
            (
                1,
                st.lists(
                    st.fixed_dictionaries(
                        {"Name": st.text(min_size=1, max_size=5), "Value": st.text(min_size=1, max_size=5)}
                    ),
                    max_size=3,
                ),
            ),
        ),
        "MetricDatum.Value": weighted((9, st.floats(-1e6, 1e6)), (1, st.floats(allow_nan=False, allow_infinity=False))),
        "MetricDatum.Values": st.lists(st.floats(-1e6, 1e6), max_size=3),
        "MetricDatum.Counts": st.lists(st.floats(0, 100), max_size=3),
        "MetricDatum.StorageResolution": weighted((9, st.sampled_from([1, 60])), (1, st.integers(1, 120))),
        "Period": weighted((9, st.sampled_from(PERIODS)), (1, st.integers(1, 100_000))),
        "Statistics": st.lists(st.sampled_from(STATISTICS), min_size=1, max_size=3),
        "ExtendedStatistics": st.lists(
            weighted((9, st.sampled_from(EXTENDED)), (1, st.text(max_size=10))), min_size=1, max_size=3
        ),
        "ExtendedStatistic": weighted((9, st.sampled_from(EXTENDED)), (1, st.text(max_size=10))),
        "MetricStat.Stat": weighted(
            (4, st.sampled_from(STATISTICS)), (4, st.sampled_from(EXTENDED)), (1, st.text(max_size=10))
        ),
        "MetricDataQuery.Id": weighted((9, st.sampled_from(["m1", "m2", "e1"])), (1, st.text(min_size=1, max_size=8))),
        "MetricDataQuery.Expression": weighted(
            (9, st.sampled_from(EXPRESSIONS)), (1, st.text(min_size=1, max_size=40))
        ),
        "LabelOptions.Timezone": weighted((4, st.sampled_from(["+0130", "-0500", "+0000"])), (1, st.text(max_size=8))),
        "PutMetricAlarmInput.AlarmName": alarm,
        "PutMetricAlarmInput.EvaluationPeriods": st.integers(1, 5),
        "PutMetricAlarmInput.Period": weighted((9, st.sampled_from([10, 30, 60, 300])), (1, st.integers(1, 1000))),
        "PutMetricAlarmInput.ComparisonOperator": weighted(
            (9, st.sampled_from(COMPARISONS)), (1, st.sampled_from(ALL_COMPARISONS))
        ),
        "PutMetricAlarmInput.DatapointsToAlarm": st.integers(1, 5),
        "PutMetricAlarmInput.Threshold": st.floats(-1e6, 1e6),
        "PutMetricAlarmInput.TreatMissingData": weighted(
            (9, st.sampled_from(["breaching", "notBreaching", "ignore", "missing"])),
            (1, st.text(min_size=1, max_size=10)),
        ),
        "PutMetricAlarmInput.EvaluateLowSampleCountPercentile": weighted(
            (8, st.sampled_from(["evaluate", "ignore"])), (1, st.just("x"))
        ),
        "OKActions": st.lists(st.sampled_from(ACTIONS), max_size=2),
        "AlarmActions": st.lists(st.sampled_from(ACTIONS), max_size=2),
        "InsufficientDataActions": st.lists(st.sampled_from(ACTIONS), max_size=2),
        "AlarmName": existing_alarm,
        "AlarmNames": st.lists(existing_alarm, min_size=1, max_size=2),
        "AlarmNamePrefix": st.sampled_from(["fz", "fz-alarm-1", "x"]),
        "StateReasonData": weighted(
            (7, st.sampled_from(["{}", '{"a": 1}', "not json", "[1, 2]"])), (1, st.text(max_size=30))
        ),
        "NextToken": reference(world.tokens.names, st.text(max_size=30), existing=0.6),
    }
    presence = {
        "PutMetricDataInput.MetricData": 0.97,
        "PutMetricDataInput.EntityMetricData": RARE,
        "MetricDatum.StatisticValues": 0.15,
        "MetricDatum.Values": 0.2,
        "MetricDatum.Timestamp": 0.6,
        "GetMetricStatisticsInput.Dimensions": 0.5,
        "GetMetricStatisticsInput.Statistics": 0.8,
        "GetMetricStatisticsInput.ExtendedStatistics": 0.3,
        "MetricDataQuery.MetricStat": 0.6,
        "MetricDataQuery.Expression": 0.4,
        "PutMetricAlarmInput.MetricName": 0.9,
        "PutMetricAlarmInput.Namespace": 0.9,
        "PutMetricAlarmInput.Statistic": 0.8,
        "PutMetricAlarmInput.Period": 0.9,
        "PutMetricAlarmInput.EvaluationPeriods": 0.97,
        "PutMetricAlarmInput.Threshold": 0.95,
        "PutMetricAlarmInput.ComparisonOperator": 0.97,
        "PutMetricAlarmInput.Metrics": 0.08,
        "PutMetricAlarmInput.ThresholdMetricId": RARE,
        "PutMetricAlarmInput.EvaluationWindow": RARE,
        "PutMetricAlarmInput.WarmUpConfiguration": RARE,
        "PutMetricAlarmInput.EvaluationCriteria": RARE,
        "PutMetricAlarmInput.EvaluationInterval": RARE,
        "PutMetricAlarmInput.ActionConfiguration": RARE,
        "SetAlarmStateInput.StateReasonData": 0.5,
    }
    return Profile(overrides, presence, min_items={"MetricData": 1, "MetricDataQueries": 1})


def _metric_fixup(
    world: CloudWatchWorld, names: tuple[str, str, str] = ("Namespace", "MetricName", "Dimensions")
) -> Fixup:
    """Name a metric that exists (seven times in ten): modelgate's own or one a PutMetricData wrote."""

    def fix(draw: st.DrawFn, params: dict[str, Any]) -> dict[str, Any]:
        use, index = draw(presence_strategy(0.7)), draw(INDEX)
        known = world.known_metrics()
        if use and known:
            ns, name, dims = pick(known, index)
            params[names[0]], params[names[1]] = ns, name
            params[names[2]] = [{"Name": n, "Value": v} for n, v in dims]
        return params

    return fix


def _time_range(draw: st.DrawFn, params: dict[str, Any], period: int) -> None:
    """EndTime after StartTime by at most a few hundred periods (eight times in ten)."""
    if draw(presence_strategy(0.8)) and isinstance(params.get("StartTime"), float):
        params["EndTime"] = Stamp(params["StartTime"] + period * draw(st.integers(1, 300)))


def _statistics_fixup(world: CloudWatchWorld) -> Fixup:
    metric = _metric_fixup(world)

    def fix(draw: st.DrawFn, params: dict[str, Any]) -> dict[str, Any]:
        params = metric(draw, params)
        one = draw(presence_strategy(0.8))
        if one and "Statistics" in params and "ExtendedStatistics" in params:
            params.pop("ExtendedStatistics" if draw(st.booleans()) else "Statistics")
        _time_range(draw, params, params["Period"] if isinstance(params.get("Period"), int) else 60)
        return params

    return fix


def _data_fixup(world: CloudWatchWorld) -> Fixup:
    def fix(draw: st.DrawFn, params: dict[str, Any]) -> dict[str, Any]:
        use, indexes = draw(presence_strategy(0.8)), draw(st.lists(INDEX, min_size=2, max_size=2))
        known = world.known_metrics()
        for i, query in enumerate(params.get("MetricDataQueries") or []):
            if not use or not isinstance(query, dict):
                continue
            query["Id"] = f"m{i + 1}"
            if "MetricStat" in query and "Expression" in query:
                query.pop("Expression" if i == 0 else "MetricStat")
            if "MetricStat" not in query and "Expression" not in query:  # exactly one of them is required
                query["MetricStat"] = {
                    "Period": 60,
                    "Stat": "Sum",
                    "Metric": {"Namespace": "fuzz/A", "MetricName": "m"},
                }
            stat = query.get("MetricStat")
            if isinstance(stat, dict) and known:
                ns, name, dims = pick(known, indexes[i % 2])
                stat["Metric"] = {
                    "Namespace": ns,
                    "MetricName": name,
                    "Dimensions": [{"Name": n, "Value": v} for n, v in dims],
                }
        _time_range(draw, params, 60)
        return params

    return fix


def _alarm_fixup(world: CloudWatchWorld) -> Fixup:
    metric = _metric_fixup(world)

    def fix(draw: st.DrawFn, params: dict[str, Any]) -> dict[str, Any]:
        params = metric(draw, params)
        if draw(presence_strategy(0.8)):
            if "Statistic" in params and "ExtendedStatistic" in params:
                params.pop("ExtendedStatistic")
            if isinstance(params.get("DatapointsToAlarm"), int) and isinstance(params.get("EvaluationPeriods"), int):
                params["DatapointsToAlarm"] = min(params["DatapointsToAlarm"], params["EvaluationPeriods"])
            if "Metrics" in params:
                for key in (
                    "MetricName",
                    "Namespace",
                    "Statistic",
                    "ExtendedStatistic",
                    "Dimensions",
                    "Period",
                    "Unit",
                ):
                    params.pop(key, None)
        return params

    return fix


def _datum_fixup(draw: st.DrawFn, params: dict[str, Any]) -> dict[str, Any]:
    """Each datum has one of Value, StatisticValues and Values, and statistics that add up (nine times in ten)."""
    use, which = draw(presence_strategy(0.9)), draw(st.lists(st.integers(0, 5), min_size=3, max_size=3))
    data = params.get("MetricData")
    if not use or not isinstance(data, list):
        return params
    for datum, keep in zip(data, which, strict=False):
        if not isinstance(datum, dict):
            continue
        kept = ("Value", "Value", "Value", "Value", "StatisticValues", "Values")[keep]
        for key in ("Value", "StatisticValues", "Values", "Counts"):
            if key != kept and not (kept == "Values" and key == "Counts"):
                datum.pop(key, None)
        datum.setdefault(kept, 1.0 if kept == "Value" else [1.0, 2.0] if kept == "Values" else {})
        if kept == "StatisticValues":
            low, high = sorted(draw(st.lists(st.floats(-1e6, 1e6), min_size=2, max_size=2)))
            count = draw(st.integers(1, 1000))
            datum["StatisticValues"] = {
                "SampleCount": count,
                "Sum": (low + high) / 2 * count,
                "Minimum": low,
                "Maximum": high,
            }
        if kept == "Values" and "Counts" in datum:
            datum["Counts"] = datum["Counts"][: len(datum["Values"])] + [1.0] * (
                len(datum["Values"]) - len(datum["Counts"])
            )
    return params


def _history_fixup(draw: st.DrawFn, params: dict[str, Any]) -> dict[str, Any]:
    if draw(presence_strategy(0.8)) and isinstance(params.get("StartDate"), float):
        params["EndDate"] = Stamp(params["StartDate"] + 60 * draw(st.integers(1, 300)))
    return params


def targets(world: CloudWatchWorld) -> list[Target]:
    model = botocore.session.get_session().get_service_model("cloudwatch")
    shapes = ShapeStrategies(profile(world))
    protocols: list[WireProtocol] = [AwsJson(PREFIX, "1.0"), RpcV2Cbor(PREFIX), AwsQuery(model, UNSERVED)]
    fixups: dict[str, Fixup] = {
        "PutMetricData": _datum_fixup,
        "GetMetricStatistics": _statistics_fixup(world),
        "GetMetricData": _data_fixup(world),
        "DescribeAlarmsForMetric": _metric_fixup(world),
        "ListMetrics": _metric_fixup(world),
        "PutMetricAlarm": _alarm_fixup(world),
        "DescribeAlarmHistory": _history_fixup,
    }
    out = []
    for op, (weight, mutating) in [*OPERATIONS.items(), *((op, (1, False)) for op in UNSERVED)]:
        shape = model.operation_model(op).input_shape
        params = shapes.shape(shape)
        fix = fixups.get(op)
        if fix is not None:
            params = fixed(params, fix)
        for protocol in protocols:
            out.append(
                Target(
                    op,
                    protocol,
                    params,
                    shape,
                    mutating=mutating,
                    weight=weight,
                    snapshot=lambda p: world.snapshot(),
                    on_answer=lambda p, a: _tokens(world, a),
                )
            )
    return out
