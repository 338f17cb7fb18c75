"""Model data: ``file://`` URLs and plain paths, ``s3://`` (boto3, in a child process) and ``http(s)://``,
fetched once and cached, within limits.

A model directory is keyed by the SHA-256 of the archive's bytes, so two models with the same data share one
unpacked copy and a changed file is unpacked anew. A directory given as model data is used as it is (as an
uncompressed S3 prefix would be). What may be read, from where, and how much:

* local paths: under the data directory or ``MODELGATE_MODEL_DATA_ROOTS``, regular files or directories only
  (``artifacts/local.py``);
* ``http(s)://``: public destinations or those ``MODELGATE_EGRESS_ALLOWLIST`` opens, redirects within one
  origin (``artifacts/web.py``, ``egress.py``); every failure gives the same FailureReason, so that it cannot
  be used to scan ports; the cause goes to the server's log;
* ``s3://``: the endpoint and credentials the operator configured for boto3 (``artifacts/s3.py``);
* sizes: ``MODELGATE_MAX_ARTIFACT_BYTES`` per archive, ``MODELGATE_MAX_ARTIFACT_EXPANSION_RATIO``, and
  ``MODELGATE_MAX_ARTIFACT_CACHE_BYTES`` for everything unpacked (``artifacts/unpack.py``);
* time: all of it runs in the cache's own :class:`WorkerPool`, under a budget that stops it at its deadline.

Unreferenced artifacts are collected (``collect``): see ``artifacts/index.py``. A refused or failed archive
leaves nothing behind: it is unpacked into a ``.unpack-*`` directory that is renamed into place only when
complete, and removed otherwise.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import urllib.parse
import uuid
from collections import Counter
from collections.abc import Sequence, Set
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from modelgate.artifacts import s3
from modelgate.artifacts.index import EMPTY, CacheIndex, unreferenced
from modelgate.artifacts.local import LocalDataError, local_path, open_local, refusal, resolve
from modelgate.artifacts.unpack import ArchiveError, Limits, digest_of, extract
from modelgate.artifacts.workers import Budget, WorkerPool, WorkStopped
from modelgate.egress import SETTING as EGRESS_SETTING
from modelgate.egress import DestinationRefused, EgressPolicy, Resolver, system_resolver

log = logging.getLogger(__name__)

QUOTA_SETTING = "MODELGATE_MAX_ARTIFACT_CACHE_BYTES"
SIZE_SETTING = "MODELGATE_MAX_ARTIFACT_BYTES"


class ModelDataError(Exception):
    """Model data could not be fetched or unpacked; the message is for a FailureReason."""


@dataclass(frozen=True)
class CacheLimits:
    max_bytes: int  # one archive, and its file data unpacked
    quota: int  # file data of everything unpacked
    max_ratio: float | None = None  # uncompressed tar stream / archive bytes


def fetch_failed(url: str) -> str:
    """The one FailureReason of every network failure (no errno, no status: not a port scanner)."""
    return f"Could not fetch the model data from {url} (the server's log has the cause)."


class ArtifactCache:
    def __init__(
        self,
        root: Path,
        limits: CacheLimits,
        roots: Sequence[Path] = (),
        egress: EgressPolicy | None = None,
        workers: int = 4,
        resolver: Resolver = system_resolver,
    ) -> None:
        self.root = root
        self.limits = limits
        self.roots = tuple(resolve(r) for r in roots)
        self.egress = egress or EgressPolicy()
        self.resolver = resolver
        self.pool = WorkerPool(workers)
        self.models, self.downloads, self.trash = root / "models", root / "downloads", root / "trash"
        for d in (self.models, self.downloads, self.trash):
            d.mkdir(parents=True, exist_ok=True)
        self._index_path = root / "index.json"
        self.index = CacheIndex.load(self._index_path)
        self._lock = threading.Lock()  # the index, the pins, the reservations, and renames in models/
        self._pins: Counter[str] = Counter()  # digests handed out and not yet in a fleet
        self._reserved = 0  # bytes being unpacked, not yet in the index
        self._sweep()

    # --- what CreateModel refuses ------------------------------------------------------------------

    def refusal(self, url: str) -> str | None:
        """Why ``url`` can never be fetched, as far as the URL alone tells (no I/O but resolving local paths)."""
        path = local_path(url)
        if path is not None:
            return refusal(url, resolve(path), self.roots)
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return None
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            return f"ModelDataUrl {url} has an invalid port."
        if self.egress.refused_literally(parts.hostname, port):
            return (
                f"ModelDataUrl {url} names a loopback, link-local, private or reserved address; modelgate fetches "
                f"model data from such addresses only when {EGRESS_SETTING} allows them."
            )
        return None

    # --- materializing -----------------------------------------------------------------------------

    async def materialize(self, url: str | None, timeout: float) -> Path:
        """A directory holding the unpacked model data (an empty one when there is none)."""
        if not url:
            empty = self.models / EMPTY
            empty.mkdir(parents=True, exist_ok=True)
            return empty
        try:
            path, digest = await self.pool.run(lambda budget: self._materialize(url, budget), timeout, self._release)
        except WorkStopped as exc:
            if exc.expired:
                raise ModelDataError(
                    f"Downloading model data from {url} did not finish within ModelDataDownloadTimeoutInSeconds "
                    f"({timeout:.0f} s)."
                ) from exc
            raise ModelDataError(f"Fetching model data from {url} was called off: the server is stopping.") from exc
        # The caller puts the directory in a fleet in this same step of the event loop, where collect() sees it.
        self._release((path, digest))
        return path

    def _release(self, result: tuple[Path, str | None]) -> None:
        digest = result[1]
        if digest is not None:
            with self._lock:
                self._pins[digest] -= 1
                if self._pins[digest] <= 0:
                    del self._pins[digest]

    def _materialize(self, url: str, budget: Budget) -> tuple[Path, str | None]:
        path = local_path(url)
        if path is not None:
            try:
                opened = open_local(url, path, self.roots, self.limits.max_bytes)
            except LocalDataError as exc:
                raise ModelDataError(str(exc)) from exc
            if isinstance(opened, Path):
                return opened, None
            with opened:
                return self._from_archive(opened, url, budget)
        scheme = urllib.parse.urlsplit(url).scheme
        if scheme not in ("s3", "http", "https"):
            raise ModelDataError(f"Model data URL {url} has an unsupported scheme {scheme!r}.")
        fd, name = tempfile.mkstemp(prefix="dl-", dir=self.downloads)
        tmp = Path(name)
        try:
            with os.fdopen(fd, "w+b") as f:
                if scheme == "s3":
                    self._download_s3(url, tmp, budget)
                else:
                    self._download_web(url, f, budget)
                    f.flush()
                f.seek(0)
                return self._from_archive(f, url, budget)
        finally:
            tmp.unlink(missing_ok=True)

    def _download_web(self, url: str, out: BinaryIO, budget: Budget) -> None:
        from modelgate.artifacts import web  # http.client and ssl only when an http(s) URL is fetched

        try:
            web.download(url, out, budget, self.egress, self.limits.max_bytes, self.resolver)
        except web.TooLarge as exc:
            raise ModelDataError(self._too_large(url)) from exc
        except (web.FetchFailed, DestinationRefused) as exc:
            log.warning("model data %s could not be fetched: %s", url, exc)
            raise ModelDataError(fetch_failed(url)) from exc

    def _download_s3(self, url: str, dest: Path, budget: Budget) -> None:
        parsed = urllib.parse.urlparse(url)
        try:  # boto3 runs in a child process, against the endpoint the operator configured
            s3.fetch(parsed.netloc, parsed.path.lstrip("/"), dest, budget.remaining(), budget, self.limits.max_bytes)
        except s3.S3Error as exc:
            raise ModelDataError(f"Model data {url} could not be downloaded: {exc}") from exc

    def _from_archive(self, f: BinaryIO, url: str, budget: Budget) -> tuple[Path, str]:
        size = os.fstat(f.fileno()).st_size
        if size > self.limits.max_bytes:
            raise ModelDataError(self._too_large(url))
        try:
            digest = digest_of(f, budget, self.limits.max_bytes)
        except ArchiveError as exc:
            raise ModelDataError(f"Model data {url} could not be unpacked: {exc}.") from exc
        with self._lock:
            if (self.models / digest).is_dir():
                return self._hand_out(url, digest), digest
            if self.index.total() + self._reserved >= self.limits.quota:
                raise ModelDataError(f"Model data {url} could not be unpacked: {self._quota_full()}.")
        f.seek(0)
        staging: Path | None = Path(tempfile.mkdtemp(prefix=".unpack-", dir=self.models))
        reserved = 0

        def reserve(n: int) -> None:
            nonlocal reserved
            with self._lock:
                if self.index.total() + self._reserved + n > self.limits.quota:
                    raise ArchiveError(self._quota_full())
                self._reserved += n
                reserved += n

        try:
            assert staging is not None
            unpacked = extract(f, size, staging, Limits(self.limits.max_bytes, self.limits.max_ratio), budget, reserve)
            with self._lock:
                self._reserved -= reserved
                reserved = 0
                dest = self.models / unpacked.digest
                if not dest.is_dir():  # else another fleet unpacked the same data at the same moment
                    os.rename(staging, dest)
                    staging = None
                    self.index.sizes[unpacked.digest] = unpacked.bytes
                return self._hand_out(url, unpacked.digest), unpacked.digest
        except ArchiveError as exc:
            raise ModelDataError(f"Model data {url} could not be unpacked: {exc}.") from exc
        finally:
            if reserved:
                with self._lock:
                    self._reserved -= reserved
            if staging is not None:
                shutil.rmtree(staging, ignore_errors=True)

    def _too_large(self, url: str) -> str:
        return f"Model data {url} is larger than {self.limits.max_bytes} bytes ({SIZE_SETTING})."

    def _quota_full(self) -> str:
        return f"the artifact cache would hold more than {self.limits.quota} bytes ({QUOTA_SETTING})"

    def _hand_out(self, url: str, digest: str) -> Path:
        """Record ``url`` → ``digest`` and pin it until the caller has it in a fleet. Holds the lock."""
        self.index.urls[url] = digest
        self._pins[digest] += 1
        self._save_index()
        return self.models / digest

    def _save_index(self) -> None:
        try:
            self.index.save(self._index_path)
        except OSError as exc:  # a lost index only means artifacts unpacked again after a restart
            log.warning("could not save the artifact index: %s", exc)

    # --- garbage collection --------------------------------------------------------------------------

    def usage(self) -> int:
        """Bytes of file data unpacked in the cache (what the quota counts)."""
        with self._lock:
            return self.index.total()

    def collect(self, keep_urls: Set[str], in_use: Set[Path]) -> int:
        """Move every cached directory no kept URL, running instance or pending hand-out needs into the trash
        (renames only: called on the event loop, so that ``in_use`` cannot change meanwhile); the number moved.
        :meth:`empty_trash` deletes them."""
        used = {p.name for p in in_use if p.parent == self.models}
        with self._lock:
            present = [e.name for e in os.scandir(self.models) if e.is_dir(follow_symlinks=False)]
            present = [name for name in present if not name.startswith(".")]  # .unpack-*: in progress
            doomed = unreferenced(present, self.index, keep_urls, used, set(self._pins))
            for digest in doomed:
                os.rename(self.models / digest, self.trash / f"{digest}-{uuid.uuid4().hex[:8]}")
            self.index.forget(doomed, keep_urls)
            self._save_index()
        if doomed:
            log.info("artifact cache: %d unreferenced model directories removed", len(doomed))
        return len(doomed)

    async def empty_trash(self) -> None:
        """Delete what :meth:`collect` (or a restart) moved into the trash, in a worker thread."""
        await self.pool.run(self._empty_trash, 24 * 3600.0)

    def _empty_trash(self, budget: Budget) -> None:
        for entry in os.scandir(self.trash):
            budget.check()
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                Path(entry.path).unlink(missing_ok=True)

    def _sweep(self) -> None:
        """At start: what a killed server left half done goes to the trash (unpacks) or away (downloads)."""
        for entry in os.scandir(self.models):
            if entry.name.startswith(".unpack-"):
                os.rename(entry.path, self.trash / f"{entry.name}-{uuid.uuid4().hex[:8]}")
        for entry in os.scandir(self.downloads):
            Path(entry.path).unlink(missing_ok=True)

    def close(self) -> None:
        """Server shutdown: every piece of work stops at its next check; the threads are daemons."""
        self.pool.close()
