"""The one error base of modelgate.

Every error a user can cause is a subclass of :class:`ModelgateError` that carries its AWS error code
and HTTP status as class attributes. Services raise them; each protocol adapter in ``api/`` renders
them in its own wire shape (JSON 1.1 ``__type``, rest-json ``x-amzn-ErrorType``, the CloudWatch
query-compatible header). Nothing else escapes to the wire: an unexpected exception becomes
``InternalFailure`` without a traceback.

    ModelgateError
    ├── ValidationException        (SageMaker control plane, 400; also "not found")
    ├── ResourceInUse              (400)
    ├── ResourceLimitExceeded      (400)
    ├── ResourceNotFound           (400)
    ├── ConflictException          (400)
    ├── UnknownOperation           (400)
    ├── UnknownPath                (404: no API is served at that method and path)
    ├── SerializationException     (400)
    ├── RequestTooLarge            (413)
    ├── runtime errors:
    │   ├── ValidationError        (400)
    │   ├── ModelError             (424, OriginalStatusCode / OriginalMessage)
    │   ├── ModelNotReadyException (429)
    │   ├── ServiceUnavailable     (503)
    │   └── InternalFailure        (500)
    ├── MissingAuthenticationToken (403; query protocol without an SDK's headers)
    ├── ClientDisconnected         (the client left mid-body; never rendered)
    └── refusals of the HTTP front (api/front.py, before any handler runs; JSON ``__type``/``message``):
        ├── InvalidHttpRequest     (400: malformed HTTP, CONNECT, an unparseable target)
        ├── HostNotAllowed         (400: a Host header that names another server)
        ├── CrossOriginRefused     (403: a browser's cross-origin request)
        ├── RequestTimeout         (408: the headers did not arrive in time)
        ├── UriTooLong             (414)
        ├── RequestHeadersTooLarge (431: header block size or count)
        └── TooManyConnections     (503)
"""

from __future__ import annotations

from typing import Any, ClassVar


class ModelgateError(Exception):
    code: ClassVar[str] = "InternalFailure"
    status: ClassVar[int] = 500
    sender_fault: ClassVar[bool] = True

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def extra_fields(self) -> dict[str, Any]:
        """Modelled members beyond ``message`` that the error shape carries."""
        return {}


class ValidationException(ModelgateError):
    code = "ValidationException"
    status = 400


class ResourceInUse(ModelgateError):
    code = "ResourceInUse"
    status = 400


class ResourceLimitExceeded(ModelgateError):
    code = "ResourceLimitExceeded"
    status = 400


class ResourceNotFound(ModelgateError):
    code = "ResourceNotFound"
    status = 400


class ConflictException(ModelgateError):
    code = "ConflictException"
    status = 400


class UnknownOperation(ModelgateError):
    code = "UnknownOperationException"
    status = 400


class UnknownPath(ModelgateError):
    code = "UnknownOperationException"
    status = 404


class SerializationException(ModelgateError):
    code = "SerializationException"
    status = 400


class RequestTooLarge(ModelgateError):
    code = "ValidationError"
    status = 413


class ValidationError(ModelgateError):
    """Runtime (InvokeEndpoint) validation error."""

    code = "ValidationError"
    status = 400


class ModelError(ModelgateError):
    code = "ModelError"
    status = 424

    def __init__(self, message: str, original_status: int, original_message: str, log_stream_arn: str) -> None:
        super().__init__(message)
        self.original_status = original_status
        self.original_message = original_message
        self.log_stream_arn = log_stream_arn

    def extra_fields(self) -> dict[str, Any]:
        return {
            "OriginalStatusCode": self.original_status,
            "OriginalMessage": self.original_message,
            "LogStreamArn": self.log_stream_arn,
        }


class ModelNotReadyException(ModelgateError):
    code = "ModelNotReadyException"
    status = 429


class ServiceUnavailable(ModelgateError):
    code = "ServiceUnavailable"
    status = 503
    sender_fault = False


class InternalFailure(ModelgateError):
    code = "InternalFailure"
    status = 500
    sender_fault = False


class MissingAuthenticationToken(ModelgateError):
    """A query-protocol request without any header an AWS SDK always sends (a browser's form post)."""

    code = "MissingAuthenticationToken"
    status = 403


class ClientDisconnected(ModelgateError):
    """The client closed the connection before its request body was complete: the request is dropped,
    never executed (Starlette's ``ClientDisconnect``). There is nobody to answer."""

    code = "ClientDisconnected"
    status = 400


class InvalidHttpRequest(ModelgateError):
    code = "BadRequest"
    status = 400


class HostNotAllowed(ModelgateError):
    """DNS rebinding: a browser page on another name reaching this server; see api/browsers.py."""

    code = "HostNotAllowed"
    status = 400


class CrossOriginRefused(ModelgateError):
    """A state-changing request a browser sent for a page of another origin (CSRF); see api/browsers.py."""

    code = "AccessDeniedException"
    status = 403


class RequestTimeout(ModelgateError):
    code = "RequestTimeout"
    status = 408


class UriTooLong(ModelgateError):
    code = "UriTooLong"
    status = 414


class RequestHeadersTooLarge(ModelgateError):
    code = "RequestHeaderFieldsTooLarge"
    status = 431


class TooManyConnections(ServiceUnavailable):
    """Backpressure on connections: the server holds its limit of open connections."""
