"""The A/B testing REST API over :class:`~modelgate.experiments.service.ExperimentService`, as plain ASGI.

Routes (POST or PUT with a JSON object body, as the anchor's API Gateway proxy accepted):

- ``/invocation``: ``endpoint_name``, ``data``, ``content_type``, ``user_id``, ``inference_id``,
  ``endpoint_variant`` -> the anchor's fields and ``predictions``; 200, 201 or 202.
- ``/conversion``: ``endpoint_name``, ``user_id`` and ``inference_id`` (both required: the ones
  /invocation returned), ``reward``, ``endpoint_variant``.
- ``/stats``: ``endpoint_name`` -> the anchor's fields plus errors per variant, the analysis and the
  verdict. Read-only: also ``GET /stats?endpoint_name=NAME``.
- ``/register`` and ``/promote``: ours (the anchor registered through EventBridge only). Administrative.

**Which requests are accepted** (:mod:`~modelgate.experiments.guard`): every state-changing route
requires ``Content-Type: application/json`` (else 415 UnsupportedMediaType); the administrative routes
(``/register``, ``/promote``) also pass the :class:`~modelgate.experiments.guard.AdminGuard` (an AWS
protocol header until the gateway authenticates requests; else 403 AccessDenied). ``/stats`` is read-only.

The wire shapes are written here and only here. ``data`` is sent to the model as is when it is a
string (the notebook sends a JSON string) and JSON-encoded otherwise. ``predictions`` is the model's
answer parsed as JSON when it is JSON, else its text. ``reward`` may be a number or a numeric string
(the anchor cast it with ``float``). Every error is ``{"code": ..., "message": ...}`` with the error's
status; an unexpected exception is a 500 ``InternalFailure`` whose details go to the log only. A client
that goes away before its body is complete is logged once at INFO, without a traceback, and nothing runs.

This adapter is plain ASGI (no framework): it is on the A/B request path, where a framework's middleware,
request and response objects were a visible share of the gateway's CPU per request (bench/RESULTS.md);
routing five exact paths and reading one JSON body needs none of it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import parse_qs

from modelgate.api.surrogates import holds_unpaired
from modelgate.errors import InternalFailure, ModelgateError, RequestTooLarge
from modelgate.experiments.analysis import Summary
from modelgate.experiments.entities import ExperimentParams, Strategy, check_reward
from modelgate.experiments.errors import InvalidParameter, InvalidRequest, InvalidReward, InvalidStrategy
from modelgate.experiments.guard import AdminGuard, AwsProtocolGuard, require_json
from modelgate.experiments.service import ExperimentService, Registration, Requester

logger = logging.getLogger(__name__)

Scope = Mapping[str, Any]
Message = Mapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
MAX_BODY_BYTES = 6 * 1024 * 1024 + 64 * 1024  # SageMaker's payload limit plus room for the envelope
STATE_CHANGING = ("POST", "PUT")
_encode = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode
_JSON_HEADERS = (b"content-type", b"application/json")


class ClientDisconnected(Exception):
    """The client went away before its request body was complete (not an error of ours: nothing runs)."""


class Incoming:
    """What a handler needs of one request: method, path, query, the headers it looks at, the client."""

    __slots__ = ("client", "content_type", "method", "path", "query", "raw_headers", "receive", "user_agent")

    def __init__(self, scope: Scope, receive: Receive) -> None:
        self.method: str = scope["method"]
        self.path: str = scope["path"]
        self.query: bytes = scope.get("query_string", b"")
        self.receive = receive
        self.raw_headers: list[tuple[bytes, bytes]] = scope["headers"]  # ASGI: names in lower case
        self.content_type = self.user_agent = ""
        for name, value in self.raw_headers:  # one pass for the two every request needs
            if name == b"content-type":
                self.content_type = value.decode("latin-1")
            elif name == b"user-agent":
                self.user_agent = value.decode("latin-1")
        client = scope.get("client")
        self.client: str | None = str(client[0]) if client else None

    def has_header(self, name: bytes) -> bool:
        return any(n == name for n, _ in self.raw_headers)


def error_body(exc: ModelgateError) -> dict[str, Any]:
    return {"code": exc.code, "message": exc.message, **exc.extra_fields()}


async def send_json(send: Send, status: int, payload: Any) -> None:
    if payload is None:  # 304
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})
        return
    body = _encode(payload).encode()
    headers = [(b"content-length", str(len(body)).encode()), _JSON_HEADERS]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _read_body(request: Incoming, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise RequestTooLarge(f"request body exceeds {limit} bytes")
            chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _json_body(request: Incoming, limit: int) -> dict[str, Any]:
    raw = await _read_body(request, limit)
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: arrays or objects nested some hundreds deep
        raise InvalidRequest("Require HTTP POST with json body") from None
    if not isinstance(body, dict):
        raise InvalidRequest("Require HTTP POST with json body")
    if holds_unpaired(body):  # JSON's \ud800 escape: no store or answer can hold it (api/surrogates.py)
        raise InvalidRequest("Require json body of Unicode text: a string holds an unpaired surrogate")
    if not isinstance(body.get("endpoint_name"), str) or not body["endpoint_name"]:
        raise InvalidRequest("Require endpoint name in body")
    return body


def _optional_str(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, dict | list):
        raise InvalidRequest(f"{key} must be a string")
    return str(value)  # the anchor str()-cast user ids; numbers are common


def _reward(body: dict[str, Any]) -> float:
    raw = body.get("reward", 1.0)
    if isinstance(raw, str):
        try:
            raw = float(raw)
        except ValueError:
            raise InvalidReward(f"reward must be a number in [0, 1], got {raw!r}") from None
    return check_reward(raw)  # also refuses a type other than a number, and an int beyond a float (not a 500)


def _predictions(body: bytes) -> Any:
    text = body.decode("utf-8", errors="replace")
    try:
        return json.loads(text)
    except ValueError:
        return text


def _finite(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else x


def render_stats(summary: Summary) -> dict[str, Any]:
    e = summary.experiment
    p = e.params
    return {
        "endpoint_name": e.endpoint_name,
        "strategy": p.strategy.value,
        "epsilon": p.epsilon,
        "warmup": p.warmup,
        "max_rewards_per_inference": p.max_rewards_per_inference,
        "variant_metrics": [
            {
                "endpoint_name": e.endpoint_name,
                "variant_name": v.name,
                "initial_variant_weight": v.initial_weight,
                "invocation_count": v.invocations,
                "conversion_count": v.conversions,
                "reward_sum": v.reward_sum,
                "error_count": v.errors,
                "rate": v.rate,
                "credible_interval": [v.ci_low, v.ci_high],
                "prob_best": v.prob_best,
                "expected_loss": v.expected_loss,
            }
            for v in summary.variants
        ],
        "experiment_id": e.id,
        "created_at": e.created_at,
        "closed_at": e.closed_at,
        "control": summary.control,
        "alpha": p.alpha,
        "horizon": p.horizon,
        "looks": p.looks,
        "comparisons": [
            {
                "variant_name": c.challenger,
                "decision": c.decision,
                "looks_taken": c.looks,
                "z": _finite(c.z),
                "boundary": _finite(c.boundary),
                "alpha": c.alpha,
            }
            for c in summary.comparisons
        ],
        "verdict": str(summary.verdict),
        "winner": summary.verdict.variant,
    }


def _params(body: dict[str, Any]) -> ExperimentParams | None:
    keys = ("strategy", "epsilon", "warmup", "alpha", "horizon", "looks", "control", "max_rewards_per_inference")
    if not any(k in body for k in keys):
        return None
    default = ExperimentParams()
    try:
        strategy = Strategy(body.get("strategy", default.strategy.value))
    except ValueError:
        raise InvalidStrategy(f"unknown strategy {body.get('strategy')!r}") from None
    try:
        return ExperimentParams(
            strategy=strategy,
            epsilon=float(body.get("epsilon", default.epsilon)),
            warmup=int(body.get("warmup", default.warmup)),
            alpha=float(body.get("alpha", default.alpha)),
            horizon=int(body.get("horizon", default.horizon)),
            looks=int(body.get("looks", default.looks)),
            control=_optional_str(body, "control"),
            max_rewards_per_inference=int(body.get("max_rewards_per_inference", default.max_rewards_per_inference)),
        )
    except (TypeError, ValueError, OverflowError):  # OverflowError: int(Infinity), which JSON's parser gives
        raise InvalidParameter(
            "epsilon, alpha must be numbers; warmup, horizon, looks, max_rewards_per_inference integers"
        ) from None


def _render_registration(r: Registration) -> tuple[int, Any]:
    if r.experiment is None:
        return 304, None
    e = r.experiment
    return (
        r.status,
        {
            "endpoint_name": r.endpoint_name,
            "experiment_id": e.id,
            "endpoint_variants": [
                {"variant_name": v.name, "initial_variant_weight": v.initial_weight} for v in e.variants
            ],
            "strategy": e.params.strategy.value,
            "epsilon": e.params.epsilon,
            "warmup": e.params.warmup,
            "max_rewards_per_inference": e.params.max_rewards_per_inference,
        },
    )


Handler = Callable[[Incoming], Awaitable[tuple[int, Any]]]


class ExperimentsApi:
    """The ASGI app of the A/B routes (exact paths)."""

    def __init__(
        self,
        service: ExperimentService,
        *,
        max_body_bytes: int = MAX_BODY_BYTES,
        admin_guard: AdminGuard | None = None,
    ) -> None:
        self._service = service
        self._limit = max_body_bytes
        self._admin = admin_guard or AwsProtocolGuard()
        self._routes: dict[str, tuple[Handler, bool]] = {  # path -> (handler, administrative)
            "/invocation": (self.invocation, False),
            "/conversion": (self.conversion, False),
            "/stats": (self.stats, False),
            "/register": (self.register, True),
            "/promote": (self.promote, True),
        }

    @property
    def paths(self) -> frozenset[str]:
        return frozenset(self._routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":  # nothing to start or stop (when served on its own)
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":
            return
        request = Incoming(scope, receive)
        try:
            status, payload = await self._dispatch(request)
        except ModelgateError as exc:
            status, payload = exc.status, error_body(exc)
        except ClientDisconnected:
            logger.info("A/B %s %s: the client went away before its body was complete", request.method, request.path)
            return
        except Exception:
            logger.exception("unhandled error in the experiments API")
            status, payload = 500, error_body(InternalFailure("internal error"))
        await send_json(send, status, payload)

    async def _dispatch(self, request: Incoming) -> tuple[int, Any]:
        route = self._routes.get(request.path)
        if route is None:
            return 404, {"code": "NotFound", "message": "Not Found"}
        handler, administrative = route
        if request.method == "GET" and request.path == "/stats":
            return await self.stats_get(request)
        if request.method not in STATE_CHANGING:
            return 405, {"code": "MethodNotAllowed", "message": "Method Not Allowed"}
        if request.path != "/stats":  # read-only: the anchor's clients send it as they like
            require_json(request)
        if administrative:
            self._admin.check(request)
        return await handler(request)

    @staticmethod
    def _requester(request: Incoming) -> Requester:
        return Requester(request.client, request.user_agent or None)

    async def invocation(self, request: Incoming) -> tuple[int, Any]:
        body = await _json_body(request, self._limit)
        if "data" not in body:
            raise InvalidRequest("Require data in body")
        data = body["data"]
        payload = data.encode() if isinstance(data, str) else json.dumps(data).encode()
        out = await self._service.invoke(
            body["endpoint_name"],
            payload,
            content_type=_optional_str(body, "content_type") or "application/json",
            user_id=_optional_str(body, "user_id"),
            inference_id=_optional_str(body, "inference_id"),
            endpoint_variant=_optional_str(body, "endpoint_variant"),
            requester=self._requester(request),
        )
        return out.status, {
            "strategy": out.strategy,
            "endpoint_name": out.endpoint_name,
            "target_variant": out.target_variant,
            "endpoint_variant": out.endpoint_variant,
            "inference_id": out.inference_id,
            "user_id": out.user_id,
            "predictions": _predictions(out.body),
        }

    async def conversion(self, request: Incoming) -> tuple[int, Any]:
        body = await _json_body(request, self._limit)
        out = await self._service.convert(
            body["endpoint_name"],
            user_id=_optional_str(body, "user_id"),
            inference_id=_optional_str(body, "inference_id"),
            reward=_reward(body),
            endpoint_variant=_optional_str(body, "endpoint_variant"),
            requester=self._requester(request),
        )
        return out.status, {
            "strategy": out.strategy,
            "endpoint_name": out.endpoint_name,
            "endpoint_variant": out.endpoint_variant,
            "inference_id": out.inference_id,
            "user_id": out.user_id,
            "reward": out.reward,
        }

    async def stats(self, request: Incoming) -> tuple[int, Any]:
        body = await _json_body(request, self._limit)
        return await self._stats(body["endpoint_name"])

    async def stats_get(self, request: Incoming) -> tuple[int, Any]:
        names = parse_qs(request.query.decode("latin-1")).get("endpoint_name", [])
        if not names or not names[0]:
            raise InvalidRequest("Require endpoint_name in the query string")
        return await self._stats(names[0])

    async def _stats(self, endpoint_name: str) -> tuple[int, Any]:
        # The store reads and the analysis (numpy, scipy) run in a worker thread, not on the event loop.
        summary = await asyncio.to_thread(self._service.stats, endpoint_name)
        return 200, render_stats(summary)

    async def register(self, request: Incoming) -> tuple[int, Any]:
        body = await _json_body(request, self._limit)
        return _render_registration(self._service.register(body["endpoint_name"], _params(body)))

    async def promote(self, request: Incoming) -> tuple[int, Any]:
        body = await _json_body(request, self._limit)
        out = await self._service.promote(body["endpoint_name"], _optional_str(body, "endpoint_variant"))
        return 200, {
            "endpoint_name": out.endpoint_name,
            "endpoint_variant": out.variant,
            "weights": out.weights,
            "experiment_id": out.experiment_id,
        }


def create_app(
    service: ExperimentService, *, max_body_bytes: int = MAX_BODY_BYTES, admin_guard: AdminGuard | None = None
) -> ExperimentsApi:
    """The experiments routes as one ASGI app (the gateway mounts it on exactly its paths)."""
    return ExperimentsApi(service, max_body_bytes=max_body_bytes, admin_guard=admin_guard)
