"""What the fuzzer knows about the server's resources, so that requests can name ones that exist.

A :class:`Pool` is a set of names (or other values) the server holds now, kept current from the state
snapshots (List* answers) and from accepted requests. :func:`reference` draws from a pool most of the
time and makes a fresh value otherwise: a CreateEndpointConfig names a model that exists, so it can
succeed and reach the service; now and then it names one that does not.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from tests.fuzz.values import UNIFORM, presence_strategy

_counter = itertools.count(1)


@dataclass
class Pool:
    items: dict[str, Any] = field(default_factory=dict)  # value -> what is known about it

    def names(self) -> list[str]:
        return sorted(self.items)

    def add(self, name: Any, info: Any = None) -> None:
        if isinstance(name, str):
            self.items[name] = info if info is not None else self.items.get(name)

    def discard(self, name: Any) -> None:
        if isinstance(name, str):
            self.items.pop(name, None)

    def replace(self, names: Any) -> None:
        """The names the server listed; what was known about the ones that stay is kept."""
        self.items = {n: self.items.get(n) for n in names}

    def __len__(self) -> int:
        return len(self.items)


def next_name(prefix: str) -> str:
    """A name no request has used before (``prefix`` + a run-wide counter)."""
    return f"{prefix}{next(_counter)}"


def fresh(prefix: str) -> SearchStrategy[str]:
    """:func:`next_name` as a strategy (it draws nothing)."""
    return st.just(prefix).map(next_name)


INDEX = UNIFORM


def pick(items: Sequence[Any], u: float) -> Any:
    return items[int(u * len(items))]


def choice(draw: st.DrawFn, items: Sequence[Any]) -> Any:
    """One of ``items`` (not empty), about uniformly. The draw's bounds do not depend on ``items``: hypothesis
    replays and mutates earlier examples' draws and refuses a draw whose bounds changed, and these lists
    follow the server's state (and the earlier draws), not the draws alone."""
    return pick(items, draw(UNIFORM))


def reference(
    pool: Callable[[], list[str]], otherwise: SearchStrategy[Any], existing: float = 0.85
) -> SearchStrategy[Any]:
    """One of ``pool()`` (read when drawn) with probability ``existing``, else a draw from ``otherwise``.
    Every draw is made whatever the pool holds (see :func:`choice`)."""
    coin = presence_strategy(existing)

    @st.composite
    def draw_reference(draw: st.DrawFn) -> Any:
        use_pool = draw(coin)
        index = draw(INDEX)
        other = draw(otherwise)
        names = pool()
        return pick(names, index) if use_pool and names else other

    return draw_reference()
