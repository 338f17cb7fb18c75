"""Script mode, per request: the user's handler functions around the container's defaults.

Load (``load_script_handler``): import the script (``script_loader``), require ``model_fn``, refuse
``transform_fn`` combined with ``input_fn``/``predict_fn``/``output_fn`` (the containers' UserError),
and call ``model_fn(model_dir)`` once. Any failure there is a :class:`LoadFailure`.

Request: ``Content-Type`` defaults to ``application/json`` and ``Accept`` (absent or ``*/*``) to
``SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT`` or ``application/json``; the body reaches ``input_fn`` as
``str`` for exactly ``application/json`` and ``text/csv`` and as ``bytes`` otherwise. Then
``transform_fn(model, data, content_type, accept)``, or ``output_fn(predict_fn(input_fn(data,
content_type), model), accept)``. A ``(body, content_type)`` tuple sets the response type, anything
else is answered as ``accept``.

Every exception raised on the way (user code or defaults) is a 500 whose body is
``<ExceptionType>: <message>``: the containers answer a generic 500 page, which the gateway could
only relay as "Internal Server Error".

Custom attributes: each handler may take one extra trailing ``context`` argument (as in the
SageMaker inference toolkit 1.7+); ``context.custom_attributes`` is the request's
``X-Amzn-SageMaker-Custom-Attributes`` and setting ``context.response_custom_attributes`` (or
``context.set_response_header(0, "X-Amzn-SageMaker-Custom-Attributes", v)``) sends it back.
"""

from __future__ import annotations

import inspect
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from modelgate.containers import script_defaults
from modelgate.containers.errors import LoadFailure, ServerError, describe
from modelgate.containers.protocol import Invocation, Reply
from modelgate.containers.script_loader import import_script, locate_script
from modelgate.containers.settings import ContainerSettings

log = logging.getLogger(__name__)

CUSTOM_ATTRIBUTES = "x-amzn-sagemaker-custom-attributes"


class RequestContext:
    """What a handler that takes a trailing ``context`` argument gets."""

    def __init__(self, content_type: str, accept: str, custom_attributes: str | None) -> None:
        self.content_type = content_type
        self.accept = accept
        self.custom_attributes = custom_attributes
        self.response_custom_attributes: str | None = None
        self._headers = {"content-type": content_type, "accept": accept}
        if custom_attributes is not None:
            self._headers[CUSTOM_ATTRIBUTES] = custom_attributes

    def get_request_header(self, idx: int, key: str) -> str | None:
        return self._headers.get(key.lower())

    def set_response_header(self, idx: int, key: str, value: str) -> None:
        if key.lower() == CUSTOM_ATTRIBUTES:
            self.response_custom_attributes = value


@dataclass(frozen=True, slots=True)
class UserFunction:
    """A handler with the number of arguments the container passes, and whether it wants context."""

    fn: Callable[..., Any]
    wants_context: bool

    @classmethod
    def of(cls, fn: Callable[..., Any], arity: int) -> UserFunction:
        return cls(fn, _accepts(fn, arity + 1))

    def __call__(self, context: RequestContext | None, *args: Any) -> Any:
        return self.fn(*args, context) if self.wants_context else self.fn(*args)


def _accepts(fn: Callable[..., Any], count: int) -> bool:
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return False
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if any(p.kind == p.VAR_POSITIONAL for p in params):
        return False
    return len(positional) >= count


@dataclass(frozen=True, slots=True)
class Framework:
    name: str
    input_fn: Callable[..., Any]
    predict_fn: Callable[..., Any]


FRAMEWORKS = {
    "xgboost": Framework("xgboost", script_defaults.xgb_input_fn, script_defaults.xgb_predict_fn),
    "sklearn": Framework("sklearn", script_defaults.sklearn_input_fn, script_defaults.sklearn_predict_fn),
}


