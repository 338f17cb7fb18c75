"""The request path: pick variant, fleet and instance from the routing table, forward, record.

Nothing here touches the database, a file, or a lock shared with slow work.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Protocol

from modelgate.errors import ModelError, ServiceUnavailable, ValidationError
from modelgate.policies.routing import choose_least_outstanding, choose_random, choose_weighted
from modelgate.routing.table import Instance, RoutingTable, VariantRoute
from modelgate.runtime.client import InstanceClient, InstanceTimeout, InstanceUnreachable, Reply


class InvocationRecorder(Protocol):
    def record_invocation(
        self,
        endpoint: str,
        variant: str,
        status: int,
        model_latency_us: float,
        overhead_latency_us: float,
        instance_count: int,
    ) -> None: ...


class NullRecorder:
    def record_invocation(
        self,
        endpoint: str,
        variant: str,
        status: int,
        model_latency_us: float,
        overhead_latency_us: float,
        instance_count: int,
    ) -> None:
        return None


@dataclass(frozen=True, slots=True)
class Invocation:
    endpoint: str
    body: bytes
    content_type: str | None = None
    accept: str | None = None
    custom_attributes: str | None = None
    target_variant: str | None = None
    inference_id: str | None = None


@dataclass(frozen=True, slots=True)
class InvocationResult:
    variant: str
    reply: Reply


class Router:
    def __init__(
        self,
        table: RoutingTable,
        client: InstanceClient,
        recorder: InvocationRecorder,
        account_id: str,
        log_stream_arn: str,
        rng: random.Random | None = None,
    ) -> None:
        self.table = table
        self.client = client
        self.recorder = recorder
        self.account_id = account_id
        self._log_arn_prefix = log_stream_arn
        self._random = (rng or random.Random()).random

    def _pick_variant(
        self, inv: Invocation, variants: tuple[VariantRoute, ...], cum: tuple[float, ...]
    ) -> VariantRoute:
        if inv.target_variant is not None:
            for v in variants:
                if v.name == inv.target_variant:
                    return v
            raise ValidationError(
                f"The variant {inv.target_variant} is not a production variant of endpoint {inv.endpoint}."
            )
        if len(variants) == 1:
            return variants[0]
        i = choose_weighted(cum, self._random())
        if i < 0:
            raise ValidationError(
                f"Endpoint {inv.endpoint} has no production variant with a weight above zero; "
                "name one with TargetVariant."
            )
        return variants[i]

    def _pick_instance(self, variant: VariantRoute, endpoint: str) -> Instance:
        fleets = variant.fleets
        if len(fleets) == 1:
            fleet = fleets[0]
        else:
            j = choose_weighted(variant.cum_shares, self._random())
            fleet = fleets[j if j >= 0 else 0]
        instances = fleet.instances
        n = len(instances)
        if n == 0:
            raise ServiceUnavailable(
                f"Variant {variant.name} of endpoint {endpoint} has no healthy instance right now; retry shortly."
            )
        if n == 1:
            return instances[0]
        if variant.random_routing:
            return instances[choose_random(n, self._random())]
        return instances[choose_least_outstanding([i.outstanding for i in instances], self._random())]

    async def invoke(self, inv: Invocation, started: float | None = None) -> InvocationResult:
        t0 = started if started is not None else time.perf_counter()
        route = self.table.get(inv.endpoint)
        if route is None:
            raise ValidationError(f"Endpoint {inv.endpoint} of account {self.account_id} not found.")
        variant = self._pick_variant(inv, route.variants, route.cum_weights)
        instance = self._pick_instance(variant, inv.endpoint)
        headers: dict[str, str] = {}
        if inv.content_type is not None:
            headers["Content-Type"] = inv.content_type
        if inv.accept is not None:
            headers["Accept"] = inv.accept
        if inv.custom_attributes is not None:
            headers["X-Amzn-SageMaker-Custom-Attributes"] = inv.custom_attributes
        if inv.inference_id is not None:
            headers["X-Amzn-SageMaker-Inference-Id"] = inv.inference_id
        instance.outstanding += 1
        t1 = time.perf_counter()
        try:
            reply = await self.client.invoke(instance.base_url, inv.body, headers)
        except InstanceUnreachable as exc:
            self._record(inv.endpoint, variant, 500, t0, t1)
            raise self._model_error(
                inv.endpoint,
                variant.name,
                500,
                f"Instance {instance.id} stopped before answering ({exc}).",
            ) from exc
        except InstanceTimeout as exc:
            self._record(inv.endpoint, variant, 504, t0, t1)
            raise self._model_error(
                inv.endpoint,
                variant.name,
                504,
                f"Instance {instance.id} did not answer within the invocation timeout.",
            ) from exc
        finally:
            instance.outstanding -= 1
        self._record(inv.endpoint, variant, reply.status, t0, t1)
        if reply.status >= 300:
            message = reply.body.decode("utf-8", "replace")
            raise self._model_error(inv.endpoint, variant.name, reply.status, message)
        return InvocationResult(variant.name, reply)

    def _record(self, endpoint: str, variant: VariantRoute, status: int, t0: float, t1: float) -> None:
        t2 = time.perf_counter()
        model_us = (t2 - t1) * 1e6
        total_us = (t2 - t0) * 1e6
        self.recorder.record_invocation(
            endpoint, variant.name, status, model_us, max(0.0, total_us - model_us), variant.instance_count
        )

    def _model_error(self, endpoint: str, variant: str, status: int, message: str) -> ModelError:
        kind = "client" if 400 <= status < 500 else "server"
        log_arn = f"{self._log_arn_prefix}{endpoint}"
        return ModelError(
            f'Received {kind} error ({status}) from primary with message "{message}". '
            f"See {log_arn} in account {self.account_id} for more information.",
            original_status=status,
            original_message=message,
            log_stream_arn=log_arn,
        )
