"""Where experiments, their folded counts and their sequential looks live.

:class:`ExperimentStore` is the interface; ``sqlstore.SqlExperimentStore`` implements it over SQLAlchemy
and ``tests/experiments/fakes.py`` in memory. Implementations raise
:class:`~modelgate.experiments.errors.StoreUnavailable` when the storage fails.

The one subtle operation is :meth:`ExperimentStore.fold`: it adds a flushed event file's counts and
records the file's key *in the same transaction*, and does nothing if the key is already recorded. A
crash before the commit leaves neither; a crash after it leaves both; so every file is counted exactly
once however often the aggregator is restarted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from modelgate.experiments.entities import Experiment, ExperimentParams, VariantCounts, VariantSpec
from modelgate.experiments.sequential import Look

# (experiment id, variant) -> counts to add
Deltas = Mapping[tuple[int, str], VariantCounts]


class ExperimentStore(Protocol):
    def current(self, endpoint_name: str) -> Experiment | None:
        """The endpoint's open experiment, if any."""
        ...

    def latest(self, endpoint_name: str) -> Experiment | None:
        """The endpoint's most recent experiment, open or closed."""
        ...

    def get(self, experiment_id: int) -> Experiment | None: ...

    def history(self, endpoint_name: str) -> list[Experiment]:
        """Every experiment of the endpoint, oldest first."""
        ...

    def start(
        self, endpoint_name: str, params: ExperimentParams, variants: Sequence[VariantSpec], now: float
    ) -> Experiment:
        """Close the endpoint's open experiment (keeping its counts) and open a new one, atomically."""
        ...

    def close(self, endpoint_name: str, now: float) -> Experiment | None:
        """Close the open experiment; return it, or None if there was none."""
        ...

    def counts(self, experiment_id: int) -> dict[str, VariantCounts]: ...

    def fold(self, key: str, deltas: Deltas, now: float) -> bool:
        """Add ``deltas`` and record ``key`` atomically; False (and no change) if ``key`` was folded."""
        ...

    def folded_keys(self) -> set[str]: ...

    def looks(self, experiment_id: int) -> list[Look]:
        """Recorded looks in the order they were taken."""
        ...

    def add_looks(self, experiment_id: int, looks: Sequence[Look]) -> None: ...
