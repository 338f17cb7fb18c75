"""Errors of the built-in containers.

Two families, because they end in two different places:

    LoadFailure                 the model or script cannot be served; the process writes ONE line
                                ``MODELGATE-FAILURE: <reason>`` to stderr and exits non-zero, and the
                                gateway copies the reason into the endpoint's FailureReason.
    InvocationError             one request fails; the server answers ``status`` with ``message`` as a
    │                           text/plain body (the gateway wraps container errors into ModelError).
    ├── NoContent               204, empty body (XGBoost algorithm mode, empty payload)
    ├── BadRequest              400 (prediction failed: "Unable to evaluate payload provided: ...")
    ├── NotAcceptable           406 (Accept not supported, checked after prediction)
    ├── PayloadTooLarge         413
    ├── UnsupportedMediaType    415 (Content-Type not accepted, or the body does not parse)
    └── ServerError             500 (user code raised, selectable output failed, ...)

Only these cross the handler boundary: the server maps anything else to 500 ``<Type>: <message>``.
"""

from __future__ import annotations

import re
from typing import ClassVar

FAILURE_PREFIX = "MODELGATE-FAILURE: "


class LoadFailure(Exception):
    """The container cannot start serving; ``reason`` becomes the endpoint's FailureReason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class InvocationError(Exception):
    status: ClassVar[int] = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NoContent(InvocationError):
    status = 204


class BadRequest(InvocationError):
    status = 400


class NotAcceptable(InvocationError):
    status = 406


class PayloadTooLarge(InvocationError):
    status = 413


class UnsupportedMediaType(InvocationError):
    status = 415


class ServerError(InvocationError):
    status = 500


_XGB_LOCATION = re.compile(r"\[\d\d:\d\d:\d\d\] [^\s:]+:\d+: ")


def describe(exc: BaseException) -> str:
    """``<ExceptionType>: <message>``, the way a user's error is reported over the wire."""
    text = clean_message(str(exc))
    name = type(exc).__name__
    return f"{name}: {text}" if text else name


def clean_message(text: str) -> str:
    """An exception text without XGBoost's native stack trace and source location prefix."""
    cut = text.find("Stack trace:")
    if cut >= 0:
        text = text[:cut]
    return _XGB_LOCATION.sub("", text).strip()


def one_line(text: str, limit: int = 2000) -> str:
    """Collapse ``text`` to one line (the gateway reads the failure reason line by line)."""
    flat = " ".join(part.strip() for part in clean_message(text).splitlines() if part.strip())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."
