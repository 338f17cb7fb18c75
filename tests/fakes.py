"""Fakes shared by every test folder (STYLE: share the fakes, never copy one)."""

from __future__ import annotations


class FakeClock:
    """A clock tests drive: ``advance`` (or ``set``) moves wall and monotonic time together."""

    def __init__(self, now: float = 1_700_000_000.0, monotonic: float = 0.0) -> None:
        self._now = now
        self._mono = monotonic

    def now(self) -> float:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    def set(self, now: float) -> None:
        self._mono += max(0.0, now - self._now)
        self._now = now

    def advance(self, seconds: float) -> None:
        self.set(self._now + seconds)
