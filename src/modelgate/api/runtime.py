"""The SageMaker runtime over rest-json: ``POST /endpoints/{EndpointName}/invocations``.

This is the hot path: read the body (refusing more than the payload limit), pick and forward through
the router, and answer with ``x-Amzn-Invoked-Production-Variant``. Errors carry ``x-amzn-ErrorType``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import urllib.parse
from collections.abc import Callable

from modelgate.api.http import Receive, Send, new_request_id, read_body, send_response
from modelgate.errors import InternalFailure, ModelgateError, RequestTooLarge, ValidationError
from modelgate.routing.router import Invocation, InvocationResult, Router

log = logging.getLogger(__name__)

# The scope key under which the HTTP server puts ``time.perf_counter()`` at the request's first byte
# (modelgate.api.timed_http); without it, time starts when the request reaches this handler.
ARRIVED = "modelgate.arrived"

Answer = tuple[int, list[tuple[bytes, bytes]], bytes, InvocationResult | None]

_valid_names: set[str] = set()  # endpoint names that matched _NAME (a set lookup is cheaper than the match)
_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
_ASCII = re.compile(r"^[\x00-\x7f]*$")
_INFERENCE_ID = re.compile(r"^\S[\S ]{0,63}$")


class RuntimeApi:
    def __init__(self, router: Router, max_payload_bytes: int) -> None:
        self.router = router
        self.max_payload = max_payload_bytes
        self.too_large_message = (
            f"Request payload is larger than the limit of {max_payload_bytes} bytes "
            f"({max_payload_bytes // (1024 * 1024)} MiB) for InvokeEndpoint."
        )

    async def handle(self, scope: dict[str, object], receive: Receive, send: Send, name: str, action: str) -> None:
        """The ASGI way in (the plain App); ``api/front.py`` calls :meth:`process` directly."""
        status, headers, body, result = await self.process(scope, receive, name, action)
        await send_response(send, status, body, headers)
        if result is not None:
            self.router.record(result)

    async def process(
        self, scope: dict[str, object], receive: Receive, name: str, action: str
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes, InvocationResult | None]:
        """Answer one request: status, headers (without Content-Length), body, and what to record
        once the answer is written (None when it was refused before a variant was chosen)."""
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        try:
            body = await read_body(receive, self.max_payload, self.too_large_message)
        except ModelgateError as exc:
            return (*error_response(exc), None)
        self.begin(scope, body, name, action, future.set_result)
        return await future

    def begin(
        self, scope: dict[str, object], body: bytes, name: str, action: str, answer: Callable[[Answer], None]
    ) -> None:
        """The request path proper: validate, route and forward; ``answer`` is called once with status,
        headers (without Content-Length), body and what to record after writing (None when the request
        was refused before a variant was chosen). ``body`` longer than the limit is refused here."""
        arrived = scope.get(ARRIVED)
        started = arrived if isinstance(arrived, float) else time.perf_counter()
        try:
            if action != "invocations":
                raise ValidationError(
                    f"{action} is not supported by modelgate yet; use InvokeEndpoint (/endpoints/{{name}}/invocations)."
                )
            if len(body) > self.max_payload:
                raise RequestTooLarge(self.too_large_message)
            inv = self._parse(scope, body, urllib.parse.unquote(name) if "%" in name else name)
            self.router.begin(inv, started, lambda result: answer(_answer(result)))
        except ModelgateError as exc:
            answer((*error_response(exc), None))
        except Exception:
            log.exception("unhandled error in InvokeEndpoint")
            answer((*error_response(InternalFailure("An internal error occurred while invoking the endpoint.")), None))

    def _parse(self, scope: dict[str, object], body: bytes, name: str) -> Invocation:
        if name not in _valid_names:
            if not _NAME.match(name):
                raise ValidationError(
                    f"1 validation error detected: Value '{name}' at 'endpointName' failed to satisfy constraint: "
                    "Member must satisfy regular expression pattern: ^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}"
                )
            if len(_valid_names) >= 10_000:
                _valid_names.clear()
            _valid_names.add(name)
        h = _headers(scope)
        custom = h.get("x-amzn-sagemaker-custom-attributes")
        if custom is not None and (len(custom) > 1024 or not _ASCII.match(custom)):
            raise ValidationError(
                "1 validation error detected: Value at 'customAttributes' failed to satisfy constraint: "
                "Member must have length less than or equal to 1024 and contain only ASCII characters"
            )
        inference_id = h.get("x-amzn-sagemaker-inference-id")
        if inference_id is not None and not _INFERENCE_ID.match(inference_id):
            raise ValidationError(
                f"1 validation error detected: Value '{inference_id}' at 'inferenceId' failed to satisfy "
                "constraint: Member must have length between 1 and 64"
            )
        return Invocation(
            endpoint=name,
            body=body,
            content_type=h.get("content-type"),
            accept=h.get("accept"),
            custom_attributes=custom,
            target_variant=h.get("x-amzn-sagemaker-target-variant"),
            inference_id=inference_id,
        )


def _answer(result: InvocationResult) -> Answer:
    reply = result.reply
    if reply is None:
        assert result.error is not None
        return (*error_response(result.error), result)
    headers = [
        (b"content-type", (reply.content_type or "application/octet-stream").encode("latin-1")),
        (b"x-amzn-invoked-production-variant", result.route.name_bytes),
    ]
    if reply.custom_attributes is not None:
        headers.append((b"x-amzn-sagemaker-custom-attributes", reply.custom_attributes.encode("latin-1")))
    return 200, headers, reply.body, result


_WANTED = {
    b"content-type": "content-type",
    b"accept": "accept",
    b"x-amzn-sagemaker-custom-attributes": "x-amzn-sagemaker-custom-attributes",
    b"x-amzn-sagemaker-inference-id": "x-amzn-sagemaker-inference-id",
    b"x-amzn-sagemaker-target-variant": "x-amzn-sagemaker-target-variant",
}


def _headers(scope: dict[str, object]) -> dict[str, str]:
    """The few headers InvokeEndpoint reads, decoded; the others are not touched. ASGI servers give
    header names in lower case (uvicorn lowers them as it parses)."""
    out: dict[str, str] = {}
    raw = scope["headers"]
    assert isinstance(raw, list)
    for k, v in raw:
        name = _WANTED.get(k)
        if name is not None:
            out[name] = v.decode("latin-1")
    return out


def error_response(exc: ModelgateError) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    payload: dict[str, object] = {"message": exc.message, "Message": exc.message}
    payload.update(exc.extra_fields())
    headers = [
        (b"content-type", b"application/json"),
        (b"x-amzn-errortype", exc.code.encode()),
        (b"x-amzn-requestid", new_request_id().encode()),
    ]
    return exc.status, headers, json.dumps(payload).encode()
