"""CloudWatch metric-alarm evaluation, as a pure function (reference: cloudwatch-alarms.md §2, §3, §5, §6).

``evaluate(rule, slots, current_state, query_date) -> Evaluation``: the caller fetches one value per
period over the *evaluation range* (:func:`evaluation_range`, N + 2 periods ending at
:func:`window_end`), oldest first, ``None`` for a missing period; this module decides the state and writes
CloudWatch's StateReason and StateReasonData. No clock, no I/O.

Rules (§3; "age" 1 is the newest slot; k = real points in the range; M = DatapointsToAlarm or N):

* k >= N: the newest N real points; ALARM if at least M breach, else OK. TreatMissingData is not used.
* k = 0: ``missing`` → INSUFFICIENT_DATA, ``ignore`` → keep, ``breaching`` → ALARM, ``notBreaching`` → OK.
* 0 < k < N: ``breaching``: ALARM if breaching + (N - k) >= M; ``notBreaching``: ALARM if breaching >= M;
  ``missing``/``ignore``: ALARM if breaching >= M, else the premature-alarm rule (no non-breaching real
  point, at least one breaching, the oldest breaching at age >= M) gives ALARM (missing) or keep (ignore),
  else OK.
* Percentile alarms with ``EvaluateLowSampleCountPercentile: ignore`` keep their state when any evaluated
  datapoint has fewer samples than 10/(1-p) (p >= 0.5) or 10/p (§5; applied per evaluation, a choice the
  reference leaves open).

Choices where the reference marks (U): reason lists of five or more points use the "most recent datapoints"
form with the five newest; an OK reason's minimum is N - M + 1; the evaluated datapoints run from the newest
slot back to the oldest point used (at least N slots).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from modelgate.telemetry.statistics import low_sample_count

OK = "OK"
ALARM = "ALARM"
INSUFFICIENT_DATA = "INSUFFICIENT_DATA"
STATES = (OK, ALARM, INSUFFICIENT_DATA)
TREATMENTS = ("missing", "ignore", "breaching", "notBreaching")

OPERATORS: dict[str, tuple[Callable[[float, float], bool], str]] = {
    "GreaterThanOrEqualToThreshold": (operator.ge, "greater than or equal to"),
    "GreaterThanThreshold": (operator.gt, "greater than"),
    "LessThanThreshold": (operator.lt, "less than"),
    "LessThanOrEqualToThreshold": (operator.le, "less than or equal to"),
}
_LONG_LIST = 5


@dataclass(frozen=True, slots=True)
class Slot:
    timestamp: float  # period start, epoch seconds
    value: float | None  # None: no datapoint in this period
    sample_count: float | None = None


@dataclass(frozen=True, slots=True)
class AlarmRule:
    period: int
    evaluation_periods: int
    threshold: float
    comparison_operator: str
    datapoints_to_alarm: int | None = None
    treat_missing_data: str | None = None
    statistic: str | None = None
    extended_statistic: str | None = None
    unit: str | None = None
    evaluate_low_sample_count_percentile: str | None = None
    is_math: bool = False

    @property
    def m(self) -> int:
        return self.datapoints_to_alarm or self.evaluation_periods


@dataclass(frozen=True, slots=True)
class Evaluation:
    state: str
    reason: str
    reason_data: str
    keep: bool = False  # the rules said "keep the current state": state is the current one, reason unused


def cadence(period: int, evaluation_periods: int) -> int:
    """How often CloudWatch evaluates (§2): every 10 s below a minute, hourly beyond a day, else minutely."""
    if period * evaluation_periods > 86400:
        return 3600
    return 10 if period < 60 else 60


def window_end(rule: AlarmRule, now: float) -> int:
    """The end of the newest period evaluated at ``now``: the last whole cadence boundary (§2)."""
    c = cadence(rule.period, rule.evaluation_periods)
    return int(now // c) * c


def evaluation_range(rule: AlarmRule, end: int) -> list[int]:
    """Period starts of the N + 2 slots ending at ``end``, oldest first."""
    r = rule.evaluation_periods + 2
    return [end - (r - i) * rule.period for i in range(r)]


def evaluate(rule: AlarmRule, slots: Sequence[Slot], current_state: str, query_date: float) -> Evaluation:
    n, m = rule.evaluation_periods, rule.m
    tmd = rule.treat_missing_data if rule.treat_missing_data in TREATMENTS else "missing"
    breaches, words = OPERATORS[rule.comparison_operator]
    newest_first = list(reversed(slots))
    real = [(age, s) for age, s in enumerate(newest_first, start=1) if s.value is not None]
    k = len(real)
    chosen = real[:n] if k >= n else real
    depth = max(n, chosen[-1][0]) if chosen else n
    evaluated = newest_first[:depth]
    data = _reason_data(rule, evaluated, query_date)

    def hit(s: Slot) -> bool:
        return s.value is not None and breaches(s.value, rule.threshold)

    stat = rule.extended_statistic
    if (
        chosen
        and stat
        and rule.evaluate_low_sample_count_percentile == "ignore"
        and any(low_sample_count(stat, s.sample_count or 0.0) for _, s in chosen)
    ):
        reason = (
            f"Insufficient samples for {stat}: the alarm keeps its state (EvaluateLowSampleCountPercentile)."
        )
        return Evaluation(current_state, reason, data, keep=True)

    points = [s for _, s in chosen]
    b = sum(1 for s in points if hit(s))
    if k >= n:
        state = ALARM if b >= m else OK
        return Evaluation(state, _threshold_reason(rule, points, hit, words, state, n), data)
    if k == 0:
        if tmd == "missing":
            return Evaluation(
                INSUFFICIENT_DATA, f"Insufficient Data: {_n(n, 'datapoint')} {_was(n)} unknown.", data
            )
        if tmd == "ignore":
            return Evaluation(current_state, "", data, keep=True)
        fill = "Breaching" if tmd == "breaching" else "NonBreaching"
        state = ALARM if tmd == "breaching" else OK
        reason = (
            f"Threshold Crossed: no datapoints were received for {_n(n, 'period')} and "
            f"{_n(n, 'missing datapoint')} {_was(n)} treated as [{fill}]."
        )
        return Evaluation(state, reason, data)
    if tmd in ("breaching", "notBreaching"):
        filled_hits = n - k if tmd == "breaching" else 0
        state = ALARM if b + filled_hits >= m else OK
        return Evaluation(state, _fill_reason(rule, points, hit, words, n - k, tmd), data)
    if b >= m:
        return Evaluation(ALARM, _threshold_reason(rule, points, hit, words, ALARM, k), data)
    premature = b >= 1 and b == k and max(age for age, s in real if hit(s)) >= m
    if premature:
        if tmd == "ignore":
            return Evaluation(current_state, "", data, keep=True)
        return Evaluation(ALARM, _threshold_reason(rule, points, hit, words, ALARM, k), data)
    return Evaluation(OK, _threshold_reason(rule, points, hit, words, OK, k), data)


# --- StateReason ---------------------------------------------------------------------------------


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _was(count: int) -> str:
    return "was" if count == 1 else "were"


def _listing(points: Sequence[Slot]) -> str:
    return (
        "[" + ", ".join(f"{java_double(p.value or 0.0)} ({reason_time(p.timestamp)})" for p in points) + "]"
    )


def _threshold_reason(
    rule: AlarmRule, points: list[Slot], hit: Callable[[Slot], bool], words: str, state: str, total: int
) -> str:
    threshold = java_double(rule.threshold)
    to_alarm = state == ALARM
    shown = [p for p in points if hit(p) == to_alarm]
    relation = words if to_alarm else f"not {words}"
    if not shown:  # OK without any non-breaching point (partial data): name the breaching ones
        shown, relation, to_alarm = [p for p in points if hit(p)], words, True
    count = len(shown)
    if rule.datapoints_to_alarm is None:
        points_text = f"{_n(count, 'datapoint')} {_listing(shown)} {_was(count)}"
        return f"Threshold Crossed: {points_text} {relation} the threshold ({threshold})."
    minimum = rule.m if to_alarm else rule.evaluation_periods - rule.m + 1
    label = "OK -> ALARM" if to_alarm else "ALARM -> OK"
    tail = f"(minimum {_n(minimum, 'datapoint')} for {label} transition)."
    head = f"Threshold Crossed: {count} out of the last {total} datapoints"
    if count >= _LONG_LIST:
        return (
            f"{head} {_was(count)} {relation} the threshold ({threshold}). The most recent datapoints "
            f"which crossed the threshold: {_listing(shown[:_LONG_LIST])} {tail}"
        )
    return f"{head} {_listing(shown)} {_was(count)} {relation} the threshold ({threshold}) {tail}"


def _fill_reason(
    rule: AlarmRule, points: list[Slot], hit: Callable[[Slot], bool], words: str, filled: int, tmd: str
) -> str:
    threshold = java_double(rule.threshold)
    clauses = []
    for group, relation in (
        ([p for p in points if hit(p)], words),
        ([p for p in points if not hit(p)], f"not {words}"),
    ):
        if group:
            clauses.append(
                f"{_n(len(group), 'datapoint')} {_listing(group)} {_was(len(group))} {relation} "
                f"the threshold ({threshold})"
            )
    fill = "Breaching" if tmd == "breaching" else "NonBreaching"
    return (
        f"Threshold Crossed: {', '.join(clauses)} and {_n(filled, 'missing datapoint')} {_was(filled)} "
        f"treated as [{fill}]."
    )


# --- StateReasonData -------------------------------------------------------------------------------


def _reason_data(rule: AlarmRule, evaluated: Sequence[Slot], query_date: float) -> str:
    data: dict[str, Any] = {"version": "1.0", "queryDate": iso_time(query_date)}
    real = [s for s in evaluated if s.value is not None]
    if real:
        data["startDate"] = iso_time(evaluated[-1].timestamp)
    if rule.unit:
        data["unit"] = rule.unit
    if not rule.is_math:
        if rule.statistic:
            data["statistic"] = rule.statistic
        elif rule.extended_statistic:
            data["extendedStatistic"] = rule.extended_statistic
    data["period"] = rule.period
    data["recentDatapoints"] = [float(s.value) for s in reversed(real) if s.value is not None]
    data["threshold"] = float(rule.threshold)
    points: list[dict[str, Any]] = []
    for s in evaluated:
        item: dict[str, Any] = {"timestamp": iso_time(s.timestamp)}
        if s.value is not None:
            if s.sample_count is not None:
                item["sampleCount"] = float(s.sample_count)
            item["value"] = float(s.value)
        points.append(item)
    data["evaluatedDatapoints"] = points
    return json.dumps(data, separators=(",", ":"))


def iso_time(ts: float) -> str:
    """CloudWatch's timestamp in reason data and notifications: ``2024-10-26T19:00:38.856+0000``."""
    t = dt.datetime.fromtimestamp(ts, dt.UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}+0000"


def reason_time(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%d/%m/%y %H:%M:%S")


def java_double(x: float) -> str:
    """``Double.toString``: ``6.0``, ``0.25``, ``1.0E7``, ``1.5E-4``."""
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    if x == 0:
        return "-0.0" if math.copysign(1.0, x) < 0 else "0.0"
    if 1e-3 <= abs(x) < 1e7:
        s = repr(float(x))
        return s if "." in s else s + ".0"
    sign, digits, exp = Decimal(repr(float(x))).normalize().as_tuple()
    assert isinstance(exp, int)
    text = "".join(map(str, digits))
    mantissa = text[0] + "." + (text[1:] or "0")
    return f"{'-' if sign else ''}{mantissa}E{len(text) + exp - 1}"
