"""What the artifact cache holds, and what it may throw away.

The cache directory ``models/<sha256>`` is keyed by the archive's content, not by the URL that named it, so
the index records, for each model data URL, the digest it last unpacked to, and the bytes of file data each
digest holds (what counts against ``MODELGATE_MAX_ARTIFACT_CACHE_BYTES``). It is a small JSON file written
atomically; a missing or unreadable index is an empty one (the unindexed directories are then collected).

:func:`unreferenced` is the garbage collector's decision, a pure function: a cached directory stays while
a stored model, endpoint snapshot or deployment names a URL whose latest digest it is, while an instance
uses it (its URL's file may have changed since), or while it is being handed to a fleet (pinned).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Set
from dataclasses import dataclass, field
from pathlib import Path

EMPTY = "empty"  # the directory given to models without model data; never collected


@dataclass
class CacheIndex:
    urls: dict[str, str] = field(default_factory=dict)  # model data URL -> digest it last unpacked to
    sizes: dict[str, int] = field(default_factory=dict)  # digest -> bytes of file data

    @classmethod
    def load(cls, path: Path) -> CacheIndex:
        try:
            doc = json.loads(path.read_text())
            urls = {str(k): str(v) for k, v in doc["urls"].items()}
            sizes = {str(k): int(v) for k, v in doc["sizes"].items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return cls()
        return cls(urls, sizes)

    def save(self, path: Path) -> None:
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps({"urls": self.urls, "sizes": self.sizes}, sort_keys=True))
        os.replace(tmp, path)

    def total(self) -> int:
        return sum(self.sizes.values())

    def forget(self, digests: Iterable[str], keep_urls: Set[str]) -> None:
        """Drop these digests, and the URLs nothing names any more or whose digest is gone."""
        gone = set(digests)
        for d in gone:
            self.sizes.pop(d, None)
        self.urls = {u: d for u, d in self.urls.items() if u in keep_urls and d not in gone}


def unreferenced(
    present: Iterable[str], index: CacheIndex, keep_urls: Set[str], in_use: Set[str], pinned: Set[str]
) -> set[str]:
    """The cached digests to remove: present, and neither the latest of a URL still named, nor used, nor pinned."""
    keep = {index.urls[u] for u in keep_urls if u in index.urls} | set(in_use) | set(pinned) | {EMPTY}
    return {d for d in present if d not in keep}
