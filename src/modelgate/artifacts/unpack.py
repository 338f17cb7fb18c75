"""Safe unpacking of model archives.

``tarfile``'s ``data`` filter (PEP 706) refuses absolute paths, paths escaping the destination, links
pointing out of it, device files and special permissions; on top of it we cap the total unpacked size
and the member count. Unpacking goes to a temporary directory that is renamed into place only when
complete, so a broken archive never leaves half a model behind.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
from pathlib import Path

MAX_MEMBERS = 100_000


class ArchiveError(Exception):
    """The model data is not a usable archive; the message says why."""


def unpack_tar(archive: Path, dest: Path, max_bytes: int) -> None:
    """Unpack ``archive`` (tar, optionally gzip/bz2/xz) into ``dest`` atomically."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".unpack-", dir=dest.parent))
    try:
        try:
            with tarfile.open(archive, mode="r:*") as tar:
                total = 0
                members = []
                for i, member in enumerate(tar):
                    if i >= MAX_MEMBERS:
                        raise ArchiveError(f"the archive has more than {MAX_MEMBERS} entries")
                    total += max(member.size, 0)
                    if total > max_bytes:
                        raise ArchiveError(f"the archive unpacks to more than {max_bytes} bytes")
                    members.append(member)
                tar.extractall(tmp, members=members, filter="data")
        except tarfile.FilterError as exc:
            raise ArchiveError(f"the archive has an unsafe entry: {exc}") from exc
        except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
            raise ArchiveError(f"it is not a valid tar.gz archive ({type(exc).__name__}: {exc})") from exc
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
