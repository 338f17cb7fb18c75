"""Fakes shared by every test folder (STYLE: share the fakes, never copy one)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any


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


class FakeProcess:
    """A process that runs until signalled (``ProcessHandle``)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._code: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def wait(self) -> int:
        return await asyncio.shield(self._code)

    def signal_group(self, sig: int) -> None:
        if not self._code.done():
            self._code.set_result(-sig)


class FakeSpawner:
    """A ``Spawner`` that records what it was asked to start, and how many starts were pending (spawned,
    not yet healthy by ``FakeInstanceClient``) at each spawn."""

    def __init__(self, client: FakeInstanceClient) -> None:
        self.client = client
        self.spawned: list[tuple[tuple[str, ...], dict[str, str]]] = []
        self.pending_at_spawn: list[int] = []

    async def spawn(self, argv: tuple[str, ...], env: Any, cwd: Path, log_path: Path) -> FakeProcess:
        self.spawned.append((argv, dict(env)))
        self.pending_at_spawn.append(len(self.spawned) - len(self.client.healthy))
        return FakeProcess(2**30 + len(self.spawned))  # beyond pid_max: no real process has it


class FakeInstanceClient:
    """The instance client's health check: every instance is healthy after ``startup`` seconds."""

    def __init__(self, startup: float = 0.05) -> None:
        self.startup = startup
        self.healthy: set[str] = set()

    async def ping(self, base_url: str) -> bool:
        await asyncio.sleep(self.startup)
        self.healthy.add(base_url)
        return True

    def forget(self, base_url: str) -> None:
        return None
