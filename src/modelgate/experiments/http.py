"""The A/B testing REST API over :class:`~modelgate.experiments.service.ExperimentService`.

Routes (POST or PUT with a JSON object body, as the anchor's API Gateway proxy accepted):

- ``/invocation``: ``endpoint_name``, ``data``, ``content_type``, ``user_id``, ``inference_id``,
  ``endpoint_variant`` -> the anchor's fields and ``predictions``; 200, 201 or 202.
- ``/conversion``: ``endpoint_name``, ``user_id``, ``inference_id``, ``reward``, ``endpoint_variant``.
- ``/stats``: ``endpoint_name`` -> the anchor's fields plus the analysis and the verdict.
- ``/register`` and ``/promote``: ours (the anchor registered through EventBridge only).

The wire shapes are written here and only here. ``data`` is sent to the model as is when it is a
string (the notebook sends a JSON string) and JSON-encoded otherwise. ``predictions`` is the model's
answer parsed as JSON when it is JSON, else its text. ``reward`` may be a number or a numeric string
(the anchor cast it with ``float``). Every error is ``{"code": ..., "message": ...}`` with the error's
status; an unexpected exception is a 500 ``InternalFailure`` whose details go to the log only.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from modelgate.api.surrogates import holds_unpaired
from modelgate.errors import InternalFailure, ModelgateError, RequestTooLarge
from modelgate.experiments.analysis import Summary
from modelgate.experiments.entities import ExperimentParams, Strategy
from modelgate.experiments.errors import InvalidParameter, InvalidRequest, InvalidReward, InvalidStrategy
from modelgate.experiments.service import ExperimentService, Registration, Requester

logger = logging.getLogger(__name__)

Handler = Callable[[Request], Awaitable[Response]]
MAX_BODY_BYTES = 6 * 1024 * 1024 + 64 * 1024  # SageMaker's payload limit plus room for the envelope


def error_response(exc: ModelgateError) -> JSONResponse:
    return JSONResponse({"code": exc.code, "message": exc.message, **exc.extra_fields()}, status_code=exc.status)


async def _json_body(request: Request, limit: int) -> dict[str, Any]:
    size = 0
    chunks = []
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestTooLarge(f"request body exceeds {limit} bytes")
        chunks.append(chunk)
    try:
        body = json.loads(b"".join(chunks))
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
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise InvalidReward(f"reward must be a number in [0, 1], got {raw!r}")
    return float(raw)


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
        "variant_metrics": [
            {
                "endpoint_name": e.endpoint_name,
                "variant_name": v.name,
                "initial_variant_weight": v.initial_weight,
                "invocation_count": v.invocations,
                "conversion_count": v.conversions,
                "reward_sum": v.reward_sum,
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
    keys = ("strategy", "epsilon", "warmup", "alpha", "horizon", "looks", "control")
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
        )
    except (TypeError, ValueError, OverflowError):  # OverflowError: int(Infinity), which JSON's parser gives
        raise InvalidParameter("epsilon, alpha must be numbers; warmup, horizon, looks integers") from None


def _render_registration(r: Registration) -> Response:
    if r.experiment is None:
        return Response(status_code=304)
    e = r.experiment
    return JSONResponse(
        {
            "endpoint_name": r.endpoint_name,
            "experiment_id": e.id,
            "endpoint_variants": [
                {"variant_name": v.name, "initial_variant_weight": v.initial_weight} for v in e.variants
            ],
            "strategy": e.params.strategy.value,
            "epsilon": e.params.epsilon,
            "warmup": e.params.warmup,
        },
        status_code=r.status,
    )


class ExperimentsApi:
    def __init__(self, service: ExperimentService, *, max_body_bytes: int = MAX_BODY_BYTES) -> None:
        self._service = service
        self._limit = max_body_bytes

    def routes(self) -> list[Route]:
        methods = ["POST", "PUT"]
        return [
            Route("/invocation", self._guarded(self.invocation), methods=methods),
            Route("/conversion", self._guarded(self.conversion), methods=methods),
            Route("/stats", self._guarded(self.stats), methods=methods),
            Route("/register", self._guarded(self.register), methods=methods),
            Route("/promote", self._guarded(self.promote), methods=methods),
        ]

    def _guarded(self, handler: Handler) -> Handler:
        async def endpoint(request: Request) -> Response:
            try:
                return await handler(request)
            except ModelgateError as exc:
                return error_response(exc)
            except Exception:
                logger.exception("unhandled error in the experiments API")
                return error_response(InternalFailure("internal error"))

        return endpoint

    @staticmethod
    def _requester(request: Request) -> Requester:
        host = request.client.host if request.client else None
        return Requester(host, request.headers.get("user-agent"))

    async def invocation(self, request: Request) -> Response:
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
        return JSONResponse(
            {
                "strategy": out.strategy,
                "endpoint_name": out.endpoint_name,
                "target_variant": out.target_variant,
                "endpoint_variant": out.endpoint_variant,
                "inference_id": out.inference_id,
                "user_id": out.user_id,
                "predictions": _predictions(out.body),
            },
            status_code=out.status,
        )

    async def conversion(self, request: Request) -> Response:
        body = await _json_body(request, self._limit)
        out = await self._service.convert(
            body["endpoint_name"],
            user_id=_optional_str(body, "user_id"),
            inference_id=_optional_str(body, "inference_id"),
            reward=_reward(body),
            endpoint_variant=_optional_str(body, "endpoint_variant"),
            requester=self._requester(request),
        )
        return JSONResponse(
            {
                "strategy": out.strategy,
                "endpoint_name": out.endpoint_name,
                "endpoint_variant": out.endpoint_variant,
                "inference_id": out.inference_id,
                "user_id": out.user_id,
                "reward": out.reward,
            },
            status_code=out.status,
        )

    async def stats(self, request: Request) -> Response:
        body = await _json_body(request, self._limit)
        # The store reads and the analysis (numpy, scipy) run in a worker thread, not on the event loop.
        summary = await asyncio.to_thread(self._service.stats, body["endpoint_name"])
        return JSONResponse(render_stats(summary))

    async def register(self, request: Request) -> Response:
        body = await _json_body(request, self._limit)
        return _render_registration(self._service.register(body["endpoint_name"], _params(body)))

    async def promote(self, request: Request) -> Response:
        body = await _json_body(request, self._limit)
        out = await self._service.promote(body["endpoint_name"], _optional_str(body, "endpoint_variant"))
        return JSONResponse(
            {
                "endpoint_name": out.endpoint_name,
                "endpoint_variant": out.variant,
                "weights": out.weights,
                "experiment_id": out.experiment_id,
            }
        )


async def _http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    code = {404: "NotFound", 405: "MethodNotAllowed"}.get(status, "InvalidRequest")
    detail = exc.detail if isinstance(exc, HTTPException) else "internal error"
    return JSONResponse({"code": code, "message": detail}, status_code=status)


def create_app(service: ExperimentService, *, max_body_bytes: int = MAX_BODY_BYTES) -> Starlette:
    """A standalone app with the experiments routes (the gateway may mount the routes instead)."""
    api = ExperimentsApi(service, max_body_bytes=max_body_bytes)
    return Starlette(routes=api.routes(), exception_handlers={HTTPException: _http_error})
