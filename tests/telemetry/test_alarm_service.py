"""Alarm use cases and the evaluator loop, on a clock the test drives."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import create_engine

from modelgate.controllers.alarms import AlarmEvaluator
from modelgate.errors import ModelgateError
from modelgate.services.alarms import AlarmService
from modelgate.services.metrics import MetricsService
from modelgate.telemetry.alarm_records import Alarm, AlarmConfig, AlarmRepository
from modelgate.telemetry.errors import (
    AlarmNotFound,
    CloudWatchValidation,
    InvalidFormat,
    InvalidNextToken,
    InvalidParameterCombination,
    InvalidParameterValue,
)
from modelgate.telemetry.model import SAGEMAKER_NAMESPACE, MetricDatum, MetricId, MetricQuery, MetricStat
from modelgate.telemetry.recorder import InvocationRecorder
from modelgate.telemetry.store import MetricStore
from tests.telemetry.fakes import FakeClock

T0 = 1_700_000_040  # a whole minute
DIMS = (("EndpointName", "ep"), ("VariantName", "blue"))
ERRORS = MetricId.of(SAGEMAKER_NAMESPACE, "Invocation5XXErrors", DIMS)
INVOCATIONS = MetricId.of(SAGEMAKER_NAMESPACE, "Invocations", DIMS)
CUSTOM = MetricId.of("App", "Latency", ())


class World:
    def __init__(self, tmp: Path) -> None:
        self.clock = FakeClock(T0)
        self.engine = create_engine(f"sqlite:///{tmp / 'a.db'}")
        self.store = MetricStore()
        self.recorder = InvocationRecorder(self.store, self.clock)
        self.metrics = MetricsService(self.store, self.clock, before_read=self.recorder.drain)
        self.notified: list[tuple[str, str, str]] = []
        self.alarms = self.service()
        self.evaluator = AlarmEvaluator(self.alarms, self.clock, self.recorder.drain)

    def service(self) -> AlarmService:
        svc = AlarmService(self.metrics, AlarmRepository(self.engine), self.clock, "123456789012", "us-east-1",
                           notify=lambda a, old: self.notified.append((a.name, old, a.state_value)))
        svc.load()
        return svc

    def put(self, config: AlarmConfig) -> None:
        present = {"MetricName", "Namespace", "Period"} if config.metric else {"Metrics"}
        self.alarms.put_metric_alarm(config, present)

    def invoke(self, status: int, n: int = 1) -> None:
        for _ in range(n):
            self.recorder.record_invocation("ep", "blue", "fleet-1", status, 1000.0, 10.0, 1)

    def run_until(self, t: float, every: float = 0.5, status: int | None = None) -> None:
        while self.clock.now() < t:
            self.clock.advance(every)
            if status is not None:
                self.invoke(status)
            self.evaluator.step()

    def state(self, name: str = "errors") -> str:
        return self.alarms.alarm_state(name)

    def history(self, name: str = "errors", item_type: str | None = None) -> list[dict[str, object]]:
        items, _ = self.alarms.describe_alarm_history(name, item_type, None, None, [], "TimestampAscending", 100,
                                                      None)
        return [{"summary": i.summary, "type": i.item_type, "data": json.loads(i.data)} for i in items]


def errors_alarm(**kw: object) -> AlarmConfig:
    base = AlarmConfig(name="errors", evaluation_periods=1, comparison_operator="GreaterThanThreshold",
                       threshold=0.0, metric=ERRORS, statistic="Sum", period=10,
                       alarm_actions=("http://hook/alarm",), ok_actions=("http://hook/ok",))
    return replace(base, **kw)  # type: ignore[arg-type]


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def test_lifecycle_insufficient_data_alarm_ok(world: World) -> None:
    world.put(errors_alarm())
    alarm = world.alarms.alarms["errors"]
    assert (alarm.state_value, alarm.state_reason) == ("INSUFFICIENT_DATA", "Unchecked: Initial alarm creation")
    world.run_until(T0 + 30)
    assert world.state() == "INSUFFICIENT_DATA"  # no data and TreatMissingData missing
    errors_start = world.clock.now()
    world.run_until(errors_start + 30, status=500)
    assert world.state() == "ALARM"
    recovered = world.clock.now()
    world.run_until(recovered + 30, status=200)
    assert world.state() == "OK"
    assert world.notified == [("errors", "INSUFFICIENT_DATA", "ALARM"), ("errors", "ALARM", "OK")]
    history = world.history()
    assert [h["summary"] for h in history] == [
        'Alarm "errors" created',
        "Alarm updated from INSUFFICIENT_DATA to ALARM",
        "Alarm updated from ALARM to OK",
    ]
    to_alarm = history[1]["data"]
    assert isinstance(to_alarm, dict)
    initial = {"stateValue": "INSUFFICIENT_DATA", "stateReason": "Unchecked: Initial alarm creation"}
    assert to_alarm["oldState"] == initial
    new = to_alarm["newState"]
    assert new["stateValue"] == "ALARM"
    assert new["stateReason"].startswith("Threshold Crossed: 1 datapoint [")  # no DatapointsToAlarm: short form
    assert new["stateReasonData"]["statistic"] == "Sum" and new["stateReasonData"]["period"] == 10
    created = history[0]["data"]
    assert isinstance(created, dict) and created["type"] == "Create"
    assert created["createdAlarm"]["alarmName"] == "errors" and created["createdAlarm"]["oKActions"] == ["http://hook/ok"]


@pytest.mark.parametrize(("period", "offset"), [(10, 0.1), (10, 9.9), (60, 0.1), (60, 59.5), (20, 3.0)])
def test_state_change_visible_within_period_plus_two_seconds(world: World, period: int, offset: float) -> None:
    world.put(errors_alarm(period=period, treat_missing_data="notBreaching"))
    world.run_until(T0 + 120, every=1.0)
    assert world.state() == "OK"
    start = T0 + 120 + offset
    world.clock.set(start)
    world.invoke(500)
    when = None
    while world.clock.now() < start + period + 15:
        before = int(world.clock.now())
        world.clock.advance(0.25)
        if int(world.clock.now()) != before:  # the evaluator ticks once a second
            world.evaluator.step()
        if world.state() == "ALARM":
            when = world.clock.now()
            break
    assert when is not None
    assert when - start <= period + 2.0


def test_set_alarm_state_holds_until_next_evaluation(world: World) -> None:
    world.put(errors_alarm(period=60, treat_missing_data="notBreaching"))
    world.run_until(T0 + 62)
    assert world.state() == "OK"
    world.alarms.set_alarm_state("errors", "ALARM", "testing the rollback", '{"by": "test"}')
    assert world.state() == "ALARM"
    assert world.notified[-1] == ("errors", "OK", "ALARM")
    world.run_until(T0 + 120)  # the window ending at T0+60 was already evaluated
    assert world.state() == "ALARM"
    world.run_until(T0 + 122)
    assert world.state() == "OK"
    summaries = [h["summary"] for h in world.history(item_type="StateUpdate")]
    assert summaries[-2:] == ["Alarm updated from OK to ALARM", "Alarm updated from ALARM to OK"]
    manual = world.history(item_type="StateUpdate")[-2]["data"]
    assert isinstance(manual, dict) and manual["newState"]["stateReasonData"] == {"by": "test"}


def test_set_alarm_state_errors(world: World) -> None:
    with pytest.raises(AlarmNotFound, match=r"Alarm nope does not exist\."):
        world.alarms.set_alarm_state("nope", "OK", "x", None)
    world.put(errors_alarm())
    with pytest.raises(InvalidFormat):
        world.alarms.set_alarm_state("errors", "OK", "x", "{not json")
    world.alarms.set_alarm_state("errors", "INSUFFICIENT_DATA", "same", None)
    assert world.notified == []  # no transition, no actions


def test_actions_enabled_is_honoured(world: World) -> None:
    world.put(errors_alarm(actions_enabled=False))
    world.alarms.set_alarm_state("errors", "ALARM", "x", None)
    assert world.notified == []
    world.alarms.set_actions_enabled(["errors", "unknown"], True)
    assert world.alarms.alarms["errors"].config.actions_enabled
    world.alarms.set_alarm_state("errors", "OK", "x", None)
    assert world.notified == [("errors", "ALARM", "OK")]
    updates = world.history(item_type="ConfigurationUpdate")
    assert updates[-1]["data"]["originalUpdatedFields"] == {"actionsEnabled": False}  # type: ignore[index]


def test_update_keeps_state_and_records_changed_fields(world: World) -> None:
    world.put(errors_alarm())
    world.alarms.set_alarm_state("errors", "ALARM", "x", None)
    world.put(errors_alarm(threshold=5.0, description="now with a description"))
    assert world.state() == "ALARM"
    update = world.history(item_type="ConfigurationUpdate")[-1]
    assert update["summary"] == 'Alarm "errors" updated'
    assert update["data"]["originalUpdatedFields"] == {"alarmDescription": None, "threshold": 0.0}  # type: ignore[index]
    assert update["data"]["updatedAlarm"]["threshold"] == 5.0  # type: ignore[index]


def test_delete_alarms(world: World) -> None:
    world.put(errors_alarm())
    world.put(errors_alarm(name="other"))
    with pytest.raises(AlarmNotFound):
        world.alarms.delete_alarms(["errors", "missing"])
    assert set(world.alarms.alarms) == {"errors", "other"}  # nothing deleted
    world.alarms.delete_alarms(["errors"])
    assert set(world.alarms.alarms) == {"other"}
    assert world.history()[-1]["summary"] == 'Alarm "errors" deleted'  # history survives the alarm
    assert set(world.service().alarms) == {"other"}


def test_alarms_and_state_survive_a_restart(world: World) -> None:
    world.put(errors_alarm())
    world.alarms.set_alarm_state("errors", "ALARM", "manual", '{"a": 1}')
    again = world.service()
    alarm = again.alarms["errors"]
    assert (alarm.state_value, alarm.state_reason, alarm.state_reason_data) == ("ALARM", "manual", '{"a": 1}')
    assert alarm.config == world.alarms.alarms["errors"].config


STATS_DATA = (1.0, 2.0, 3.0, 10.0)


@pytest.mark.parametrize(
    ("statistic", "threshold", "expected"),
    [
        ("Sum", 15.9, "ALARM"), ("Sum", 16.0, "OK"),
        ("Average", 3.9, "ALARM"), ("Average", 4.0, "OK"),
        ("Minimum", 0.9, "ALARM"), ("Minimum", 1.0, "OK"),
        ("Maximum", 9.9, "ALARM"), ("Maximum", 10.0, "OK"),
        ("SampleCount", 3.0, "ALARM"), ("SampleCount", 4.0, "OK"),
        ("p50", 1.9, "ALARM"), ("p50", 2.1, "OK"),
        ("p100", 9.8, "ALARM"), ("p100", 10.2, "OK"),
    ],
)
def test_each_statistic(world: World, statistic: str, threshold: float, expected: str) -> None:
    world.metrics.put_metric_data("App", [MetricDatum("Latency", (), float(T0 + 5), values=STATS_DATA)])
    is_percentile = statistic.startswith("p")
    world.put(AlarmConfig(name="s", evaluation_periods=1, comparison_operator="GreaterThanThreshold",
                          threshold=threshold, metric=CUSTOM, period=60,
                          statistic=None if is_percentile else statistic,
                          extended_statistic=statistic if is_percentile else None))
    world.clock.set(T0 + 61)
    world.evaluator.step()
    assert world.state("s") == expected


def test_unit_mismatch_leaves_alarm_without_data(world: World) -> None:
    world.metrics.put_metric_data("App", [MetricDatum("Latency", (), float(T0 + 5), value=5.0, unit="Seconds")])
    world.put(AlarmConfig(name="u", evaluation_periods=1, comparison_operator="GreaterThanThreshold",
                          threshold=1.0, metric=CUSTOM, period=60, statistic="Sum", unit="Milliseconds"))
    world.clock.set(T0 + 61)
    world.evaluator.step()
    assert world.state("u") == "INSUFFICIENT_DATA"


def test_metric_math_alarm_on_error_rate(world: World) -> None:
    queries = (
        MetricQuery("e", MetricStat(ERRORS, 10, "Sum"), return_data=False),
        MetricQuery("n", MetricStat(INVOCATIONS, 10, "Sum"), return_data=False),
        MetricQuery("rate", expression="100 * e / n", label="error rate"),
    )
    world.put(AlarmConfig(name="rate", evaluation_periods=2, comparison_operator="GreaterThanOrEqualToThreshold",
                          threshold=20.0, metrics=queries, treat_missing_data="notBreaching"))
    world.run_until(T0 + 20, every=0.25, status=200)
    assert world.state("rate") == "OK"
    for _ in range(120):  # one error in four: 25 %, for 30 s
        world.clock.advance(0.25)
        world.invoke(500 if int(world.clock.now() * 4) % 4 == 0 else 200)
        world.evaluator.step()
    assert world.state("rate") == "ALARM"
    data = json.loads(world.alarms.alarms["rate"].state_reason_data or "{}")
    assert "statistic" not in data and data["recentDatapoints"][-1] == 25.0


def test_math_alarm_that_cannot_be_evaluated(world: World) -> None:
    queries = (MetricQuery("m", MetricStat(ERRORS, 10, "Sum"), return_data=False),
               MetricQuery("bad", expression="[m, m]"))
    world.put(AlarmConfig(name="bad", evaluation_periods=1, comparison_operator="GreaterThanThreshold",
                          threshold=1.0, metrics=queries))
    world.run_until(T0 + 12)
    assert world.alarms.alarms["bad"].evaluation_state == "EVALUATION_ERROR"
    assert world.state("bad") == "INSUFFICIENT_DATA"


@pytest.mark.parametrize(
    ("changes", "present", "error", "message"),
    [
        ({"period": 45}, None, CloudWatchValidation, "Period must be 10, 20, 30 or a multiple of 60"),
        ({"period": 60, "evaluation_periods": 1441}, None, CloudWatchValidation, "more than a day"),
        ({"period": 3600, "evaluation_periods": 169}, None, CloudWatchValidation, "more than a week"),
        ({"datapoints_to_alarm": 2}, None, CloudWatchValidation,
         "DatapointsToAlarm must be less than or equal to EvaluationPeriods"),
        ({"treat_missing_data": "sometimes"}, None, CloudWatchValidation, "Option sometimes is not supported"),
        ({"evaluate_low_sample_count_percentile": "maybe"}, None, CloudWatchValidation, "Option maybe"),
        ({"statistic": None}, None, CloudWatchValidation, "Exactly one of Statistic and ExtendedStatistic"),
        ({"extended_statistic": "p99"}, None, CloudWatchValidation, "Exactly one of Statistic and ExtendedStatistic"),
        ({"statistic": None, "extended_statistic": "tm99"}, None, InvalidParameterValue,
         "The value tm99 for parameter ExtendedStatistic is not supported."),
        ({"period": None}, None, CloudWatchValidation, "Period must be set"),
        ({"metric": None}, None, CloudWatchValidation, "MetricName and Namespace must be set"),
        ({"comparison_operator": "GreaterThanUpperThreshold"}, None, CloudWatchValidation, "anomaly detection"),
        ({"alarm_actions": ("mailto:x@y",)}, None, CloudWatchValidation, "Invalid arn syntax: mailto:x@y"),
        ({"metrics": (MetricQuery("e", expression="1"),)}, {"Metrics", "Statistic"}, CloudWatchValidation,
         "Statistic should not be set if list of Metrics is set."),
        ({"metric": None, "statistic": None, "period": None,
          "metrics": (MetricQuery("e", expression="1", return_data=False),)}, {"Metrics"}, CloudWatchValidation,
         "Exactly one element of the metrics list should return data."),
    ],
)
def test_put_metric_alarm_validation(world: World, changes: dict[str, object], present: set[str] | None,
                                     error: type[ModelgateError], message: str) -> None:
    config = errors_alarm(**changes)
    with pytest.raises(error, match=message):
        world.alarms.put_metric_alarm(config, present or {"MetricName", "Namespace", "Period"})
    assert world.alarms.alarms == {}


def test_describe_alarms_filters_and_pages(world: World) -> None:
    for i in range(5):
        world.put(errors_alarm(name=f"a{i}", alarm_actions=(f"arn:aws:sns:us-east-1:1:t{i}",)))
    world.put(errors_alarm(name="b", metric=CUSTOM))
    world.alarms.set_alarm_state("a3", "ALARM", "x", None)

    def names(alarms: list[Alarm]) -> list[str]:
        return [a.name for a in alarms]

    page, token = world.alarms.describe_alarms([], "a", None, None, [], 2, None)
    assert names(page) == ["a0", "a1"] and token == "2"
    assert names(world.alarms.describe_alarms([], "a", None, None, [], 2, "4")[0]) == ["a4"]
    assert names(world.alarms.describe_alarms([], None, "ALARM", None, [], 50, None)[0]) == ["a3"]
    assert names(world.alarms.describe_alarms(["b", "a1"], None, None, None, [], 50, None)[0]) == ["a1", "b"]
    assert names(world.alarms.describe_alarms([], None, None, "arn:aws:sns:us-east-1:1:t4", [], 50, None)[0]) == ["a4"]
    assert world.alarms.describe_alarms([], None, None, None, ["CompositeAlarm"], 50, None)[0] == []
    with pytest.raises(InvalidParameterCombination):
        world.alarms.describe_alarms(["a1"], "a", None, None, [], 50, None)
    with pytest.raises(InvalidNextToken):
        world.alarms.describe_alarms([], None, None, None, [], 50, "x")
    assert names(world.alarms.describe_alarms_for_metric(CUSTOM, None, None, None, None)) == ["b"]
    assert world.alarms.describe_alarms_for_metric(ERRORS, "Average", None, None, None) == []
    assert len(world.alarms.describe_alarms_for_metric(ERRORS, "Sum", None, 10, None)) == 5
