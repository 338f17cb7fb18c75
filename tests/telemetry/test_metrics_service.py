"""PutMetricData, GetMetricStatistics, GetMetricData (with metric math) and ListMetrics, in process."""

from __future__ import annotations

import pytest

from modelgate.errors import ModelgateError
from modelgate.services.metrics import MetricsService
from modelgate.telemetry.errors import (
    CloudWatchValidation,
    InvalidParameterCombination,
    InvalidParameterValue,
    MissingParameter,
)
from modelgate.telemetry.metric_math import MathError, evaluate, evaluate_queries, parse, references
from modelgate.telemetry.model import MetricDatum, MetricId, MetricQuery, MetricStat, StatisticSet
from modelgate.telemetry.store import MetricStore
from tests.telemetry.fakes import FakeClock

T0 = 1_700_000_040
M = MetricId.of("App", "Latency", [("Service", "a")])


def service() -> tuple[MetricsService, FakeClock]:
    clock = FakeClock(T0 + 600)
    return MetricsService(MetricStore(), clock), clock


def put(svc: MetricsService, *data: MetricDatum) -> None:
    svc.put_metric_data("App", list(data))


def datum(**kw: object) -> MetricDatum:
    base: dict[str, object] = {"name": "Latency", "dimensions": M.dimensions, "timestamp": float(T0)}
    base.update(kw)
    return MetricDatum(**base)  # type: ignore[arg-type]


def test_value_values_counts_and_statistic_sets_add_up() -> None:
    svc, _ = service()
    put(svc, datum(value=10.0), datum(values=(1.0, 2.0), counts=(3.0, 1.0)), datum(values=(7.0,)),
        datum(statistic_values=StatisticSet(4, 20.0, 2.0, 8.0)))
    [dp] = svc.get_metric_statistics(M, T0, T0 + 60, 60, ["SampleCount", "Sum", "Minimum", "Maximum", "Average"],
                                     [], None)
    assert (dp.sample_count, dp.sum, dp.minimum, dp.maximum) == (10.0, 42.0, 1.0, 10.0)
    assert dp.average == pytest.approx(4.2)
    assert dp.unit == "None"


def test_percentiles_need_raw_values() -> None:
    svc, _ = service()
    put(svc, datum(values=tuple(float(i) for i in range(1, 101))))
    [dp] = svc.get_metric_statistics(M, T0, T0 + 60, 60, [], ["p50", "p99"], None)
    assert dp.extended["p50"] == pytest.approx(50.0, rel=0.01)
    assert dp.extended["p99"] == pytest.approx(99.0, rel=0.01)
    put(svc, datum(statistic_values=StatisticSet(1, 1.0, 1.0, 1.0)))
    [dp] = svc.get_metric_statistics(M, T0, T0 + 60, 60, [], ["p50"], None)
    assert dp.extended == {}


def test_units_filter_and_label() -> None:
    svc, _ = service()
    put(svc, datum(value=1.0, unit="Milliseconds"), datum(value=5.0, unit="Seconds"))
    [ms] = svc.get_metric_statistics(M, T0, T0 + 60, 60, ["Sum"], [], "Milliseconds")
    assert (ms.sum, ms.unit) == (1.0, "Milliseconds")
    assert svc.get_metric_statistics(M, T0, T0 + 60, 60, ["Sum"], [], "Bytes") == []


def test_high_resolution_data_and_period_grid() -> None:
    svc, _ = service()
    put(svc, *[datum(value=1.0, timestamp=float(T0 + s), storage_resolution=1) for s in range(0, 60, 5)])
    points = svc.get_metric_statistics(M, T0 + 3, T0 + 60, 10, ["Sum"], [], None)
    assert [(p.timestamp - T0, p.sum) for p in points] == [(0, 2.0), (10, 2.0), (20, 2.0), (30, 2.0), (40, 2.0),
                                                           (50, 2.0)]
    # start times round down: to the minute for periods of a minute or more
    [p] = svc.get_metric_statistics(M, T0 + 30, T0 + 60, 60, ["Sum"], [], None)
    assert (p.timestamp, p.sum) == (T0, 12.0)


