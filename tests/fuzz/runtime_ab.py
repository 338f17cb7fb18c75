"""The runtime's InvokeEndpoint (rest-json: the endpoint in the path, headers, the body) and the A/B REST routes
(``/invocation``, ``/conversion``, ``/stats``, ``/register``, ``/promote``) as fuzz targets.

InvokeEndpoint's input comes from botocore's ``sagemaker-runtime`` model. The A/B routes have no botocore
model: :data:`AB_MODEL` writes their JSON fields as one (from ``src/modelgate/experiments/http.py``), so the
same strategies and mutations apply. Both name the endpoints the module deploys (:data:`ENDPOINTS`: echo
containers, one of them always failing) most of the time, and bodies steer the echo container (a status,
a short sleep). A 503 ``ServiceUnavailable`` (no healthy instance) is a legitimate answer here; a 424
``ModelError`` is a 4xx like the others.

A/B requests are sent as clients send them (D9): ``Content-Type: application/json``, and ``/register`` and
``/promote`` with an AWS protocol header (``X-Amz-Date``). The envelopes send other types (a state-changing
route must refuse them with 415 UnsupportedMediaType), the administrative routes without that header (403
AccessDenied), other methods, and what a browser would send (another Host or Origin: refused with their codes).

Conversions are made as a client makes them: :class:`AbWorld` keeps the inferences the /invocation answers
issued (endpoint, id, user, variant), and most valid conversions name one not yet converted, so that they are
accepted; a share is forged (another user's inference, an unknown id, one already converted, one whose
invocation failed, the wrong variant). The outcome of each valid conversion is known in advance
(:meth:`AbWorld.conversion_outcome`: accepted, or refused with its code) and the answer must be that one.
The state a rejected ``/promote`` or ``/register`` must not change: the endpoints' desired variant weights
and each experiment's id and parameters (``/stats``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import botocore.session
from botocore.model import ServiceModel
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from tests.fuzz.fuzzer import Target
from tests.fuzz.protocols import SDK_HEADER, browser_envelopes, json_bytes, json_code, refused, strict_json_object
from tests.fuzz.values import UNIFORM, Profile, ShapeStrategies, weighted
from tests.fuzz.wire import ACCEPTED, Client, Outcome, RawAnswer, RawRequest, request, with_headers
from tests.fuzz.world import Pool, fresh, next_name, pick, reference

ENDPOINTS = {"fz-ab": ("a", "b"), "fz-bad": ("bad",)}
VARIANTS = ["a", "b", "bad", "zz"]
USERS = [f"u{i}" for i in range(20)]
BODIES = [b"hello", b'{"x": 1}', b"1,2,3", b"status:404", b"status:500", b"sleep:0.01", b"", "é".encode()]
CONTENT_TYPES = ["application/json", "text/csv", "application/x-npy", "text/plain; charset=utf-8"]
UNAVAILABLE = frozenset({(503, "ServiceUnavailable")})
ADMINISTRATIVE = ("register", "promote")  # the routes that need an AWS protocol header
# After an endpoint's update, how long the gateway may take to register it anew (its poll is 1 s; the
# machine may be busy): until then a new experiment may appear on its own (see AbState).
SETTLE_SECONDS = 5.0


def _ab_model() -> dict[str, Any]:
    shapes: dict[str, Any] = {
        "EndpointName": {"type": "string", "min": 1, "max": 63, "pattern": "^[a-zA-Z0-9](-*[a-zA-Z0-9])*"},
        "Text": {"type": "string", "max": 256},
        "Share": {"type": "double", "min": 0, "max": 1},
        "Count": {"type": "integer", "min": 1, "max": 100000},
        "Strategy": {"type": "string", "enum": ["WeightedSampling", "EpsilonGreedy", "UCB1", "ThompsonSampling"]},
    }
    inputs = {
        "invocation": (["endpoint_name", "data"], ["content_type", "user_id", "inference_id", "endpoint_variant"]),
        "conversion": (["endpoint_name"], ["user_id", "inference_id", "reward", "endpoint_variant"]),
        "stats": (["endpoint_name"], []),
        "register": (["endpoint_name"], ["strategy", "epsilon", "warmup", "alpha", "horizon", "looks", "control"]),
        "promote": (["endpoint_name"], ["endpoint_variant"]),
    }
    member_shapes = {"endpoint_name": "EndpointName", "reward": "Share", "epsilon": "Share", "alpha": "Share"}
    member_shapes |= {"warmup": "Count", "horizon": "Count", "looks": "Count", "strategy": "Strategy"}
    operations = {}
    for route, (required, optional) in inputs.items():
        members = {m: {"shape": member_shapes.get(m, "Text")} for m in [*required, *optional]}
        shapes[f"{route}Input"] = {"type": "structure", "required": required, "members": members}
        operations[route] = {
            "name": route,
            "http": {"method": "POST", "requestUri": f"/{route}"},
            "input": {"shape": f"{route}Input"},
        }
    return {
        "metadata": {"protocol": "rest-json", "apiVersion": "2026-01-01", "serviceId": "AB"},
        "operations": operations,
        "shapes": shapes,
    }


AB_MODEL = ServiceModel(_ab_model(), "ab-testing")


@dataclass(frozen=True)
class Runtime:
    """InvokeEndpoint as botocore's rest-json serializer writes it, member by member from the shape."""

    shape: Any
    name: str = "runtime"

    def raw(
        self,
        params: Any,
        kind: str,
        method: str = "POST",
        path: str | None = None,
        extra: list[tuple[str, bytes]] | None = None,
        body: bytes | None = None,
    ) -> RawRequest:
        params = params if isinstance(params, dict) else {}
        endpoint = params.get("EndpointName", "")
        url = (
            path
            if path is not None
            else f"/endpoints/{quote(str(endpoint), safe='', errors='surrogatepass')}/invocations"
        )
        headers = []
        for member, sub in self.shape.members.items():
            if sub.serialization.get("location") == "header" and params.get(member) is not None:
                value = params[member]
                text = (
                    value
                    if isinstance(value, str)
                    else json.dumps(value)
                    if not isinstance(value, bytes)
                    else value.decode("latin-1")
                )
                raw = text.replace("\r", " ").replace("\n", " ").encode("utf-8", "surrogatepass")
                headers.append((sub.serialization["name"], raw))
        headers += extra or []
        payload = params.get("Body", b"")
        if body is None:
            body = payload if isinstance(payload, bytes) else json_bytes(payload)
        return request(method, url, body, headers, label=f"{self.name} InvokeEndpoint {kind}".rstrip())

    def build(self, op: str, params: Any, kind: str = "") -> RawRequest:
        return self.raw(params, kind)

    def envelopes(self) -> list[tuple[str, Callable[[str, Any], RawRequest]]]:
        def name(p: Any) -> str:
            return quote(str(p.get("EndpointName", "x")), safe="") if isinstance(p, dict) else "x"

        return [
            ("path", lambda op, p: self.raw(p, "path", path=f"/endpoints/{name(p)}/invocation")),
            ("path", lambda op, p: self.raw(p, "path", path=f"/endpoints/{name(p)}")),
            ("path", lambda op, p: self.raw(p, "path", path=f"/endpoints/{name(p)}/invocations/x")),
            ("path", lambda op, p: self.raw(p, "path", path="/endpoints//invocations")),
            ("path", lambda op, p: self.raw(p, "path", path="/endpoints/%ff%fe/invocations")),
            ("path", lambda op, p: self.raw(p, "path", path=f"/endpoints/{name(p)}%2Finvocations")),
            ("path", lambda op, p: self.raw(p, "path", path="/endpoints/%2e%2e/invocations")),
            ("path", lambda op, p: self.raw(p, "path", path=f"/endpoints/{name(p)}/invocations?x=%00")),
            ("method", lambda op, p: self.raw(p, "method", method="GET")),
            ("method", lambda op, p: self.raw(p, "method", method="PUT")),
            ("method", lambda op, p: self.raw(p, "method", method="DELETE")),
            ("header-bytes", lambda op, p: self.raw(p, "header-bytes", extra=[("Content-Type", b"text/\xe9\xff")])),
            (
                "header-bytes",
                lambda op, p: self.raw(p, "header-bytes", extra=[("X-Amzn-SageMaker-Custom-Attributes", b"\xe9t\xe9")]),
            ),
            (
                "header-bytes",
                lambda op, p: self.raw(p, "header-bytes", extra=[("X-Amzn-SageMaker-Target-Variant", b"\x00a")]),
            ),
            (
                "header-duplicate",
                lambda op, p: self.raw(
                    p, "header-duplicate", extra=[("Content-Type", b"a/b"), ("Content-Type", b"c/d")]
                ),
            ),
            ("body-too-large", lambda op, p: self.raw(p, "body-too-large", body=b"x" * (6 * 1024 * 1024 + 1))),
            *browser_envelopes(self.build),
        ]

    def error_code(self, answer: RawAnswer) -> str | None:
        return json_code(answer)

    def well_formed(self, answer: RawAnswer) -> str | None:
        return None


