"""The AWS protocols the fuzzer speaks, written by hand so that it controls every byte.

Each protocol (a :class:`tests.fuzz.fuzzer.WireProtocol`) turns an operation and its parameters into a
:class:`RawRequest` with the headers botocore sends, knows the malformed variants of its envelope
(``envelopes``: bodies, headers and paths a client could send instead; those the server must refuse with a
known code, such as a browser's, say which: ``RawRequest.expect``), and reads the AWS error code from an answer:

* :class:`AwsJson`: ``POST /`` with ``X-Amz-Target: <Prefix>.<Op>``, JSON 1.0 or 1.1; the code is
  ``__type`` or the ``x-amzn-ErrorType`` header;
* :class:`RpcV2Cbor`: ``POST /service/<Service>/operation/<Op>``, CBOR; the code is ``__type``;
* :class:`AwsQuery`: a form post ``Action=<Op>&Version=...&A.member.1=...``; the code is ``<Code>``.

Values from :mod:`tests.fuzz.values` and :mod:`tests.fuzz.mutate` are written in each protocol's own way
(timestamps as numbers, tag 1 or ISO 8601; ``RawNumber`` literally; lone surrogates as the invalid
UTF-8 a careless client would send in CBOR).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import math
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import cbor2
from botocore.model import ListShape, MapShape, ServiceModel, Shape, StructureShape

from tests.fuzz.mutate import RawNumber
from tests.fuzz.values import Stamp
from tests.fuzz.wire import Outcome, RawAnswer, RawRequest, request, well_formed_head, with_headers

Envelope = tuple[str, Callable[[str, Any], RawRequest]]  # (kind, build(operation, params))

# A header of the AWS SDKs that a browser's form cannot set: botocore signs with ``X-Amz-Date`` and
# ``Authorization`` (and sends ``amz-sdk-invocation-id`` even unsigned). The query protocol and the A/B API's
# administrative routes refuse a request without one of them (D9: api/query.py, experiments/guard.py); the
# value is not checked.
SDK_HEADER = ("X-Amz-Date", b"20261207T000000Z")


def refused(status: int, code: str) -> frozenset[Outcome]:
    return frozenset({(status, code)})


def browser_envelopes(build: Callable[[str, Any, str], RawRequest]) -> list[Envelope]:
    """A valid request as a web page could make the user's browser send it (D9, api/browsers.py): with another
    site's name as Host (DNS rebinding: 400 HostNotAllowed), or with another origin's ``Origin`` or a cross-site
    ``Sec-Fetch-Site`` (403 AccessDeniedException). Refused whatever the request asks, before it runs; only a
    head that HTTP does not allow (InvokeEndpoint's header members are drawn from any text) is refused before."""
    host, browser = refused(400, "HostNotAllowed"), refused(403, "AccessDeniedException")

    def envelope(kind: str, expect: frozenset[Outcome], **change: Any) -> Envelope:
        def make(op: str, p: Any) -> RawRequest:
            req = build(op, p, kind)
            return with_headers(req, expect=expect if well_formed_head(req) else None, **change)

        return kind, make

    return [
        envelope("browser-host", host=b"attacker.example", expect=host),
        envelope("browser-host", host=b"localhost.attacker.example:8080", expect=host),
        envelope("browser-origin", add=[("Origin", b"http://attacker.example")], expect=browser),
        envelope("browser-origin", add=[("Origin", b"null")], expect=browser),  # a sandboxed frame's origin
        envelope("browser-origin", add=[("Sec-Fetch-Site", b"cross-site")], expect=browser),
    ]


# --- JSON ----------------------------------------------------------------------------------------------


def json_bytes(value: Any) -> bytes:
    """JSON as a lenient client writes it: NaN and Infinity bare, big integers exact, ``RawNumber`` as its
    text, blobs in base64, lone surrogates as ``\\ud800`` escapes."""
    raws: list[str] = []

    def prepare(v: Any) -> Any:
        if isinstance(v, RawNumber):
            raws.append(v.text)
            return f"\x00raw{len(raws) - 1}\x00"
        if isinstance(v, bytes):
            return base64.b64encode(v).decode()
        if isinstance(v, dict):
            return {k: prepare(x) for k, x in v.items()}
        if isinstance(v, list):
            return [prepare(x) for x in v]
        return v

    text = json.dumps(prepare(value), ensure_ascii=True)
    for i, raw in enumerate(raws):
        text = text.replace(f'"\\u0000raw{i}\\u0000"', raw)
    return text.encode()


def deep_json(depth: int) -> bytes:
    return b'{"a":' + b"[" * depth + b"]" * depth + b"}"


def any_error_code(answer: RawAnswer) -> str | None:
    """The AWS error code wherever some protocol puts it: a refusal that comes before the protocol is known
    (an unknown path, a body too large) is answered in a generic shape."""
    code = answer.header("x-amzn-errortype")
    for body in (answer.json(), answer.cbor()):
        if isinstance(body, dict):
            code = code or body.get("__type") or body.get("code")
    m = re.search(rb"<Code>([^<]+)</Code>", answer.body)
    code = code or (m.group(1).decode("utf-8", "replace") if m else None)
    return code if isinstance(code, str) and code else None


def json_code(answer: RawAnswer) -> str | None:
    body = answer.json()
    code = body.get("__type") if isinstance(body, dict) else None
    return code if isinstance(code, str) and code else answer.header("x-amzn-errortype")


@dataclass(frozen=True)
class AwsJson:
    prefix: str  # SageMaker, GraniteServiceVersion20100801
    version: str  # 1.1, 1.0
    name: str = "json"

    def content_type(self) -> bytes:
        return f"application/x-amz-json-{self.version}".encode()

    def raw(
        self, op: str, body: bytes, kind: str = "", content_type: bytes | None = None, target: bytes | None = None
    ) -> RawRequest:
        headers = [
            ("X-Amz-Target", target if target is not None else f"{self.prefix}.{op}".encode()),
            ("Content-Type", content_type if content_type is not None else self.content_type()),
        ]
        return request("POST", "/", body, headers, label=f"{self.name} {op} {kind}".rstrip())

    def build(self, op: str, params: Any, kind: str = "") -> RawRequest:
        return self.raw(op, json_bytes(params), kind)

    def envelopes(self) -> list[Envelope]:
        def body(kind: str, make: Callable[[bytes], bytes]) -> Envelope:
            return kind, lambda op, p: self.raw(op, make(json_bytes(p)), kind)

        return [
            body("body-truncated", lambda b: b[: max(1, len(b) // 2)]),
            body("body-invalid-utf8", lambda b: b[:-1] + b',"x":"\xff\xfe"}' if b.endswith(b"}") else b"\xff"),
            body("body-not-object", lambda b: b"[" + b + b"]"),
            body("body-not-object", lambda b: b'"text"'),
            body("body-empty", lambda b: b""),
            body("body-trailing", lambda b: b + b"}{"),
            body("body-bom", lambda b: b"\xef\xbb\xbf" + b),
            body("body-duplicate-keys", lambda b: b"{" + b[1:-1] + (b"," if len(b) > 2 else b"") + b[1:-1] + b"}"),
            body("body-deep-nesting", lambda b: deep_json(100_000)),
            body("body-nested-1000", lambda b: deep_json(1000)),
            ("content-type", lambda op, p: self.raw(op, json_bytes(p), "content-type", b"text/plain")),
            ("content-type", lambda op, p: self.raw(op, json_bytes(p), "content-type", b"application/cbor")),
            ("content-type", lambda op, p: self.raw(op, json_bytes(p), "content-type", b"")),
            (
                "target",
                lambda op, p: self.raw(op, json_bytes(p), "target", target=f"{self.prefix}.{op.lower()}".encode()),
            ),
            ("target", lambda op, p: self.raw(op, json_bytes(p), "target", target=f"{self.prefix}.".encode())),
            ("target", lambda op, p: self.raw(op, json_bytes(p), "target", target=f"Other.{op}".encode())),
            (
                "target",
                lambda op, p: self.raw(
                    op, json_bytes(p), "target", target=f"{self.prefix}.{op}.x\xff".encode("latin-1")
                ),
            ),
            *browser_envelopes(self.build),
        ]

    def error_code(self, answer: RawAnswer) -> str | None:
        return json_code(answer)

    def well_formed(self, answer: RawAnswer) -> str | None:
        return strict_json_object(answer.body)


def strict_json_object(body: bytes) -> str | None:
    """Why ``body`` is not a JSON object a strict parser takes (no NaN or Infinity), or None."""

    def refuse(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    try:
        value = json.loads(body, parse_constant=refuse)
    except ValueError as exc:
        return f"the answer is not strict JSON: {exc}"
    return None if isinstance(value, dict) else "the answer is not a JSON object"


# --- CBOR ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _RawCbor:
    data: bytes


def _cbor_default(encoder: Any, value: Any) -> None:
    if isinstance(value, _RawCbor):
        encoder.write(value.data)
        return
    raise TypeError(f"cannot encode {type(value).__name__} as CBOR")


def _text_header(n: int) -> bytes:
    if n < 24:
        return bytes([0x60 + n])
    if n < 256:
        return bytes([0x78, n])
    if n < 65536:
        return b"\x79" + struct.pack(">H", n)
    return b"\x7a" + struct.pack(">I", n)


def _to_cbor(v: Any) -> Any:
    if isinstance(v, Stamp):
        return cbor2.CBORTag(1, float(v))
    if isinstance(v, RawNumber):
        return float(v.text)
    if isinstance(v, str):
        try:
            v.encode()
        except UnicodeEncodeError:
            data = v.encode("utf-8", "surrogatepass")
            return _RawCbor(_text_header(len(data)) + data)
        return v
    if isinstance(v, dict):
        return {_to_cbor(k) if isinstance(k, str) else k: _to_cbor(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_to_cbor(x) for x in v]
    return v


def cbor_bytes(value: Any) -> bytes:
    return bytes(cbor2.dumps(_to_cbor(value), default=_cbor_default))


@dataclass(frozen=True)
class RpcV2Cbor:
    service: str  # GraniteServiceVersion20100801
    name: str = "cbor"

    def raw(self, op: str, body: bytes, kind: str = "", path: str | None = None) -> RawRequest:
        headers = [
            ("Content-Type", b"application/cbor"),
            ("Accept", b"application/cbor"),
            ("smithy-protocol", b"rpc-v2-cbor"),
        ]
        url = path if path is not None else f"/service/{self.service}/operation/{op}"
        return request("POST", url, body, headers, label=f"{self.name} {op} {kind}".rstrip())

    def build(self, op: str, params: Any, kind: str = "") -> RawRequest:
        return self.raw(op, cbor_bytes(params), kind)

    def envelopes(self) -> list[Envelope]:
        def body(kind: str, make: Callable[[Any], bytes]) -> Envelope:
            return kind, lambda op, p: self.raw(op, make(p), kind)

        def deep(n: int) -> bytes:
            return b"\xa1\x61a" + b"\x81" * n + b"\x80"

        return [
            body("body-truncated", lambda p: cbor_bytes(p)[: max(1, len(cbor_bytes(p)) // 2)]),
            body("body-garbage", lambda p: b"\xff\xff\xff"),
            body("body-not-map", lambda p: cbor_bytes([p])),
            body("body-not-map", lambda p: cbor_bytes("text")),
            body("body-empty", lambda p: b""),
            body("body-trailing", lambda p: cbor_bytes(p) + b"\x00"),
            body("body-deep-nesting", lambda p: deep(100_000)),
            body("body-nested-1000", lambda p: deep(1000)),
            body(
                "cbor-indefinite",
                lambda p: b"\xbf" + cbor_bytes(p)[1:] + b"\xff" if isinstance(p, dict) else b"\xbf\xff",
            ),
            body("cbor-undefined", lambda p: cbor2.dumps({**(p if isinstance(p, dict) else {}), "X": cbor2.undefined})),
            body("cbor-unknown-tag", lambda p: cbor2.dumps(cbor2.CBORTag(9999, _to_cbor(p)), default=_cbor_default)),
            body(
                "cbor-tag1-string",
                lambda p: cbor_bytes({**(p if isinstance(p, dict) else {}), "EndTime": cbor2.CBORTag(1, "soon")}),
            ),
            body("cbor-bytes-keys", lambda p: cbor2.dumps({b"Namespace": b"x", 7: 1})),
            body("cbor-nan-half", lambda p: b"\xa1\x65Value\xf9\x7e\x00"),
            body("cbor-huge-length", lambda p: b"\xa1\x7b\x7f\xff\xff\xff\xff\xff\xff\xff"),
            ("path", lambda op, p: self.raw(op, cbor_bytes(p), "path", f"/service/Other/operation/{op}")),
            ("path", lambda op, p: self.raw(op, cbor_bytes(p), "path", f"/service/{self.service}/operation/")),
            ("path", lambda op, p: self.raw(op, cbor_bytes(p), "path", f"/service/{self.service}/operation/{op}/x")),
            (
                "path",
                lambda op, p: self.raw(op, cbor_bytes(p), "path", f"/service/{self.service}/operation/%ff{quote(op)}"),
            ),
            # Without smithy-protocol, as a browser's text/plain form post would be (D9: api/cbor.py).
            ("no-smithy-protocol", lambda op, p: self.without_protocol(op, p, b"application/cbor")),
            ("no-smithy-protocol", lambda op, p: self.without_protocol(op, p, b"text/plain")),
            *browser_envelopes(self.build),
        ]

    def without_protocol(self, op: str, params: Any, content_type: bytes) -> RawRequest:
        req = self.build(op, params, "no-smithy-protocol")
        return with_headers(
            req,
            drop=("smithy-protocol", "Content-Type"),
            add=[("Content-Type", content_type)],
            expect=refused(400, "SerializationException"),
        )

    def error_code(self, answer: RawAnswer) -> str | None:
        body = answer.cbor()
        code = body.get("__type") if isinstance(body, dict) else None
        return code if isinstance(code, str) and code else None

    def well_formed(self, answer: RawAnswer) -> str | None:
        body = answer.cbor()
        if not isinstance(body, dict):
            return "the answer is not a CBOR map"
        floats = [x for x in _leaves(body) if isinstance(x, float) and not math.isfinite(x)]
        return "the answer holds a non-finite number" if floats else None


def _leaves(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [x for v in value.values() for x in _leaves(v)]
    if isinstance(value, list):
        return [x for v in value for x in _leaves(v)]
    return [value]


# --- query ---------------------------------------------------------------------------------------------


def _iso(ts: float) -> str:
    try:
        return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    except (ValueError, OverflowError, OSError):
        return repr(ts)


def query_pairs(value: Any, shape: Shape | None, prefix: str = "") -> list[tuple[str, str]]:
    """The flat form of ``value`` as botocore's query serializer writes it for ``shape``: members as ``A.B``,
    lists as ``A.member.N``, maps as ``A.entry.N.key`` and ``.value``; values as text. Members the shape
    does not have (a mutation's extra member) are written as a structure's would be."""
    if isinstance(value, dict):
        out: list[tuple[str, str]] = []
        if isinstance(shape, MapShape):
            for i, (k, v) in enumerate(value.items(), start=1):
                out += [(f"{prefix}.entry.{i}.key", str(k)), *query_pairs(v, shape.value, f"{prefix}.entry.{i}.value")]
            return out
        members = shape.members if isinstance(shape, StructureShape) else {}
        for k, v in value.items():
            out += query_pairs(v, members.get(k), f"{prefix}.{k}" if prefix else str(k))
        return out
    if isinstance(value, list):
        if not value:
            return [(prefix, "")]
        item = shape.member if isinstance(shape, ListShape) else None
        return [pair for i, v in enumerate(value, start=1) for pair in query_pairs(v, item, f"{prefix}.member.{i}")]
    if value is None:
        return []
    if isinstance(value, Stamp):
        text = _iso(float(value))
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, RawNumber):
        text = value.text
    elif isinstance(value, bytes):
        text = base64.b64encode(value).decode()
    else:
        text = str(value)
    return [(prefix, text)]


def form(pairs: list[tuple[str, str]]) -> bytes:
    return "&".join(f"{quote(k, safe='')}={quote(v, safe='', errors='surrogatepass')}" for k, v in pairs).encode()


@dataclass(frozen=True)
class AwsQuery:
    model: ServiceModel
    other_actions: tuple[str, ...] = ()  # operations of the model that modelgate does not serve
    name: str = "query"

    def raw(self, op: str, body: bytes, kind: str = "", method: str = "POST") -> RawRequest:
        label = f"{self.name} {op} {kind}".rstrip()
        if method == "GET":
            return request("GET", "/?" + body.decode("latin-1"), b"", [SDK_HEADER], label=label)
        headers = [("Content-Type", b"application/x-www-form-urlencoded; charset=utf-8"), SDK_HEADER]
        return request(method, "/", body, headers, label=label)

    def pairs(self, op: str, params: Any) -> list[tuple[str, str]]:
        shape = self.model.operation_model(op).input_shape if op in self.model.operation_names else None
        return [("Action", op), ("Version", self.model.api_version), *query_pairs(params, shape)]

    def build(self, op: str, params: Any, kind: str = "") -> RawRequest:
        return self.raw(op, form(self.pairs(op, params)), kind)

    def envelopes(self) -> list[Envelope]:
        def body(kind: str, make: Callable[[str, Any], bytes], method: str = "POST") -> Envelope:
            return kind, lambda op, p: self.raw(op, make(op, p), kind, method)

        other = self.other_actions[:1] or ("PutDashboard",)
        return [
            body("query-bad-escape", lambda op, p: form(self.pairs(op, p)) + b"&X=%zz%f&%"),
            body("query-invalid-utf8", lambda op, p: form(self.pairs(op, p)) + b"&Namespace=%ff%fe"),
            body("query-no-action", lambda op, p: form(self.pairs(op, p)[1:])),
            body("query-other-action", lambda op, p: form([("Action", other[0]), *self.pairs(op, p)[1:]])),
            body("query-unknown-action", lambda op, p: form([("Action", op + "X"), *self.pairs(op, p)[1:]])),
            body("query-duplicate", lambda op, p: form(self.pairs(op, p) + self.pairs(op, p)[2:])),
            body(
                "query-member-gap",
                lambda op, p: form([(re.sub(r"member\.1\b", "member.2", k), v) for k, v in self.pairs(op, p)]),
            ),
            body(
                "query-member-zero",
                lambda op, p: form([(k.replace("member.1", "member.0"), v) for k, v in self.pairs(op, p)]),
            ),
            body(
                "query-many-members",
                lambda op, p: form([*self.pairs(op, p), *((f"AlarmNames.member.{i}", "a") for i in range(1, 3000))]),
            ),
            body("query-empty", lambda op, p: b""),
            body("query-json", lambda op, p: json_bytes(p)),
            body("query-get", lambda op, p: form(self.pairs(op, p)), "GET"),
            body("query-put", lambda op, p: form(self.pairs(op, p)), "PUT"),
            # Without an SDK header, as a browser's form post (or a link, for GET) would be (D9: api/query.py).
            ("no-sdk-header", lambda op, p: self.without_sdk_header(op, p, "POST")),
            ("no-sdk-header", lambda op, p: self.without_sdk_header(op, p, "GET")),
            *browser_envelopes(self.build),
        ]

    def without_sdk_header(self, op: str, params: Any, method: str) -> RawRequest:
        req = self.raw(op, form(self.pairs(op, params)), "no-sdk-header", method)
        return with_headers(req, drop=(SDK_HEADER[0],), expect=refused(403, "MissingAuthenticationToken"))

    def error_code(self, answer: RawAnswer) -> str | None:
        m = re.search(rb"<Code>([^<]+)</Code>", answer.body)
        return m.group(1).decode("utf-8", "replace") if m else None

    def well_formed(self, answer: RawAnswer) -> str | None:
        import xml.etree.ElementTree as ET

        try:
            ET.fromstring(answer.body)
        except ET.ParseError as exc:
            return f"the answer is not XML: {exc}"
        return None
