"""The AWS query protocol: form-encoded ``Action=<Op>&Version=...&A.member.1.B=...``, XML answers.

Served over any :class:`JsonRpcService`: the flat form is folded into the JSON-shaped params the handlers
take by walking botocore's input shape (lists as ``Name.member.N``, maps as ``Name.entry.N.key/value``,
ISO 8601 timestamps); the result is rendered as ``<OpResponse><OpResult>...</OpResult>
<ResponseMetadata>`` by walking the output shape. Errors are ``<ErrorResponse>`` with the query code
(reference §1.2) that botocore's ``QueryParser`` reads.

A form-urlencoded POST is what a browser's HTML form sends, to any address, without asking (no CORS
preflight): a web page could otherwise put metric data, alarms and alarm states on a user's loopback
server. Every AWS SDK sends headers a form cannot set (``Authorization`` and ``X-Amz-Date`` when signing,
``amz-sdk-invocation-id`` always, also unsigned), so a request with none of them is refused
(``MissingAuthenticationToken``, 403, as AWS answers an unsigned query request). See api/browsers.py.
"""

from __future__ import annotations

import datetime as dt
import html
import logging
import re
from typing import Any
from urllib.parse import parse_qsl

from modelgate.api.awsjson import InvalidInput, JsonRpcService, error_code, error_status
from modelgate.api.http import Request, Send, new_request_id, send_response
from modelgate.api.shape_model import ListShape, MapShape, Shape, StructureShape
from modelgate.api.shapes import timestamp_seconds
from modelgate.errors import InternalFailure, MissingAuthenticationToken, ModelgateError, UnknownOperation

log = logging.getLogger(__name__)

CONTENT_TYPE = b"text/xml"
SDK_HEADERS = ("authorization", "x-amz-date", "amz-sdk-invocation-id")  # one of them on every SDK request
_MISSING = object()


# What XML 1.0 cannot hold, not even as a character reference: the C0 controls but tab, LF and CR, lone
# surrogates, U+FFFE and U+FFFF. A metric name (any string, in CloudWatch's model) or a message quoting a
# value may have them; written raw they made the answer unparseable (botocore's XML parser refused it).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def escape(text: str) -> str:
    """XML character data: ``&``, ``<`` and ``>`` escaped, as ``xml.sax.saxutils.escape`` does (which imports
    urllib.request and http.client: about 1.2 MB of the gateway's RSS), and what XML cannot hold as U+FFFD."""
    return _NOT_XML.sub("\ufffd", html.escape(text, quote=False))