@pytest.mark.parametrize(
    ("data", "error", "message"),
    [
        (datum(value=1.0, values=(1.0,)), InvalidParameterValue,
         "The parameters MetricData.member.1.Value and MetricData.member.1.Values are mutually exclusive"),
        (datum(value=1.0, statistic_values=StatisticSet(1, 1, 1, 1)), InvalidParameterCombination,
         "MetricData.member.1.StatisticValues are mutually exclusive"),
        (datum(), MissingParameter, "MetricData.member.1.Value"),
        (datum(value=float("nan")), InvalidParameterValue, "The value NaN for parameter MetricData.member.1.Value"),
        (datum(value=float("inf")), InvalidParameterValue, "The value Infinity for parameter"),
        (datum(value=2.0**361), InvalidParameterValue, "for parameter MetricData.member.1.Value is invalid"),
        (datum(values=(1.0, 2.0), counts=(1.0,)), InvalidParameterValue, "must be of the same size"),
        (datum(values=(1.0,) * 151), InvalidParameterValue, "greater than 150"),
        (datum(statistic_values=StatisticSet(0, 1, 1, 1)), InvalidParameterValue, "StatisticValues is invalid"),
        (datum(value=1.0, storage_resolution=5), InvalidParameterValue, "StorageResolution"),
        (datum(value=1.0, timestamp=T0 - 15 * 86400.0), InvalidParameterValue, "two weeks in the past"),
        (datum(value=1.0, timestamp=T0 + 3 * 3600.0), InvalidParameterValue, "two hours in the future"),
        (datum(value=1.0, dimensions=(("a", "1"), ("a", "2"))), InvalidParameterValue, "same dimension name"),
    ],
)
def test_put_metric_data_validation(data: MetricDatum, error: type[ModelgateError], message: str) -> None:
    svc, _ = service()
    with pytest.raises(error) as caught:
        put(svc, data)
    assert message in caught.value.message
    assert list(svc.store.metrics()) == []  # nothing half-applied


def test_aws_namespaces_are_reserved() -> None:
    svc, _ = service()
    with pytest.raises(InvalidParameterValue, match=r"The value AWS/SageMaker for parameter Namespace is invalid\."):
        svc.put_metric_data("AWS/SageMaker", [datum(value=1.0)])


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"statistics": [], "extended": []}, InvalidParameterCombination, "Must specify either Statistics or"),
        ({"statistics": ["Sum"], "extended": ["p99"]}, InvalidParameterCombination, "both"),
        ({"statistics": [], "extended": ["p101"]}, InvalidParameterValue,
         "The value p101 for parameter ExtendedStatistics"),
        ({"statistics": ["Median"]}, InvalidParameterValue, "The value Median for parameter Statistics"),
        ({"period": 7}, InvalidParameterValue, "Period"),
        ({"start": T0 + 60, "end": T0}, InvalidParameterValue, "StartTime must be less than"),
        ({"period": 1, "end": T0 + 1441}, InvalidParameterCombination,
         "You have requested up to 1,441 datapoints, which exceeds the limit of 1,440."),
    ],
)
def test_get_metric_statistics_validation(kwargs: dict[str, object], error: type[ModelgateError], message: str) -> None:
    svc, _ = service()
    args: dict[str, object] = {"metric": M, "start": T0, "end": T0 + 60, "period": 60, "statistics": ["Sum"],
                               "extended": [], "unit": None}
    args.update(kwargs)
    with pytest.raises(error, match=message):
        svc.get_metric_statistics(**args)  # type: ignore[arg-type]


def test_get_metric_data_with_math() -> None:
    svc, _ = service()
    other = MetricId.of("App", "Errors", [("Service", "a")])
    for minute, (lat, err) in enumerate([(10.0, 1.0), (20.0, 0.0), (30.0, 3.0)]):
        ts = float(T0 + 60 * minute)
        put(svc, datum(value=lat, timestamp=ts), MetricDatum("Errors", other.dimensions, ts, value=err))
    queries = [
        MetricQuery("m1", MetricStat(M, 60, "Sum"), return_data=False),
        MetricQuery("m2", MetricStat(other, 60, "Sum"), label="errors"),
        MetricQuery("ratio", expression="100 * m2 / m1"),
        MetricQuery("total", expression="SUM([m1, m2])"),
        MetricQuery("scalar", expression="MAX(m1)"),
    ]
    results = {r.id: r for r in svc.get_metric_data(queries, T0, T0 + 240, "TimestampAscending")}
    assert set(results) == {"m2", "ratio", "total", "scalar"}
    assert results["m2"].label == "errors" and results["ratio"].label == "ratio"
    assert results["ratio"].values == [10.0, 0.0, 10.0]
    assert results["total"].values == [11.0, 20.0, 33.0]
    assert results["scalar"].values == [30.0] * 4 and results["scalar"].timestamps[-1] == T0 + 180
    desc = svc.get_metric_data(queries[:2], T0, T0 + 240)
    assert desc[0].timestamps == [T0 + 120.0, T0 + 60.0, T0 + 0.0]  # TimestampDescending by default
    partial = svc.get_metric_data(queries[:2], T0, T0 + 240, max_datapoints=2)
    assert partial[0].status_code == "PartialData" and len(partial[0].values) == 2


