"""The request path: pick variant, fleet and instance from the routing table, forward, record.

Nothing here touches the database, a file, or a lock shared with slow work.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from modelgate.errors import ModelError, ModelgateError, ServiceUnavailable, ValidationError
from modelgate.policies.routing import choose_least_outstanding, choose_random, choose_weighted
from modelgate.routing.table import Instance, RoutingTable, VariantRoute
from modelgate.runtime.client import InstanceBadReply, InstanceClient, InstanceTimeout, Reply


class InvocationRecorder(Protocol):
    def record_invocation(
        self,
        endpoint: str,
        variant: str,
        fleet: str,
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
        fleet: str,
        status: int,
        model_latency_us: float,
        overhead_latency_us: float,
        instance_count: int,
    ) -> None:
        return None


@dataclass(slots=True)  # not frozen: one is made per request, and frozen fields cost a setattr call each
class Invocation:
    endpoint: str
    body: bytes
    content_type: str | None = None
    accept: str | None = None
    custom_attributes: str | None = None
    target_variant: str | None = None
    inference_id: str | None = None


class InvocationResult:
    """What the router got: ``reply`` (status < 300) or ``error``, and what :meth:`Router.record` needs.

    Not a dataclass: one is made per request, and slots with a plain ``__init__`` are the cheapest.
    """

    __slots__ = ("endpoint", "error", "fleet", "forwarded", "replied", "reply", "route", "started", "status")

    def __init__(
        self,
        endpoint: str,
        route: VariantRoute,
        fleet: str,
        status: int,
        reply: Reply | None,
        error: ModelgateError | None,
        started: float,
        forwarded: float,
        replied: float,
    ) -> None:
        self.endpoint = endpoint
        self.route = route
        self.fleet = fleet
        self.status = status
        self.reply = reply
        self.error = error
        self.started = started
        self.forwarded = forwarded
        self.replied = replied

    @property
    def variant(self) -> str:
        return self.route.name


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

    def begin(self, inv: Invocation, started: float, done: Callable[[InvocationResult], None]) -> None:
        """Route and forward one request; ``done(result)`` is called once the instance answered or failed.

        Raises for what is refused before a variant is chosen (unknown endpoint or variant, an endpoint
        whose route a restart has not published yet, no healthy instance); anything the instance did comes
        back in the result, answered or as ``error``, to be sent and then passed to :meth:`record`, so that
        ``OverheadLatency`` covers writing the answer.
        No task and no future: the answer's parser callback calls ``done`` (api/front.py).
        """
        route = self.table.get(inv.endpoint)
        if route is None:
            if self.table.expected(inv.endpoint):  # restarting: it exists, its instances are starting
                raise ServiceUnavailable(
                    f"Endpoint {inv.endpoint} of account {self.account_id} is starting after a server restart "
                    "and cannot serve yet; retry shortly."
                )
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
        forwarded = time.perf_counter()

        def answered(reply: Reply | None, exc: Exception | None) -> None:
            instance.outstanding -= 1
            error: ModelgateError | None = None
            if reply is not None:
                # ModelLatency is the instance's part alone: from the request handed to the kernel to the
                # answer's last chunk received (client.Reply); building the request and parsing the
                # answer are the gateway's own work, so OverheadLatency has them.
                sent, received = reply.sent, reply.received
                status = reply.status
                if status >= 300:
                    error = self._model_error(inv.endpoint, variant.name, status, reply.body.decode("utf-8", "replace"))
                    reply = None
            else:
                sent, received = forwarded, time.perf_counter()
                if isinstance(exc, InstanceTimeout):
                    status = 504
                    message = f"Instance {instance.id} did not answer within the invocation timeout."
                    error = self._model_error(inv.endpoint, variant.name, status, message)
                elif isinstance(exc, InstanceBadReply):
                    status = 500
                    error = self._model_error(inv.endpoint, variant.name, status, f"Instance {instance.id}: {exc}.")
                else:
                    # The instance died (or could not be reached) with the request in flight: not the model's
                    # answer, so not a ModelError; 503 as when a variant has no healthy instance, and retryable.
                    status = 503
                    error = ServiceUnavailable(
                        f"Instance {instance.id} of production variant {variant.name} stopped before answering "
                        f"({exc}); the model did not answer this request, which can be retried."
                    )
            done(InvocationResult(inv.endpoint, variant, instance.fleet, status, reply, error, started, sent, received))

        try:
            self.client.start_invoke(instance.base_url, inv.body, headers, answered)
        except BaseException:
            instance.outstanding -= 1
            raise

    async def invoke(self, inv: Invocation, started: float | None = None) -> InvocationResult:
        """:meth:`begin` for a coroutine (the A/B API and the ASGI way in)."""
        future: asyncio.Future[InvocationResult] = asyncio.get_running_loop().create_future()

        def done(result: InvocationResult) -> None:
            if not future.done():
                future.set_result(result)

        self.begin(inv, started if started is not None else time.perf_counter(), done)
        return await future

    def record(self, result: InvocationResult, finished: float | None = None) -> None:
        """Record a routed request once its answer is written (``finished``, default now).

        ModelLatency is from the request handed to the instance's connection (the write) to the
        arrival of its answer's last chunk, before the gateway parses it; OverheadLatency is the rest
        of the time from the request's arrival (``started``: its first chunk read from the client's
        connection) to ``finished``.
        """
        t_end = finished if finished is not None else time.perf_counter()
        model_us = (result.replied - result.forwarded) * 1e6
        overhead_us = (t_end - result.started) * 1e6 - model_us
        route = result.route
        self.recorder.record_invocation(
            result.endpoint,
            route.name,
            result.fleet,
            result.status,
            model_us,
            overhead_us if overhead_us > 0.0 else 0.0,
            route.instance_count,
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
