"""Fakes for the telemetry tests: a clock the test drives, and a recording HTTP poster."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from tests.fakes import FakeClock


@dataclass
class FakePoster:
    """Answers each POST with the next status in ``statuses`` (then 200); an Exception instance is raised."""

    statuses: list[int | Exception] = field(default_factory=list)
    calls: list[tuple[str, bytes, dict[str, str]]] = field(default_factory=list)
    closed: bool = False

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> int:
        self.calls.append((url, body, dict(headers)))
        if self.statuses:
            answer = self.statuses.pop(0)
            if isinstance(answer, Exception):
                raise answer
            return answer
        return 200

    async def close(self) -> None:
        self.closed = True

__all__ = ["FakeClock", "FakePoster"]
