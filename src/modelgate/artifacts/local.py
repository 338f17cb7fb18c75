"""Local model data (``file://`` URLs and absolute paths): where it may come from, and what it may be.

The server reads local paths on behalf of whoever can reach its API, which has no authentication yet. So a
path must lie under the data directory or a directory the operator lists in ``MODELGATE_MODEL_DATA_ROOTS``
(after symbolic links are resolved), never in ``/proc``, ``/sys`` or ``/dev``, and it must be a regular file
(an archive) or a directory (used as it is). A FIFO, a device or a socket is refused before it is opened:
``/dev/zero`` would be read for ever and a FIFO would block its reader. The archive is then opened without
following a link and checked again on the open descriptor, so a path swapped after the check is refused too.
"""

from __future__ import annotations

import os
import stat
import urllib.parse
from pathlib import Path
from typing import BinaryIO

ROOTS_SETTING = "MODELGATE_MODEL_DATA_ROOTS"
SIZE_SETTING = "MODELGATE_MAX_ARTIFACT_BYTES"
PSEUDO_FILESYSTEMS = (Path("/proc"), Path("/sys"), Path("/dev"))


class LocalDataError(Exception):
    """The local model data is refused; the message is for a FailureReason or a ValidationException."""


def local_path(url: str) -> Path | None:
    """The local path a ``file://`` URL or plain path names, else None."""
    if url.startswith("file://"):
        return Path(urllib.parse.unquote(urllib.parse.urlparse(url).path))
    if url.startswith("/"):
        return Path(url)
    return None


def resolve(path: Path) -> Path:
    """The path with every symbolic link and ``..`` resolved (as far as it exists)."""
    return Path(os.path.realpath(path))


def refusal(url: str, resolved: Path, roots: tuple[Path, ...]) -> str | None:
    """Why model data at ``resolved`` (already resolved) may not be read, or None."""
    if any(resolved.is_relative_to(p) for p in PSEUDO_FILESYSTEMS):
        return f"Model data {url} is in /dev, /proc or /sys; it must be a regular file or a directory."
    if not any(resolved.is_relative_to(root) for root in roots):
        return (
            f"Model data {url} is outside the directories model data may be read from: the data directory "
            f"and those listed in {ROOTS_SETTING}."
        )
    return None


def check(url: str, path: Path, roots: tuple[Path, ...]) -> Path:
    """The resolved path, if it may be read; else LocalDataError."""
    resolved = resolve(path)
    reason = refusal(url, resolved, roots)
    if reason is not None:
        raise LocalDataError(reason)
    return resolved


def open_local(url: str, path: Path, roots: tuple[Path, ...], max_bytes: int) -> Path | BinaryIO:
    """A directory (its resolved path) or the archive, open for reading; LocalDataError otherwise."""
    resolved = check(url, path, roots)
    try:
        before = os.stat(resolved)
    except FileNotFoundError:
        raise LocalDataError(f"Model data {url} does not exist.") from None
    except OSError as exc:
        raise LocalDataError(f"Model data {url} cannot be read ({exc.strerror}).") from None
    if stat.S_ISDIR(before.st_mode):
        return resolved
    if not stat.S_ISREG(before.st_mode):
        raise LocalDataError(f"Model data {url} is not a regular file or a directory.")
    try:
        # O_NONBLOCK: should the path have become a FIFO since the stat, opening it does not wait for a writer.
        fd = os.open(resolved, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise LocalDataError(f"Model data {url} cannot be read ({exc.strerror}).") from None
    try:
        opened = os.fstat(fd)
        if not stat.S_ISREG(opened.st_mode) or (opened.st_dev, opened.st_ino) != (before.st_dev, before.st_ino):
            raise LocalDataError(f"Model data {url} changed while it was being opened.")
        if opened.st_size > max_bytes:
            raise LocalDataError(f"Model data {url} is larger than {max_bytes} bytes ({SIZE_SETTING}).")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
