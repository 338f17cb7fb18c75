"""Model data: ``file://`` URLs, plain paths, ``s3://`` (boto3, in a child process) and ``https://``, fetched once
and cached.

A model directory is keyed by the SHA-256 of the archive's bytes, so two models with the same data
share one unpacked copy and a changed file is unpacked anew. A directory given as model data is used
as it is (as an uncompressed S3 prefix would be).
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import tempfile
import urllib.parse
from pathlib import Path

from modelgate.artifacts import s3
from modelgate.artifacts.unpack import ArchiveError, unpack_tar


class ModelDataError(Exception):
    """Model data could not be fetched or unpacked; the message is for a FailureReason."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def local_path(url: str) -> Path | None:
    """The local path a ``file://`` URL or plain path names, else None."""
    if url.startswith("file://"):
        return Path(urllib.parse.unquote(urllib.parse.urlparse(url).path))
    if url.startswith("/"):
        return Path(url)
    return None


class ArtifactCache:
    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes
        (root / "models").mkdir(parents=True, exist_ok=True)
        (root / "downloads").mkdir(parents=True, exist_ok=True)

    async def materialize(self, url: str | None, timeout: float) -> Path:
        """A directory holding the unpacked model data (an empty one when there is none)."""
        if not url:
            empty = self.root / "models" / "empty"
            empty.mkdir(parents=True, exist_ok=True)
            return empty
        try:
            return await asyncio.wait_for(asyncio.to_thread(self._materialize, url, timeout), timeout)
        except TimeoutError as exc:
            raise ModelDataError(
                f"Downloading model data from {url} did not finish within ModelDataDownloadTimeoutInSeconds "
                f"({timeout:.0f} s)."
            ) from exc

    def _materialize(self, url: str, timeout: float) -> Path:
        path = local_path(url)
        if path is not None:
            if not path.exists():
                raise ModelDataError(f"Model data {url} does not exist.")
            if path.is_dir():
                return path
            return self._unpack(path, url)
        tmp = Path(tempfile.mkstemp(prefix="dl-", dir=self.root / "downloads")[1])
        try:
            self._download(url, tmp, timeout)
            return self._unpack(tmp, url)
        finally:
            tmp.unlink(missing_ok=True)

    def _unpack(self, archive: Path, url: str) -> Path:
        digest = _sha256(archive)
        dest = self.root / "models" / digest
        if dest.is_dir():
            return dest
        try:
            unpack_tar(archive, dest, self.max_bytes)
        except ArchiveError as exc:
            raise ModelDataError(f"Model data {url} could not be unpacked: {exc}.") from exc
        except FileExistsError:
            pass  # another fleet unpacked the same data at the same moment
        except OSError as exc:
            if not dest.is_dir():
                raise ModelDataError(f"Model data {url} could not be unpacked: {exc}.") from exc
        return dest

    def _download(self, url: str, dest: Path, timeout: float) -> None:
        scheme = urllib.parse.urlparse(url).scheme
        try:
            if scheme == "s3":
                self._download_s3(url, dest, timeout)
            elif scheme in ("https", "http"):
                # Imported for http(s) model data only: urllib.request and http.client are about 1.2 MB of the
                # gateway's RSS (bench/RESULTS.md, "Memory").
                from urllib.request import urlopen

                with urlopen(url, timeout=timeout) as resp, open(dest, "wb") as out:
                    copied = 0
                    for chunk in iter(lambda: resp.read(1 << 20), b""):
                        copied += len(chunk)
                        if copied > self.max_bytes:
                            raise ModelDataError(f"Model data {url} is larger than {self.max_bytes} bytes.")
                        out.write(chunk)
            else:
                raise ModelDataError(f"Model data URL {url} has an unsupported scheme {scheme!r}.")
        except ModelDataError:
            raise
        except Exception as exc:
            raise ModelDataError(
                f"Model data {url} could not be downloaded: {type(exc).__name__}: {exc}"
            ) from exc

    def _download_s3(self, url: str, dest: Path, timeout: float) -> None:
        parsed = urllib.parse.urlparse(url)
        try:
            s3.fetch(parsed.netloc, parsed.path.lstrip("/"), dest, timeout)  # boto3 runs in a child process
        except s3.S3Error as exc:
            raise ModelDataError(f"Model data {url} could not be downloaded: {exc}") from exc


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
