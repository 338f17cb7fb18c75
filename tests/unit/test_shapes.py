from __future__ import annotations

from typing import Any

import pytest

from modelgate.api.shapes import check, format_errors, service_model, timestamp_seconds, validation_errors


def _errors(op: str, params: dict[str, Any], overrides: dict[tuple[str, str], str] | None = None) -> list[str]:
    return validation_errors(service_model("sagemaker").operation_model(op), params, overrides)


@pytest.mark.parametrize(
    ("op", "params", "expected"),
    [
        ("DescribeEndpoint", {"EndpointName": "ok-name"}, None),
        (
            "DescribeEndpoint",
            {},
            "Value null at 'endpointName' failed to satisfy constraint: Member must not be null",
        ),
        ("DescribeEndpoint", {"EndpointName": "a" * 64}, "Member must have length less than or equal to 63"),
        ("DescribeEndpoint", {"EndpointName": "bad_name"}, "Member must satisfy regular expression pattern"),
        ("DescribeEndpoint", {"EndpointName": 3}, "Member must be a string"),
        (
            "ListEndpoints",
            {"SortBy": "Size"},
            "Value 'Size' at 'sortBy' failed to satisfy constraint: Member must satisfy enum value set",
        ),
        ("ListEndpoints", {"MaxResults": 101}, "Member must have value less than or equal to 100"),
        ("ListEndpoints", {"MaxResults": 1.5}, "Member must be an integer"),
        (
            "CreateEndpointConfig",
            {
                "EndpointConfigName": "c",
                "ProductionVariants": [{"VariantName": "v", "InitialVariantWeight": -1}],
            },
            "at 'productionVariants.1.member.initialVariantWeight'",
        ),
    ],
)
def test_validation(op: str, params: dict[str, Any], expected: str | None) -> None:
    errors = _errors(op, params)
    if expected is None:
        assert errors == []
    else:
        assert any(expected in e for e in errors), errors


def test_pattern_override() -> None:
    params = {"ModelName": "m", "PrimaryContainer": {"Image": "x", "ModelDataUrl": "file:///tmp/m.tar.gz"}}
    assert any("modelDataUrl" in e for e in _errors("CreateModel", params))
    assert _errors("CreateModel", params, {("ContainerDefinition", "ModelDataUrl"): r"file://.*"}) == []


def test_format() -> None:
    assert format_errors(["a"]) == "1 validation error detected: a"
    assert format_errors(["a", "b"]) == "2 validation errors detected: a; b"


# --- D2: no NaN or infinity reaches a handler; D11: no input makes the walk itself fail ------------------

_WEIGHTS = "UpdateEndpointWeightsAndCapacities"


def _weight(value: Any) -> dict[str, Any]:
    return {"EndpointName": "e", "DesiredWeightsAndCapacities": [{"VariantName": "v", "DesiredWeight": value}]}


@pytest.mark.parametrize(
    ("value", "shown"), [(float("nan"), "NaN"), (float("inf"), "Infinity"), (float("-inf"), "-Infinity")]
)
def test_d2_non_finite_numbers_are_refused_naming_the_member(value: float, shown: str) -> None:
    op = service_model("sagemaker").operation_model(_WEIGHTS)
    found = check(op, _weight(value))
    assert found.errors == [
        f"Value '{shown}' at 'desiredWeightsAndCapacities.1.member.desiredWeight' failed to satisfy constraint: "
        "Member must be a finite number"
    ]
    assert found.non_finite == [("DesiredWeightsAndCapacities.member.1.DesiredWeight", value)]


def test_d2_non_finite_in_a_cloudwatch_structure_gets_its_query_name() -> None:
    op = service_model("cloudwatch").operation_model("PutMetricData")
    params = {
        "Namespace": "N",
        "MetricData": [
            {
                "MetricName": "m",
                "StatisticValues": {"SampleCount": 1.0, "Sum": float("inf"), "Minimum": 0.0, "Maximum": 1.0},
            }
        ],
    }
    assert check(op, params).non_finite == [("MetricData.member.1.StatisticValues.Sum", float("inf"))]


HUGE = int("9" * 400)  # beyond a float's range: float(HUGE) raises OverflowError


