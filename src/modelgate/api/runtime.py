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

from modelgate.api.http import Receive, Request, Send, new_request_id, read_body, send_response
from modelgate.errors import InternalFailure, ModelgateError, ValidationError
from modelgate.routing.router import Invocation, Router

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
        arrived = scope.get(ARRIVED)
        started = arrived if isinstance(arrived, float) else time.perf_counter()
        try:
            if action != "invocations":
                raise ValidationError(
                    f"{action} is not supported by modelgate yet; use InvokeEndpoint (/endpoints/{{name}}/invocations)."
                )
            body = await read_body(receive, self.max_payload, self._too_large)
            request = Request(scope, body)
            inv = self._parse(request, urllib.parse.unquote(name))
            result = await self.router.invoke(inv, started)
        except ModelgateError as exc:
            await send_error(send, exc)
            return
        except Exception:
            log.exception("unhandled error in InvokeEndpoint")
            await send_error(send, InternalFailure("An internal error occurred while invoking the endpoint."))
            return
        reply = result.reply
        if reply is None:
            assert result.error is not None
            await send_error(send, result.error)
        else:
            headers = [
                (b"content-type", (reply.content_type or "application/octet-stream").encode("latin-1")),
                (b"x-amzn-invoked-production-variant", result.route.name.encode()),
            ]
            if reply.custom_attributes is not None:
                headers.append((b"x-amzn-sagemaker-custom-attributes", reply.custom_attributes.encode("latin-1")))
            await send_response(send, 200, reply.body, headers)
        self.router.record(result)

    def _parse(self, request: Request, name: str) -> Invocation:
        if not _NAME.match(name):
            raise ValidationError(
                f"1 validation error detected: Value '{name}' at 'endpointName' failed to satisfy constraint: "
                "Member must satisfy regular expression pattern: ^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}"
            )
        h = request.headers
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
            body=request.body,
            content_type=h.get("content-type"),
            accept=h.get("accept"),
            custom_attributes=custom,
            target_variant=h.get("x-amzn-sagemaker-target-variant"),
            inference_id=inference_id,
        )


async def send_error(send: Send, exc: ModelgateError) -> None:
    payload: dict[str, object] = {"message": exc.message, "Message": exc.message}
    payload.update(exc.extra_fields())
    body = json.dumps(payload).encode()
    await send_response(
        send,
        exc.status,
        body,
        [
            (b"content-type", b"application/json"),
            (b"x-amzn-errortype", exc.code.encode()),
            (b"x-amzn-requestid", new_request_id().encode()),
        ],
    )
