"""Typed values of the metric domain: metric identities, data to put, queries, and results.

Dimensions are kept sorted by name, so two spellings of one metric are one key. Timestamps are epoch
seconds (floats); the API adapters convert wire formats at the boundary.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

Dimensions = tuple[tuple[str, str], ...]

SAGEMAKER_NAMESPACE = "AWS/SageMaker"
INSTANCE_NAMESPACE = "/aws/sagemaker/Endpoints"

STANDARD_UNITS = (
    "Seconds",
    "Microseconds",
    "Milliseconds",
    "Bytes",
    "Kilobytes",
    "Megabytes",
    "Gigabytes",
    "Terabytes",
    "Bits",
    "Kilobits",
    "Megabits",
    "Gigabits",
    "Terabits",
    "Percent",
    "Count",
    "Bytes/Second",
    "Kilobytes/Second",
    "Megabytes/Second",
    "Gigabytes/Second",
    "Terabytes/Second",
    "Bits/Second",
    "Kilobits/Second",
    "Megabits/Second",
    "Gigabits/Second",
    "Terabits/Second",
    "Count/Second",
    "None",
)


def dimensions(pairs: Iterable[tuple[str, str]]) -> Dimensions:
    return tuple(sorted(pairs))


@dataclass(frozen=True, slots=True)
class MetricId:
    """One metric: CloudWatch treats every distinct dimension set as its own metric."""

    namespace: str
    name: str
    dimensions: Dimensions = ()

    @staticmethod
    def of(namespace: str, name: str, dims: Iterable[tuple[str, str]] = ()) -> MetricId:
        return MetricId(namespace, name, dimensions(dims))


@dataclass(frozen=True, slots=True)
class StatisticSet:
    sample_count: float
    sum: float
    minimum: float
    maximum: float


@dataclass(frozen=True, slots=True)
class MetricDatum:
    """One member of PutMetricData's MetricData: a single value, a statistic set, or values with counts."""

    name: str
    dimensions: Dimensions = ()
    timestamp: float | None = None
    value: float | None = None
    statistic_values: StatisticSet | None = None
    values: tuple[float, ...] = ()
    counts: tuple[float, ...] = ()
    unit: str | None = None
    storage_resolution: int = 60


@dataclass(frozen=True, slots=True)
class MetricStat:
    metric: MetricId
    period: int
    stat: str
    unit: str | None = None


@dataclass(frozen=True, slots=True)
class MetricQuery:
    """A MetricDataQuery: either a MetricStat or a metric-math Expression over other queries' ids."""

    id: str
    metric_stat: MetricStat | None = None
    expression: str | None = None
    label: str | None = None
    return_data: bool = True
    period: int | None = None


@dataclass(slots=True)
class MetricDataResult:
    id: str
    label: str
    timestamps: list[float] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    status_code: str = "Complete"
    messages: list[tuple[str, str]] = field(default_factory=list)


@dataclass(slots=True)
class StatisticsDatapoint:
    """One datapoint of GetMetricStatistics; only the requested statistics are set."""

    timestamp: float
    unit: str
    sample_count: float | None = None
    average: float | None = None
    sum: float | None = None
    minimum: float | None = None
    maximum: float | None = None
    extended: dict[str, float] = field(default_factory=dict)
