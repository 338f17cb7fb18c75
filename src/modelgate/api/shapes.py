"""Validate request parameters against botocore's service models, as AWS does server-side.

botocore checks only ``required``, ``min`` and types on the client (see the reference, §1.2); the
server must enforce ``max``, ``pattern`` and ``enum``. We walk the same shapes and report the first
violations with AWS's message format::

    1 validation error detected: Value 'x y' at 'endpointName' failed to satisfy constraint:
    Member must satisfy regular expression pattern: [a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}

Patterns that Python's ``re`` cannot compile (Java ``\\p{..}`` classes) are skipped. Callers may
override a member's pattern (modelgate accepts ``file://`` model data, which SageMaker does not).

The models come from :mod:`modelgate.api.service_models`, generated from botocore's by
``.venv/bin/python -m modelgate.api.shapes``: SageMaker's cut to the operations in :data:`KEPT_OPERATIONS`
and the shapes they reach, CloudWatch's whole, both without documentation. botocore's full models held
about 16 MB in the gateway (SageMaker's alone is 394 KB of gzipped JSON, 3,200 shapes); these hold under
1 MB. ``tests/unit/test_service_models.py`` checks that the file is what botocore's models give. They are
read through :mod:`modelgate.api.shape_model`, not ``botocore.model``: the server never imports botocore.
"""

from __future__ import annotations

import functools
import json
import re
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from modelgate.api.service_models import MODELS
from modelgate.api.shape_model import (
    ListShape,
    MapShape,
    OperationModel,
    ServiceModel,
    Shape,
    StringShape,
    StructureShape,
)
from modelgate.api.surrogates import is_unpaired

# The operations whose shapes are kept, per botocore service name (None: every operation). CloudWatch's are
# all kept: its query protocol looks the operation up in the model before asking whether modelgate serves it
# ("Could not find operation" vs "not supported by modelgate"). JsonRpcService refuses a handler whose
# operation is missing here.
KEPT_OPERATIONS: dict[str, tuple[str, ...] | None] = {
    "cloudwatch": None,
    "sagemaker": (
        "AddTags",
        "CreateEndpoint",
        "CreateEndpointConfig",
        "CreateModel",
        "DeleteEndpoint",
        "DeleteEndpointConfig",
        "DeleteModel",
        "DeleteTags",
        "DescribeEndpoint",
        "DescribeEndpointConfig",
        "DescribeModel",
        "ListEndpointConfigs",
        "ListEndpoints",
        "ListModels",
        "ListTags",
        "UpdateEndpoint",
        "UpdateEndpointWeightsAndCapacities",
    ),
}
GENERATE = ".venv/bin/python -m modelgate.api.shapes"


@functools.lru_cache(maxsize=8)
def service_model(name: str) -> ServiceModel:
    return ServiceModel(MODELS[name], name)


# --- the generated models -------------------------------------------------------------------------------


def _undocumented(d: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k not in ("documentation", "documentationUrl")}


def cut_model(full: Mapping[str, Any], operations: Iterable[str] | None) -> dict[str, Any]:
    """``full`` (botocore's service-2 data) with only ``operations`` (None: all) and the shapes they reach,
    without documentation; everything else as it is, in botocore's order (members in order matter)."""
    shapes: Mapping[str, Any] = full["shapes"]
    wanted = set(full["operations"] if operations is None else operations)
    ops = {name: _undocumented(op) for name, op in full["operations"].items() if name in wanted}
    missing = wanted - set(ops)
    if missing:
        raise KeyError(f"operations not in botocore's model: {sorted(missing)}")
    reached: set[str] = set()
    refs = [ref for op in ops.values() for ref in [op.get("input"), op.get("output"), *op.get("errors", [])]]
    todo = [ref["shape"] for ref in refs if ref]
    while todo:
        name = todo.pop()
        if name in reached:
            continue
        reached.add(name)
        shape = shapes[name]
        refs = [*shape.get("members", {}).values(), *(shape[k] for k in ("member", "key", "value") if k in shape)]
        todo.extend(ref["shape"] for ref in refs)
    kept: dict[str, Any] = {}
    for name, shape in shapes.items():
        if name in reached:
            kept[name] = _undocumented(shape)
            if "members" in shape:
                kept[name]["members"] = {m: _undocumented(ref) for m, ref in shape["members"].items()}
    rest = _undocumented({k: v for k, v in full.items() if k not in ("operations", "shapes")})
    return {**rest, "operations": ops, "shapes": kept}


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=True, separators=(", ", ": "))


def render_models() -> str:
    """The text of ``service_models.py``, from the installed botocore: JSON, one operation or shape a line."""
    # botocore.session is imported here only: the server never loads botocore's full models (about 8 MB of
    # code for the session, 16 MB for the two models).
    import botocore
    import botocore.session

    session = botocore.session.get_session()
    models = {name: cut_model(session.get_service_data(name), ops) for name, ops in KEPT_OPERATIONS.items()}
    services = []
    for service, model in models.items():
        parts = [f"{_json(k)}: {_json(v)}" for k, v in model.items() if k not in ("operations", "shapes")]
        for key in ("operations", "shapes"):
            items = ",\n".join(f"{_json(k)}: {_json(v)}" for k, v in model[key].items())
            parts.append(f"{_json(key)}: {{\n{items}\n}}")
        services.append(f"{_json(service)}: {{\n" + ",\n".join(parts) + "\n}")
    text = "{\n" + ",\n".join(services) + "\n}"
    if '"""' in text or json.loads(text) != models:
        raise ValueError("the models do not survive being written as a raw string")
    return "\n".join([
        '"""botocore\'s service models, cut to what modelgate validates and renders. Generated: do not edit.',
        "",
        f"Made by ``{GENERATE}`` from botocore {botocore.__version__} (see ``modelgate.api.shapes``).",
        "JSON text rather than a Python literal: a smaller file, and 0.8 MB of RSS instead of 2.4 when imported",
        "alone (in the whole gateway the literal's freed code object is reused by later imports: no difference).",
        '"""',
        "",
        "# ruff: noqa: E501",
        "import json",
        "from typing import Any",
        "",
        'MODELS: dict[str, dict[str, Any]] = json.loads(r"""' + text + '""")',
        "",
    ])
MODELS_FILE = Path(__file__).with_name("service_models.py")


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
                if item is None:
                    self.errors.append(
                        f"Value null at '{path}.{i}.member' failed to satisfy constraint: Member must not be null"
                    )
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
                if v is None:
                    self.errors.append(
                        f"Value null at '{path}.{k}.value' failed to satisfy constraint: Member must not be null"
                    )
                self.walk(shape.key, k, f"{path}.{k}.key")
                self.walk(shape.value, v, f"{path}.{k}.value")
            return
        if type_name == "string":
            assert isinstance(shape, StringShape)
            if not isinstance(value, str):
                self.errors.append(f"Value at '{path}' failed to satisfy constraint: Member must be a string")
                return
            if is_unpaired(value):  # not shown: the message must be encodable (api/surrogates.py)
                self.errors.append(
                    f"Value at '{path}' failed to satisfy constraint: Member must be Unicode text "
                    "(it holds an unpaired surrogate)"
                )
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


if __name__ == "__main__":
    MODELS_FILE.write_text(render_models())
    print(f"wrote {MODELS_FILE}", file=sys.stderr)
