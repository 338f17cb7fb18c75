"""CloudWatch's API: wire parameters to typed service calls and back.

:func:`cloudwatch_service` builds the :class:`JsonRpcService` for ``X-Amz-Target:
GraniteServiceVersion20100801.<Op>`` (JSON 1.0, what boto3 sends); api/cbor.py and api/query.py serve
the same handlers over rpc-v2-cbor and the query protocol. Errors carry CloudWatch's query-compatible
codes (telemetry/errors.py), so ``cw.exceptions.InvalidParameterValueException`` and friends catch them.

Handlers take and return JSON-shaped dicts with timestamps as epoch seconds; the protocol adapters convert
timestamps to their own wire form by walking botocore's output shapes.
"""

from __future__ import annotations

import math
from typing import Any

from modelgate.api.awsjson import JsonRpcService, Params, parse_wire_time, to_wire_time
from modelgate.services.alarms import AlarmService
from modelgate.services.metrics import MetricsService
from modelgate.telemetry.documents import (
    alarm_doc,
    config_from_doc,
    dimensions_from_doc,
    metric_doc,
    query_from_doc,
)
from modelgate.telemetry.errors import (
    QUERY_CODES,
    VALIDATION_SHAPE,
    CloudWatchValidation,
    InvalidParameterValue,
    MissingParameter,
)
from modelgate.telemetry.model import MetricDatum, MetricId, StatisticSet

TARGET_PREFIX = "GraniteServiceVersion20100801"


def _time(value: Any, member: str) -> float:
    """A time member as epoch seconds. NaN and infinities pass every range check (a comparison with NaN is
    false) and then failed the store's arithmetic with a 500: they are refused here, for every protocol."""
    t = parse_wire_time(value)
    if not math.isfinite(t):
        raise InvalidParameterValue(f"The value {value} for parameter {member} is invalid.")
    return t


def _opt_time(p: Params, key: str, member: str = "") -> float | None:
    return _time(p[key], member or key) if p.get(key) is not None else None


def _datum(d: dict[str, Any], where: str) -> MetricDatum:
    sv = d.get("StatisticValues")
    stats = None
    if sv is not None:
        stats = StatisticSet(float(sv["SampleCount"]), float(sv["Sum"]), float(sv["Minimum"]), float(sv["Maximum"]))
    return MetricDatum(
        name=str(d["MetricName"]),
        dimensions=dimensions_from_doc(d.get("Dimensions")),
        timestamp=_opt_time(d, "Timestamp", f"{where}.Timestamp"),
        value=float(d["Value"]) if d.get("Value") is not None else None,
        statistic_values=stats,
        values=tuple(float(v) for v in d.get("Values") or ()),
        counts=tuple(float(c) for c in d.get("Counts") or ()),
        unit=d.get("Unit"),
        storage_resolution=int(d.get("StorageResolution") or 60),
    )


