"""The nouns of an A/B experiment, as frozen dataclasses.

Reward semantics (one rule, used by the strategies, the analysis and the HTTP API): every invocation
is one trial; a conversion carries a reward in [0, 1] (1 when the caller sends none), and a variant's
successes are the sum of its rewards. A reward of 1 is a full conversion, 0 an explicit "no", and a
fraction a partial success (Thompson sampling then updates Beta(alpha + reward, beta + 1 - reward)).
Anything outside [0, 1], NaN or infinity is refused with :class:`InvalidReward` before it is logged.
Because invocations and conversions are counted separately, a variant can show more reward than
invocations (several rewards per inference when the experiment allows them, or conversions folded before
their invocations); every consumer therefore clamps successes to the number of invocations (see
:meth:`VariantCounts.successes`).

A failed invocation (the model answered an error, timed out, or the variant had no healthy instance) is
a trial too: it counts as an invocation of its variant with no reward, and as an error. A variant that
fails therefore loses the bandit's favour and the test, as a variant whose users never convert would;
and its inference can never be credited (see :mod:`modelgate.experiments.service`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from modelgate.experiments.errors import InvalidParameter, InvalidReward, InvalidStrategy

# Endpoint tags read at registration (the anchor's names, plus our sequential-test settings).
TAG_ENABLED = "ab-testing:enabled"
TAG_STRATEGY = "ab-testing:strategy"
TAG_EPSILON = "ab-testing:epsilon"
TAG_WARMUP = "ab-testing:warmup"
TAG_ALPHA = "ab-testing:alpha"
TAG_HORIZON = "ab-testing:horizon"
TAG_LOOKS = "ab-testing:looks"
TAG_CONTROL = "ab-testing:control"
TAG_MAX_REWARDS = "ab-testing:max-rewards-per-inference"


class Strategy(StrEnum):
    """A strategy an experiment can be configured with (the anchor's STRATEGY_NAME values)."""

    WEIGHTED_SAMPLING = "WeightedSampling"
    EPSILON_GREEDY = "EpsilonGreedy"
    UCB1 = "UCB1"
    THOMPSON_SAMPLING = "ThompsonSampling"


# Labels reported in answers and events besides the strategies: the caller chose the variant, or the
# stores failed and the endpoint's own weights chose it.
MANUAL = "Manual"
FALLBACK = "Fallback"
MAX_REWARDS_PER_INFERENCE = 1000
# The largest warm-up and horizon (invocations per variant): far beyond what an experiment on one machine
# serves, and well inside the store's 64-bit integers (a larger number was a 500 when it was written).
MAX_INVOCATIONS_PER_VARIANT = 1_000_000_000


def check_reward(value: float) -> float:
    """Return ``value`` as a float if it is a valid reward, else raise :class:`InvalidReward`."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidReward(f"reward must be a number in [0, 1], got {value!r}")
    try:
        reward = float(value)
    except OverflowError:  # an integer of hundreds of digits (JSON writes them): beyond a float
        raise InvalidReward(
            "reward must be in [0, 1] (1 is a full conversion), got a number beyond the float range"
        ) from None
    if not math.isfinite(reward) or reward < 0.0 or reward > 1.0:
        raise InvalidReward(f"reward must be in [0, 1] (1 is a full conversion), got {value!r}")
    return reward


@dataclass(frozen=True, slots=True)
class VariantCounts:
    """What the aggregator folded for one variant of one experiment."""

    invocations: int = 0  # every invocation, failed ones included (a failure is a trial with no reward)
    conversions: int = 0
    reward_sum: float = 0.0
    errors: int = 0  # the invocations that failed

    def plus(self, other: VariantCounts) -> VariantCounts:
        return VariantCounts(
            self.invocations + other.invocations,
            self.conversions + other.conversions,
            self.reward_sum + other.reward_sum,
            self.errors + other.errors,
        )

    @property
    def successes(self) -> float:
        """Reward credited to this variant, clamped to [0, invocations]."""
        return min(max(self.reward_sum, 0.0), float(self.invocations))


@dataclass(frozen=True, slots=True)
class Arm:
    """One variant as the strategies see it: its initial weight and its folded counts."""

    name: str
    initial_weight: float
    counts: VariantCounts = field(default_factory=VariantCounts)

    @property
    def invocations(self) -> int:
        return self.counts.invocations

    @property
    def successes(self) -> float:
        return self.counts.successes


@dataclass(frozen=True, slots=True)
class ExperimentParams:
    """How an experiment chooses variants and when its sequential test may stop.

    ``horizon`` is the planned number of invocations per variant at which the test has spent all of its
    ``alpha``; ``looks`` is how many equally spaced interim analyses it takes on the way (see
    :mod:`modelgate.experiments.sequential`). ``control`` defaults to the endpoint's first variant.

    ``max_rewards_per_inference`` (1) is how many conversions one served inference may be credited with;
    a conversion beyond it is refused (AlreadyConverted). Raise it only when one answer can honestly
    earn several rewards (the successes are clamped to the invocations all the same).

    ``alpha`` defaults to 0.03, not the customary 0.05: the test's false-winner rate is alpha itself
    (4.9% measured at 0.05), which leaves no margin under a "at most 5% of A/A experiments" promise; at
    0.03 it measures 3.0% while the power to find +3 points at 0.30 with 5,000 users per variant and ten
    looks stays at 84% (89% at 0.05). Set the ``ab-testing:alpha`` tag to choose otherwise.
    """

    strategy: Strategy = Strategy.THOMPSON_SAMPLING
    epsilon: float = 0.1
    warmup: int = 0
    alpha: float = 0.03
    horizon: int = 10_000
    looks: int = 10
    control: str | None = None
    max_rewards_per_inference: int = 1

    def __post_init__(self) -> None:
        if not 0.0 <= self.epsilon <= 1.0:
            raise InvalidParameter(f"epsilon must be in [0, 1], got {self.epsilon}")
        if not 0 <= self.warmup <= MAX_INVOCATIONS_PER_VARIANT:
            raise InvalidParameter(f"warmup must be in [0, {MAX_INVOCATIONS_PER_VARIANT}], got {self.warmup}")
        if not 0.0 < self.alpha < 0.5:
            raise InvalidParameter(f"alpha must be in (0, 0.5), got {self.alpha}")
        if not 1 <= self.horizon <= MAX_INVOCATIONS_PER_VARIANT:
            raise InvalidParameter(
                f"horizon must be in [1, {MAX_INVOCATIONS_PER_VARIANT}] invocations per variant, got {self.horizon}"
            )
        if not 1 <= self.looks <= 50:
            raise InvalidParameter(f"looks must be in [1, 50], got {self.looks}")
        if not 1 <= self.max_rewards_per_inference <= MAX_REWARDS_PER_INFERENCE:
            raise InvalidParameter(
                f"max_rewards_per_inference must be in [1, {MAX_REWARDS_PER_INFERENCE}], "
                f"got {self.max_rewards_per_inference}"
            )

    @classmethod
    def from_tags(cls, tags: Mapping[str, str]) -> ExperimentParams:
        """Read the ``ab-testing:*`` tags; absent tags take the anchor's defaults."""
        default = cls()
        raw_strategy = tags.get(TAG_STRATEGY, default.strategy.value)
        try:
            strategy = Strategy(raw_strategy)
        except ValueError:
            names = ", ".join(s.value for s in Strategy)
            raise InvalidStrategy(f"unknown strategy {raw_strategy!r}; expected one of {names}") from None
        return cls(
            strategy=strategy,
            epsilon=_number(tags, TAG_EPSILON, default.epsilon),
            warmup=_integer(tags, TAG_WARMUP, default.warmup),
            alpha=_number(tags, TAG_ALPHA, default.alpha),
            horizon=_integer(tags, TAG_HORIZON, default.horizon),
            looks=_integer(tags, TAG_LOOKS, default.looks),
            control=tags.get(TAG_CONTROL) or None,
            max_rewards_per_inference=_integer(tags, TAG_MAX_REWARDS, default.max_rewards_per_inference),
        )


def _number(tags: Mapping[str, str], key: str, default: float) -> float:
    raw = tags.get(key)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise InvalidParameter(f"tag {key} must be a number, got {raw!r}") from None
    if not math.isfinite(value):
        raise InvalidParameter(f"tag {key} must be finite, got {raw!r}")
    return value


def _integer(tags: Mapping[str, str], key: str, default: int) -> int:
    raw = tags.get(key)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise InvalidParameter(f"tag {key} must be an integer, got {raw!r}") from None


def tags_enable_experiment(tags: Mapping[str, str]) -> bool:
    return tags.get(TAG_ENABLED, "").strip().lower() == "true"


@dataclass(frozen=True, slots=True)
class VariantSpec:
    name: str
    initial_weight: float


@dataclass(frozen=True, slots=True)
class Experiment:
    """One registration of an endpoint. A new registration closes the previous one (its counts stay)."""

    id: int
    endpoint_name: str
    params: ExperimentParams
    variants: tuple[VariantSpec, ...]
    created_at: float
    closed_at: float | None = None

    @property
    def variant_names(self) -> tuple[str, ...]:
        return tuple(v.name for v in self.variants)

    @property
    def control(self) -> str:
        return self.params.control or self.variants[0].name

    @property
    def is_open(self) -> bool:
        return self.closed_at is None

    def arms(self, counts: Mapping[str, VariantCounts]) -> list[Arm]:
        return [Arm(v.name, v.initial_weight, counts.get(v.name, VariantCounts())) for v in self.variants]