def _iso(ts: float) -> str:
    t = dt.datetime.fromtimestamp(ts, dt.UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def _parse_time(text: str) -> float:
    seconds = timestamp_seconds(text)
    if seconds is None:
        raise ValueError(text)
    return seconds


# No input shape nests deeper than this many dotted parts (CloudWatch's deepest is 9); a longer name cannot
# name a member, and taking all its prefixes would cost time quadratic in its length.
_MAX_PARTS = 32


class _Form:
    def __init__(self, flat: dict[str, str], validation_code: str) -> None:
        self.flat = flat
        self.code = validation_code
        self.prefixes: set[str] = set()
        for key in flat:
            parts = key.split(".", _MAX_PARTS)[:_MAX_PARTS]
            for i in range(1, len(parts) + 1):
                self.prefixes.add(".".join(parts[:i]))

    def decode(self, shape: Shape, key: str) -> Any:
        if key and key not in self.prefixes:
            return _MISSING
        kind = shape.type_name
        if kind == "structure":
            assert isinstance(shape, StructureShape)
            out = {}
            for name, member in shape.members.items():
                value = self.decode(member, f"{key}.{name}" if key else name)
                if value is not _MISSING:
                    out[name] = value
            return out
        if kind == "list":
            assert isinstance(shape, ListShape)
            items: list[Any] = []
            while (value := self.decode(shape.member, f"{key}.member.{len(items) + 1}")) is not _MISSING:
                items.append(value)
            return items
        if kind == "map":
            assert isinstance(shape, MapShape)
            entries: dict[str, Any] = {}
            i = 1
            while f"{key}.entry.{i}" in self.prefixes:
                k = self.flat.get(f"{key}.entry.{i}.key", "")
                entries[k] = self.decode(shape.value, f"{key}.entry.{i}.value")
                i += 1
            return entries
        text = self.flat.get(key)
        if text is None:
            return _MISSING
        try:
            if kind in ("integer", "long"):
                return int(text)
            if kind in ("double", "float"):
                return float(text)
            if kind == "boolean":
                return text.lower() == "true"
            if kind == "timestamp":
                return _parse_time(text)
        except ValueError as exc:
            raise InvalidInput(self.code, f"The value {text} for parameter {key} is invalid.") from exc
        return text


def _xml(shape: Shape | None, value: Any) -> str:
    if shape is None or value is None:
        return ""
    kind = shape.type_name
    if kind == "structure":
        assert isinstance(shape, StructureShape)
        parts = []
        for name, member in shape.members.items():
            if name in value and value[name] is not None:
                tag = member.serialization.get("name", name)
                parts.append(f"<{tag}>{_xml(member, value[name])}</{tag}>")
        return "".join(parts)
    if kind == "list":
        assert isinstance(shape, ListShape)
        return "".join(f"<member>{_xml(shape.member, v)}</member>" for v in value)
    if kind == "map":
        assert isinstance(shape, MapShape)
        return "".join(
            f"<entry><key>{escape(str(k))}</key><value>{_xml(shape.value, v)}</value></entry>" for k, v in value.items()
        )
    if kind == "timestamp":
        return _iso(float(value))
    if kind == "boolean":
        return "true" if value else "false"
    if kind in ("double", "float"):
        return repr(float(value))
    return escape(str(value))


async def handle_aws_query(service: JsonRpcService, request: Request, send: Send) -> None:
    request_id = new_request_id()
    namespace = service.model.metadata.get("xmlNamespace", "")
    try:
        if not any(request.header(name) is not None for name in SDK_HEADERS):
            raise MissingAuthenticationToken(
                "Query-protocol requests must carry Authorization, X-Amz-Date or amz-sdk-invocation-id, as every "
                "AWS SDK sends them and a browser's form post cannot (sign the request, or add one of them)."
            )
        raw = request.body if request.method == "POST" else request.query_string
        flat = dict(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
        action = flat.pop("Action", "")
        flat.pop("Version", None)
        if action not in service.model.operation_names:
            raise UnknownOperation(f"Could not find operation {action or '(none)'}.")
        op = service.model.operation_model(action)
        params: Any = {}
        if op.input_shape is not None:
            decoded = _Form(flat, service.validation_code).decode(op.input_shape, "")
            params = {} if decoded is _MISSING else decoded
        result = await service.call(action, params)
        inner = ""
        if op.output_shape is not None:
            wrapper = op.output_shape.serialization.get("resultWrapper", f"{action}Result")
            inner = f"<{wrapper}>{_xml(op.output_shape, result)}</{wrapper}>"
        body = (
            f'<{action}Response xmlns="{namespace}">{inner}'
            f"<ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata></{action}Response>"
        )
        await _send(send, 200, body, request_id)
    except ModelgateError as exc:
        await _send_error(service, send, exc, request_id, namespace)
    except Exception:
        log.exception("unhandled error in query request")
        await _send_error(service, send, InternalFailure("An internal error occurred."), request_id, namespace)


async def _send(send: Send, status: int, body: str, request_id: str) -> None:
    headers = [(b"content-type", CONTENT_TYPE), (b"x-amzn-requestid", request_id.encode())]
    await send_response(send, status, body.encode(), headers)


async def _send_error(service: JsonRpcService, send: Send, exc: ModelgateError, request_id: str, ns: str) -> None:
    code = error_code(exc)
    wire = (service.query_error_codes or {}).get(code, code)
    fault = "Sender" if exc.sender_fault else "Receiver"
    body = (
        f'<ErrorResponse xmlns="{ns}"><Error><Type>{fault}</Type><Code>{escape(wire)}</Code>'
        f"<Message>{escape(exc.message)}</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>"
    )
    await _send(send, error_status(exc), body, request_id)
