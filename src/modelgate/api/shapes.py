"""Validate request parameters against botocore's service models, as AWS does server-side.

botocore checks only ``required``, ``min`` and types on the client (see the reference, §1.2); the
server must enforce ``max``, ``pattern`` and ``enum``. We walk the same shapes and report the first
violations with AWS's message format::

    1 validation error detected: Value 'x y' at 'endpointName' failed to satisfy constraint:
    Member must satisfy regular expression pattern: [a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}

Patterns that Python's ``re`` cannot compile (Java ``\\p{..}`` classes) are skipped. Callers may
override a member's pattern (modelgate accepts ``file://`` model data, which SageMaker does not).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any

import botocore.session
from botocore.model import ListShape, MapShape, OperationModel, ServiceModel, Shape, StructureShape


@functools.lru_cache(maxsize=8)
def service_model(name: str) -> ServiceModel:
    model: ServiceModel = botocore.session.get_session().get_service_model(name)
    return model


@functools.lru_cache(maxsize=512)
def _compiled(pattern: str) -> re.Pattern[str] | None:
    try:
        return re.compile(pattern, re.DOTALL)
    except re.error:
        return None


def _camel(name: str) -> str:
    return name[:1].lower() + name[1:]


class _Walker:
    def __init__(self, overrides: Mapping[tuple[str, str], str]) -> None:
        self.errors: list[str] = []
        self.overrides = overrides

    def fail(self, value: Any, path: str, constraint: str) -> None:
        shown = value if isinstance(value, str | int | float) else "[...]"
        if isinstance(value, str) and len(value) > 120:
            shown = value[:117] + "..."
        self.errors.append(f"Value '{shown}' at '{path}' failed to satisfy constraint: {constraint}")

    def walk(self, shape: Shape, value: Any, path: str, owner: str = "", member: str = "") -> None:
        type_name = shape.type_name
        meta = shape.metadata
        if value is None:
            return
        if type_name == "structure":
            assert isinstance(shape, StructureShape)
            if not isinstance(value, dict):
                self.errors.append(
                    f"Value at '{path}' failed to satisfy constraint: Member must be a structure"
                )
                return
            for req in shape.required_members:
                if req not in value or value[req] is None:
                    p = f"{path}.{_camel(req)}" if path else _camel(req)
                    self.errors.append(
                        f"Value null at '{p}' failed to satisfy constraint: Member must not be null"
                    )
            for key, sub in value.items():
                if key in shape.members:
                    p = f"{path}.{_camel(key)}" if path else _camel(key)
                    self.walk(shape.members[key], sub, p, shape.name, key)
            return
        if type_name == "list":
            assert isinstance(shape, ListShape)
            if not isinstance(value, list):
                self.errors.append(f"Value at '{path}' failed to satisfy constraint: Member must be a list")
                return
            if "min" in meta and len(value) < meta["min"]:
                self.fail(value, path, f"Member must have length greater than or equal to {meta['min']}")
            if "max" in meta and len(value) > meta["max"]:
                self.fail(value, path, f"Member must have length less than or equal to {meta['max']}")
            for i, item in enumerate(value, start=1):
                self.walk(shape.member, item, f"{path}.{i}.member")
            return
        if type_name == "map":
            assert isinstance(shape, MapShape)
            if not isinstance(value, dict):
                self.errors.append(f"Value at '{path}' failed to satisfy constraint: Member must be a map")
                return
            if "max" in meta and len(value) > meta["max"]:
                self.fail(value, path, f"Member must have length less than or equal to {meta['max']}")
            for k, v in value.items():
                self.walk(shape.key, k, f"{path}.{k}.key")
                self.walk(shape.value, v, f"{path}.{k}.value")
            return
        if type_name == "string":
            if not isinstance(value, str):
                self.errors.append(f"Value at '{path}' failed to satisfy constraint: Member must be a string")
                return
            if "min" in meta and len(value) < meta["min"]:
                self.fail(value, path, f"Member must have length greater than or equal to {meta['min']}")
            if "max" in meta and len(value) > meta["max"]:
                self.fail(value, path, f"Member must have length less than or equal to {meta['max']}")
            pattern = self.overrides.get((owner, member), meta.get("pattern"))
            if pattern:
                rx = _compiled(pattern)
                if rx is not None and rx.fullmatch(value) is None:
                    self.fail(value, path, f"Member must satisfy regular expression pattern: {pattern}")
            if shape.enum and value not in shape.enum:
                self.fail(value, path, f"Member must satisfy enum value set: [{', '.join(shape.enum)}]")
            return
        if type_name in ("integer", "long", "float", "double"):
            if isinstance(value, bool) or not isinstance(value, int | float):
                self.errors.append(f"Value at '{path}' failed to satisfy constraint: Member must be a number")
                return
            if type_name in ("integer", "long") and not float(value).is_integer():
                self.errors.append(
                    f"Value '{value}' at '{path}' failed to satisfy constraint: Member must be an integer"
                )
                return
            if "min" in meta and value < meta["min"]:
                self.fail(value, path, f"Member must have value greater than or equal to {meta['min']}")
            if "max" in meta and value > meta["max"]:
                self.fail(value, path, f"Member must have value less than or equal to {meta['max']}")
            return
        if type_name == "boolean":
            if not isinstance(value, bool):
                self.errors.append(
                    f"Value at '{path}' failed to satisfy constraint: Member must be a boolean"
                )
            return
        if type_name == "timestamp":
            if not isinstance(value, int | float | str) or isinstance(value, bool):
                self.errors.append(
                    f"Value at '{path}' failed to satisfy constraint: Member must be a timestamp"
                )
            return


def validation_errors(
    op: OperationModel, params: Any, overrides: Mapping[tuple[str, str], str] | None = None
) -> list[str]:
    """Every constraint ``params`` breaks, in AWS's wording; empty when the input is valid."""
    shape = op.input_shape
    if shape is None:
        return []
    walker = _Walker(overrides or {})
    walker.walk(shape, params, "")
    return walker.errors


def format_errors(errors: list[str]) -> str:
    shown = errors[:10]
    n = len(errors)
    head = f"{n} validation error{'s' if n != 1 else ''} detected: "
    return head + "; ".join(shown)
