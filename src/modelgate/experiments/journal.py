"""The event journal: every A/B event is written to a local append-only log before it is acknowledged.

:class:`EventJournal` is the :class:`~modelgate.experiments.events.EventLog` of a gateway. It replaces an
in-memory buffer whose last minute of acknowledged events a ``kill -9`` lost.

* **Append** (the event loop, once per event): one ``write()`` of one JSON line to the open *segment*, a
  file ``<writer>-<seq>.jsonl`` in the journal directory (``<data dir>/ab-journal``), opened with
  ``O_APPEND``. When ``append`` returns, the line is in the kernel's page cache: it survives the death of
  the process (``kill -9``, a crash, the OOM killer), and the answer goes out after it. A write that fails
  (disk full, I/O error) raises :class:`~modelgate.experiments.errors.StoreUnavailable`: the request is
  answered 503 and nothing is acknowledged.
* **No fsync per event.** An fsync costs this machine's disk milliseconds (``bench/fsync_cost.py``,
  bench/RESULTS.md), and group commit would make every answer wait for one; the bar is "acknowledged
  events survive the server's death". :meth:`sync` (the pipeline's worker thread, every second while
  events arrive) fsyncs the open segment, so a *power loss* loses at most about the last second or two.
* **Segments** are sealed at ``max_bytes`` (1 MB) or ``max_age`` seconds (60 s), as the anchor's
  Firehose buffered. :meth:`flush` (a worker thread) writes each sealed segment to the
  :class:`~modelgate.experiments.events.EventSink` as one gzip file under a key derived from the segment
  alone (its first event's hour and time, the writer id and sequence in its name), then deletes the
  segment. The key is the same however often a segment is flushed, so a segment flushed and not yet
  deleted when the process died is flushed again to the same key after the restart: the directory sink
  accepts an identical file again, S3 overwrites it with the same bytes, and the aggregator, which
  records each key it folded in the same transaction as its counts, folds it once.
* **Recovery.** :meth:`recover` (at start, before serving) seals every segment a previous process left
  and returns their events, so the service can restore what the assignment store's write-behind lost in
  the kill (served records and conversion marks); the next :meth:`flush` delivers them. A line cut short
  (only a power loss can leave one) is dropped.

Appends hold a lock for a ``write()`` only; sealing and the list of sealed segments share it. The sink,
gzip and fsync run outside it.
"""

from __future__ import annotations

import contextlib
import gzip
import logging
import os
import re
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from modelgate.clock import Clock
from modelgate.experiments.errors import InvalidParameter, StoreUnavailable
from modelgate.experiments.events import Event, EventSink, partition

logger = logging.getLogger(__name__)

SEGMENT_SUFFIX = ".jsonl"
_SEGMENT = re.compile(r"^(.+)-(\d{8})\.jsonl$")  # <writer>-<seq>.jsonl
# zlib level 1: ~4x smaller JSON lines at a fraction of level 9's CPU (gzip's default), off the loop.
_GZIP_LEVEL = 1


@dataclass(slots=True)
class _Segment:
    path: Path
    writer: str
    seq: int
    first_timestamp: float  # of its first event: the sink key's hour and time
    opened: float  # monotonic
    size: int = 0
    fd: int = -1


def _key(writer: str, seq: int, first_timestamp: float) -> str:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(first_timestamp))
    return f"{partition(first_timestamp)}events-{stamp}-{writer}-{seq:08d}.jsonl.gz"


def _complete_lines(data: bytes) -> bytes:
    """The data up to its last newline: a line cut short by a power loss is dropped."""
    end = data.rfind(b"\n")
    return data[: end + 1] if end >= 0 else b""


