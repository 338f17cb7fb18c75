"""modelgate.api.shape_model: shapes read from a service model as botocore reads them, without botocore."""

from __future__ import annotations

from typing import Any

import pytest

from modelgate.api.shape_model import ListShape, MapShape, ServiceModel, StringShape, StructureShape

DESCRIPTION: dict[str, Any] = {
    "metadata": {"targetPrefix": "X", "xmlNamespace": "http://x/"},
    "operations": {
        "Put": {"name": "Put", "input": {"shape": "In"}, "output": {"shape": "Out", "resultWrapper": "PutResult"}},
        "Ping": {"name": "Ping"},
    },
    "shapes": {
        "In": {"type": "structure", "required": ["Name"], "members": {
            "Name": {"shape": "Name"},
            "Tags": {"shape": "Tags", "locationName": "tagSet"},
            "Labels": {"shape": "Labels"},
            "Node": {"shape": "Node"},
        }},
        "Out": {"type": "structure", "members": {"Count": {"shape": "Count"}}},
        "Name": {"type": "string", "min": 1, "max": 63, "pattern": "[a-z]+", "locationName": "name"},
        "Kind": {"type": "string", "enum": ["a", "b"]},
        "Tags": {"type": "list", "member": {"shape": "Kind"}, "max": 5, "flattened": True},
        "Labels": {"type": "map", "key": {"shape": "Name"}, "value": {"shape": "Count"}},
        "Count": {"type": "integer", "min": 0},
        "Node": {"type": "structure", "members": {"Next": {"shape": "Node"}}},
    },
}  # fmt: skip


@pytest.fixture
def model() -> ServiceModel:
    return ServiceModel(DESCRIPTION, "x")


def test_the_service_lists_its_operations_and_metadata(model: ServiceModel) -> None:
    assert model.operation_names == ["Put", "Ping"]
    assert model.metadata["targetPrefix"] == "X"
    assert model.operation_model("Put") is model.operation_model("Put")
    ping = model.operation_model("Ping")
    assert ping.input_shape is None and ping.output_shape is None
    with pytest.raises(KeyError):
        model.operation_model("Nope")


def test_structures_lists_maps_and_strings(model: ServiceModel) -> None:
    shape = model.operation_model("Put").input_shape
    assert isinstance(shape, StructureShape)
    assert (shape.name, shape.type_name, shape.required_members) == ("In", "structure", ["Name"])
    assert list(shape.members) == ["Name", "Tags", "Labels", "Node"]
    name = shape.members["Name"]
    assert isinstance(name, StringShape)
    assert name.metadata == {"min": 1, "max": 63, "pattern": "[a-z]+"}
    assert name.serialization == {"name": "name"}
    assert name.enum == []
    tags = shape.members["Tags"]
    assert isinstance(tags, ListShape)
    assert tags.metadata == {"max": 5}
    assert isinstance(tags.member, StringShape) and tags.member.enum == ["a", "b"]
    labels = shape.members["Labels"]
    assert isinstance(labels, MapShape)
    assert (labels.key.name, labels.value.name, labels.value.type_name) == ("Name", "Count", "integer")
    assert labels.value.metadata == {"min": 0}


def test_a_members_traits_override_its_shapes(model: ServiceModel) -> None:
    shape = model.operation_model("Put").input_shape
    assert isinstance(shape, StructureShape)
    assert shape.members["Tags"].serialization == {"flattened": True, "name": "tagSet"}
    output = model.operation_model("Put").output_shape
    assert output is not None and output.serialization == {"resultWrapper": "PutResult"}


def test_recursive_shapes_resolve_lazily(model: ServiceModel) -> None:
    shape = model.operation_model("Put").input_shape
    assert isinstance(shape, StructureShape)
    node = shape.members["Node"]
    assert isinstance(node, StructureShape)
    nxt = node.members["Next"]
    assert isinstance(nxt, StructureShape) and nxt.members["Next"] is nxt
