"""The experiments service: the anchor's API semantics over typed arguments.

``invoke`` (POST /invocation)
    With ``endpoint_variant``: **Manual**, that variant is the target, no assignment is written, 202.
    Else the user's live assignment on the endpoint's open experiment (200, its expiry refreshed), or a
    new choice by warm-up and the experiment's strategy, written as the assignment (201). If anything in
    that step fails (no open experiment, the assignment or experiment store down, a strategy error), the
    answer is **Fallback**, 202: the endpoint is invoked without a target variant so its own weights
    choose, as the anchor does. Errors refused before a variant runs (an unknown endpoint) pass through.
    The inference id is the caller's if it sends one it never used on the endpoint (else
    DuplicateInferenceId, 409), or a fresh UUID. Every invocation records which variant served its
    inference id, for which user, and appends an event, *also when the variant failed* (the model answered
    an error, timed out or died: ModelError; or the assigned variant had no healthy instance:
    ServiceUnavailable): the failure is an invocation of that variant with no reward and an error, so the
    bandit sees a 0-reward pull, and its inference can never be credited. The caller still gets the error.
``convert`` (POST /conversion)
    The reward is checked first (:func:`~modelgate.experiments.entities.check_reward`). A conversion
    must name the ``inference_id`` and ``user_id`` that /invocation returned: it is credited to the variant
    that *served that inference*, and refused (not counted) when this server never issued the id on the
    endpoint (InferenceNotFound, 404), when it was issued to another user (InferenceUserMismatch, 403),
    when the invocation failed (InferenceFailed, 409), or when the inference already has the rewards its
    experiment allows (``max_rewards_per_inference``, 1 by default: AlreadyConverted, 409). With
    ``endpoint_variant`` as well it is the anchor's Manual conversion (202), refused with VariantMismatch
    if the inference was served by another variant. A conversion with no ids (the anchor credited
    ``endpoint_variant`` alone, or drew a fresh variant for an unknown user) is refused with
    InvalidRequest: it could credit any variant with anything. If the served record cannot be read (the
    store is down and memory does not hold it): StoreUnavailable, 503, nothing counted.
``stats`` (POST /stats): the anchor's counts plus :mod:`~modelgate.experiments.analysis`'s answer, for the
    endpoint's latest experiment (open or closed). ExperimentNotFound (404) if there was never one.
``register``: from the endpoint's tags (``ab-testing:enabled=true`` and the parameters; 304 if not
    enabled) or from explicit parameters. Variants and initial weights are the endpoint's current ones;
    variants at weight 0 take no part. The same variants, weights and parameters as the open experiment
    leave it running (200); anything else closes it, its counts kept, and starts a new one (201).
``deregister``: closes the open experiment (the endpoint is being deleted).
``promote``: sends all traffic to the winner (or a named variant) with UpdateEndpointWeightsAndCapacities
    and closes the experiment. NoWinner (409) if no variant is named and the verdict names none.

``invoke`` and ``convert`` do no store I/O on the event loop. Assignments and served records go through
:class:`~modelgate.experiments.assignment_cache.AssignmentCache`: read from memory (a miss it cannot
answer reads the store in a worker thread), written to memory and to the store behind, in batches. A
write cannot fail on the request path; while the cache's backlog is full (the store has been failing
for long) it refuses new writes with StoreUnavailable, and the answer is Fallback as above. The open
experiment and its counts are cached for ``cache_seconds`` (1 s) and re-read in a worker thread, in the
background once cached (one read per endpoint at a time); the event log never blocks. ``stats`` reads
in a worker thread (see ``http``); ``register``, ``deregister`` and ``promote`` (rare, administrative)
call the experiment store directly.

Every event is durable before the answer goes out (:mod:`~modelgate.experiments.journal`); if it cannot
be written, the answer is StoreUnavailable (503) and nothing is acknowledged.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

import numpy as np

from modelgate.clock import Clock
from modelgate.errors import ModelgateError, ServiceUnavailable
from modelgate.experiments import recovery, strategies
from modelgate.experiments.analysis import Summary, summarize
from modelgate.experiments.assignment_cache import AssignmentCache
from modelgate.experiments.assignments import Served, StickyPolicy
from modelgate.experiments.entities import (
    FALLBACK,
    MANUAL,
    Experiment,
    ExperimentParams,
    VariantCounts,
    VariantSpec,
    check_reward,
    tags_enable_experiment,
)
from modelgate.experiments.errors import (
    AlreadyConverted,
    DuplicateInferenceId,
    ExperimentNotFound,
    InferenceFailed,
    InferenceNotFound,
    InferenceUserMismatch,
    InvalidRequest,
    NoVariants,
    NoWinner,
    UnknownVariant,
    VariantMismatch,
)
from modelgate.experiments.events import Event, EventLog
from modelgate.experiments.ports import EndpointCatalog, Invoker
from modelgate.experiments.store import ExperimentStore

logger = logging.getLogger(__name__)

_OpenExperiment = tuple[Experiment | None, dict[str, VariantCounts]]  # an endpoint's open experiment, its counts


@dataclass(slots=True)  # not frozen: one is made per A/B request, and a frozen field costs a setattr call
class Requester:
    """Who sent the request, for the event log and its filter."""

    source_ip: str | None = None
    user_agent: str | None = None


@dataclass(slots=True)  # not frozen: one is made per A/B request, and a frozen field costs a setattr call
class InvocationOutcome:
    status: int
    strategy: str
    endpoint_name: str
    target_variant: str | None
    endpoint_variant: str
    inference_id: str
    user_id: str
    body: bytes
    content_type: str


@dataclass(slots=True)  # not frozen: one is made per A/B request, and a frozen field costs a setattr call
class ConversionOutcome:
    status: int
    strategy: str
    endpoint_name: str
    endpoint_variant: str | None
    inference_id: str
    user_id: str
    reward: float


@dataclass(frozen=True, slots=True)
class Registration:
    status: int  # 201 started, 200 unchanged, 304 not enabled by tags
    endpoint_name: str
    experiment: Experiment | None


@dataclass(frozen=True, slots=True)
class Promotion:
    endpoint_name: str
    variant: str
    weights: dict[str, float]
    experiment_id: int


@dataclass(slots=True)  # not frozen: one is made per A/B request, and a frozen field costs a setattr call
class _Selection:
    status: int
    strategy: str
    target: str | None
    experiment_id: int | None


def _new_id() -> str:
    return str(uuid.uuid4())


class ExperimentService:
    def __init__(
        self,
        *,
        invoker: Invoker,
        catalog: EndpointCatalog,
        experiments: ExperimentStore,
        assignments: AssignmentCache,
        events: EventLog,
        clock: Clock,
        rng: np.random.Generator,
        policy: StickyPolicy | None = None,
        new_id: Callable[[], str] = _new_id,
        cache_seconds: float = 1.0,
    ) -> None:
        self._invoker = invoker
        self._catalog = catalog
        self._experiments = experiments
        self._assignments = assignments
        self._events = events
        self._clock = clock
        self._rng = rng
        self._policy = policy or StickyPolicy()
        self._new_id = new_id
        self._cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, Experiment | None, dict[str, VariantCounts]]] = {}
        self._loading: dict[str, asyncio.Task[_OpenExperiment]] = {}
        self._claims: set[tuple[str, str]] = set()  # (endpoint, caller's inference id) of invocations in flight

    # --- invocation ---------------------------------------------------------------------------------

    async def invoke(
        self,
        endpoint_name: str,
        data: bytes,
        *,
        content_type: str = "application/json",
        accept: str | None = None,
        user_id: str | None = None,
        inference_id: str | None = None,
        endpoint_variant: str | None = None,
        requester: Requester | None = None,
    ) -> InvocationOutcome:
        claim = None
        if inference_id is None:
            inference_id = self._new_id()
        else:
            claim = await self._claim(endpoint_name, inference_id)
        user_id = user_id or self._new_id()
        try:
            if endpoint_variant is not None:
                selection = _Selection(202, MANUAL, endpoint_variant, None)
            else:
                try:
                    selection = await self._select(endpoint_name, user_id)
                except Exception as exc:
                    logger.warning(
                        "A/B selection for %s failed, falling back to endpoint weights: %r", endpoint_name, exc
                    )
                    selection = _Selection(202, FALLBACK, None, None)
            try:
                result = await self._invoker.invoke(
                    endpoint_name, data, content_type, accept, selection.target, inference_id
                )
            except ServiceUnavailable as exc:  # the variant has no healthy instance: a failure of that variant
                if selection.target is not None:
                    self._failed(endpoint_name, selection, selection.target, inference_id, user_id, exc, requester)
                raise
            if result.error is not None:
                self._failed(endpoint_name, selection, result.variant, inference_id, user_id, result.error, requester)
                raise result.error
            now = self._clock.now()
            served = self._policy.served(
                endpoint_name, inference_id, result.variant, selection.experiment_id, selection.strategy, user_id, now
            )
            self._events.append(
                Event(
                    now,
                    "invocation",
                    selection.strategy,
                    endpoint_name,
                    selection.target,
                    result.variant,
                    inference_id,
                    user_id,
                    None,
                    *_who(requester),
                    selection.experiment_id,
                )
            )  # durable before the answer; StoreUnavailable if it cannot be written
            self._record_served(served)
        finally:
            if claim is not None:
                self._claims.discard(claim)
        return InvocationOutcome(
            selection.status,
            selection.strategy,
            endpoint_name,
            selection.target,
            result.variant,
            inference_id,
            user_id,
            result.body,
            result.content_type,
        )

    async def _claim(self, endpoint_name: str, inference_id: str) -> tuple[str, str]:
        """Reserve a caller's inference id for this invocation: refused if the endpoint served it before
        (a second use would reset what was credited to it) or a request in flight holds it."""
        key = (endpoint_name, inference_id)
        used = key in self._claims or await self._assignments.served(endpoint_name, inference_id, self._clock.now())
        if used or key in self._claims:  # checked again: another request may have claimed it meanwhile
            raise DuplicateInferenceId(
                f"inference_id {inference_id!r} was already used on endpoint {endpoint_name}; "
                "send a new one, or none to have one issued"
            )
        self._claims.add(key)
        return key

    def _failed(
        self,
        endpoint_name: str,
        selection: _Selection,
        variant: str,
        inference_id: str,
        user_id: str,
        error: ModelgateError,
        requester: Requester | None,
    ) -> None:
        """Count a failed invocation against its variant (no reward, an error); never creditable."""
        now = self._clock.now()
        try:
            self._events.append(
                Event(
                    now,
                    "invocation",
                    selection.strategy,
                    endpoint_name,
                    selection.target,
                    variant,
                    inference_id,
                    user_id,
                    None,
                    *_who(requester),
                    selection.experiment_id,
                    error.code,
                )
            )
        except Exception as exc:  # the caller gets the variant's error all the same
            logger.warning("could not log the failed A/B invocation %s: %r", inference_id, exc)
            return
        self._record_served(
            self._policy.served(
                endpoint_name, inference_id, variant, selection.experiment_id, selection.strategy, user_id, now,
                failed=True,
            )
        )  # fmt: skip

    def _record_served(self, served: Served) -> None:
        try:
            self._assignments.record_served(served)
        except Exception as exc:
            logger.warning("could not record which variant served %s: %r", served.inference_id, exc)

    async def _select(self, endpoint_name: str, user_id: str) -> _Selection:
        experiment, counts = await self._open_experiment(endpoint_name)
        if experiment is None:
            raise ExperimentNotFound(f"Endpoint {endpoint_name} has no open experiment")
        existing = await self._assignments.get(user_id, endpoint_name)
        # From here to the put, no await: a request of the same user that waited for the same store read
        # resumes after this one has written its choice, and finds it.
        now = self._clock.now()
        variant = self._policy.current(existing, experiment.variant_names, now)
        if existing is not None and variant is not None:
            renewal = self._policy.renewal(existing, now)
            if renewal is not None:
                self._assignments.put(renewal)
            return _Selection(200, experiment.params.strategy.value, variant, experiment.id)
        arms = experiment.arms(counts)
        choice = strategies.choose(experiment.params, arms, self._rng)
        self._assignments.put(self._policy.assign(user_id, endpoint_name, choice.variant, now))
        return _Selection(201, choice.strategy.value, choice.variant, experiment.id)

    async def _open_experiment(self, endpoint_name: str) -> _OpenExperiment:
        """The open experiment and its counts from memory, re-read in a worker thread every ``cache_seconds``.

        Counts only change when the aggregator folds a flush (every 60 s by default), and registration
        through this service drops the entry, so a second's staleness costs nothing and saves three
        queries per invocation. Another gateway's registration is seen within ``cache_seconds``. An entry
        that has aged is still answered while one read per endpoint refreshes it in the background (a
        read from a worker thread waits for the GIL while the loop is busy: requests should not wait for
        it). Without an entry (the first request, after a registration, or after a failed refresh),
        requests wait for that read, and a failed read fails each of them: Fallback.
        """
        now = self._clock.monotonic()
        cached = self._cache.get(endpoint_name)
        if cached is not None:
            if now - cached[0] >= self._cache_seconds:
                self._reload(endpoint_name, now)
            return cached[1], cached[2]
        return await asyncio.shield(self._reload(endpoint_name, now))

    def _reload(self, endpoint_name: str, now: float) -> asyncio.Task[_OpenExperiment]:
        load = self._loading.get(endpoint_name)
        if load is None:
            load = asyncio.ensure_future(asyncio.to_thread(self._read_open_experiment, endpoint_name))
            self._loading[endpoint_name] = load
            load.add_done_callback(lambda done: self._loaded(endpoint_name, now, done))
        return load

    def _read_open_experiment(self, endpoint_name: str) -> _OpenExperiment:
        experiment = self._experiments.current(endpoint_name)
        return experiment, self._experiments.counts(experiment.id) if experiment is not None else {}

    def _loaded(self, endpoint_name: str, started: float, load: asyncio.Task[_OpenExperiment]) -> None:
        if self._loading.get(endpoint_name) is not load:
            return  # a registration dropped it meanwhile: its answer may predate the registration
        del self._loading[endpoint_name]
        if load.cancelled():
            return
        error = load.exception()
        if error is None:
            experiment, counts = load.result()
            self._cache[endpoint_name] = (started, experiment, counts)
        elif self._cache.pop(endpoint_name, None) is not None:  # the next request waits for a read
            logger.warning("could not re-read the A/B experiment of %s: %r", endpoint_name, error)

    def _forget(self, endpoint_name: str) -> None:
        self._cache.pop(endpoint_name, None)
        self._loading.pop(endpoint_name, None)

    # --- conversion ---------------------------------------------------------------------------------

    async def convert(
        self,
        endpoint_name: str,
        *,
        user_id: str | None = None,
        inference_id: str | None = None,
        reward: float = 1.0,
        endpoint_variant: str | None = None,
        requester: Requester | None = None,
    ) -> ConversionOutcome:
        reward = check_reward(reward)
        if inference_id is None or user_id is None:
            raise InvalidRequest(
                "a conversion must name the inference_id and the user_id that /invocation returned; "
                "a conversion without them (endpoint_variant alone, or a user alone) is not accepted, "
                "since it could credit any variant"
            )
        found = await self._assignments.served(endpoint_name, inference_id, self._clock.now())
        limit = await self._max_rewards(endpoint_name, found)
        # From here on, no await: a conversion of the same inference that resumed first has marked it in
        # memory, and this one sees its mark.
        now = self._clock.now()
        record = self._assignments.peek_served(endpoint_name, inference_id, now) or found
        if record is None:
            raise InferenceNotFound(
                f"inference_id {inference_id!r} was not served on endpoint {endpoint_name} (or its record "
                "expired); only an inference id that /invocation returned can be credited"
            )
        if record.user_id != user_id:
            raise InferenceUserMismatch(f"inference_id {inference_id!r} was not issued to user_id {user_id!r}")
        if record.failed:
            raise InferenceFailed(
                f"inference_id {inference_id!r} failed on variant {record.variant}; a failed invocation "
                "cannot be credited (it counts as an invocation with no reward)"
            )
        if endpoint_variant is not None and endpoint_variant != record.variant:
            raise VariantMismatch(
                f"inference {inference_id} was served by variant {record.variant}, not {endpoint_variant}"
            )
        if record.conversions >= limit:
            raise AlreadyConverted(
                f"inference_id {inference_id!r} was already credited {record.conversions} time(s); its "
                f"experiment allows {limit} (max_rewards_per_inference)"
            )
        self._assignments.record_served(replace(record, conversions=record.conversions + 1))
        strategy = MANUAL if endpoint_variant is not None else record.strategy
        event = Event(
            now,
            "conversion",
            strategy,
            endpoint_name,
            None,
            record.variant,
            inference_id,
            user_id,
            reward,
            *_who(requester),
            record.experiment_id,
        )
        try:
            self._events.append(event)  # durable before the answer
        except Exception:
            self._assignments.record_served(record)  # not counted, so not marked
            raise
        status = 202 if endpoint_variant is not None else 200
        return ConversionOutcome(status, strategy, endpoint_name, record.variant, inference_id, user_id, reward)

    async def _max_rewards(self, endpoint_name: str, record: Served | None) -> int:
        """How many conversions the experiment that served ``record`` allows per inference."""
        if record is None:
            return 1
        experiment, _ = await self._open_experiment(endpoint_name)
        if experiment is None or experiment.id != record.experiment_id:
            if record.experiment_id is None:
                return 1  # a Manual or Fallback invocation: no experiment, the default
            experiment = await asyncio.to_thread(self._experiments.get, record.experiment_id)
        return experiment.params.max_rewards_per_inference if experiment is not None else 1

    # --- after a crash ------------------------------------------------------------------------------

    def restore(self, events: Iterable[Event]) -> int:
        """What the assignment store's write-behind lost in a kill, from the journal's events: see
        :func:`modelgate.experiments.recovery.restore`. Blocking: call it before serving."""
        return recovery.restore(events, self._assignments, self._policy, self._clock.now())

    # --- stats, registration, promotion -------------------------------------------------------------

    def stats(self, endpoint_name: str) -> Summary:
        experiment = self._experiments.latest(endpoint_name)
        if experiment is None:
            raise ExperimentNotFound(f"Endpoint {endpoint_name} not found")
        counts = self._experiments.counts(experiment.id)
        return summarize(experiment, counts, self._experiments.looks(experiment.id))

    def history(self, endpoint_name: str) -> list[Experiment]:
        return self._experiments.history(endpoint_name)

    def register(self, endpoint_name: str, params: ExperimentParams | None = None) -> Registration:
        if params is None:
            tags = self._catalog.tags(endpoint_name)
            if not tags_enable_experiment(tags):
                return Registration(304, endpoint_name, None)
            params = ExperimentParams.from_tags(tags)
        specs = tuple(VariantSpec(n, float(w)) for n, w in self._catalog.variants(endpoint_name) if w > 0)
        if not specs:
            raise NoVariants(f"endpoint {endpoint_name} has no variant with a positive weight")
        if params.control is not None and params.control not in {s.name for s in specs}:
            raise UnknownVariant(f"control {params.control} is not a variant of {endpoint_name} with traffic")
        self._forget(endpoint_name)
        current = self._experiments.current(endpoint_name)
        if current is not None and current.params == params and current.variants == specs:
            return Registration(200, endpoint_name, current)
        return Registration(
            201, endpoint_name, self._experiments.start(endpoint_name, params, specs, self._clock.now())
        )

    def deregister(self, endpoint_name: str) -> Experiment | None:
        self._forget(endpoint_name)
        return self._experiments.close(endpoint_name, self._clock.now())

    async def promote(self, endpoint_name: str, variant: str | None = None) -> Promotion:
        experiment = self._experiments.current(endpoint_name)
        if experiment is None:
            raise ExperimentNotFound(f"Endpoint {endpoint_name} has no open experiment")
        if variant is None:
            verdict = self.stats(endpoint_name).verdict
            if verdict.kind != "winner" or verdict.variant is None:
                raise NoWinner(f"the verdict for {endpoint_name} is {verdict}; name a variant to promote anyway")
            variant = verdict.variant
        endpoint_variants = [name for name, _ in self._catalog.variants(endpoint_name)]
        if variant not in experiment.variant_names or variant not in endpoint_variants:
            raise UnknownVariant(f"{variant} is not a variant of the experiment on {endpoint_name}")
        weights = {name: 1.0 if name == variant else 0.0 for name in endpoint_variants}
        await self._catalog.set_weights(endpoint_name, weights)
        self._forget(endpoint_name)
        self._experiments.close(endpoint_name, self._clock.now())
        return Promotion(endpoint_name, variant, weights, experiment.id)


def _who(requester: Requester | None) -> tuple[str | None, str | None]:
    return (requester.source_ip, requester.user_agent) if requester else (None, None)
