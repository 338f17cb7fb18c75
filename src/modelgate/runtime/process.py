"""Spawning instance processes, behind a small interface that unit tests can replace.

Each instance is its own session (process group), so stopping it reaches whatever it forked, and on
Linux it gets ``PR_SET_PDEATHSIG=SIGKILL`` so it cannot outlive a killed server. A restarted server
also reaps instances recorded in the store (see ``reap``), in case the signal could not be set.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import socket
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

FAILURE_PREFIX = "MODELGATE-FAILURE: "
INSTANCE_ENV = "MODELGATE_INSTANCE_ID"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _set_pdeathsig() -> None:
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class ProcessHandle(Protocol):
    @property
    def pid(self) -> int: ...

    async def wait(self) -> int: ...

    def signal_group(self, sig: int) -> None: ...


class Spawner(Protocol):
    async def spawn(
        self, argv: tuple[str, ...], env: Mapping[str, str], cwd: Path, log_path: Path
    ) -> ProcessHandle: ...


@dataclass
class _LocalHandle:
    proc: asyncio.subprocess.Process

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def wait(self) -> int:
        return await self.proc.wait()

    def signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)


class LocalSpawner:
    async def spawn(
        self, argv: tuple[str, ...], env: Mapping[str, str], cwd: Path, log_path: Path
    ) -> ProcessHandle:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                env=dict(env),
                cwd=str(cwd),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                preexec_fn=_set_pdeathsig,
            )
        return _LocalHandle(proc)


MAX_REASON_CHARS = 256


def sanitize_reason(text: str, limit: int = MAX_REASON_CHARS) -> str:
    """``text`` as it may appear in an API answer: printable characters only (others become ``?``),
    whitespace runs as one space, at most ``limit`` characters (cut with ``...``). Pure."""
    cleaned = "".join(c if c.isprintable() else " " if c.isspace() else "?" for c in text)
    cleaned = " ".join(cleaned.split())
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 3] + "..."


def failure_line(log_path: Path) -> str | None:
    """The reason of the last ``MODELGATE-FAILURE:`` line an instance wrote (the contract line of the
    built-in containers), sanitized; None when there is none. No other log text is ever returned: an
    instance's log may hold anything, and this ends up in API answers."""
    try:
        with open(log_path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 16384))
            tail = f.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return None
    for line in reversed(tail):
        if line.startswith(FAILURE_PREFIX):
            reason = sanitize_reason(line[len(FAILURE_PREFIX) :])
            return reason or None
    return None


def describe_exit(code: int) -> str:
    """``exited with code N`` or ``was killed by signal SIGX`` (asyncio's negative return codes)."""
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = str(-code)
        return f"was killed by signal {name}"
    return f"exited with code {code}"


def reap(instance_ids: set[str]) -> list[int]:
    """Kill every process a previous server left for one of ``instance_ids``; return their pids.

    Processes are found by the ``MODELGATE_INSTANCE_ID`` in their environment, so an instance's own
    children (forked workers, which the death signal does not reach) are found too.
    """
    if not instance_ids:
        return []
    wanted = {f"{INSTANCE_ENV}={i}".encode() for i in instance_ids}
    killed: list[int] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                environ = set(f.read().split(b"\0"))
        except OSError:
            continue
        if environ & wanted:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
    return killed
