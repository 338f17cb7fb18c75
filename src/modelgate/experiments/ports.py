"""What the experiments package needs from the gateway, as Protocols the lead implements.

- :class:`Invoker`: invoke an endpoint, optionally pinned to a variant (the runtime router).
- :class:`EndpointCatalog`: an endpoint's variants with their current weights, its tags, and
  UpdateEndpointWeightsAndCapacities (the control plane).
- :class:`MetricsPublisher`: custom metrics (the metric store), for Invocations, Conversions and Rewards.

Errors: what failed *in a variant* (the model answered an error, timed out or died: ModelError) comes
back as the result's ``error``, with the variant that failed, so that the service can count the failure
against it; ``Invoker.invoke`` raises :class:`modelgate.errors.ModelgateError` subclasses for what is
refused before a variant runs (ValidationError for an unknown endpoint or variant, ServiceUnavailable
when the variant has no healthy instance). The experiments API answers with either error unchanged.
``EndpointCatalog`` raises a ModelgateError for an unknown endpoint.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from modelgate.errors import ModelgateError


class InvocationResult(Protocol):
    @property
    def variant(self) -> str:
        """The production variant that answered (x-Amzn-Invoked-Production-Variant)."""
        ...

    @property
    def status(self) -> int: ...

    @property
    def error(self) -> ModelgateError | None:
        """Why the variant failed (then ``body`` is empty), or None when it answered."""
        ...

    @property
    def body(self) -> bytes: ...

    @property
    def content_type(self) -> str: ...


class Invoker(Protocol):
    async def invoke(
        self,
        endpoint_name: str,
        body: bytes,
        content_type: str,
        accept: str | None,
        target_variant: str | None,
        inference_id: str,
    ) -> InvocationResult:
        """InvokeEndpoint; ``target_variant=None`` lets the endpoint's own weights choose."""
        ...


class EndpointCatalog(Protocol):
    def variants(self, endpoint_name: str) -> list[tuple[str, float]]:
        """(variant name, current weight) in the endpoint's order."""
        ...

    def tags(self, endpoint_name: str) -> Mapping[str, str]: ...

    async def set_weights(self, endpoint_name: str, weights: Mapping[str, float]) -> None:
        """UpdateEndpointWeightsAndCapacities with DesiredWeight per variant."""
        ...


class MetricsPublisher(Protocol):
    def put(
        self,
        namespace: str,
        name: str,
        dimensions: Mapping[str, str],
        value: float,
        unit: str,
        timestamp: float,
    ) -> None: ...
