"""Alarms and their history: typed records and their SQLAlchemy repository.

An :class:`AlarmConfig` is what PutMetricAlarm sets; an :class:`Alarm` adds the identity and the state.
Alarms are stored as JSON documents in CloudWatch's own member names (telemetry/documents.py), history
items as rows. Every repository method is one short transaction.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import Engine, delete, func, select

from modelgate.policies.alarms import INSUFFICIENT_DATA, AlarmRule
from modelgate.telemetry.model import MetricId, MetricQuery
from modelgate.telemetry.schema import alarm_history, alarms, create_tables

INITIAL_REASON = "Unchecked: Initial alarm creation"
HISTORY_RETENTION = 14 * 86400


@dataclass(frozen=True, slots=True)
class AlarmConfig:
    name: str
    evaluation_periods: int
    comparison_operator: str
    threshold: float
    description: str | None = None
    actions_enabled: bool = True
    ok_actions: tuple[str, ...] = ()
    alarm_actions: tuple[str, ...] = ()
    insufficient_data_actions: tuple[str, ...] = ()
    metric: MetricId | None = None  # a metric alarm; None for a metric-math alarm
    statistic: str | None = None
    extended_statistic: str | None = None
    period: int | None = None
    unit: str | None = None
    datapoints_to_alarm: int | None = None
    treat_missing_data: str | None = None
    evaluate_low_sample_count_percentile: str | None = None
    metrics: tuple[MetricQuery, ...] = ()
    tags: tuple[tuple[str, str], ...] = ()

    @property
    def evaluation_period(self) -> int:
        """The period the alarm evaluates: Period, or for a math alarm its metrics' common period."""
        if self.period is not None:
            return self.period
        for q in self.metrics:
            if q.metric_stat is not None:
                return q.metric_stat.period
        for q in self.metrics:
            if q.period is not None:
                return q.period
        return 60

    def rule(self) -> AlarmRule:
        return AlarmRule(
            period=self.evaluation_period,
            evaluation_periods=self.evaluation_periods,
            threshold=self.threshold,
            comparison_operator=self.comparison_operator,
            datapoints_to_alarm=self.datapoints_to_alarm,
            treat_missing_data=self.treat_missing_data,
            statistic=self.statistic,
            extended_statistic=self.extended_statistic,
            unit=self.unit,
            evaluate_low_sample_count_percentile=self.evaluate_low_sample_count_percentile,
            is_math=bool(self.metrics),
        )

    def actions_for(self, state: str) -> tuple[str, ...]:
        if state == "OK":
            return self.ok_actions
        if state == "ALARM":
            return self.alarm_actions
        return self.insufficient_data_actions


@dataclass(slots=True)
class Alarm:
    config: AlarmConfig
    arn: str
    configuration_updated: float
    state_value: str = INSUFFICIENT_DATA
    state_reason: str = INITIAL_REASON
    state_reason_data: str | None = None
    state_updated: float = 0.0
    state_transitioned: float = 0.0
    evaluation_state: str | None = None
    # The end of the newest window evaluated (not persisted: after a restart the alarm is evaluated once
    # more on its newest window, which changes nothing unless the data did).
    last_window_end: int | None = field(default=None, compare=False)

    @property
    def name(self) -> str:
        return self.config.name


@dataclass(frozen=True, slots=True)
class HistoryItem:
    alarm_name: str
    timestamp: float
    item_type: str  # ConfigurationUpdate | StateUpdate | Action
    summary: str
    data: str


class AlarmRepository:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        create_tables(engine)

    def load_documents(self) -> list[dict[str, object]]:
        with self.engine.connect() as conn:
            return [json.loads(body) for (body,) in conn.execute(select(alarms.c.body))]

    def save_document(self, name: str, document: dict[str, object]) -> None:
        body = json.dumps(document, separators=(",", ":"))
        with self.engine.begin() as conn:
            conn.execute(delete(alarms).where(alarms.c.name == name))
            conn.execute(alarms.insert().values(name=name, body=body))

    def delete(self, names: Sequence[str]) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(alarms).where(alarms.c.name.in_(list(names))))

    def add_history(self, item: HistoryItem) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                alarm_history.insert().values(
                    alarm_name=item.alarm_name,
                    timestamp=item.timestamp,
                    item_type=item.item_type,
                    summary=item.summary[:255],
                    data=item.data,
                )
            )

    def history(
        self,
        name: str | None,
        item_type: str | None,
        start: float | None,
        end: float | None,
        ascending: bool,
        limit: int,
        offset: int,
    ) -> list[HistoryItem]:
        h = alarm_history.c
        q = select(h.alarm_name, h.timestamp, h.item_type, h.summary, h.data)
        if name is not None:
            q = q.where(h.alarm_name == name)
        if item_type is not None:
            q = q.where(h.item_type == item_type)
        if start is not None:
            q = q.where(h.timestamp >= start)
        if end is not None:
            q = q.where(h.timestamp <= end)
        order = (h.timestamp.asc(), h.id.asc()) if ascending else (h.timestamp.desc(), h.id.desc())
        q = q.order_by(*order).offset(offset).limit(limit)
        with self.engine.connect() as conn:
            return [HistoryItem(*row) for row in conn.execute(q)]

    def history_count(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(alarm_history)).scalar_one())

    def purge_history(self, now: float) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(alarm_history).where(alarm_history.c.timestamp < now - HISTORY_RETENTION))
