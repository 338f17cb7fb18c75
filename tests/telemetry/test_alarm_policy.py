"""Table tests of the pure alarm evaluator against CloudWatch's documented behaviour
(reference cloudwatch-alarms.md §2, §3, §5, §6)."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from modelgate.policies.alarms import (
    ALARM,
    INSUFFICIENT_DATA,
    OK,
    AlarmRule,
    Slot,
    cadence,
    evaluate,
    evaluation_range,
    java_double,
    window_end,
)

T0 = 1_700_000_040.0  # a whole minute


def ts(text: str) -> float:
    return dt.datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=dt.UTC).timestamp()


def slots(pattern: str, period: int = 60) -> list[Slot]:
    """``0`` non-breaching (value 0), ``X`` breaching (value 5), ``-`` missing; oldest first."""
    values = {"0": 0.0, "X": 5.0, "-": None}
    return [Slot(T0 + i * period, values[c], 1.0 if values[c] is not None else None)
            for i, c in enumerate(pattern.split())]


def rule(n: int = 3, m: int | None = None, tmd: str | None = None, op: str = "GreaterThanThreshold",
         threshold: float = 1.0, **kw: object) -> AlarmRule:
    return AlarmRule(period=60, evaluation_periods=n, threshold=threshold, comparison_operator=op,
                     datapoints_to_alarm=m, treat_missing_data=tmd, statistic="Sum", **kw)  # type: ignore[arg-type]


KEEP = "keep"

# The [MISS] table: range of 5 slots, N = 3; columns missing, ignore, breaching, notBreaching.
DOC_TABLE = [
    (3, "0 - X - X", (OK, OK, OK, OK)),
    (3, "0 - - - -", (OK, OK, OK, OK)),
    (3, "- - - - -", (INSUFFICIENT_DATA, KEEP, ALARM, OK)),
    (3, "0 X X - X", (ALARM, ALARM, ALARM, ALARM)),
    (3, "- - X - -", (ALARM, KEEP, ALARM, OK)),
    (2, "0 - X - X", (ALARM, ALARM, ALARM, ALARM)),
    (2, "0 0 X 0 X", (ALARM, ALARM, ALARM, ALARM)),
    (2, "0 - X - -", (OK, OK, ALARM, OK)),
    (2, "- - - - 0", (OK, OK, ALARM, OK)),
    (2, "- - - X -", (ALARM, KEEP, ALARM, OK)),
]


@pytest.mark.parametrize(("m", "pattern", "expected"), DOC_TABLE)
@pytest.mark.parametrize("column", range(4))
def test_documented_missing_data_table(m: int, pattern: str, expected: tuple[str, ...], column: int) -> None:
    tmd = ("missing", "ignore", "breaching", "notBreaching")[column]
    # The current state is one the table never produces for these rows, so "keep" is distinguishable.
    for current in (OK, ALARM, INSUFFICIENT_DATA):
        result = evaluate(rule(n=3, m=m, tmd=tmd), slots(pattern), current, T0 + 400)
        if expected[column] == KEEP:
            assert result.keep and result.state == current, (pattern, tmd, current)
        else:
            assert not result.keep and result.state == expected[column], (pattern, tmd, current)


@pytest.mark.parametrize(
    ("n", "m", "pattern", "tmd", "expected"),
    [
        # M of N: the breaching points need not be consecutive.
        (5, 3, "0 0 X 0 X 0 X", "missing", ALARM),
        (5, 3, "0 0 X 0 X 0 0", "missing", OK),
        (5, 5, "X X X X X X 0", "missing", OK),
        (5, 1, "0 0 0 0 0 0 X", "missing", ALARM),
        # only the last N periods count
        (3, 2, "X X 0 0 X", "missing", OK),
        # k >= N: the newest N real points, skipping gaps, TreatMissingData unused
        (3, 3, "X X - X -", "notBreaching", ALARM),
        (3, 3, "0 X - X X", "breaching", ALARM),
        (3, 3, "X X - X 0", "breaching", OK),
        # 0 < k < N with fills
        (3, 2, "- - - X -", "notBreaching", OK),
        (3, 2, "- - - 0 -", "breaching", ALARM),
        (3, 3, "- - - 0 X", "breaching", OK),
        # premature-alarm rule: the oldest breaching point must be at least M slots old
        (3, 3, "- - - X X", "missing", OK),
        (3, 2, "- - - X X", "missing", ALARM),
    ],
)
def test_m_of_n(n: int, m: int, pattern: str, tmd: str, expected: str) -> None:
    result = evaluate(rule(n=n, m=m, tmd=tmd), slots(pattern), INSUFFICIENT_DATA, T0)
    assert (result.state, result.keep) == (expected, False)


def test_datapoints_to_alarm_defaults_to_evaluation_periods() -> None:
    assert evaluate(rule(n=3), slots("- - X X 0"), OK, T0).state == OK
    assert evaluate(rule(n=3), slots("- - X X X"), OK, T0).state == ALARM


@pytest.mark.parametrize(
    ("op", "below", "equal", "above"),
    [
        ("GreaterThanThreshold", OK, OK, ALARM),
        ("GreaterThanOrEqualToThreshold", OK, ALARM, ALARM),
        ("LessThanThreshold", ALARM, OK, OK),
        ("LessThanOrEqualToThreshold", ALARM, ALARM, OK),
    ],
)
def test_operators(op: str, below: str, equal: str, above: str) -> None:
    r = AlarmRule(period=60, evaluation_periods=1, threshold=10.0, comparison_operator=op, statistic="Average")
    got = [evaluate(r, [Slot(T0, None), Slot(T0 + 60, None), Slot(T0 + 120, v, 1.0)], INSUFFICIENT_DATA, T0).state
           for v in (9.5, 10.0, 10.5)]
    assert got == [below, equal, above]


@pytest.mark.parametrize(
    ("stat", "samples", "elsp", "keeps"),
    [
        ("p99", 999, "ignore", True),  # p99 needs 10 / (1 - 0.99) = 1000 samples
        ("p99", 1000, "ignore", False),
        ("p99", 10, "evaluate", False),
        ("p99", 10, None, False),  # evaluate is the default
        ("p50", 19, "ignore", True),  # 10 / (1 - 0.5) = 20
        ("p10", 99, "ignore", True),  # p < 0.5: 10 / p = 100
        ("p10", 100, "ignore", False),
        ("p99.9", 9999, "ignore", True),
    ],
)
def test_evaluate_low_sample_count_percentile(stat: str, samples: int, elsp: str | None, keeps: bool) -> None:
    r = AlarmRule(period=60, evaluation_periods=1, threshold=1.0, comparison_operator="GreaterThanThreshold",
                  extended_statistic=stat, evaluate_low_sample_count_percentile=elsp)
    result = evaluate(r, [Slot(T0, None), Slot(T0 + 60, None), Slot(T0 + 120, 5.0, samples)], OK, T0)
    assert result.keep is keeps
    assert result.state == (OK if keeps else ALARM)


# --- timing (§2) ----------------------------------------------------------------------------------


def test_newest_period_ends_at_last_whole_minute() -> None:
    r300 = AlarmRule(period=300, evaluation_periods=1, threshold=1, comparison_operator="GreaterThanThreshold")
    end = window_end(r300, ts("2024-01-01 17:04:40"))
    assert evaluation_range(r300, end)[-1] == ts("2024-01-01 16:59:00")
    r60 = AlarmRule(period=60, evaluation_periods=1, threshold=1, comparison_operator="GreaterThanThreshold")
    assert evaluation_range(r60, window_end(r60, ts("2024-01-01 13:18:50")))[-1] == ts("2024-01-01 13:17:00")


def test_evaluation_range_is_n_plus_two_periods() -> None:
    r = AlarmRule(period=10, evaluation_periods=3, threshold=1, comparison_operator="GreaterThanThreshold")
    end = window_end(r, ts("2024-01-01 12:00:15"))
    assert end == ts("2024-01-01 12:00:10")
    assert evaluation_range(r, end) == [end - 50, end - 40, end - 30, end - 20, end - 10]


@pytest.mark.parametrize(("period", "n", "expected"), [(10, 6, 10), (30, 100, 10), (60, 5, 60), (300, 288, 60),
                                                       (3600, 25, 3600), (300, 289, 3600)])
def test_cadence(period: int, n: int, expected: int) -> None:
    assert cadence(period, n) == expected


# --- StateReason and StateReasonData (§6) ---------------------------------------------------------


def test_reason_to_alarm_matches_cloudwatch() -> None:
    r = AlarmRule(period=60, evaluation_periods=1, datapoints_to_alarm=1, threshold=5.0,
                  comparison_operator="GreaterThanThreshold", statistic="Maximum")
    t = ts("2022-09-25 18:49:00")
    result = evaluate(r, [Slot(t - 120, None), Slot(t - 60, None), Slot(t, 6.0, 1.0)], INSUFFICIENT_DATA, t + 97)
    assert result.reason == ("Threshold Crossed: 1 out of the last 1 datapoints [6.0 (25/09/22 18:49:00)] was "
                             "greater than the threshold (5.0) (minimum 1 datapoint for OK -> ALARM transition).")


def test_reason_to_ok_lists_non_breaching_points_newest_first() -> None:
    r = AlarmRule(period=60, evaluation_periods=5, datapoints_to_alarm=3, threshold=0.0,
                  comparison_operator="GreaterThanThreshold", statistic="Sum")
    t = ts("2024-03-01 10:00:00")
    values = [None, None, 0.0, 1.0, 0.0, 2.0, 0.0]
    result = evaluate(r, [Slot(t + 60 * i, v, 1.0) for i, v in enumerate(values)], ALARM, t + 500)
    assert result.state == OK
    assert result.reason == (
        "Threshold Crossed: 3 out of the last 5 datapoints [0.0 (01/03/24 10:06:00), 0.0 (01/03/24 10:04:00), "
        "0.0 (01/03/24 10:02:00)] were not greater than the threshold (0.0) (minimum 3 datapoints for "
        "ALARM -> OK transition)."
    )


def test_reason_long_list_uses_most_recent_form() -> None:
    r = AlarmRule(period=60, evaluation_periods=5, datapoints_to_alarm=5, threshold=65.0,
                  comparison_operator="LessThanThreshold", statistic="Average")
    result = evaluate(r, [Slot(T0 + 60 * i, 10.0 + i, 1.0) for i in range(7)], OK, T0)
    assert result.reason.startswith(
        "Threshold Crossed: 5 out of the last 5 datapoints were less than the threshold (65.0). "
        "The most recent datapoints which crossed the threshold: [16.0 (")
    assert result.reason.endswith("(minimum 5 datapoints for OK -> ALARM transition).")


def test_reason_without_datapoints_to_alarm() -> None:
    r = AlarmRule(period=60, evaluation_periods=3, threshold=1.0,
                  comparison_operator="GreaterThanOrEqualToThreshold", statistic="Sum")
    t = ts("2020-02-13 03:54:00")
    result = evaluate(r, [Slot(t - 120, None), Slot(t - 60, None), Slot(t, 1.0, 1.0), Slot(t + 60, 1.0, 1.0),
                          Slot(t + 120, 1.0, 1.0)], OK, t + 200)
    assert result.reason == ("Threshold Crossed: 3 datapoints [1.0 (13/02/20 03:56:00), 1.0 (13/02/20 03:55:00), "
                             "1.0 (13/02/20 03:54:00)] were greater than or equal to the threshold (1.0).")


def test_reasons_for_missing_data() -> None:
    empty = [Slot(T0 + 60 * i, None) for i in range(4)]
    assert evaluate(rule(n=2, tmd="breaching"), empty, OK, T0).reason == (
        "Threshold Crossed: no datapoints were received for 2 periods and 2 missing datapoints were treated as "
        "[Breaching].")
    assert evaluate(rule(n=1, tmd="notBreaching"), empty[:3], ALARM, T0).reason == (
        "Threshold Crossed: no datapoints were received for 1 period and 1 missing datapoint was treated as "
        "[NonBreaching].")
    assert evaluate(rule(n=1), empty[:3], OK, T0).reason == "Insufficient Data: 1 datapoint was unknown."
    t = ts("2024-05-05 05:05:00")
    mixed = [Slot(t + 60 * i, None) for i in range(9)] + [Slot(t + 540, 2.0, 1.0)]
    r = rule(n=8, m=7, tmd="breaching", op="LessThanOrEqualToThreshold", threshold=0.0)
    result = evaluate(r, mixed, OK, t)
    assert result.state == ALARM
    assert result.reason == ("Threshold Crossed: 1 datapoint [2.0 (05/05/24 05:14:00)] was not less than or equal "
                             "to the threshold (0.0) and 7 missing datapoints were treated as [Breaching].")


def test_reason_data_matches_cloudwatch_sample() -> None:
    r = AlarmRule(period=60, evaluation_periods=1, threshold=1.0, comparison_operator="GreaterThanThreshold",
                  statistic="Sum", unit="Count")
    t = ts("2024-10-26 18:59:00")
    result = evaluate(r, [Slot(t - 120, None), Slot(t - 60, None), Slot(t, 3.0, 3.0)], OK, t + 98.856)
    assert result.reason_data == (
        '{"version":"1.0","queryDate":"2024-10-26T19:00:38.856+0000","startDate":"2024-10-26T18:59:00.000+0000",'
        '"unit":"Count","statistic":"Sum","period":60,"recentDatapoints":[3.0],"threshold":1.0,'
        '"evaluatedDatapoints":[{"timestamp":"2024-10-26T18:59:00.000+0000","sampleCount":3.0,"value":3.0}]}'
    )


def test_reason_data_missing_slots_and_math_alarms() -> None:
    r = AlarmRule(period=60, evaluation_periods=3, threshold=1.0, comparison_operator="GreaterThanThreshold",
                  is_math=True, treat_missing_data="breaching")
    data = json.loads(evaluate(r, slots("- - 0 - X"), OK, T0).reason_data)
    assert "statistic" not in data and "unit" not in data
    assert data["recentDatapoints"] == [0.0, 5.0]  # oldest to newest
    assert [("value" in p) for p in data["evaluatedDatapoints"]] == [True, False, True]  # newest first
    none = json.loads(evaluate(r, slots("- - - - -"), OK, T0).reason_data)
    assert "startDate" not in none and none["recentDatapoints"] == []


@pytest.mark.parametrize(("x", "text"), [(6, "6.0"), (0.25, "0.25"), (1e7, "1.0E7"), (1.5e-4, "1.5E-4"),
                                         (12345678.0, "1.2345678E7"), (-2.5e-9, "-2.5E-9"), (0.0, "0.0"),
                                         (9999999.0, "9999999.0")])
def test_java_double(x: float, text: str) -> None:
    assert java_double(x) == text
