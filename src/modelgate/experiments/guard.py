"""Which A/B requests are accepted: the checks of the REST adapter (:mod:`~modelgate.experiments.http`).

A browser may send a *CORS-simple* request to any site without asking (``text/plain``, form encodings,
no custom header), so a web page could otherwise forge conversions or promote a variant on a server
bound to the loopback (fault-and-attack review D9). Every state-changing route therefore requires
``Content-Type: application/json`` (:func:`require_json`, else 415 UnsupportedMediaType), which a
browser sends cross-origin only after a CORS preflight that this server never approves.

The administrative routes (``/register``, ``/promote``) are guarded like the control plane besides: the
request must carry a header of the AWS protocols (``Authorization``, ``X-Amz-Date`` or ``X-Amz-Target``),
as boto3, the AWS CLI and ``modelgate ab-promote`` send (:class:`AwsProtocolGuard`, else 403
AccessDenied). :class:`AdminGuard` is the seam where request authentication (SigV4 against configured
keys) goes when the gateway has it: the adapter takes any implementation.
"""

from __future__ import annotations

from typing import Protocol

from modelgate.experiments.errors import AccessDenied, UnsupportedMediaType


class Request(Protocol):
    """What the checks see of a request."""

    method: str
    path: str
    content_type: str

    def has_header(self, name: bytes) -> bool: ...


class AdminGuard(Protocol):
    def check(self, request: Request) -> None:
        """Raise :class:`AccessDenied` unless the request may administer experiments."""
        ...


class AwsProtocolGuard:
    """The administrative routes' guard until the gateway authenticates requests: the request must carry
    a header of the AWS protocols (which no browser sends cross-origin without a preflight), as the
    control plane requires X-Amz-Target. Replace it with a SigV4 check when there are keys to check."""

    HEADERS = (b"authorization", b"x-amz-date", b"x-amz-target")

    def check(self, request: Request) -> None:
        if not any(request.has_header(h) for h in self.HEADERS):
            raise AccessDenied(
                f"{request.path} is administrative: send it as an AWS client does, with an Authorization, "
                "X-Amz-Date or X-Amz-Target header (modelgate ab-promote does)"
            )


def require_json(request: Request) -> None:
    media = request.content_type.partition(";")[0].strip().lower()
    if media != "application/json":
        shown = request.content_type or "none"
        raise UnsupportedMediaType(
            f"{request.method} {request.path} requires Content-Type: application/json (got {shown})"
        )
