"""The artifact cache's limits, in-process: local paths (D4), budgets and the worker pool (D4), expansion ratio,
quota and garbage collection (D8). The black-box versions are tests/e2e/test_model_data_limits.py."""

from __future__ import annotations

import asyncio
import gzip
import io
import os
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, cast

import pytest

from modelgate.artifacts.fetch import ArtifactCache, CacheLimits, ModelDataError
from modelgate.artifacts.index import CacheIndex, unreferenced
from modelgate.artifacts.local import LocalDataError, open_local, refusal
from modelgate.artifacts.unpack import ArchiveError, Limits, digest_of, extract
from modelgate.artifacts.workers import Budget, WorkerPool, WorkStopped
from tests.e2e.conftest import gzip_bomb

ROOTS = (Path("/srv/models"), Path("/home/me/.modelgate"))


def tar_gz(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


class _Zeros:
    """Zero bytes for ever, read in chunks."""

    def read(self, k: int = -1) -> bytes:
        return bytes(1 << 16 if k < 0 else k)


# --- D4: where local model data may come from, and what it may be -----------------------------------------


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/srv/models/churn.tar.gz", None),
        ("/srv/models", None),
        ("/home/me/.modelgate/demo/model.tar.gz", None),
        ("/srv/models-other/x.tar.gz", "is outside the directories model data may be read from"),
        ("/etc/shadow", "MODELGATE_MODEL_DATA_ROOTS"),
        ("/etc", "is outside the directories"),
        ("/", "is outside the directories"),
        ("/dev/zero", "is in /dev, /proc or /sys"),
        ("/proc/self/environ", "is in /dev, /proc or /sys"),
        ("/sys/kernel", "is in /dev, /proc or /sys"),
    ],
)
def test_d4_local_paths_table(path: str, reason: str | None) -> None:
    found = refusal(f"file://{path}", Path(path), ROOTS)
    assert found is None if reason is None else reason in (found or "")


def test_d4_even_an_allowed_root_does_not_open_dev_proc_sys() -> None:
    assert "is in /dev, /proc or /sys" in (refusal("/dev/zero", Path("/dev/zero"), (Path("/"),)) or "")
    assert refusal("/etc/hosts", Path("/etc/hosts"), (Path("/"),)) is None


