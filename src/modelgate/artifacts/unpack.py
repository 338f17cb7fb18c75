"""Safe, bounded unpacking of model archives (tar, optionally gzip, bzip2 or xz).

``tarfile``'s ``data`` filter (PEP 706) refuses absolute paths, paths escaping the destination, links pointing
out of it, device files and special permissions. On top of it, every limit is checked before the bytes it
covers are written, member by member, from the sizes in the headers:

* the file data of one archive (``MODELGATE_MAX_ARTIFACT_BYTES``) and the number of members;
* the expansion ratio (``MODELGATE_MAX_ARTIFACT_EXPANSION_RATIO``): the uncompressed tar stream may be at most
  that many times the archive's own size (or ``RATIO_FLOOR_BYTES``, for small archives). A decompression bomb
  (1 MB of gzip that declares 1 GiB of zeros) is refused at its first header, before anything is written;
* the artifact cache's total (``reserve``, ``MODELGATE_MAX_ARTIFACT_CACHE_BYTES``).

The decompressed stream is metered too (headers, PAX records and padding are not file data but still cost
memory and time), and every read checks the work's :class:`Budget`, so an archive cannot outlive its
deadline. The SHA-256 of the archive's bytes is computed while reading: the cache is keyed by what was
actually unpacked.
"""

from __future__ import annotations

import contextlib
import hashlib
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol, cast

from modelgate.artifacts.workers import Budget

MAX_MEMBERS = 100_000
CHUNK = 1 << 16
RATIO_FLOOR_BYTES = 16 << 20  # an archive may always expand to this much (a tiny gzip of a text file is fine)
_TAR_OVERHEAD = 2048  # bytes of header and padding per member that the file-data limit does not count

SIZE_SETTING = "MODELGATE_MAX_ARTIFACT_BYTES"
RATIO_SETTING = "MODELGATE_MAX_ARTIFACT_EXPANSION_RATIO"


class ArchiveError(Exception):
    """The model data is not a usable archive, or it breaks a limit; the message says why (and which setting)."""


@dataclass(frozen=True)
class Limits:
    max_bytes: int  # file data of one archive (and the archive's own size)
    max_ratio: float | None = None  # uncompressed tar stream / archive bytes

    def expansion_allowance(self, archive_bytes: int) -> int:
        """How many bytes the uncompressed tar stream of an archive of this size may have."""
        cap = self.max_bytes + MAX_MEMBERS * _TAR_OVERHEAD
        if self.max_ratio is None:
            return cap
        return min(cap, max(int(self.max_ratio * archive_bytes), RATIO_FLOOR_BYTES))


@dataclass(frozen=True)
class Unpacked:
    digest: str  # SHA-256 of the archive's bytes
    bytes: int  # file data written


def _never(_n: int) -> None:
    return None


class _Raw:
    """The archive's bytes: hashed, counted against the size limit, the budget checked on every read."""

    def __init__(self, f: BinaryIO, budget: Budget, max_bytes: int) -> None:
        self.f, self.budget, self.max_bytes = f, budget, max_bytes
        self.sha = hashlib.sha256()
        self.count = 0

    def read(self, n: int = -1) -> bytes:
        self.budget.check()
        data = self.f.read(CHUNK if n is None or n < 0 else min(n, CHUNK))
        self.count += len(data)
        if self.count > self.max_bytes:
            raise ArchiveError(f"the archive is larger than {self.max_bytes} bytes ({SIZE_SETTING})")
        self.sha.update(data)
        return data

    def drain(self) -> None:
        while self.read(CHUNK):
            pass


class _Readable(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


class _Expanded:
    """The uncompressed tar stream, counted against the expansion allowance."""

    def __init__(self, src: _Readable, budget: Budget, allowance: int, too_much: Callable[[], str]) -> None:
        self.src, self.budget, self.allowance, self.too_much = src, budget, allowance, too_much
        self.count = 0

    def read(self, n: int = -1) -> bytes:
        self.budget.check()
        data = self.src.read(CHUNK if n is None or n < 0 else min(n, CHUNK))
        self.count += len(data)
        if self.count > self.allowance:
            raise ArchiveError(self.too_much())
        return data


def digest_of(f: BinaryIO, budget: Budget, max_bytes: int) -> str:
    """SHA-256 of the file's bytes, reading at most ``max_bytes`` and checking the budget on every chunk."""
    raw = _Raw(f, budget, max_bytes)
    raw.drain()
    return raw.sha.hexdigest()


def extract(
    f: BinaryIO,
    archive_bytes: int,
    into: Path,
    limits: Limits,
    budget: Budget,
    reserve: Callable[[int], None] = _never,
) -> Unpacked:
    """Unpack the archive ``f`` (``archive_bytes`` long, positioned at its start) into the empty directory
    ``into``. On an error, ``into`` may hold part of it: the caller removes it."""
    import bz2  # the decompressors only when an archive is unpacked (as tarfile imports them)
    import gzip
    import lzma
    import zlib

    head = f.read(6)
    f.seek(0)
    raw = _Raw(f, budget, limits.max_bytes)
    allowance = limits.expansion_allowance(archive_bytes)

    def too_much() -> str:
        if limits.max_ratio is not None and allowance < limits.max_bytes:
            return (
                f"the archive expands to more than {limits.max_ratio:g} times its {archive_bytes} bytes "
                f"({RATIO_SETTING})"
            )
        return f"the archive unpacks to more than {limits.max_bytes} bytes ({SIZE_SETTING})"

    written = 0
    try:
        with contextlib.ExitStack() as stack:
            fileobj = cast(BinaryIO, raw)  # read() is all the decompressors use
            src: _Readable = raw
            if head.startswith(b"\x1f\x8b"):
                src = stack.enter_context(gzip.GzipFile(fileobj=fileobj, mode="rb"))
            elif head.startswith(b"BZh"):
                src = stack.enter_context(bz2.BZ2File(fileobj))
            elif head.startswith(b"\xfd7zXZ\x00"):
                src = stack.enter_context(lzma.LZMAFile(fileobj))
            stream = _Expanded(src, budget, allowance, too_much)
            tar = stack.enter_context(tarfile.open(fileobj=stream, mode="r|"))  # type: ignore[call-overload]
            for i, member in enumerate(tar):
                if i >= MAX_MEMBERS:
                    raise ArchiveError(f"the archive has more than {MAX_MEMBERS} entries")
                size = max(member.size, 0) if member.isreg() else 0
                if written + size > limits.max_bytes:
                    raise ArchiveError(f"the archive unpacks to more than {limits.max_bytes} bytes ({SIZE_SETTING})")
                if stream.count + size > allowance:
                    raise ArchiveError(too_much())
                reserve(size)
                written += size
                tar.extract(member, into, filter="data")
        raw.drain()  # the digest covers the whole file, also what follows the end of the tar stream
    except ArchiveError:
        raise
    except tarfile.FilterError as exc:
        raise ArchiveError(f"the archive has an unsafe entry: {exc}") from exc
    except (tarfile.TarError, EOFError, OSError, ValueError, zlib.error, lzma.LZMAError) as exc:
        raise ArchiveError(f"it is not a valid tar.gz archive ({type(exc).__name__}: {exc})") from exc
    return Unpacked(raw.sha.hexdigest(), written)
