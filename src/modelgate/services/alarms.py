"""Alarm use cases: PutMetricAlarm, DescribeAlarms(ForMetric), DeleteAlarms, SetAlarmState,
DescribeAlarmHistory, Enable/DisableAlarmActions, and one evaluation round.

Alarms live in memory (the source of truth between restarts is the repository, written through on every
change). Evaluation reads the metric store through :class:`MetricsService`, decides with the pure policy
(policies/alarms.py), and on a state change writes the state, a ``StateUpdate`` history item, and hands the
alarm to ``notify`` (the action dispatcher) when actions are enabled.
"""

from __future__ import annotations

import contextlib
import json
import logging
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from modelgate.clock import Clock
from modelgate.egress import SETTING as EGRESS_SETTING
from modelgate.egress import EgressPolicy
from modelgate.errors import ModelgateError
from modelgate.policies.alarms import (
    OPERATORS,
    TREATMENTS,
    Slot,
    evaluate,
    evaluation_range,
    window_end,
)
from modelgate.services.metrics import MetricsService, check_queries
from modelgate.telemetry.alarm_records import Alarm, AlarmConfig, AlarmRepository, HistoryItem
from modelgate.telemetry.documents import alarm_from_storage, camel, config_doc, storage_doc
from modelgate.telemetry.errors import (
    AlarmNotFound,
    CloudWatchValidation,
    InvalidFormat,
    InvalidNextToken,
    InvalidParameterCombination,
    InvalidParameterValue,
)
from modelgate.telemetry.model import MetricId, MetricStat
from modelgate.telemetry.notify import is_url
from modelgate.telemetry.statistics import STATISTICS, percentile_of

log = logging.getLogger(__name__)

_HISTORY_DATA_MAX = 4095
_NOT_WITH_METRICS = ("MetricName", "Namespace", "Statistic", "ExtendedStatistic", "Dimensions", "Period", "Unit")


def _token(token: str | None) -> int:
    if token is None:
        return 0
    if not (token.isascii() and token.isdigit()) or len(token) > 18:
        raise InvalidNextToken("The value of NextToken is invalid.")
    return int(token)