@pytest.mark.parametrize("kind", ["fifo", "device", "link-to-device", "link-out"])
def test_d4_fifos_devices_and_links_out_are_refused_without_reading(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "model.tar.gz"
    if kind == "fifo":
        os.mkfifo(path)  # opening it for reading would wait for a writer for ever
    elif kind == "device":
        path = Path("/dev/zero")
    elif kind == "link-to-device":
        path.symlink_to("/dev/zero")
    else:
        path.symlink_to("/etc/hostname")
    started = time.monotonic()
    with pytest.raises(LocalDataError) as err:
        open_local(f"file://{path}", path, (tmp_path,), 1 << 30)
    assert time.monotonic() - started < 1
    expected = {
        "fifo": "is not a regular file or a directory",
        "device": "is in /dev, /proc or /sys",
        "link-to-device": "is in /dev, /proc or /sys",
        "link-out": "is outside the directories model data may be read from",
    }[kind]
    assert expected in str(err.value)


def test_d4_a_file_over_the_size_limit_is_refused_before_it_is_read(tmp_path: Path) -> None:
    sparse = tmp_path / "huge.tar.gz"
    with open(sparse, "wb") as f:
        f.truncate(1 << 40)  # 1 TiB, no blocks
    with pytest.raises(LocalDataError, match=r"is larger than 1000 bytes \(MODELGATE_MAX_ARTIFACT_BYTES\)"):
        open_local(str(sparse), sparse, (tmp_path,), 1000)


def test_d4_a_directory_is_used_as_it_is_and_a_file_is_opened(tmp_path: Path) -> None:
    assert open_local(str(tmp_path), tmp_path, (tmp_path,), 10) == tmp_path.resolve()
    archive = tar_gz(tmp_path / "m.tar.gz", {"a": b"1"})
    opened = open_local(str(archive), archive, (tmp_path,), 1 << 20)
    assert not isinstance(opened, Path)
    with opened:
        assert opened.read(2) == b"\x1f\x8b"


# --- D4: work that stops by itself --------------------------------------------------------------------------


def test_d4_hashing_an_endless_file_stops_at_its_deadline() -> None:
    started = time.monotonic()
    with pytest.raises(WorkStopped) as err:
        digest_of(cast(BinaryIO, _Zeros()), Budget.lasting(0.3), 1 << 62)
    assert err.value.expired and time.monotonic() - started < 2


def test_d4_hashing_reads_at_most_the_limit() -> None:
    with pytest.raises(ArchiveError, match=r"larger than 1000000 bytes \(MODELGATE_MAX_ARTIFACT_BYTES\)"):
        digest_of(cast(BinaryIO, _Zeros()), Budget.lasting(30), 1_000_000)


def test_d4_the_pool_is_free_again_once_the_deadline_passed() -> None:
    """One thread; an endless job times out; the next job runs at once. The thread is a daemon."""

    def endless(budget: Budget) -> None:
        while True:
            budget.check()
            time.sleep(0.01)

    async def main() -> None:
        pool = WorkerPool(1)
        started = time.monotonic()
        with pytest.raises(WorkStopped):
            await pool.run(endless, 0.3)
        assert time.monotonic() - started < 2
        assert await pool.run(lambda _b: 42, 5) == 42
        assert all(t.daemon for t in pool._threads)
        pool.close()

    asyncio.run(main())


def test_d4_a_cancelled_caller_stops_its_work_and_close_stops_the_rest() -> None:
    stopped: list[bool] = []

    def endless(budget: Budget) -> None:
        try:
            while True:
                budget.check()
                time.sleep(0.01)
        except WorkStopped as exc:
            stopped.append(exc.expired)
            raise

    async def main() -> None:
        pool = WorkerPool(2)
        task = asyncio.ensure_future(pool.run(endless, 3600))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        other = asyncio.ensure_future(pool.run(endless, 3600))
        await asyncio.sleep(0.1)
        started = time.monotonic()
        await asyncio.to_thread(pool.close)
        assert time.monotonic() - started < 1
        with pytest.raises(WorkStopped):
            await other

    asyncio.run(main())
    assert stopped == [False, False]
    assert not [t for t in threading.enumerate() if t.name.startswith("artifacts-") and t.is_alive()]


# --- D8: expansion ratio, quota -----------------------------------------------------------------------------


def test_d8_a_bomb_is_refused_at_its_header_before_anything_is_written(tmp_path: Path) -> None:
    archive = gzip_bomb(tmp_path / "bomb.tar.gz", 256 << 20)
    out = tmp_path / "out"
    out.mkdir()
    reserved: list[int] = []
    with open(archive, "rb") as f, pytest.raises(ArchiveError) as err:
        extract(f, archive.stat().st_size, out, Limits(10 << 30, 100.0), Budget.lasting(30), reserved.append)
    assert "expands to more than 100 times" in str(err.value)
    assert "MODELGATE_MAX_ARTIFACT_EXPANSION_RATIO" in str(err.value)
    assert reserved == [] and list(out.iterdir()) == []


def test_d8_small_archives_may_expand_up_to_the_floor(tmp_path: Path) -> None:
    archive = tar_gz(tmp_path / "text.tar.gz", {"vocab.txt": b"a" * (4 << 20)})  # ~4 KB of gzip
    out = tmp_path / "out"
    out.mkdir()
    with open(archive, "rb") as f:
        unpacked = extract(f, archive.stat().st_size, out, Limits(10 << 30, 100.0), Budget.lasting(30))
    assert unpacked.bytes == 4 << 20 and (out / "vocab.txt").stat().st_size == 4 << 20


def test_d8_the_decompressed_stream_is_metered_too(tmp_path: Path) -> None:
    """Bytes that are not file data (here: a huge PAX header) count against the allowance as they are read."""
    path = tmp_path / "pax.tar.gz"
    with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("x")
        info.pax_headers = {"comment": "z" * (40 << 20)}
        tar.addfile(info, io.BytesIO(b""))
    out = tmp_path / "out"
    out.mkdir()
    with open(path, "rb") as f, pytest.raises(ArchiveError, match="MODELGATE_MAX_ARTIFACT_EXPANSION_RATIO"):
        extract(f, path.stat().st_size, out, Limits(10 << 30, 100.0), Budget.lasting(30))


@pytest.fixture
def caches() -> Iterator[list[ArtifactCache]]:
    made: list[ArtifactCache] = []
    yield made
    for c in made:
        c.close()


def cache(made: list[ArtifactCache], tmp_path: Path, quota: int = 1 << 30, ratio: float = 100.0) -> ArtifactCache:
    c = ArtifactCache(tmp_path / "artifacts", CacheLimits(1 << 30, quota, ratio), [tmp_path])
    made.append(c)
    return c


def materialize(c: ArtifactCache, url: str) -> Path:
    return asyncio.run(c.materialize(url, 30))


def entries(c: ArtifactCache) -> list[str]:
    return sorted(p.name for p in c.models.iterdir())


def test_d8_a_refused_archive_leaves_nothing(tmp_path: Path, caches: list[ArtifactCache]) -> None:
    c = cache(caches, tmp_path)
    archive = gzip_bomb(tmp_path / "bomb.tar.gz", 1 << 30)
    with pytest.raises(ModelDataError, match="expands to more than 100 times"):
        materialize(c, f"file://{archive}")
    assert entries(c) == [] and list(c.downloads.iterdir()) == [] and c.usage() == 0


def test_d8_the_quota_counts_everything_unpacked(tmp_path: Path, caches: list[ArtifactCache]) -> None:
    a = tar_gz(tmp_path / "a.tar.gz", {"w": os.urandom(600_000)})
    b = tar_gz(tmp_path / "b.tar.gz", {"w": os.urandom(600_000)})
    c = cache(caches, tmp_path, quota=1_000_000)
    first = materialize(c, str(a))
    assert c.usage() == 600_000
    c = cache(caches, tmp_path, quota=1_000_000)  # the index carries the usage over a restart
    with pytest.raises(ModelDataError) as err:
        materialize(c, str(b))
    assert "would hold more than 1000000 bytes (MODELGATE_MAX_ARTIFACT_CACHE_BYTES)" in str(err.value)
    assert entries(c) == [first.name] and c.usage() == 600_000
    assert materialize(c, str(a)) == first  # a cache hit needs no room


# --- D8: garbage collection ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("keep_urls", "in_use", "pinned", "removed"),
    [
        (set(), set(), set(), {"d1", "d2", "d3"}),  # nothing names them
        ({"u1"}, set(), set(), {"d2", "d3"}),
        ({"u1", "u2"}, set(), set(), {"d3"}),  # d3 is no URL's latest: u2's file changed since
        ({"u1", "u2"}, {"d3"}, set(), set()),  # ... but an instance still uses it
        (set(), set(), {"d2"}, {"d1", "d3"}),  # being handed to a fleet
        ({"gone"}, set(), set(), {"d1", "d2", "d3"}),  # a URL never unpacked keeps nothing
    ],
)
def test_d8_what_the_collector_removes(
    keep_urls: set[str], in_use: set[str], pinned: set[str], removed: set[str]
) -> None:
    index = CacheIndex(urls={"u1": "d1", "u2": "d2"}, sizes={"d1": 1, "d2": 2, "d3": 3})
    assert unreferenced(["d1", "d2", "d3", "empty"], index, keep_urls, in_use, pinned) == removed


