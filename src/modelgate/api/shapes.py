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

import datetime as dt
import functools
import json
import math
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
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
    return "\n".join(
        [
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
        ]
    )


MODELS_FILE = Path(__file__).with_name("service_models.py")


@functools.lru_cache(maxsize=512)
def _compiled(pattern: str) -> re.Pattern[str] | None:
    try:
        return re.compile(pattern, re.DOTALL)
    except re.error:
        return None


def _camel(name: str) -> str:
    return name[:1].lower() + name[1:]


_NUMBERS = ("integer", "long", "float", "double")
# What an AWS integer and long hold (Java's int and long): larger values cannot reach a handler.
_INTEGER_RANGE = {"integer": (-(2**31), 2**31 - 1), "long": (-(2**63), 2**63 - 1)}
# What a datetime holds, in epoch seconds (0001-01-01 to 9999-12-31 UTC): a timestamp outside it is invalid.
_TIME_RANGE = (-62135596800.0, 253402300799.0)


def timestamp_seconds(value: Any) -> float | None:
    """Epoch seconds of a wire timestamp (a number, or a string: a number or ISO 8601, naive as UTC); None
    when it is none, or outside what a datetime holds."""
    seconds: float
    try:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            return None
        if isinstance(value, str):
            try:
                seconds = float(value)
            except ValueError:
                t = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
                seconds = (t if t.tzinfo else t.replace(tzinfo=dt.UTC)).timestamp()
        else:
            seconds = float(value)
    except (ValueError, OverflowError):
        return None
    if not _TIME_RANGE[0] <= seconds <= _TIME_RANGE[1]:  # also False for NaN
        return None
    return seconds