class AlarmService:
    def __init__(
        self,
        metrics: MetricsService,
        repo: AlarmRepository,
        clock: Clock,
        account_id: str,
        region: str,
        notify: Callable[[Alarm, str], None] | None = None,
        egress: EgressPolicy | None = None,
    ) -> None:
        self.metrics = metrics
        self.egress = egress or EgressPolicy()
        self.repo = repo
        self.clock = clock
        self.account_id = account_id
        self.region = region
        self.notify: Callable[[Alarm, str], None] = notify or (lambda alarm, old_state: None)
        self.alarms: dict[str, Alarm] = {}

    def load(self) -> None:
        for doc in self.repo.load_documents():
            alarm = alarm_from_storage(doc)
            self.alarms[alarm.name] = alarm

    # --- configuration ----------------------------------------------------------------------------

    def put_metric_alarm(self, config: AlarmConfig, present: set[str]) -> None:
        """``present``: the PutMetricAlarm members the caller set (for the Metrics exclusivity rule)."""
        self._validate(config, present)
        now = self.clock.now()
        alarm = self.alarms.get(config.name)
        if alarm is None:
            arn = f"arn:aws:cloudwatch:{self.region}:{self.account_id}:alarm:{config.name}"
            alarm = Alarm(config, arn, now, state_updated=now, state_transitioned=now)
            self.alarms[config.name] = alarm
            self._save(alarm)
            created = {"version": "1.0", "type": "Create", "createdAlarm": self._camel_config(alarm)}
            self._history(config.name, "ConfigurationUpdate", f'Alarm "{config.name}" created', created)
            return
        before = self._camel_config(alarm)
        alarm.config = config
        alarm.configuration_updated = now
        alarm.last_window_end = None  # evaluate the new configuration at the next tick
        self._save(alarm)
        after = self._camel_config(alarm)
        changed = {k: before.get(k) for k in sorted(set(before) | set(after)) if before.get(k) != after.get(k)}
        updated = {"version": "1.0", "type": "Update", "updatedAlarm": after, "originalUpdatedFields": changed}
        self._history(config.name, "ConfigurationUpdate", f'Alarm "{config.name}" updated', updated)

    def _camel_config(self, alarm: Alarm) -> dict[str, Any]:
        doc: dict[str, Any] = camel({**config_doc(alarm.config), "AlarmArn": alarm.arn})
        return doc

    def _validate(self, c: AlarmConfig, present: set[str]) -> None:
        if c.comparison_operator not in OPERATORS:
            raise CloudWatchValidation(
                f"ComparisonOperator {c.comparison_operator} is for anomaly detection alarms (ThresholdMetricId), "
                "which modelgate does not support."
            )
        if c.metrics:
            for member in _NOT_WITH_METRICS:
                if member in present:
                    raise CloudWatchValidation(f"{member} should not be set if list of Metrics is set.")
            check_queries(c.metrics, "Metrics")
            if sum(1 for q in c.metrics if q.return_data) != 1:
                raise CloudWatchValidation("Exactly one element of the metrics list should return data.")
            stats = [q.metric_stat for q in c.metrics if q.metric_stat is not None]
            if len(stats) > 10:
                raise CloudWatchValidation("An alarm can use at most 10 metrics.")
            if len({ms.period for ms in stats}) > 1:
                raise CloudWatchValidation("All metrics of a metric math alarm must have the same period.")
        else:
            if c.metric is None or not c.metric.name or not c.metric.namespace:
                raise CloudWatchValidation("MetricName and Namespace must be set if list of Metrics is not set.")
            if (c.statistic is None) == (c.extended_statistic is None):
                raise CloudWatchValidation("Exactly one of Statistic and ExtendedStatistic must be set.")
            if c.statistic is not None and c.statistic not in STATISTICS:
                raise CloudWatchValidation(f"The value {c.statistic} for parameter Statistic is not supported.")
            if c.extended_statistic is not None and percentile_of(c.extended_statistic) is None:
                raise InvalidParameterValue(
                    f"The value {c.extended_statistic} for parameter ExtendedStatistic is not supported."
                )
            if c.period is None:
                raise CloudWatchValidation("Period must be set if list of Metrics is not set.")
        period = c.evaluation_period
        if period not in (10, 20, 30) and period % 60 != 0:
            raise CloudWatchValidation("The parameter Period must be 10, 20, 30 or a multiple of 60.")
        span = period * c.evaluation_periods
        if period < 3600 and span > 86400:
            raise CloudWatchValidation(
                "Metrics cannot be checked across more than a day (EvaluationPeriods * Period must be <= 86400)."
            )
        if span > 604800:
            raise CloudWatchValidation(
                "Metrics cannot be checked across more than a week (EvaluationPeriods * Period must be <= 604800)."
            )
        if c.datapoints_to_alarm is not None and c.datapoints_to_alarm > c.evaluation_periods:
            raise CloudWatchValidation("DatapointsToAlarm must be less than or equal to EvaluationPeriods")
        if c.treat_missing_data is not None and c.treat_missing_data not in TREATMENTS:
            raise CloudWatchValidation(
                f"Option {c.treat_missing_data} is not supported. Supported options for parameter "
                "TreatMissingData are missing, ignore, breaching and notBreaching."
            )
        elsp = c.evaluate_low_sample_count_percentile
        if elsp is not None and elsp not in ("evaluate", "ignore"):
            raise CloudWatchValidation(
                f"Option {elsp} is not supported. Supported options for parameter "
                "EvaluateLowSampleCountPercentile are evaluate and ignore."
            )
        for action in (*c.ok_actions, *c.alarm_actions, *c.insufficient_data_actions):
            if not (is_url(action) or action.startswith("arn:")):
                raise CloudWatchValidation(f"Invalid arn syntax: {action}")
            reason = _action_refusal(self.egress, action) if is_url(action) else None
            if reason is not None:
                raise CloudWatchValidation(reason)

    def delete_alarms(self, names: Sequence[str]) -> None:
        missing = [n for n in names if n not in self.alarms]
        if missing:
            raise AlarmNotFound(f"{len(missing)} of the alarms to delete do not exist: {', '.join(missing)}")
        for name in dict.fromkeys(names):
            alarm = self.alarms.pop(name)
            deleted = {"version": "1.0", "type": "Delete", "deletedAlarm": self._camel_config(alarm)}
            self._history(name, "ConfigurationUpdate", f'Alarm "{name}" deleted', deleted)
        self.repo.delete(list(names))

    def set_actions_enabled(self, names: Sequence[str], enabled: bool) -> None:
        for name in names:
            alarm = self.alarms.get(name)
            if alarm is None or alarm.config.actions_enabled == enabled:
                continue
            alarm.config = _with_actions(alarm.config, enabled)
            alarm.configuration_updated = self.clock.now()
            self._save(alarm)
            updated = {
                "version": "1.0",
                "type": "Update",
                "updatedAlarm": self._camel_config(alarm),
                "originalUpdatedFields": {"actionsEnabled": not enabled},
            }
            self._history(name, "ConfigurationUpdate", f'Alarm "{name}" updated', updated)

    # --- reading ----------------------------------------------------------------------------------

    def describe_alarms(
        self,
        names: Sequence[str],
        prefix: str | None,
        state_value: str | None,
        action_prefix: str | None,
        alarm_types: Sequence[str],
        max_records: int,
        next_token: str | None,
    ) -> tuple[list[Alarm], str | None]:
        if names and prefix is not None:
            raise InvalidParameterCombination("AlarmNames and AlarmNamePrefix cannot both be specified.")
        offset = _token(next_token)
        if alarm_types and "MetricAlarm" not in alarm_types:
            return [], None
        found = []
        for name in sorted(self.alarms):
            a = self.alarms[name]
            if names and name not in names:
                continue
            if prefix is not None and not name.startswith(prefix):
                continue
            if state_value is not None and a.state_value != state_value:
                continue
            actions = (*a.config.ok_actions, *a.config.alarm_actions, *a.config.insufficient_data_actions)
            if action_prefix is not None and not any(x.startswith(action_prefix) for x in actions):
                continue
            found.append(a)
        page = found[offset : offset + max_records]
        return page, str(offset + max_records) if offset + max_records < len(found) else None

    def describe_alarms_for_metric(
        self, metric: MetricId, statistic: str | None, extended: str | None, period: int | None, unit: str | None
    ) -> list[Alarm]:
        out = []
        for name in sorted(self.alarms):
            c = self.alarms[name].config
            if c.metric != metric:
                continue
            if statistic is not None and c.statistic != statistic:
                continue
            if extended is not None and c.extended_statistic != extended:
                continue
            if (period is not None and c.period != period) or (unit is not None and c.unit != unit):
                continue
            out.append(self.alarms[name])
        return out

    def describe_alarm_history(
        self,
        name: str | None,
        item_type: str | None,
        start: float | None,
        end: float | None,
        alarm_types: Sequence[str],
        scan_by: str | None,
        max_records: int,
        next_token: str | None,
    ) -> tuple[list[HistoryItem], str | None]:
        offset = _token(next_token)
        if alarm_types and "MetricAlarm" not in alarm_types:
            return [], None
        ascending = scan_by == "TimestampAscending"
        items = self.repo.history(name, item_type, start, end, ascending, max_records + 1, offset)
        more = len(items) > max_records
        return items[:max_records], str(offset + max_records) if more else None

    def alarm_state(self, name: str) -> str:
        alarm = self.alarms.get(name)
        if alarm is None:
            raise AlarmNotFound(f"Alarm {name} does not exist.")
        return alarm.state_value

    # --- state ------------------------------------------------------------------------------------

    def set_alarm_state(self, name: str, state: str, reason: str, reason_data: str | None) -> None:
        alarm = self.alarms.get(name)
        if alarm is None:
            raise AlarmNotFound(f"Alarm {name} does not exist.")
        if reason_data is not None:
            try:
                json.loads(reason_data)
            except ValueError as exc:
                raise InvalidFormat("StateReasonData is not valid JSON.") from exc
        self._transition(alarm, state, reason, reason_data, self.clock.now())

    def evaluate_due(self, now: float, settle: float = 1.0) -> int:
        """Evaluate every alarm whose newest window (ending at or before ``now - settle``) is new to it."""
        done = 0
        for alarm in list(self.alarms.values()):
            end = window_end(alarm.config.rule(), now - settle)
            if alarm.last_window_end is not None and alarm.last_window_end >= end:
                continue
            alarm.last_window_end = end
            self.evaluate_alarm(alarm, end, now)
            done += 1
        return done

    def evaluate_alarm(self, alarm: Alarm, end: int, now: float) -> None:
        rule = alarm.config.rule()
        starts = evaluation_range(rule, end)
        try:
            slots = self._slots(alarm.config, starts, end)
        except ModelgateError as exc:
            log.warning("alarm %s cannot be evaluated: %s", alarm.name, exc.message)
            if alarm.evaluation_state != "EVALUATION_ERROR":
                alarm.evaluation_state = "EVALUATION_ERROR"
                alarm.state_updated = now
                self._save(alarm)
            return
        if alarm.evaluation_state is not None:
            alarm.evaluation_state = None
            alarm.state_updated = now
            self._save(alarm)
        result = evaluate(rule, slots, alarm.state_value, now)
        if result.keep or result.state == alarm.state_value:
            return
        self._transition(alarm, result.state, result.reason, result.reason_data, now)

    def _slots(self, c: AlarmConfig, starts: list[int], end: int) -> list[Slot]:
        period = c.evaluation_period
        if c.metrics:
            series = self.metrics.math_values(c.metrics, starts[0], end, period)
            return [Slot(s, series.get(s)) for s in starts]
        assert c.metric is not None
        stat = c.statistic or c.extended_statistic or "Average"
        values = self.metrics.stat_values(MetricStat(c.metric, period, stat, c.unit), starts[0], end)
        return [Slot(s, *values[s]) if s in values else Slot(s, None) for s in starts]

    def _transition(self, alarm: Alarm, state: str, reason: str, reason_data: str | None, now: float) -> None:
        old_state, old_reason, old_data = alarm.state_value, alarm.state_reason, alarm.state_reason_data
        alarm.state_value, alarm.state_reason, alarm.state_reason_data = state, reason, reason_data
        alarm.state_updated = now
        if state != old_state:
            alarm.state_transitioned = now
        self._save(alarm)
        old = _state_doc(old_state, old_reason, old_data)
        new = _state_doc(state, reason, reason_data)
        data = {"version": "1.0", "oldState": old, "newState": new}
        for part in (old, new):  # HistoryData holds at most 4095 characters
            if len(json.dumps(data, separators=(",", ":"))) > _HISTORY_DATA_MAX:
                part.pop("stateReasonData", None)
        self._history(alarm.name, "StateUpdate", f"Alarm updated from {old_state} to {state}", data)
        if state != old_state and alarm.config.actions_enabled:
            self.notify(alarm, old_state)

    # --- persistence ------------------------------------------------------------------------------

    def _save(self, alarm: Alarm) -> None:
        self.repo.save_document(alarm.name, storage_doc(alarm))

    def _history(self, name: str, item_type: str, summary: str, data: dict[str, Any]) -> None:
        self.record_history(
            HistoryItem(name, self.clock.now(), item_type, summary, json.dumps(data, separators=(",", ":")))
        )

    def record_history(self, item: HistoryItem) -> None:
        self.repo.add_history(item)


def _state_doc(value: str, reason: str, data: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {"stateValue": value, "stateReason": reason}
    if data is not None:
        with contextlib.suppress(ValueError):
            out["stateReasonData"] = json.loads(data)
    return out


def _action_refusal(egress: EgressPolicy, url: str) -> str | None:
    """Why a URL action is refused, as far as the URL alone tells (a literal address or localhost that is not
    allowed, no host, a bad port); host names are checked on delivery."""
    parts = urllib.parse.urlsplit(url)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return f"The action {url} has an invalid port."
    if not parts.hostname:
        return f"The action {url} has no host."
    if egress.refused_literally(parts.hostname, port):
        return (
            f"The action {url} names a loopback, link-local, private or reserved address; modelgate posts alarm "
            f"notifications to such addresses only when {EGRESS_SETTING} allows them."
        )
    return None


def _with_actions(c: AlarmConfig, enabled: bool) -> AlarmConfig:
    return replace(c, actions_enabled=enabled)