@pytest.mark.parametrize(
    ("queries", "message"),
    [
        ([MetricQuery("M1", MetricStat(M, 60, "Sum"))], "Id is invalid"),
        ([MetricQuery("m1", MetricStat(M, 60, "Sum")), MetricQuery("m1", expression="1")], "duplicated"),
        ([MetricQuery("m1")], "Exactly one of MetricDataQueries.member.1.MetricStat"),
        ([MetricQuery("m1", MetricStat(M, 60, "Median"))], "not supported"),
        ([MetricQuery("m1", MetricStat(M, 7, "Sum"))], "Period"),
        ([MetricQuery("e1", expression="m1 +")], "Error in expression e1"),
        ([MetricQuery("e1", expression="nope * 2")], "Unknown metric id nope"),
        ([MetricQuery("e1", expression="e2"), MetricQuery("e2", expression="e1")], "Circular reference"),
    ],
)
def test_get_metric_data_validation(queries: list[MetricQuery], message: str) -> None:
    svc, _ = service()
    with pytest.raises(CloudWatchValidation, match=message):
        svc.get_metric_data(queries, T0, T0 + 60)


def test_list_metrics_filters_and_pages() -> None:
    svc, clock = service()
    put(svc, datum(value=1.0))
    svc.put_metric_data("Other", [MetricDatum("Count", (("Host", "h1"),), float(T0), value=1.0)])
    svc.put_metric_data("Other", [MetricDatum("Count", (("Host", "h2"),), float(T0), value=1.0)])

    def names(ms: list[MetricId]) -> list[tuple[str, str, tuple[tuple[str, str], ...]]]:
        return [(m.namespace, m.name, m.dimensions) for m in ms]

    assert len(svc.list_metrics(None, None, [], False, None)[0]) == 3
    assert names(svc.list_metrics("Other", None, [("Host", "h2")], False, None)[0]) == [
        ("Other", "Count", (("Host", "h2"),))]
    assert len(svc.list_metrics(None, "Count", [("Host", None)], False, None)[0]) == 2
    clock.advance(4 * 3600)
    assert svc.list_metrics(None, None, [], True, None)[0] == []
    for i in range(600):
        svc.put_metric_data("Many", [MetricDatum("m", (("i", str(i)),), value=1.0)])
    page, token = svc.list_metrics("Many", None, [], False, None)
    assert len(page) == 500 and token is not None
    rest, end = svc.list_metrics("Many", None, [], False, token)
    assert len(rest) == 100 and end is None
    with pytest.raises(InvalidParameterValue, match="NextToken"):
        svc.list_metrics(None, None, [], False, "bogus")


# --- metric math, directly --------------------------------------------------------------------


def test_math_precedence_and_functions() -> None:
    grid = [0, 60, 120, 180]
    stats = {"a": {0: 1.0, 60: 2.0, 180: 4.0}, "b": {0: 10.0, 120: 30.0}}
    resolve = evaluate_queries({}, stats, grid)

    def run(text: str) -> object:
        return evaluate(parse(text), resolve, grid)

    assert run("1 + 2 * 3 ^ 2") == 19.0
    assert run("-a + 1") == {0: 0.0, 60: -1.0, 180: -3.0}
    assert run("a + b") == {0: 11.0}  # only common timestamps
    assert run("a / 0") == {}  # non-finite points dropped
    assert run("AVG(a)") == pytest.approx(7 / 3)
    assert run("MIN([a, b])") == {0: 1.0, 60: 2.0, 120: 30.0, 180: 4.0}
    assert run("FILL(a, 0)") == {0: 1.0, 60: 2.0, 120: 0.0, 180: 4.0}
    assert run("FILL(b, REPEAT)") == {0: 10.0, 60: 10.0, 120: 30.0, 180: 30.0}
    assert run("FILL(a, LINEAR)") == {0: 1.0, 60: 2.0, 120: 3.0, 180: 4.0}
    assert run("[a, b] * 2") == [{0: 2.0, 60: 4.0, 180: 8.0}, {0: 20.0, 120: 60.0}]
    assert run("ABS(-a)") == {0: 1.0, 60: 2.0, 180: 4.0}
    assert references(parse("FILL(m1, REPEAT) + m2 / SUM([m3, m4])")) == {"m1", "m2", "m3", "m4"}


@pytest.mark.parametrize("text", ["", "1 +", "(1", "a b", "1 $ 2", "SUM(a, b)", "FOO(a)", "[a] + [a]", "[1]"])
def test_math_errors(text: str) -> None:
    resolve = evaluate_queries({}, {"a": {0: 1.0}}, [0])
    with pytest.raises(MathError):
        evaluate(parse(text), resolve, [0])