def _shown(value: Any) -> str:
    """A value as an error message quotes it: long strings and numbers cut, containers as ``[...]``."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, int | float):
        try:
            text = str(value)
        except ValueError:  # an int of more digits than Python converts (CBOR can carry one)
            return "[...]"
    elif isinstance(value, str):
        text = value if value.isascii() or _utf8(value) else value.encode("utf-8", "backslashreplace").decode()
    else:
        return "[...]"
    return text[:117] + "..." if len(text) > 120 else text


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@dataclass
class Findings:
    """What the walk found: every broken constraint in AWS's wording, and apart from them the non-finite
    numbers with their query-protocol names (``MetricData.member.1.Value``), which CloudWatch words its own
    way (``The value NaN for parameter ... is invalid.``)."""

    errors: list[str] = field(default_factory=list)
    non_finite: list[tuple[str, float]] = field(default_factory=list)


class _Walker:
    """Checks a request against its input shape, and normalizes it in place for the handlers: a member
    given as null is dropped (AWS reads null as absent: ``p.get(key, default)`` then works), and an
    integer member given as an integral float (``5.0``) becomes an int. Recursion follows the shape,
    never the value, so a deeply nested value costs nothing beyond the parser."""

    def __init__(self, overrides: Mapping[tuple[str, str], str]) -> None:
        self.found = Findings()
        self.errors = self.found.errors
        self.overrides = overrides

    def fail(self, value: Any, path: str, constraint: str) -> None:
        self.errors.append(f"Value '{_shown(value)}' at '{path}' failed to satisfy constraint: {constraint}")

    def walk(self, shape: Shape, value: Any, path: str, owner: str = "", member: str = "", query: str = "") -> Any:
        """Check ``value`` (not None) against ``shape``; return it, normalized."""
        type_name = shape.type_name
        meta = shape.metadata
        if type_name == "structure":
            assert isinstance(shape, StructureShape)
            if not isinstance(value, dict):
                self.errors.append(f"Value at '{path}' failed to satisfy constraint: Member must be a structure")
                return value
            for key in [k for k, v in value.items() if v is None]:
                del value[key]
            for req in shape.required_members:
                if req not in value:
                    p = f"{path}.{_camel(req)}" if path else _camel(req)
                    self.errors.append(f"Value null at '{p}' failed to satisfy constraint: Member must not be null")
            for key, sub in list(value.items()):
                if key in shape.members:
                    p = f"{path}.{_camel(key)}" if path else _camel(key)
                    q = f"{query}.{key}" if query else key
                    value[key] = self.walk(shape.members[key], sub, p, shape.name, key, q)
            return value
        if type_name == "list":
            assert isinstance(shape, ListShape)
            if not isinstance(value, list):
                self.errors.append(f"Value at '{path}' failed to satisfy constraint: Member must be a list")
                return value
            if "min" in meta and len(value) < meta["min"]:
                self.fail(value, path, f"Member must have length greater than or equal to {meta['min']}")
            if "max" in meta and len(value) > meta["max"]:
                self.fail(value, path, f"Member must have length less than or equal to {meta['max']}")
            for i, item in enumerate(value, start=1):
                p = f"{path}.{i}.member"
                if item is None:
                    self.errors.append(f"Value null at '{p}' failed to satisfy constraint: Member must not be null")
                else:
                    value[i - 1] = self.walk(shape.member, item, p, query=f"{query}.member.{i}")
            return value
        if type_name == "map":
            assert isinstance(shape, MapShape)
            if not isinstance(value, dict):
                self.errors.append(f"Value at '{path}' failed to satisfy constraint: Member must be a map")
                return value
            if "max" in meta and len(value) > meta["max"]:
                self.fail(value, path, f"Member must have length less than or equal to {meta['max']}")
            for i, (k, v) in enumerate(list(value.items()), start=1):
                self.walk(shape.key, k, f"{path}.{k}.key")
                if v is None:
                    self.errors.append(
                        f"Value null at '{path}.{k}.value' failed to satisfy constraint: Member must not be null"
                    )
                else:
                    value[k] = self.walk(shape.value, v, f"{path}.{k}.value", query=f"{query}.entry.{i}.value")
            return value
        if type_name == "string":
            assert isinstance(shape, StringShape)
            if not isinstance(value, str):
                self.errors.append(f"Value at '{path}' failed to satisfy constraint: Member must be a string")
                return value
            if is_unpaired(value):  # not shown: the message must be encodable (api/surrogates.py)
                self.errors.append(
                    f"Value at '{path}' failed to satisfy constraint: Member must be Unicode text "
                    "(it holds an unpaired surrogate)"
                )
                return value
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
            return value
        if type_name in _NUMBERS:
            return self._number(type_name, meta, value, path, query)
        if type_name == "boolean":
            if not isinstance(value, bool):
                self.errors.append(f"Value at '{path}' failed to satisfy constraint: Member must be a boolean")
            return value
        if type_name == "timestamp":
            if isinstance(value, bool) or not isinstance(value, int | float | str):
                self.errors.append(f"Value at '{path}' failed to satisfy constraint: Member must be a timestamp")
            elif timestamp_seconds(value) is None:
                self.fail(value, path, "Member must be a timestamp: epoch seconds or ISO 8601, years 1 to 9999")
            return value
        return value

    def _number(self, type_name: str, meta: Mapping[str, Any], value: Any, path: str, query: str) -> Any:
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.errors.append(f"Value at '{path}' failed to satisfy constraint: Member must be a number")
            return value
        if isinstance(value, float) and not math.isfinite(value):  # JSON's 1e400, CBOR's NaN, a form's "inf"
            self.fail(value, path, "Member must be a finite number")
            self.found.non_finite.append((query, value))
            return value
        bounds = _INTEGER_RANGE.get(type_name)
        if bounds is None and isinstance(value, int) and abs(value) > sys.float_info.max:
            # A float or double member given an integer beyond the float range (JSON's 400 digits, a CBOR
            # bignum): float(value) raises OverflowError. A float parser makes it an infinity, and so it is told.
            self.fail(value, path, "Member must be a finite number")
            self.found.non_finite.append((query, math.inf if value > 0 else -math.inf))
            return value
        if bounds is not None:
            if isinstance(value, float):
                if not value.is_integer():
                    self.fail(value, path, "Member must be an integer")
                    return value
                value = int(value)
            # Compared as ints, never through float(): an int of 400 digits overflows a float.
            if value < bounds[0]:
                self.fail(value, path, f"Member must have value greater than or equal to {bounds[0]}")
                return value
            if value > bounds[1]:
                self.fail(value, path, f"Member must have value less than or equal to {bounds[1]}")
                return value
        if "min" in meta and value < meta["min"]:
            self.fail(value, path, f"Member must have value greater than or equal to {meta['min']}")
        if "max" in meta and value > meta["max"]:
            self.fail(value, path, f"Member must have value less than or equal to {meta['max']}")
        return value


def check(op: OperationModel, params: Any, overrides: Mapping[tuple[str, str], str] | None = None) -> Findings:
    """What ``params`` breaks; ``params`` (a dict) is normalized in place as :class:`_Walker` says."""
    shape = op.input_shape
    walker = _Walker(overrides or {})
    if shape is not None:
        walker.walk(shape, params, "")
    return walker.found


def validation_errors(
    op: OperationModel, params: Any, overrides: Mapping[tuple[str, str], str] | None = None
) -> list[str]:
    """Every constraint ``params`` breaks, in AWS's wording; empty when the input is valid."""
    return check(op, params, overrides).errors


def format_errors(errors: list[str]) -> str:
    shown = errors[:10]
    n = len(errors)
    head = f"{n} validation error{'s' if n != 1 else ''} detected: "
    return head + "; ".join(shown)


if __name__ == "__main__":
    MODELS_FILE.write_text(render_models())
    print(f"wrote {MODELS_FILE}", file=sys.stderr)
