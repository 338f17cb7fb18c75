"""The Smithy rpc-v2-cbor protocol: ``POST /service/<ServiceName>/operation/<Operation>``, CBOR in and out.

Served over any :class:`JsonRpcService` (the same validation and handlers as its JSON form). Timestamps
arrive as CBOR tag 1 (decoded by cbor2 into datetimes) and leave as tag 1 with an epoch float, found by
walking botocore's output shape. Errors are CBOR maps with ``__type`` and ``message``, plus
``x-amzn-query-error`` for query-compatible services, which botocore's ``RpcV2CBORParser`` reads exactly
as its JSON parser does (reference §1.1).

Requests must carry ``smithy-protocol: rpc-v2-cbor``, which the protocol requires of clients and botocore
sends: a browser cannot set it without a CORS preflight, so a web page cannot post CBOR here as
``text/plain`` (api/browsers.py).
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import cbor2

from modelgate.api.awsjson import JsonRpcService, error_code, error_status
from modelgate.api.http import Request, Send, new_request_id, send_response
from modelgate.api.shape_model import ListShape, MapShape, Shape, StructureShape
from modelgate.errors import InternalFailure, ModelgateError, SerializationException, UnknownOperation

log = logging.getLogger(__name__)

CONTENT_TYPE = b"application/cbor"


def _from_cbor(value: Any) -> Any:
    """CBOR-decoded input to the JSON-shaped params the handlers take (datetimes → epoch seconds)."""
    if isinstance(value, dict):
        return {str(k): _from_cbor(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_cbor(v) for v in value]
    if isinstance(value, dt.datetime):
        return (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).timestamp()
    return value


def to_cbor(shape: Shape | None, value: Any) -> Any:
    """Handler output to CBOR-encodable values: timestamps become tag 1."""
    if shape is None or value is None:
        return value
    kind = shape.type_name
    if kind == "structure" and isinstance(value, dict):
        assert isinstance(shape, StructureShape)
        members = shape.members
        return {k: to_cbor(members.get(k), v) for k, v in value.items()}
    if kind == "list" and isinstance(value, list):
        assert isinstance(shape, ListShape)
        return [to_cbor(shape.member, v) for v in value]
    if kind == "map" and isinstance(value, dict):
        assert isinstance(shape, MapShape)
        return {k: to_cbor(shape.value, v) for k, v in value.items()}
    if kind == "timestamp" and isinstance(value, int | float):
        return cbor2.CBORTag(1, float(value))
    if kind in ("double", "float") and isinstance(value, int):
        return float(value)
    return value


async def handle_rpc_v2_cbor(service: JsonRpcService, request: Request, send: Send) -> None:
    request_id = new_request_id()
    headers = [(b"x-amzn-requestid", request_id.encode()), (b"smithy-protocol", b"rpc-v2-cbor")]
    try:
        if request.header("smithy-protocol") != "rpc-v2-cbor":
            raise SerializationException(
                "rpc-v2-cbor requests must carry the header smithy-protocol: rpc-v2-cbor (every AWS SDK sends it)."
            )
        parts = request.path.split("/")
        prefix = service.model.metadata.get("targetPrefix")
        if len(parts) != 5 or parts[1] != "service" or parts[3] != "operation" or parts[2] != prefix:
            raise UnknownOperation(f"{request.path} names no operation of service {prefix}.")
        operation = parts[4]
        try:
            params = cbor2.loads(request.body) if request.body else {}
        except Exception as exc:  # decoding is pure: whatever it raises, the body is at fault
            raise SerializationException(f"The request body is not valid CBOR: {exc}") from exc
        if not isinstance(params, dict):
            raise SerializationException("The request body must be a CBOR map.")
        result = await service.call(operation, _from_cbor(params))
        shape = service.model.operation_model(operation).output_shape
        body = cbor2.dumps(to_cbor(shape, result))
        await send_response(send, 200, body, [(b"content-type", CONTENT_TYPE), *headers])
    except ModelgateError as exc:
        await _send_error(service, send, exc, headers)
    except Exception:
        log.exception("unhandled error in %s", request.path)
        await _send_error(service, send, InternalFailure("An internal error occurred."), headers)


async def _send_error(
    service: JsonRpcService, send: Send, exc: ModelgateError, headers: list[tuple[bytes, bytes]]
) -> None:
    code = error_code(exc)
    body: dict[str, Any] = {"__type": code, "message": exc.message}
    body.update(exc.extra_fields())
    out = [(b"content-type", CONTENT_TYPE), *headers]
    if service.query_error_codes is not None:
        fault = "Sender" if exc.sender_fault else "Receiver"
        out.append((b"x-amzn-query-error", f"{service.query_error_codes.get(code, code)};{fault}".encode()))
    await send_response(send, error_status(exc), cbor2.dumps(body), out)