class CloudWatchApi:
    def __init__(self, metrics: MetricsService, alarms: AlarmService) -> None:
        self.metrics = metrics
        self.alarms = alarms

    async def put_metric_data(self, p: Params) -> Params:
        data = [_datum(d, f"MetricData.member.{i}") for i, d in enumerate(p.get("MetricData") or (), start=1)]
        for j, entity in enumerate(p.get("EntityMetricData") or (), start=1):
            where = f"EntityMetricData.member.{j}.MetricData.member"
            data.extend(_datum(d, f"{where}.{i}") for i, d in enumerate(entity.get("MetricData") or (), start=1))
        if not data:
            raise MissingParameter("The parameter MetricData is required.")
        self.metrics.put_metric_data(p["Namespace"], data)
        return {}

    async def get_metric_statistics(self, p: Params) -> Params:
        metric = MetricId(p["Namespace"], p["MetricName"], dimensions_from_doc(p.get("Dimensions")))
        points = self.metrics.get_metric_statistics(
            metric,
            _time(p["StartTime"], "StartTime"),
            _time(p["EndTime"], "EndTime"),
            int(p["Period"]),
            p.get("Statistics") or [],
            p.get("ExtendedStatistics") or [],
            p.get("Unit"),
        )
        out = []
        for dp in points:
            item: dict[str, Any] = {"Timestamp": to_wire_time(dp.timestamp)}
            for key, value in (
                ("SampleCount", dp.sample_count),
                ("Average", dp.average),
                ("Sum", dp.sum),
                ("Minimum", dp.minimum),
                ("Maximum", dp.maximum),
            ):
                if value is not None:
                    item[key] = value
            item["Unit"] = dp.unit
            if dp.extended:
                item["ExtendedStatistics"] = dp.extended
            out.append(item)
        return {"Label": p["MetricName"], "Datapoints": out}

    async def get_metric_data(self, p: Params) -> Params:
        queries = [query_from_doc(q) for q in p["MetricDataQueries"]]
        results = self.metrics.get_metric_data(
            queries,
            _time(p["StartTime"], "StartTime"),
            _time(p["EndTime"], "EndTime"),
            p.get("ScanBy") or "TimestampDescending",
            p.get("MaxDatapoints"),
        )
        return {
            "MetricDataResults": [
                {
                    "Id": r.id,
                    "Label": r.label,
                    "Timestamps": [to_wire_time(t) for t in r.timestamps],
                    "Values": r.values,
                    "StatusCode": r.status_code,
                    "Messages": [{"Code": c, "Value": v} for c, v in r.messages],
                }
                for r in results
            ],
            "Messages": [],
        }

    async def list_metrics(self, p: Params) -> Params:
        filters = [(str(d["Name"]), d.get("Value")) for d in p.get("Dimensions") or ()]
        metrics, token = self.metrics.list_metrics(
            p.get("Namespace"), p.get("MetricName"), filters, p.get("RecentlyActive") == "PT3H", p.get("NextToken")
        )
        out: Params = {"Metrics": [metric_doc(m) for m in metrics]}
        if token is not None:
            out["NextToken"] = token
        return out

    async def put_metric_alarm(self, p: Params) -> Params:
        present = {k for k, v in p.items() if v is not None and v != []}
        if "ThresholdMetricId" in present:
            raise CloudWatchValidation("modelgate does not support anomaly detection alarms (ThresholdMetricId).")
        for member in ("EvaluationPeriods", "ComparisonOperator", "Threshold"):
            if member not in present:
                raise MissingParameter(f"The parameter {member} is required.")
        self.alarms.put_metric_alarm(config_from_doc(p), present)
        return {}

    async def describe_alarms(self, p: Params) -> Params:
        alarms, token = self.alarms.describe_alarms(
            p.get("AlarmNames") or [],
            p.get("AlarmNamePrefix"),
            p.get("StateValue"),
            p.get("ActionPrefix"),
            p.get("AlarmTypes") or [],
            int(p.get("MaxRecords") or 50),
            p.get("NextToken"),
        )
        out: Params = {"MetricAlarms": [_wire_alarm(a) for a in alarms], "CompositeAlarms": []}
        if token is not None:
            out["NextToken"] = token
        return out

    async def describe_alarms_for_metric(self, p: Params) -> Params:
        metric = MetricId(p["Namespace"], p["MetricName"], dimensions_from_doc(p.get("Dimensions")))
        alarms = self.alarms.describe_alarms_for_metric(
            metric, p.get("Statistic"), p.get("ExtendedStatistic"), p.get("Period"), p.get("Unit")
        )
        return {"MetricAlarms": [_wire_alarm(a) for a in alarms]}

    async def delete_alarms(self, p: Params) -> Params:
        self.alarms.delete_alarms(p["AlarmNames"])
        return {}

    async def set_alarm_state(self, p: Params) -> Params:
        self.alarms.set_alarm_state(p["AlarmName"], p["StateValue"], p["StateReason"], p.get("StateReasonData"))
        return {}

    async def describe_alarm_history(self, p: Params) -> Params:
        items, token = self.alarms.describe_alarm_history(
            p.get("AlarmName"),
            p.get("HistoryItemType"),
            _opt_time(p, "StartDate"),
            _opt_time(p, "EndDate"),
            p.get("AlarmTypes") or [],
            p.get("ScanBy"),
            int(p.get("MaxRecords") or 100),
            p.get("NextToken"),
        )
        out: Params = {
            "AlarmHistoryItems": [
                {
                    "AlarmName": i.alarm_name,
                    "AlarmType": "MetricAlarm",
                    "Timestamp": to_wire_time(i.timestamp),
                    "HistoryItemType": i.item_type,
                    "HistorySummary": i.summary,
                    "HistoryData": i.data,
                }
                for i in items
            ]
        }
        if token is not None:
            out["NextToken"] = token
        return out

    async def enable_alarm_actions(self, p: Params) -> Params:
        self.alarms.set_actions_enabled(p["AlarmNames"], True)
        return {}

    async def disable_alarm_actions(self, p: Params) -> Params:
        self.alarms.set_actions_enabled(p["AlarmNames"], False)
        return {}


def _wire_alarm(alarm: Any) -> dict[str, Any]:
    doc = alarm_doc(alarm)
    for key in ("AlarmConfigurationUpdatedTimestamp", "StateUpdatedTimestamp", "StateTransitionedTimestamp"):
        doc[key] = to_wire_time(doc[key])
    return doc


def cloudwatch_service(metrics: MetricsService, alarms: AlarmService) -> JsonRpcService:
    api = CloudWatchApi(metrics, alarms)
    handlers = {
        "PutMetricData": api.put_metric_data,
        "GetMetricStatistics": api.get_metric_statistics,
        "GetMetricData": api.get_metric_data,
        "ListMetrics": api.list_metrics,
        "PutMetricAlarm": api.put_metric_alarm,
        "DescribeAlarms": api.describe_alarms,
        "DescribeAlarmsForMetric": api.describe_alarms_for_metric,
        "DeleteAlarms": api.delete_alarms,
        "SetAlarmState": api.set_alarm_state,
        "DescribeAlarmHistory": api.describe_alarm_history,
        "EnableAlarmActions": api.enable_alarm_actions,
        "DisableAlarmActions": api.disable_alarm_actions,
    }
    return JsonRpcService(
        "cloudwatch",
        "1.0",
        handlers,
        validation_code=VALIDATION_SHAPE,
        query_error_codes=QUERY_CODES,
        non_finite_error=_non_finite,
    )


def _non_finite(parameter: str, value: float) -> InvalidParameterValue:
    """A NaN or infinite number anywhere (a CBOR float, a form's ``inf``, JSON's ``1e400``), worded as
    CloudWatch words an invalid metric value."""
    shown = "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return InvalidParameterValue(f"The value {shown} for parameter {parameter} is invalid.")