@dataclass(frozen=True)
class AbRest:
    """The A/B routes: ``POST /<route>`` with a JSON object."""

    name: str = "ab"

    def raw(
        self,
        op: str,
        body: bytes,
        kind: str = "",
        method: str = "POST",
        content_type: bytes | None = b"application/json",
    ) -> RawRequest:
        headers = [] if content_type is None else [("Content-Type", content_type)]
        if op in ADMINISTRATIVE:  # with an AWS protocol header, as `modelgate ab-promote` sends them (D9)
            headers.append(SDK_HEADER)
        return request(method, f"/{op}", body, headers, label=f"{self.name} /{op} {kind}".rstrip())

    def build(self, op: str, params: Any, kind: str = "") -> RawRequest:
        return self.raw(op, json_bytes(params), kind)

    def envelopes(self) -> list[tuple[str, Callable[[str, Any], RawRequest]]]:
        def body(kind: str, make: Callable[[bytes], bytes]) -> tuple[str, Callable[[str, Any], RawRequest]]:
            return kind, lambda op, p: self.raw(op, make(json_bytes(p)), kind)

        def typed(content_type: bytes | None, json: bool = False) -> tuple[str, Callable[[str, Any], RawRequest]]:
            """A body of another type: a state-changing route refuses it (415), /stats (read-only) takes it."""

            def make(op: str, p: Any) -> RawRequest:
                req = self.raw(op, json_bytes(p), "content-type", content_type=content_type)
                if json or op == "stats":
                    return req
                return with_headers(req, expect=refused(415, "UnsupportedMediaType"))

            return "content-type", make

        def unsigned(op: str, p: Any) -> RawRequest:
            """Without the AWS protocol header: an administrative route refuses it (403), the others take it."""
            req = self.raw(op, json_bytes(p), "no-admin-header")
            if op not in ADMINISTRATIVE:
                return req
            return with_headers(req, drop=(SDK_HEADER[0],), expect=refused(403, "AccessDenied"))

        return [
            typed(b"text/plain"),
            typed(None),
            typed(b"application/json; charset=utf-8", json=True),
            typed(b"application/x-www-form-urlencoded"),
            typed(b"APPLICATION/JSON", json=True),
            ("no-admin-header", unsigned),
            *browser_envelopes(self.build),
            ("method", lambda op, p: self.raw(op, json_bytes(p), "method", method="PUT")),
            ("method", lambda op, p: self.raw(op, json_bytes(p), "method", method="GET")),
            ("method", lambda op, p: self.raw(op, json_bytes(p), "method", method="DELETE")),
            body("body-truncated", lambda b: b[: max(1, len(b) // 2)]),
            body("body-invalid-utf8", lambda b: b'{"endpoint_name": "\xff\xfe"}'),
            body("body-not-object", lambda b: b"[" + b + b"]"),
            body("body-empty", lambda b: b""),
            body("body-trailing", lambda b: b + b"}{"),
            body(
                "body-deep-nesting",
                lambda b: b'{"endpoint_name": "fz-ab", "data": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
            ),
        ]

    def error_code(self, answer: RawAnswer) -> str | None:
        body = answer.json()
        code = body.get("code") or body.get("__type") if isinstance(body, dict) else None
        return code if isinstance(code, str) and code else None

    def well_formed(self, answer: RawAnswer) -> str | None:
        return strict_json_object(answer.body)


@dataclass(frozen=True)
class AbState:
    """What a rejected /promote or /register must leave as it was. An endpoint whose weights changed is
    Updating, then InService again, and the gateway registers it anew then (with its tags' parameters, as a
    new experiment), at its next registration poll (1 s): a different experiment is a change only when no
    endpoint was modified in between, and when every endpoint was settled (InService, and last modified
    :data:`SETTLE_SECONDS` ago) in both states."""

    weights: tuple[Any, ...]
    modified: tuple[Any, ...]
    experiment: Any
    settled: bool = True

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, AbState):
            return NotImplemented
        unsettled = self.modified != other.modified or not (self.settled and other.settled)
        return self.weights == other.weights and (self.experiment == other.experiment or unsettled)

    def __hash__(self) -> int:
        return hash(self.weights)


@dataclass
class Served:
    """An inference an /invocation answer issued: to whom, by which variant, and whether a conversion was
    credited to it (the fuzz's experiments allow one: ``max_rewards_per_inference`` is never registered)."""

    user_id: str
    variant: Any
    converted: bool = False


UNKNOWN_PREFIX = "fz-unknown-"  # inference ids no invocation sends: the server never issued them
# How a valid conversion names its inference (out of 10): one the fuzzer was issued and has not converted (as
# a client does), or a forged one: another user's, an unknown id, one already converted, a failed invocation's,
# with the wrong variant; or as the shape drew it (ids of its own, mostly unknown).
CONVERSIONS = ["issued"] * 5 + ["other-user", "unknown", "repeat", "failed", "drawn"]


@dataclass
class AbWorld:
    """The inferences the fuzzer was issued (/invocation's 2xx answers), and the failed invocations whose ids it
    chose, so that conversions can name them honestly or forge them and the outcome is known in advance."""

    client: Client
    inference_ids: Pool = field(default_factory=Pool)
    served: dict[tuple[str, str], Served] = field(default_factory=dict)  # (endpoint, inference id)
    failed: dict[tuple[str, str], str] = field(default_factory=dict)  # (endpoint, inference id) -> user id

    def snapshot(self, endpoint: Any) -> Hashable:
        """The endpoints' desired variant weights, and the named endpoint's experiment id and parameters."""
        weights, modified, settled = [], [], True
        for name in ENDPOINTS:
            ep = self.client.json_call("SageMaker.DescribeEndpoint", {"EndpointName": name})
            weights.append(tuple(sorted((v["VariantName"], v.get("DesiredWeight")) for v in ep["ProductionVariants"])))
            modified.append(ep["LastModifiedTime"])
            recent = time.time() - float(ep["LastModifiedTime"]) < SETTLE_SECONDS
            settled = settled and ep["EndpointStatus"] == "InService" and not recent
        experiment: Any = None
        if endpoint in ENDPOINTS:
            answer = self.client.send(AbRest().raw("stats", json.dumps({"endpoint_name": endpoint}).encode(), "probe"))
            stats = answer.json() if answer is not None and answer.status == 200 else None
            keys = ("experiment_id", "strategy", "epsilon", "warmup", "alpha", "horizon", "looks", "control")
            experiment = tuple(stats.get(k) for k in keys) if isinstance(stats, dict) else answer and answer.status
        return AbState(tuple(weights), tuple(modified), experiment, settled)

    def issued(self, answer: RawAnswer) -> None:
        """A 2xx /invocation answer: its inference can be credited once, for its user."""
        body = answer.json()
        if not isinstance(body, dict):
            return
        key, user = (body.get("endpoint_name"), body.get("inference_id")), body.get("user_id")
        if all(isinstance(x, str) for x in (*key, user)):
            self.served[key] = Served(user, body.get("endpoint_variant"))
            self.inference_ids.add(key[1])

    def invocation_failed(self, params: Any, answer: RawAnswer) -> None:
        """A valid /invocation that the model failed (424 ModelError): the server counts it and records its
        inference as failed, under the caller's id and user when it chose them."""
        if not isinstance(params, dict) or answer.status != 424 or AbRest().error_code(answer) != "ModelError":
            return
        key, user = (params.get("endpoint_name"), params.get("inference_id")), params.get("user_id")
        if all(isinstance(x, str) and x for x in (*key, user)) and key not in self.served:
            self.failed[key] = user
            self.inference_ids.add(key[1])

    def credited(self, answer: RawAnswer) -> None:
        """A 2xx /conversion answer: its inference is credited."""
        body = answer.json()
        served = (
            self.served.get((body.get("endpoint_name"), body.get("inference_id"))) if isinstance(body, dict) else None
        )
        if served is not None:
            served.converted = True

    def conversions(self, drawn: SearchStrategy[Any]) -> SearchStrategy[Any]:
        """Conversions that name an inference as :data:`CONVERSIONS` says (the same draws whatever the world holds)."""

        @st.composite
        def draw_conversion(draw: st.DrawFn) -> Any:
            params = draw(drawn)
            how, which, other, manual = (draw(UNIFORM) for _ in range(4))
            how = pick(CONVERSIONS, how)
            if not isinstance(params, dict) or how == "drawn":
                return params
            params.pop("endpoint_variant", None)
            open_ = sorted(k for k, s in self.served.items() if not s.converted)
            done = sorted(k for k, s in self.served.items() if s.converted)
            if how == "unknown":
                params["inference_id"] = next_name(UNKNOWN_PREFIX)
                params["user_id"] = pick(USERS, other)
                return params
            if how == "failed" and self.failed:
                key = pick(sorted(self.failed), which)
                params["endpoint_name"], params["inference_id"] = key
                params["user_id"] = self.failed[key]
                return params
            pool = done if how == "repeat" and done else open_ or done
            if not pool:
                return params
            key = pick(pool, which)
            served = self.served[key]
            params["endpoint_name"], params["inference_id"] = key
            params["user_id"] = served.user_id
            if how == "other-user":
                users = [u for u in USERS if u != served.user_id]
                params["user_id"] = pick(users, other)
            elif manual < 0.3:  # the anchor's Manual conversion: the variant named too, right or (rarely) wrong
                params["endpoint_variant"] = served.variant if manual < 0.25 else pick(VARIANTS, other)
            return params

        return draw_conversion()

    def conversion_outcome(self, params: Any) -> frozenset[Outcome] | None:
        """What the server must answer a valid /conversion (service.convert's checks, in its order), or None
        where the world cannot tell (an id the fuzzer did not see issued)."""
        if not isinstance(params, dict) or not isinstance(params.get("endpoint_name"), str):
            return None
        endpoint, inference, user = params["endpoint_name"], params.get("inference_id"), params.get("user_id")
        variant = params.get("endpoint_variant")
        if inference is None or user is None:
            return refused(400, "InvalidRequest")
        if not all(isinstance(x, str) for x in (inference, user)) or not isinstance(variant, str | None):
            return None
        key = (endpoint, inference)
        served = self.served.get(key)
        if served is None:
            if key in self.failed:
                if user != self.failed[key]:
                    return refused(403, "InferenceUserMismatch")
                return refused(409, "InferenceFailed")
            return refused(404, "InferenceNotFound") if inference.startswith(UNKNOWN_PREFIX) else None
        if user != served.user_id:
            return refused(403, "InferenceUserMismatch")
        if variant is not None and variant != served.variant:
            return refused(400, "VariantMismatch")
        if served.converted:
            return refused(409, "AlreadyConverted")
        return frozenset({ACCEPTED})


def targets(world: AbWorld) -> list[Target]:
    runtime = botocore.session.get_session().get_service_model("sagemaker-runtime").operation_model("InvokeEndpoint")
    names = list(ENDPOINTS)
    endpoint = weighted(
        (8, st.sampled_from(names)),
        (1, st.just("fz-none")),
        (1, st.from_regex(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,20}", fullmatch=True)),
    )
    variant = weighted((8, st.sampled_from(VARIANTS)), (1, st.text(max_size=10)))
    overrides: dict[str, SearchStrategy[Any]] = {
        "EndpointName": endpoint,
        "Body": weighted((8, st.sampled_from(BODIES)), (2, st.binary(max_size=300)), (1, st.just(b"die"))),
        "ContentType": weighted(
            (8, st.sampled_from(CONTENT_TYPES)),
            (1, st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30)),
        ),
        "Accept": weighted((8, st.sampled_from(CONTENT_TYPES)), (1, st.just("*/*"))),
        "TargetVariant": variant,
        "endpoint_name": endpoint,
        "data": weighted(
            (6, st.sampled_from([b.decode() for b in BODIES if b != b"\xc3\xa9"])), (1, st.text(max_size=50))
        ),
        "content_type": weighted((8, st.sampled_from(CONTENT_TYPES)), (1, st.text(max_size=20))),
        "user_id": weighted((9, st.sampled_from(USERS)), (1, st.text(max_size=20))),
        "inference_id": reference(world.inference_ids.names, st.text(max_size=20), existing=0.7),
        # An invocation's own id: new mostly (it can then be credited), one already used now and then (409
        # DuplicateInferenceId), or any text (400 where it is no header value).
        "invocationInput.inference_id": weighted(
            (5, fresh("fz-inference-")),
            (3, reference(world.inference_ids.names, st.text(max_size=20), existing=1.0)),
            (2, st.text(max_size=20)),
        ),
        "endpoint_variant": variant,
        "control": variant,
    }
    presence = {
        "InvokeEndpointInput.ContentType": 0.9,
        "InvokeEndpointInput.Accept": 0.5,
        "InvokeEndpointInput.CustomAttributes": 0.3,
        "InvokeEndpointInput.TargetVariant": 0.3,
        "InvokeEndpointInput.InferenceId": 0.3,
        "conversionInput.user_id": 0.8,
        "conversionInput.inference_id": 0.8,
        "invocationInput.inference_id": 0.5,
        "conversionInput.reward": 0.6,
        "invocationInput.user_id": 0.8,
    }
    for rare in (
        "TargetModel",
        "TargetContainerHostname",
        "EnableExplanations",
        "InferenceComponentName",
        "SessionId",
        "PrefixAwareId",
    ):
        presence[f"InvokeEndpointInput.{rare}"] = 0.04
    shapes = ShapeStrategies(Profile(overrides, presence))
    out = [
        Target(
            "InvokeEndpoint",
            Runtime(runtime.input_shape),
            shapes.shape(runtime.input_shape),
            runtime.input_shape,
            weight=10,
            allowed=UNAVAILABLE,
            unchecked_2xx=True,
        )
    ]
    ab = AbRest()
    weights = {"invocation": 5, "conversion": 4, "stats": 2, "register": 1, "promote": 1}
    bookkeeping: dict[str, Callable[[Any, RawAnswer], None]] = {
        "invocation": lambda p, a: world.issued(a),
        "conversion": lambda p, a: world.credited(a),
    }
    for route, weight in weights.items():
        shape = AB_MODEL.operation_model(route).input_shape
        params = shapes.shape(shape)
        out.append(
            Target(
                route,
                ab,
                world.conversions(params) if route == "conversion" else params,
                shape,
                mutating=route in ADMINISTRATIVE,
                weight=weight,
                snapshot=lambda p: world.snapshot(p.get("endpoint_name")),
                cache_state=False,
                on_answer=bookkeeping.get(route),
                on_refusal=world.invocation_failed if route == "invocation" else None,
                expect=world.conversion_outcome if route == "conversion" else None,
                allowed=UNAVAILABLE,
            )
        )
    return out
