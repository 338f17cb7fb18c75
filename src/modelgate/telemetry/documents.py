"""The one serialization of metrics, queries and alarms: dicts in CloudWatch's member names.

The same shapes serve the wire (PutMetricAlarm input, DescribeAlarms output, MetricDataQuery) and
storage (alarms are stored as their DescribeAlarms document), so the field list is written once.
Timestamps are epoch seconds; each protocol adapter renders them in its own format.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from modelgate.telemetry.alarm_records import Alarm, AlarmConfig
from modelgate.telemetry.model import Dimensions, MetricId, MetricQuery, MetricStat, dimensions

Doc = dict[str, Any]


def dimensions_doc(dims: Dimensions) -> list[Doc]:
    return [{"Name": n, "Value": v} for n, v in dims]


def dimensions_from_doc(items: Sequence[Mapping[str, Any]] | None) -> Dimensions:
    return dimensions((str(d["Name"]), str(d["Value"])) for d in items or ())


def metric_doc(m: MetricId) -> Doc:
    return {"Namespace": m.namespace, "MetricName": m.name, "Dimensions": dimensions_doc(m.dimensions)}


def metric_from_doc(d: Mapping[str, Any]) -> MetricId:
    return MetricId(str(d.get("Namespace", "")), str(d.get("MetricName", "")), dimensions_from_doc(d.get("Dimensions")))


def query_doc(q: MetricQuery) -> Doc:
    out: Doc = {"Id": q.id}
    if q.metric_stat is not None:
        ms = q.metric_stat
        stat: Doc = {"Metric": metric_doc(ms.metric), "Period": ms.period, "Stat": ms.stat}
        if ms.unit is not None:
            stat["Unit"] = ms.unit
        out["MetricStat"] = stat
    if q.expression is not None:
        out["Expression"] = q.expression
    if q.label is not None:
        out["Label"] = q.label
    out["ReturnData"] = q.return_data
    if q.period is not None:
        out["Period"] = q.period
    return out


def query_from_doc(d: Mapping[str, Any]) -> MetricQuery:
    ms = d.get("MetricStat")
    stat = None
    if ms is not None:
        stat = MetricStat(metric_from_doc(ms.get("Metric", {})), int(ms["Period"]), str(ms["Stat"]), ms.get("Unit"))
    return MetricQuery(
        id=str(d["Id"]),
        metric_stat=stat,
        expression=d.get("Expression"),
        label=d.get("Label"),
        return_data=bool(d.get("ReturnData", True)),
        period=d.get("Period"),
    )


def config_doc(c: AlarmConfig) -> Doc:
    """PutMetricAlarm's members (and DescribeAlarms' configuration members), unset ones left out."""
    out: Doc = {"AlarmName": c.name}
    if c.description is not None:
        out["AlarmDescription"] = c.description
    out["ActionsEnabled"] = c.actions_enabled
    out["OKActions"] = list(c.ok_actions)
    out["AlarmActions"] = list(c.alarm_actions)
    out["InsufficientDataActions"] = list(c.insufficient_data_actions)
    if c.metric is not None:
        out["MetricName"] = c.metric.name
        out["Namespace"] = c.metric.namespace
    if c.statistic is not None:
        out["Statistic"] = c.statistic
    if c.extended_statistic is not None:
        out["ExtendedStatistic"] = c.extended_statistic
    if c.metric is not None:
        out["Dimensions"] = dimensions_doc(c.metric.dimensions)
    if c.period is not None:
        out["Period"] = c.period
    if c.unit is not None:
        out["Unit"] = c.unit
    out["EvaluationPeriods"] = c.evaluation_periods
    if c.datapoints_to_alarm is not None:
        out["DatapointsToAlarm"] = c.datapoints_to_alarm
    out["Threshold"] = float(c.threshold)
    out["ComparisonOperator"] = c.comparison_operator
    if c.treat_missing_data is not None:
        out["TreatMissingData"] = c.treat_missing_data
    if c.evaluate_low_sample_count_percentile is not None:
        out["EvaluateLowSampleCountPercentile"] = c.evaluate_low_sample_count_percentile
    if c.metrics:
        out["Metrics"] = [query_doc(q) for q in c.metrics]
    return out


def config_from_doc(d: Mapping[str, Any]) -> AlarmConfig:
    """From PutMetricAlarm input or a stored document. The caller has checked the required members."""
    metric = None
    if d.get("MetricName") is not None or d.get("Namespace") is not None:
        metric = metric_from_doc(d)
    return AlarmConfig(
        name=str(d["AlarmName"]),
        evaluation_periods=int(d["EvaluationPeriods"]),
        comparison_operator=str(d["ComparisonOperator"]),
        threshold=float(d["Threshold"]),
        description=d.get("AlarmDescription"),
        actions_enabled=bool(d.get("ActionsEnabled", True)),
        ok_actions=tuple(d.get("OKActions") or ()),
        alarm_actions=tuple(d.get("AlarmActions") or ()),
        insufficient_data_actions=tuple(d.get("InsufficientDataActions") or ()),
        metric=metric,
        statistic=d.get("Statistic"),
        extended_statistic=d.get("ExtendedStatistic"),
        period=d.get("Period"),
        unit=d.get("Unit"),
        datapoints_to_alarm=d.get("DatapointsToAlarm"),
        treat_missing_data=d.get("TreatMissingData"),
        evaluate_low_sample_count_percentile=d.get("EvaluateLowSampleCountPercentile"),
        metrics=tuple(query_from_doc(q) for q in d.get("Metrics") or ()),
        tags=tuple((str(t["Key"]), str(t["Value"])) for t in d.get("Tags") or ()),
    )


def alarm_doc(a: Alarm) -> Doc:
    """A DescribeAlarms ``MetricAlarms`` member."""
    out = config_doc(a.config)
    out["AlarmArn"] = a.arn
    out["AlarmConfigurationUpdatedTimestamp"] = a.configuration_updated
    out["StateValue"] = a.state_value
    out["StateReason"] = a.state_reason
    if a.state_reason_data is not None:
        out["StateReasonData"] = a.state_reason_data
    out["StateUpdatedTimestamp"] = a.state_updated
    out["StateTransitionedTimestamp"] = a.state_transitioned
    if a.evaluation_state is not None:
        out["EvaluationState"] = a.evaluation_state
    return out


def storage_doc(a: Alarm) -> Doc:
    out = alarm_doc(a)
    if a.config.tags:
        out["Tags"] = [{"Key": k, "Value": v} for k, v in a.config.tags]
    return out


def alarm_from_storage(d: Mapping[str, Any]) -> Alarm:
    return Alarm(
        config=config_from_doc(d),
        arn=str(d["AlarmArn"]),
        configuration_updated=float(d["AlarmConfigurationUpdatedTimestamp"]),
        state_value=str(d["StateValue"]),
        state_reason=str(d["StateReason"]),
        state_reason_data=d.get("StateReasonData"),
        state_updated=float(d["StateUpdatedTimestamp"]),
        state_transitioned=float(d["StateTransitionedTimestamp"]),
        evaluation_state=d.get("EvaluationState"),
    )


def camel(value: Any) -> Any:
    """History data spells members in lower camel case (``alarmName``, ``oKActions``)."""
    if isinstance(value, dict):
        return {k[:1].lower() + k[1:]: camel(v) for k, v in value.items()}
    if isinstance(value, list):
        return [camel(v) for v in value]
    return value
