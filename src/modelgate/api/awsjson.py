"""The AWS JSON 1.0/1.1 RPC protocol: ``POST /`` with ``X-Amz-Target: <Prefix>.<Operation>``.

One :class:`JsonRpcService` per AWS service: it validates the input against botocore's model (the
part of it modelgate serves, :mod:`modelgate.api.service_models`),
calls the operation's handler and renders the result or a :class:`ModelgateError` as AWS does
(``{"__type": code, "message": ...}``, plus ``x-amzn-query-error`` for query-compatible services
such as CloudWatch).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from modelgate.api.http import Request, Send, new_request_id, send_json
from modelgate.api.shapes import GENERATE, check, format_errors, service_model, timestamp_seconds
from modelgate.errors import InternalFailure, ModelgateError, SerializationException, UnknownOperation

log = logging.getLogger(__name__)

Params = dict[str, Any]
Handler = Callable[[Params], Awaitable[Params]]


class InvalidInput(ModelgateError):
    """Shape validation failure; its code is the service's validation code."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self._code = code
        self._status = status


def error_code(exc: ModelgateError) -> str:
    return exc._code if isinstance(exc, InvalidInput) else exc.code


def error_status(exc: ModelgateError) -> int:
    return exc._status if isinstance(exc, InvalidInput) else exc.status


def to_wire_time(value: float) -> float:
    """JSON protocols carry timestamps as epoch seconds."""
    return round(value, 3)


def parse_wire_time(value: Any) -> float:
    """Epoch seconds of a timestamp member (epoch seconds, or a string of them or of ISO 8601). The shape
    walk has refused any other value already; this refuses them again rather than trust it."""
    seconds = timestamp_seconds(value)
    if seconds is None:
        raise SerializationException(f"Cannot parse timestamp {_shown(value)}.")
    return seconds


def _shown(value: Any) -> str:
    text = value if isinstance(value, str) else type(value).__name__
    return repr(text[:100])


def _refuse_constant(token: str) -> Any:
    """``json.loads``' hook for ``NaN``, ``Infinity`` and ``-Infinity``: JSON (RFC 8259) has none of them,
    and a non-finite weight or threshold once stored would poison every later read of it."""
    raise ValueError(f"{token} is not a JSON number")


def parse_json_body(body: bytes) -> Params:
    """The request body as a JSON object ({} when empty); SerializationException when it is not one."""
    if not body.strip():
        return {}
    try:
        params = json.loads(body, parse_constant=_refuse_constant)
    except RecursionError as exc:  # the C parser stops at the interpreter's recursion limit
        raise SerializationException("The request body is not valid JSON: it is nested too deeply.") from exc
    except ValueError as exc:  # also UnicodeDecodeError, and integers of more than 4,300 digits
        raise SerializationException(f"The request body is not valid JSON: {exc}") from exc
    if not isinstance(params, dict):
        raise SerializationException("The request body must be a JSON object.")
    return params


def without_nulls(value: Any) -> Any:
    """``value`` with every null structure member left out: a member sent as JSON ``null`` (or CBOR null) is
    absent, as AWS takes it. Handlers test members with ``in``; a null that reached them failed there with a
    TypeError (a 500). Null list items and map values are refused by validation first."""
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_nulls(v) for v in value]
    return value


class JsonRpcService:
    def __init__(
        self,
        botocore_name: str,
        json_version: str,
        handlers: Mapping[str, Handler],
        validation_code: str = "ValidationException",
        query_error_codes: Mapping[str, str] | None = None,
        pattern_overrides: Mapping[tuple[str, str], str] | None = None,
        non_finite_error: Callable[[str, float], ModelgateError] | None = None,
    ) -> None:
        self.model = service_model(botocore_name)
        missing = sorted(set(handlers) - set(self.model.operation_names))
        if missing:  # the generated models keep only the operations listed in shapes.KEPT_OPERATIONS
            raise ValueError(f"{botocore_name}: no shapes for {missing}: add them to KEPT_OPERATIONS, run {GENERATE}")
        self.content_type = f"application/x-amz-json-{json_version}".encode()
        self.handlers = dict(handlers)
        self.validation_code = validation_code
        self.query_error_codes = query_error_codes
        self.pattern_overrides = pattern_overrides or {}
        # How the service words a NaN or infinite number (by its query-protocol name); None: as the other
        # validation errors ("Member must be a finite number").
        self.non_finite_error = non_finite_error

    async def call(self, operation: str, params: Params) -> Params:
        """Validate and run one operation; raise ModelgateError on any failure."""
        handler = self.handlers.get(operation)
        if handler is None or operation not in self.model.operation_names:
            raise UnknownOperation(f"Operation {operation} is not supported by modelgate.")
        op_model = self.model.operation_model(operation)
        found = check(op_model, params, self.pattern_overrides)
        if found.non_finite and self.non_finite_error is not None:
            raise self.non_finite_error(*found.non_finite[0])
        if found.errors:
            raise InvalidInput(self.validation_code, format_errors(found.errors))
        return await handler(without_nulls(params))

    async def handle(self, request: Request, send: Send, operation: str) -> None:
        request_id = new_request_id()
        try:
            result = await self.call(operation, parse_json_body(request.body))
        except ModelgateError as exc:
            await self.send_error(send, exc, request_id)
            return
        except Exception:
            log.exception("unhandled error in %s", operation)
            await self.send_error(send, InternalFailure("An internal error occurred."), request_id)
            return
        await send_json(send, 200, result, self.content_type, [(b"x-amzn-requestid", request_id.encode())])

    async def send_error(self, send: Send, exc: ModelgateError, request_id: str) -> None:
        code = error_code(exc)
        body: dict[str, Any] = {"__type": code, "message": exc.message, "Message": exc.message}
        body.update(exc.extra_fields())
        headers = [(b"x-amzn-requestid", request_id.encode()), (b"x-amzn-errortype", code.encode())]
        if self.query_error_codes is not None:
            query_code = self.query_error_codes.get(code, code)
            fault = "Sender" if exc.sender_fault else "Receiver"
            headers.append((b"x-amzn-query-error", f"{query_code};{fault}".encode()))
        await send_json(send, error_status(exc), body, self.content_type, headers)
