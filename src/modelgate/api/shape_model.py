"""Service, operation and shape objects over the generated service models, read as botocore reads them.

The gateway walks shapes to validate input (:mod:`modelgate.api.shapes`), to fold query forms and render
XML (:mod:`modelgate.api.query`) and to tag CBOR timestamps (:mod:`modelgate.api.cbor`). botocore's
``botocore.model`` would do, but importing it pulls ``botocore.utils``, urllib3 and dateutil into the
gateway (about 3.7 MB RSS), so these classes give the same answers for the part modelgate reads:

* a shape has ``name``, ``type_name``, ``metadata`` (``min``, ``max``, ``pattern``, ``enum``, ``required``
  ...) and ``serialization`` (``locationName`` given as ``name``, ``resultWrapper``, ``flattened`` ...);
* a member's own traits (``locationName`` on a member, say) override its target shape's, as in botocore;
* :class:`StructureShape` has ``members`` (in model order) and ``required_members``, :class:`ListShape`
  ``member``, :class:`MapShape` ``key`` and ``value``, :class:`StringShape` ``enum``.

``tests/unit/test_service_models.py`` checks every kept operation's shapes against botocore's.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property
from typing import Any

# The keys botocore's Shape reads into ``serialization`` and ``metadata`` (botocore.model.Shape).
SERIALIZED_ATTRS = (
    "locationName",
    "queryName",
    "flattened",
    "location",
    "payload",
    "streaming",
    "timestampFormat",
    "xmlNamespace",
    "resultWrapper",
    "xmlAttribute",
    "eventstream",
    "event",
    "eventheader",
    "eventpayload",
    "jsonvalue",
    "hostLabel",
)
METADATA_ATTRS = (
    "required",
    "min",
    "max",
    "pattern",
    "sensitive",
    "enum",
    "idempotencyToken",
    "error",
    "exception",
    "endpointdiscoveryid",
    "retryable",
    "document",
    "union",
    "contextParam",
    "clientContextParams",
    "requiresLength",
)


class Shape:
    """One shape of the model, as reached through one reference (with that reference's member traits)."""

    def __init__(self, name: str, model: Mapping[str, Any], resolver: _Resolver) -> None:
        self.name = name
        self.type_name: str = model["type"]
        self._model = model
        self._resolver = resolver

    @cached_property
    def serialization(self) -> dict[str, Any]:
        out = {attr: self._model[attr] for attr in SERIALIZED_ATTRS if attr in self._model}
        if "locationName" in out:
            out["name"] = out.pop("locationName")
        return out

    @cached_property
    def metadata(self) -> dict[str, Any]:
        return {attr: self._model[attr] for attr in METADATA_ATTRS if attr in self._model}

    def __repr__(self) -> str:
        return f"<{type(self).__name__}({self.name})>"


class StructureShape(Shape):
    @cached_property
    def members(self) -> dict[str, Shape]:
        return {name: self._resolver.resolve(ref) for name, ref in self._model.get("members", {}).items()}

    @cached_property
    def required_members(self) -> list[str]:
        required: list[str] = self.metadata.get("required", [])
        return required


class ListShape(Shape):
    @cached_property
    def member(self) -> Shape:
        return self._resolver.resolve(self._model["member"])


class MapShape(Shape):
    @cached_property
    def key(self) -> Shape:
        return self._resolver.resolve(self._model["key"])

    @cached_property
    def value(self) -> Shape:
        return self._resolver.resolve(self._model["value"])


class StringShape(Shape):
    @cached_property
    def enum(self) -> list[str]:
        values: list[str] = self.metadata.get("enum", [])
        return values


_CLASSES: dict[str, type[Shape]] = {
    "structure": StructureShape,
    "list": ListShape,
    "map": MapShape,
    "string": StringShape,
}


class _Resolver:
    """Shape references to shapes; a plain ``{"shape": name}`` gives the same object each time."""

    def __init__(self, shapes: Mapping[str, Mapping[str, Any]]) -> None:
        self._shapes = shapes
        self._plain: dict[str, Shape] = {}

    def resolve(self, ref: Mapping[str, Any]) -> Shape:
        name: str = ref["shape"]
        if len(ref) == 1:
            shape = self._plain.get(name)
            if shape is None:
                shape = self._plain[name] = self._make(name, self._shapes[name])
            return shape
        traits = {k: v for k, v in ref.items() if k != "shape"}
        return self._make(name, {**self._shapes[name], **traits})

    def _make(self, name: str, model: Mapping[str, Any]) -> Shape:
        return _CLASSES.get(model["type"], Shape)(name, model, self)


class OperationModel:
    def __init__(self, name: str, model: Mapping[str, Any], resolver: _Resolver) -> None:
        self.name = name
        self._model = model
        self._resolver = resolver

    @cached_property
    def input_shape(self) -> Shape | None:
        ref = self._model.get("input")
        return None if ref is None else self._resolver.resolve(ref)

    @cached_property
    def output_shape(self) -> Shape | None:
        ref = self._model.get("output")
        return None if ref is None else self._resolver.resolve(ref)


class ServiceModel:
    """One service's generated model (``MODELS[name]``): its metadata and its operations by name."""

    def __init__(self, description: Mapping[str, Any], name: str) -> None:
        self.service_name = name
        self.metadata: dict[str, Any] = description.get("metadata", {})
        self._operations: Mapping[str, Mapping[str, Any]] = description.get("operations", {})
        self.operation_names = list(self._operations)
        self._resolver = _Resolver(description.get("shapes", {}))
        self._cache: dict[str, OperationModel] = {}

    def operation_model(self, name: str) -> OperationModel:
        """The operation ``name``; KeyError when the model has no such operation."""
        op = self._cache.get(name)
        if op is None:
            op = self._cache[name] = OperationModel(name, self._operations[name], self._resolver)
        return op
