"""What the HTTP server hands a model handler, and what it gets back.

The server only does HTTP (headers in, bytes out); a handler (XGBoost algorithm mode, or a user
script) turns one :class:`Invocation` into one :class:`Reply` or raises an
:class:`~modelgate.containers.errors.InvocationError`. Handlers are synchronous: the server decides
whether a call runs on the event loop or on a worker thread (see ``scheduling``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Invocation:
    body: bytes
    content_type: str | None  # the Content-Type header as sent, None when absent
    accept: str | None  # the Accept header as sent, None when absent
    custom_attributes: str | None  # X-Amzn-SageMaker-Custom-Attributes as sent


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: bytes
    content_type: str | None = None
    custom_attributes: str | None = None  # echoed to the caller only when the handler sets it


class Handler(Protocol):
    # How long a call is expected to take before any was measured, in seconds; the scheduler runs
    # cheap calls on the event loop and the rest on worker threads.
    initial_cost_estimate: float

    def invoke(self, request: Invocation) -> Reply: ...

    def execution_parameters(self) -> Reply | None:
        """The answer to ``GET /execution-parameters``, or None when this handler has none (404)."""
        ...
