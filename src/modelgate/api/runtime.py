"""The SageMaker runtime over rest-json: ``POST /endpoints/{EndpointName}/invocations``.

This is the hot path: read the body (refusing more than the payload limit), pick and forward through
the router, and answer with ``x-Amzn-Invoked-Production-Variant``. Errors carry ``x-amzn-ErrorType``.
"""

from __future__ import annotations

import json
import logging
import re
import time
import urllib.parse

from modelgate.api.http import Receive, Send, new_request_id, read_body, send_response
from modelgate.errors import InternalFailure, ModelgateError, ValidationError
from modelgate.routing.router import Invocation, InvocationResult, Router

log = logging.getLogger(__name__)

# The scope key under which the HTTP server puts ``time.perf_counter()`` at the request's first byte
# (modelgate.api.timed_http); without it, time starts when the request reaches this handler.
ARRIVED = "modelgate.arrived"

_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
_ASCII = re.compile(r"^[\x00-\x7f]*$")
_INFERENCE_ID = re.compile(r"^\S[\S ]{0,63}$")


class RuntimeApi:
    def __init__(self, router: Router, max_payload_bytes: int) -> None:
        self.router = router
        self.max_payload = max_payload_bytes
        self._too_large = (
            f"Request payload is larger than the limit of {max_payload_bytes} bytes "
            f"({max_payload_bytes // (1024 * 1024)} MiB) for InvokeEndpoint."
        )

    async def handle(
        self, scope: dict[str, object], receive: Receive, send: Send, name: str, action: str
    ) -> None:
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
        arrived = scope.get(ARRIVED)
        started = arrived if isinstance(arrived, float) else time.perf_counter()
        try:
            if action != "invocations":
                raise ValidationError(
                    f"{action} is not supported by modelgate yet; use InvokeEndpoint (/endpoints/{{name}}/invocations)."
                )
            body = await read_body(receive, self.max_payload, self._too_large)
            inv = self._parse(scope, body, urllib.parse.unquote(name))
            result = await self.router.invoke(inv, started)
        except ModelgateError as exc:
            return (*error_response(exc), None)
        except Exception:
            log.exception("unhandled error in InvokeEndpoint")
            return (*error_response(InternalFailure("An internal error occurred while invoking the endpoint.")), None)
        reply = result.reply
        if reply is None:
            assert result.error is not None
            return (*error_response(result.error), result)
        headers = [
            (b"content-type", (reply.content_type or "application/octet-stream").encode("latin-1")),
            (b"x-amzn-invoked-production-variant", result.route.name.encode()),
        ]
        if reply.custom_attributes is not None:
            headers.append((b"x-amzn-sagemaker-custom-attributes", reply.custom_attributes.encode("latin-1")))
        return 200, headers, reply.body, result

    def _parse(self, scope: dict[str, object], body: bytes, name: str) -> Invocation:
        if not _NAME.match(name):
            raise ValidationError(
                f"1 validation error detected: Value '{name}' at 'endpointName' failed to satisfy constraint: "
                "Member must satisfy regular expression pattern: ^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}"
            )
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


_WANTED = {
    b"content-type": "content-type",
    b"accept": "accept",
    b"x-amzn-sagemaker-custom-attributes": "x-amzn-sagemaker-custom-attributes",
    b"x-amzn-sagemaker-inference-id": "x-amzn-sagemaker-inference-id",
    b"x-amzn-sagemaker-target-variant": "x-amzn-sagemaker-target-variant",
}


def _headers(scope: dict[str, object]) -> dict[str, str]:
    """The few headers InvokeEndpoint reads (lower-case names), decoded; the others are not touched."""
    out: dict[str, str] = {}
    raw = scope["headers"]
    assert isinstance(raw, list)
    for k, v in raw:
        name = _WANTED.get(k.lower())
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
