from __future__ import annotations

from typing import Any

import pytest

from modelgate.api.shapes import format_errors, service_model, validation_errors


def _errors(
    op: str, params: dict[str, Any], overrides: dict[tuple[str, str], str] | None = None
) -> list[str]:
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