@pytest.mark.parametrize(("value", "infinity"), [(HUGE, float("inf")), (-HUGE, float("-inf"))])
def test_fz13_an_integer_beyond_the_float_range_in_a_double_member_is_an_infinity(value: int, infinity: float) -> None:
    """JSON's 400-digit integer literal (or a CBOR bignum) in a double member: refused as the infinity a float
    parser makes of it, never passed on to ``float()`` (OverflowError, a 500)."""
    found = check(service_model("sagemaker").operation_model(_WEIGHTS), _weight(value))
    [error] = found.errors
    assert error.endswith("at 'desiredWeightsAndCapacities.1.member.desiredWeight' failed to satisfy constraint: "
                          "Member must be a finite number")  # fmt: skip
    assert found.non_finite == [("DesiredWeightsAndCapacities.member.1.DesiredWeight", infinity)]
    alarm = {"AlarmName": "a", "EvaluationPeriods": 1, "ComparisonOperator": "GreaterThanThreshold", "Threshold": value}
    assert check(service_model("cloudwatch").operation_model("PutMetricAlarm"), alarm).non_finite == [
        ("Threshold", infinity)
    ]


@pytest.mark.parametrize(
    ("op", "params", "expected"),
    [
        ("ListModels", {"MaxResults": HUGE}, "Member must have value less than or equal to 2147483647"),
        ("ListModels", {"MaxResults": -HUGE}, "Member must have value greater than or equal to -2147483648"),
        ("ListModels", {"MaxResults": 2**31}, "Member must have value less than or equal to 2147483647"),
        (
            "ListTags",
            {"ResourceArn": "arn:aws:sagemaker:us-east-1:123456789012:model/m", "MaxResults": 1e300},
            "Member must have value less than or equal to 2147483647",
        ),
        (
            "ListModels",
            {"CreationTimeBefore": "abc"},
            "Value 'abc' at 'creationTimeBefore' failed to satisfy "
            "constraint: Member must be a timestamp: epoch seconds or ISO 8601, years 1 to 9999",
        ),
        ("ListModels", {"CreationTimeAfter": "2024-13-01"}, "at 'creationTimeAfter' failed"),
        ("ListModels", {"CreationTimeAfter": "NaN"}, "at 'creationTimeAfter' failed"),
        ("ListModels", {"CreationTimeAfter": 1e300}, "at 'creationTimeAfter' failed"),
        ("ListModels", {"CreationTimeAfter": HUGE}, "at 'creationTimeAfter' failed"),
        ("ListModels", {"CreationTimeAfter": True}, "Member must be a timestamp"),
        (
            "CreateModel",
            {"ModelName": "m", "Tags": [{"Key": "k", "Value": "a\ud800"}]},
            "Value at 'tags.1.member.value' failed to satisfy constraint: Member must be Unicode text "
            "(it holds an unpaired surrogate)",
        ),
        (
            "CreateModel",
            {"ModelName": "m", "Tags": [None]},
            "Value null at 'tags.1.member' failed to satisfy constraint: Member must not be null",
        ),
        (
            "CreateModel",
            {"ModelName": "m", "PrimaryContainer": {"Image": "i", "Environment": {"K": None}}},
            "Value null at 'primaryContainer.environment.K.value' failed to satisfy constraint",
        ),
    ],
)
def test_d11_numbers_and_timestamps_out_of_range_are_named_errors(
    op: str, params: dict[str, Any], expected: str
) -> None:
    errors = _errors(op, params)
    assert any(expected in e for e in errors), errors


def test_d11_an_integer_too_long_to_print_is_not_printed() -> None:
    errors = _errors("ListModels", {"MaxResults": 10**5000})  # CBOR carries such ints; str() refuses them
    assert errors == [
        "Value '[...]' at 'maxResults' failed to satisfy constraint: Member must have value less than or equal "
        "to 2147483647"
    ]


@pytest.mark.parametrize("value", [0, 1700000000, 1700000000.5, "1700000000", "2024-01-02T03:04:05Z", "2024-01-02"])
def test_valid_timestamps_pass(value: Any) -> None:
    assert _errors("ListModels", {"CreationTimeBefore": value}) == []


def test_timestamp_seconds() -> None:
    assert timestamp_seconds("1970-01-01T00:01:00") == 60.0  # naive: UTC
    assert timestamp_seconds("1970-01-01T01:00:00+01:00") == 0.0
    assert timestamp_seconds(" 12.5 ") == 12.5
    assert [timestamp_seconds(v) for v in ("inf", "nan", "1e400", "x", None, [], 10**400)] == [None] * 7


def test_the_walk_normalizes_what_handlers_read() -> None:
    """Null members are absent (handlers' ``p.get(key, default)``), integral floats of integers are ints."""
    op = service_model("sagemaker").operation_model("ListModels")
    params: dict[str, Any] = {"MaxResults": 5.0, "NameContains": None, "NextToken": None}
    assert check(op, params).errors == []
    assert params == {"MaxResults": 5} and isinstance(params["MaxResults"], int)