class EventJournal:
    """A durable :class:`~modelgate.experiments.events.EventLog` that flushes to a sink. See the module."""

    def __init__(
        self,
        directory: Path,
        sink: EventSink,
        clock: Clock,
        *,
        max_bytes: int = 1024 * 1024,
        max_age: float = 60.0,
        writer_id: str | None = None,
    ) -> None:
        if max_bytes <= 0 or max_age <= 0:
            raise InvalidParameter("the event journal needs max_bytes > 0 and max_age > 0")
        self.directory = directory
        self._sink = sink
        self._clock = clock
        self._max_bytes = max_bytes
        self._max_age = max_age
        self._writer = writer_id or uuid.uuid4().hex[:12]
        self._seq = 0
        self._open: _Segment | None = None
        self._sealed: list[_Segment] = []
        self._unsynced = False
        self._lock = threading.Lock()  # the open segment and the sealed list; held for a write() at most
        self._flush_lock = threading.Lock()  # one flush at a time

    # --- start ------------------------------------------------------------------------------------------

    def recover(self) -> list[Event]:
        """Seal the segments a previous process left (to be flushed next) and return their events."""
        events: list[Event] = []
        if not self.directory.exists():
            return events
        found = sorted(p for p in self.directory.iterdir() if _SEGMENT.match(p.name))
        for path in found:
            m = _SEGMENT.match(path.name)
            assert m is not None
            writer, seq = m.group(1), int(m.group(2))
            if writer == self._writer:
                continue
            try:
                data = _complete_lines(path.read_bytes())
            except OSError as exc:
                raise StoreUnavailable(f"cannot read event journal segment {path}: {exc.strerror}") from exc
            lines = data.splitlines()
            first: float | None = None
            for line in lines:
                try:
                    event = Event.from_json(line)
                except ValueError:
                    continue  # counted as malformed by the aggregator, which sees the same line
                if first is None:
                    first = event.timestamp
                events.append(event)
            if first is None:  # no whole event in it: it still goes to the sink (its lines count as malformed)
                first = path.stat().st_mtime
            with self._lock:
                self._sealed.append(_Segment(path, writer, seq, first, self._clock.monotonic(), len(data)))
        if found:
            logger.info("A/B event journal: %d segments with %d events left by the last run", len(found), len(events))
        return events

    # --- the event loop ---------------------------------------------------------------------------------

    def append(self, event: Event) -> None:
        line = (event.to_json() + "\n").encode()
        with self._lock:
            segment = self._open
            if segment is None:
                segment = self._open = self._new_segment(event.timestamp)
            try:
                written = os.write(segment.fd, line)
            except OSError as exc:
                raise StoreUnavailable(f"the A/B event log cannot be written: {exc.strerror}") from exc
            if written != len(line):  # a short write to a regular file: the disk is full
                self._truncate(segment)
                raise StoreUnavailable("the A/B event log cannot be written: short write (disk full?)")
            segment.size += written
            self._unsynced = True
            if segment.size >= self._max_bytes:
                self._seal()

    def _new_segment(self, first_timestamp: float) -> _Segment:
        self._seq += 1
        path = self.directory / f"{self._writer}-{self._seq:08d}{SEGMENT_SUFFIX}"
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise StoreUnavailable(f"the A/B event log cannot be written: {exc.strerror}") from exc
        return _Segment(path, self._writer, self._seq, first_timestamp, self._clock.monotonic(), 0, fd)

    def _truncate(self, segment: _Segment) -> None:
        """Cut a partial line off (so the next line starts clean)."""
        with contextlib.suppress(OSError):
            os.ftruncate(segment.fd, segment.size)

    def _seal(self) -> None:
        """Close the open segment and queue it for the sink. Holds the lock."""
        segment = self._open
        if segment is None:
            return
        self._open = None
        with contextlib.suppress(OSError):
            os.close(segment.fd)
        segment.fd = -1
        self._sealed.append(segment)

    # --- the pipeline (worker threads) --------------------------------------------------------------------

    def due(self) -> bool:
        with self._lock:
            return bool(self._sealed) or self._aged()

    def _aged(self) -> bool:
        segment = self._open
        return segment is not None and self._clock.monotonic() - segment.opened >= self._max_age

    def sync(self) -> None:
        """fsync the open segment if anything was appended since the last sync (a power loss then loses
        only what came after). The fsync runs on a duplicate of the descriptor, outside the lock."""
        with self._lock:
            if not self._unsynced or self._open is None:
                return
            self._unsynced = False
            fd = os.dup(self._open.fd)
        try:
            os.fsync(fd)
        except OSError as exc:
            logger.warning("A/B event journal: fsync failed: %s", exc.strerror)
        finally:
            os.close(fd)

    def flush(self, force: bool = False) -> list[str]:
        """Seal the open segment if it is old enough (or ``force``); write every sealed one to the sink and
        delete it; return the keys written. A segment the sink refuses stays for the next flush."""
        with self._flush_lock:
            with self._lock:
                if self._open is not None and (force or self._aged()):
                    self._seal()
                sealed = list(self._sealed)
            written: list[str] = []
            for segment in sealed:
                try:
                    key = self._deliver(segment)
                except Exception:
                    logger.exception("event sink refused segment %s; kept for the next flush", segment.path.name)
                    break
                with self._lock:
                    self._sealed.remove(segment)
                if key is not None:
                    written.append(key)
            return written

    def _deliver(self, segment: _Segment) -> str | None:
        try:
            data = _complete_lines(segment.path.read_bytes())
        except FileNotFoundError:
            return None  # delivered and deleted by an earlier flush
        key = None
        if data:
            key = _key(segment.writer, segment.seq, segment.first_timestamp)
            self._sink.put(key, gzip.compress(data, compresslevel=_GZIP_LEVEL, mtime=0))
        segment.path.unlink(missing_ok=True)
        return key

    def close(self) -> None:
        """Close the open segment's descriptor (its events stay on disk for the next flush or run)."""
        with self._lock:
            if self._open is not None:
                self._seal()

    @property
    def pending_segments(self) -> int:
        with self._lock:
            return len(self._sealed) + (self._open is not None)