def test_d8_collect_moves_the_unreferenced_away_and_keeps_what_is_used(
    tmp_path: Path, caches: list[ArtifactCache]
) -> None:
    a = tar_gz(tmp_path / "a.tar.gz", {"w": b"a" * 1000})
    b = tar_gz(tmp_path / "b.tar.gz", {"w": b"b" * 1000})
    c = cache(caches, tmp_path)
    da, db = materialize(c, str(a)), materialize(c, str(b))
    assert c.collect({str(a)}, set()) == 1
    assert entries(c) == [da.name] and c.usage() == 1000
    assert c.collect(set(), {da}) == 0  # no model names it, but an instance uses it
    assert c.collect(set(), set()) == 1 and entries(c) == [] and c.usage() == 0
    assert not db.exists()

    asyncio.run(c.empty_trash())
    assert list(c.trash.iterdir()) == []


def test_d8_a_restart_sweeps_what_a_killed_server_left(tmp_path: Path, caches: list[ArtifactCache]) -> None:
    c = cache(caches, tmp_path)
    (c.models / ".unpack-abc").mkdir()
    (c.models / ".unpack-abc" / "half").write_bytes(b"x" * 1000)
    (c.downloads / "dl-xyz").write_bytes(b"y" * 1000)
    c = cache(caches, tmp_path)
    assert entries(c) == [] and list(c.downloads.iterdir()) == []
    assert [p.name.startswith(".unpack-abc") for p in c.trash.iterdir()] == [True]


def test_d8_a_gzip_bomb_in_memory_is_small(tmp_path: Path) -> None:
    """The fixture itself: 1 GiB of zeros fits in about a megabyte of gzip."""
    path = gzip_bomb(tmp_path / "b.tar.gz", 1 << 30)
    assert path.stat().st_size < 1_200_000
    with gzip.open(path) as g:
        assert g.read(512)[:5] == b"zeros"


def test_d4_a_download_that_trickles_for_ever_stops_at_its_deadline() -> None:
    """An allowed server that sends its body a byte at a time, without end: the download stops by itself."""
    import socket

    from modelgate.artifacts import web
    from modelgate.egress import EgressPolicy

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    done = threading.Event()

    def trickle() -> None:
        conn, _ = server.accept()
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/gzip\r\n\r\n")
        try:
            while not done.is_set():
                conn.sendall(b"x")
                time.sleep(0.05)
        except OSError:
            pass
        conn.close()

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    started = time.monotonic()
    try:
        with pytest.raises(WorkStopped) as err, io.BytesIO() as out:
            web.download(f"http://127.0.0.1:{port}/m.tar.gz", out, Budget.lasting(0.5),
                         EgressPolicy.from_entries(["127.0.0.1"]), 1 << 30)  # fmt: skip
        assert err.value.expired and time.monotonic() - started < 2
    finally:
        done.set()
        thread.join(5)
        server.close()
