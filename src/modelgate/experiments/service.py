"""The experiments service: the anchor's API semantics over typed arguments.

``invoke`` (POST /invocation)
    With ``endpoint_variant``: **Manual**, that variant is the target, no assignment is written, 202.
    Else the user's live assignment on the endpoint's open experiment (200, its expiry refreshed), or a
    new choice by warm-up and the experiment's strategy, written as the assignment (201). If anything in
    that step fails (no open experiment, the assignment or experiment store down, a strategy error), the
    answer is **Fallback**, 202: the endpoint is invoked without a target variant so its own weights
    choose, as the anchor does. Invocation errors (ModelError, an unknown endpoint) pass through.
    Every successful invocation records which variant served its ``inference_id`` and appends an event.
``convert`` (POST /conversion)
    The reward is checked first (:func:`~modelgate.experiments.entities.check_reward`). It is credited
    to the variant that *served* the user: with ``endpoint_variant``, that one (Manual, 202; refused
    with VariantMismatch if the inference was served by another); else the variant that served
    ``inference_id``, else the user's live assignment (200). The anchor drew a fresh variant (201) for a
    user it did not know; here that is AssignmentNotFound (404), and a conversion is never credited to a
    variant the user did not see. If the stores fail: Fallback, 202, and the event goes to the log
    without a variant, for the aggregator to attribute once the store answers again.
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
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from modelgate.clock import Clock
from modelgate.experiments import strategies
from modelgate.experiments.analysis import Summary, summarize
from modelgate.experiments.assignment_cache import AssignmentCache
from modelgate.experiments.assignments import StickyPolicy
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
    AssignmentNotFound,
    ExperimentNotFound,
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


@dataclass(frozen=True, slots=True)
class Requester:
    """Who sent the request, for the event log and its filter."""

    source_ip: str | None = None
    user_agent: str | None = None


@dataclass(frozen=True, slots=True)
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


@dataclass(frozen=True, slots=True)
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


@dataclass(frozen=True, slots=True)
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
        inference_id = inference_id or self._new_id()
        user_id = user_id or self._new_id()
        if endpoint_variant is not None:
            selection = _Selection(202, MANUAL, endpoint_variant, None)
        else:
            try:
                selection = await self._select(endpoint_name, user_id)
            except Exception as exc:
                logger.warning("A/B selection for %s failed, falling back to endpoint weights: %r", endpoint_name, exc)
                selection = _Selection(202, FALLBACK, None, None)
        result = await self._invoker.invoke(endpoint_name, data, content_type, accept, selection.target, inference_id)
        now = self._clock.now()
        served = self._policy.served(
            endpoint_name, inference_id, result.variant, selection.experiment_id, selection.strategy, user_id, now
        )
        try:
            self._assignments.record_served(served)
        except Exception as exc:
            logger.warning("could not record which variant served %s: %r", inference_id, exc)
        self._log(
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
        )
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

    async def _latest_experiment(self, endpoint_name: str) -> Experiment | None:
        """The open experiment is the latest one (starting one closes the other); else ask the store."""
        experiment, _ = await self._open_experiment(endpoint_name)
        if experiment is not None:
            return experiment
        return await asyncio.to_thread(self._experiments.latest, endpoint_name)

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
        if endpoint_variant is not None:
            selection = await self._manual_conversion(endpoint_name, inference_id, endpoint_variant)
        else:
            try:
                found = await self._served_variant(endpoint_name, user_id, inference_id)
            except Exception as exc:
                logger.warning("A/B conversion lookup for %s failed; left for the aggregator: %r", endpoint_name, exc)
                found = _Selection(202, FALLBACK, None, None)
            if found is None:
                raise AssignmentNotFound(
                    f"no variant was served to user_id {user_id!r} or inference_id {inference_id!r} on "
                    f"endpoint {endpoint_name}; the conversion is not credited"
                )
            selection = found
        user = user_id or self._new_id()
        inference = inference_id or self._new_id()
        self._log(
            Event(
                self._clock.now(),
                "conversion",
                selection.strategy,
                endpoint_name,
                None,
                selection.target,
                inference,
                user,
                reward,
                *_who(requester),
                selection.experiment_id,
            )
        )
        return ConversionOutcome(
            selection.status, selection.strategy, endpoint_name, selection.target, inference, user, reward
        )

    async def _manual_conversion(self, endpoint_name: str, inference_id: str | None, variant: str) -> _Selection:
        record = None
        if inference_id is not None:
            try:
                record = await self._assignments.served(endpoint_name, inference_id, self._clock.now())
            except Exception as exc:
                logger.warning("could not check which variant served %s: %r", inference_id, exc)
        if record is not None and record.variant != variant:
            raise VariantMismatch(f"inference {inference_id} was served by variant {record.variant}, not {variant}")
        return _Selection(202, MANUAL, variant, record.experiment_id if record else None)

    async def _served_variant(
        self, endpoint_name: str, user_id: str | None, inference_id: str | None
    ) -> _Selection | None:
        now = self._clock.now()
        if inference_id is not None:
            record = await self._assignments.served(endpoint_name, inference_id, now)
            if record is not None:
                return _Selection(200, record.strategy, record.variant, record.experiment_id)
        if user_id is None:
            return None
        existing = await self._assignments.get(user_id, endpoint_name)
        if existing is None or existing.expires_at <= now:
            return None
        renewal = self._policy.renewal(existing, now)
        if renewal is not None:
            self._assignments.put(renewal)
        experiment = await self._latest_experiment(endpoint_name)
        if experiment is None:  # the assignment outlived every experiment record: credit it, unlabelled
            return _Selection(200, FALLBACK, existing.variant, None)
        experiment_id = experiment.id if existing.variant in experiment.variant_names else None
        return _Selection(200, experiment.params.strategy.value, existing.variant, experiment_id)

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

    def _log(self, event: Event) -> None:
        try:
            self._events.append(event)
        except Exception:
            logger.exception("could not log an A/B %s event", event.type)


def _who(requester: Requester | None) -> tuple[str | None, str | None]:
    return (requester.source_ip, requester.user_agent) if requester else (None, None)