class ScriptHandler:
    initial_cost_estimate = 0.01  # user code: run on worker threads until calls prove cheap

    def __init__(self, module: Any, model: Any, framework: Framework, settings: ContainerSettings) -> None:
        self.model = model
        self.default_accept = settings.default_accept or script_defaults.JSON
        transform = getattr(module, "transform_fn", None)
        self.transform_fn = UserFunction.of(transform, 4) if transform is not None else None
        self.input_fn = UserFunction.of(getattr(module, "input_fn", None) or framework.input_fn, 2)
        self.predict_fn = UserFunction.of(getattr(module, "predict_fn", None) or framework.predict_fn, 2)
        self.output_fn = UserFunction.of(getattr(module, "output_fn", None) or script_defaults.output_fn, 2)
        self.execution_parameters_fn = getattr(module, "execution_parameters_fn", None)

    def invoke(self, request: Invocation) -> Reply:
        content_type = request.content_type or script_defaults.JSON
        accept = request.accept
        if not accept or accept.strip() == "*/*":
            accept = self.default_accept
        data: str | bytes = request.body
        ctx = RequestContext(content_type, accept, request.custom_attributes)
        try:
            if content_type in script_defaults.UTF8_TYPES:
                data = request.body.decode("utf-8")
            if self.transform_fn is not None:
                result = self.transform_fn(ctx, self.model, data, content_type, accept)
            else:
                features = self.input_fn(ctx, data, content_type)
                prediction = self.predict_fn(ctx, features, self.model)
                result = self.output_fn(ctx, prediction, accept)
            body, response_type = _response(result, accept)
        except Exception as exc:
            log.exception("Invocation failed")
            raise ServerError(describe(exc)) from None
        return Reply(200, body, response_type, ctx.response_custom_attributes)

    def execution_parameters(self) -> Reply | None:
        if self.execution_parameters_fn is None:
            return None
        try:
            result = self.execution_parameters_fn()
            body, response_type = _response(result, script_defaults.JSON)
        except Exception as exc:
            raise ServerError(describe(exc)) from None
        return Reply(200, body, response_type)


def _response(result: Any, accept: str) -> tuple[bytes, str]:
    content_type = accept
    if isinstance(result, tuple) and len(result) == 2:
        result, content_type = result[0], str(result[1])
    if isinstance(result, bytes):
        return result, content_type
    if isinstance(result, bytearray | memoryview):
        return bytes(result), content_type
    if isinstance(result, str):
        return result.encode("utf-8"), content_type
    if isinstance(result, dict | list):
        return json.dumps(result).encode("utf-8"), script_defaults.JSON
    raise TypeError(
        f"the handler returned a {type(result).__name__}; expected bytes, str or a (body, content_type) tuple"
    )


def load_script_handler(framework_name: str, settings: ContainerSettings) -> ScriptHandler:
    framework = FRAMEWORKS[framework_name]
    path = locate_script(settings)
    module = import_script(path, settings)
    model_fn = getattr(module, "model_fn", None)
    if model_fn is None:
        raise LoadFailure(
            f"NotImplementedError: {path.name} defines no model_fn; the {framework.name} container has "
            "no default model_fn, please provide model_fn(model_dir)"
        )
    others = [n for n in ("input_fn", "predict_fn", "output_fn") if getattr(module, n, None) is not None]
    if getattr(module, "transform_fn", None) is not None and others:
        raise LoadFailure(
            "UserError: Cannot use transform_fn implementation with input_fn, predict_fn, and/or output_fn "
            f"({path.name} defines transform_fn and {', '.join(others)})"
        )
    loader = UserFunction.of(model_fn, 1)
    log.info("Calling model_fn(%s) from %s", settings.model_dir, path)
    try:
        model = loader(RequestContext("", "", None), str(settings.model_dir))
    except Exception as exc:
        raise LoadFailure(f"model_fn in {path.name} failed: {describe(exc)}") from None
    return ScriptHandler(module, model, framework, settings)
