"""The generated service models (modelgate.api.service_models) against botocore's own."""

from __future__ import annotations

from typing import Any

import botocore.session
import pytest
from botocore.model import ServiceModel

from modelgate.api.awsjson import JsonRpcService
from modelgate.api.shapes import GENERATE, KEPT_OPERATIONS, MODELS_FILE, cut_model, render_models, service_model


def test_the_generated_file_is_what_botocore_gives() -> None:
    assert MODELS_FILE.read_text() == render_models(), f"botocore's models changed: run {GENERATE}"


def _tree(shape: Any, seen: frozenset[str] = frozenset()) -> Any:
    """Everything validation and the protocols read from a shape, recursively (documentation aside): the
    same for botocore's shapes and for modelgate.api.shape_model's."""
    if shape is None:
        return None
    out: dict[str, Any] = {
        "name": shape.name,
        "class": type(shape).__name__,
        "type": shape.type_name,
        "metadata": shape.metadata,
        "serialization": shape.serialization,
        "enum": getattr(shape, "enum", None),  # strings only
    }
    if shape.name in seen:  # recursive shapes (none today, but cheap to guard)
        return out
    seen = seen | {shape.name}
    if shape.type_name == "structure":
        out["required"] = shape.required_members
        out["members"] = {k: _tree(v, seen) for k, v in shape.members.items()}
        out["order"] = list(shape.members)
    elif shape.type_name == "list":
        out["member"] = _tree(shape.member, seen)
    elif shape.type_name == "map":
        out["key"] = _tree(shape.key, seen)
        out["value"] = _tree(shape.value, seen)
    return out


@pytest.mark.parametrize("service", sorted(KEPT_OPERATIONS))
def test_every_kept_operation_reads_as_in_botocore(service: str) -> None:
    full: ServiceModel = botocore.session.get_session().get_service_model(service)
    cut = service_model(service)
    assert cut.metadata == full.metadata
    expected = KEPT_OPERATIONS[service] or full.operation_names
    assert sorted(cut.operation_names) == sorted(expected)
    for name in expected:
        a, b = cut.operation_model(name), full.operation_model(name)
        assert _tree(a.input_shape) == _tree(b.input_shape), name
        assert _tree(a.output_shape) == _tree(b.output_shape), name


def test_cut_keeps_members_in_order_and_drops_documentation() -> None:
    full = {
        "version": "2.0",
        "documentation": "d",
        "metadata": {"targetPrefix": "X"},
        "operations": {
            "Keep": {"name": "Keep", "documentation": "d", "input": {"shape": "In"}},
            "Drop": {"name": "Drop", "input": {"shape": "Other"}},
        },
        "shapes": {
            "In": {"type": "structure", "documentation": "d", "members": {"Z": {"shape": "S", "documentation": "d"},
                                                                         "A": {"shape": "L"}}},
            "L": {"type": "list", "member": {"shape": "S"}},
            "S": {"type": "string", "max": 3},
            "Other": {"type": "string"},
        },
    }  # fmt: skip
    cut = cut_model(full, ["Keep"])
    assert cut == {
        "version": "2.0",
        "metadata": {"targetPrefix": "X"},
        "operations": {"Keep": {"name": "Keep", "input": {"shape": "In"}}},
        "shapes": {
            "In": {"type": "structure", "members": {"Z": {"shape": "S"}, "A": {"shape": "L"}}},
            "L": {"type": "list", "member": {"shape": "S"}},
            "S": {"type": "string", "max": 3},
        },
    }
    assert list(cut["shapes"]["In"]["members"]) == ["Z", "A"]
    with pytest.raises(KeyError, match="Nope"):
        cut_model(full, ["Nope"])


def test_a_handler_without_shapes_is_refused_at_start() -> None:
    async def handler(_p: dict[str, Any]) -> dict[str, Any]:
        return {}

    with pytest.raises(ValueError, match=r"CreateTrainingJob.*KEPT_OPERATIONS"):
        JsonRpcService("sagemaker", "1.1", {"CreateTrainingJob": handler})
