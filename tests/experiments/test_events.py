"""The event log: line format, the journal (durable appends, segments, flushing, recovery), partitions,
sinks and the filter."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from modelgate.experiments.errors import InvalidParameter, StoreUnavailable
from modelgate.experiments.events import Event, EventFilter, partition
from modelgate.experiments.journal import EventJournal
from modelgate.experiments.sinks import DirectorySink, S3Sink, sink_from_url

from .fakes import FakeClock, MemorySink

T0 = 1_717_243_200.0  # 2024-06-01T12:00:00Z

ANCHOR_FIELDS = {
    "timestamp", "type", "strategy", "endpoint_name", "target_variant", "endpoint_variant",
    "inference_id", "user_id", "reward", "source_ip", "user_agent",
}  # fmt: skip


def event(i: int = 0, ts: float = T0, kind: str = "invocation", **kw: object) -> Event:
    fields: dict[str, object] = {
        "timestamp": ts, "type": kind, "strategy": "ThompsonSampling", "endpoint_name": "ep",
        "target_variant": "A", "endpoint_variant": "A", "inference_id": f"inf-{i}", "user_id": f"u{i}",
        "reward": None if kind == "invocation" else 1.0, "source_ip": "10.0.0.1", "user_agent": "curl/8",
        "experiment_id": 1,
    }  # fmt: skip
    fields.update(kw)
    return Event(**fields)  # type: ignore[arg-type]


def lines(data: bytes) -> list[dict[str, object]]:
    return [json.loads(x) for x in gzip.decompress(data).splitlines()]


def test_every_line_carries_the_anchor_fields_and_round_trips() -> None:
    e = event(kind="conversion", target_variant=None, reward=0.25)
    raw = json.loads(e.to_json())
    assert set(raw) >= ANCHOR_FIELDS
    assert raw["reward"] == 0.25 and raw["target_variant"] is None and raw["experiment_id"] == 1
    assert Event.from_json(e.to_json()) == e


@pytest.mark.parametrize(
    "line",
    ["[1]", '{"type": "click"}', '{"type": "invocation", "timestamp": "now"}', "not json"],
)
def test_malformed_lines_are_refused(line: str) -> None:
    with pytest.raises(ValueError):
        Event.from_json(line)


def test_partition_is_utc_date_and_hour() -> None:
    assert partition(T0) == "year=2024/month=06/day=01/hour=12/"
    assert partition(T0 + 3600 * 12 - 1) == "year=2024/month=06/day=01/hour=23/"


def test_journal_flushes_when_old_enough(tmp_path: Path) -> None:
    clock, sink = FakeClock(T0), MemorySink()
    journal = EventJournal(tmp_path / "j", sink, clock, max_age=60.0, writer_id="w1")
    journal.append(event(1))
    journal.append(event(2))
    assert not journal.due() and journal.flush() == [] and sink.objects == {}
    clock.advance(60)
    assert journal.due()
    (key,) = journal.flush()
    assert key == "year=2024/month=06/day=01/hour=12/events-20240601T120000Z-w1-00000001.jsonl.gz"
    assert [x["inference_id"] for x in lines(sink.objects[key])] == ["inf-1", "inf-2"]
    assert journal.flush() == [] and list((tmp_path / "j").iterdir()) == []  # delivered segments are deleted


def test_an_appended_event_is_on_disk_before_append_returns(tmp_path: Path) -> None:
    journal = EventJournal(tmp_path / "j", MemorySink(), FakeClock(T0))
    journal.append(event(1))
    (segment,) = (tmp_path / "j").iterdir()
    assert Event.from_json(segment.read_bytes().splitlines()[0]) == event(1)


def test_journal_seals_a_segment_at_max_bytes(tmp_path: Path) -> None:
    clock, sink = FakeClock(T0), MemorySink()
    size = len(event(0).to_json()) + 1
    journal = EventJournal(tmp_path / "j", sink, clock, max_bytes=3 * size, max_age=60.0)
    for i in range(7):
        journal.append(event(i))
    assert journal.due()  # two full segments sealed, no time passed
    keys = journal.flush()
    assert [len(lines(sink.objects[k])) for k in keys] == [3, 3]
    assert [len(lines(sink.objects[k])) for k in journal.flush(force=True)] == [1]


def test_a_refused_segment_stays_on_disk_and_is_retried(tmp_path: Path) -> None:
    clock, sink = FakeClock(T0), MemorySink()
    journal = EventJournal(tmp_path / "j", sink, clock, max_age=1.0)
    journal.append(event(1))
    clock.advance(1)
    sink.fail = True
    assert journal.flush() == [] and journal.pending_segments == 1
    journal.append(event(2))
    sink.fail = False
    keys = journal.flush(force=True)
    assert [x["inference_id"] for k in keys for x in lines(sink.objects[k])] == ["inf-1", "inf-2"]


def test_d7_a_killed_writers_segments_are_recovered_and_delivered_once(tmp_path: Path) -> None:
    """The process dies with an open segment and a sealed one it had delivered but not yet deleted: the
    next process returns their events and delivers both, the second to the key it already had."""
    clock, sink = FakeClock(T0), DirectorySink(tmp_path / "events")
    size = len(event(0).to_json()) + 1
    dead = EventJournal(tmp_path / "j", sink, clock, max_bytes=2 * size, writer_id="dead")
    for i in range(3):
        dead.append(event(i))
    first = (tmp_path / "j" / "dead-00000001.jsonl").read_bytes()
    (delivered,) = dead.flush()  # the sealed segment of events 0 and 1
    (tmp_path / "j" / "dead-00000001.jsonl").write_bytes(first)  # "killed before the unlink"
    with open(tmp_path / "j" / "dead-00000002.jsonl", "ab") as f:
        f.write(b'{"timestamp": 1717243200.0, "ty')  # a line cut short by a power loss
    # no close(): the process is gone
    journal = EventJournal(tmp_path / "j", sink, clock)
    assert [e.inference_id for e in journal.recover()] == ["inf-0", "inf-1", "inf-2"]
    keys = journal.flush()
    assert delivered in keys and len(keys) == 2
    assert [x["inference_id"] for k in sorted(keys) for x in lines(sink.get(k))] == ["inf-0", "inf-1", "inf-2"]
    assert list((tmp_path / "j").iterdir()) == []


def test_a_journal_that_cannot_be_written_refuses_the_event(tmp_path: Path) -> None:
    (tmp_path / "j").write_text("a file where the journal directory should be")
    journal = EventJournal(tmp_path / "j", MemorySink(), FakeClock(T0))
    with pytest.raises(StoreUnavailable, match="event log cannot be written"):
        journal.append(event(1))


def test_journal_settings_are_validated(tmp_path: Path) -> None:
    with pytest.raises(InvalidParameter):
        EventJournal(tmp_path, MemorySink(), FakeClock(), max_bytes=0)


def test_directory_sink_writes_atomically_and_lists_only_complete_files(tmp_path: Path) -> None:
    sink = DirectorySink(tmp_path / "events")
    assert sink.list_keys() == []
    sink.put("year=2024/month=06/day=01/hour=12/a.jsonl.gz", b"x")
    (tmp_path / "events/year=2024/month=06/day=01/hour=12/.b.jsonl.gz.tmp").write_bytes(b"partial")
    assert sink.list_keys() == ["year=2024/month=06/day=01/hour=12/a.jsonl.gz"]
    assert sink.get("year=2024/month=06/day=01/hour=12/a.jsonl.gz") == b"x"
    sink.put("year=2024/month=06/day=01/hour=12/a.jsonl.gz", b"x")  # the same bytes again: accepted
    with pytest.raises(StoreUnavailable):
        sink.put("year=2024/month=06/day=01/hour=12/a.jsonl.gz", b"again")  # never overwrites
    with pytest.raises(StoreUnavailable):
        sink.put("../escape.jsonl.gz", b"x")


def test_journal_to_directory_is_readable_as_plain_gzip_json_lines(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    sink = sink_from_url(str(tmp_path / "ev"))
    buf = EventJournal(tmp_path / "j", sink, clock)
    buf.append(event(1))
    (key,) = buf.flush(force=True)
    with gzip.open(tmp_path / "ev" / key, "rt") as f:
        assert json.loads(f.readline())["user_id"] == "u1"


@mock_aws
def test_s3_sink_round_trip(tmp_path: Path) -> None:
    client = boto3.client("s3", region_name="us-east-1")
    client.create_bucket(Bucket="ab-events")
    sink = sink_from_url("s3://ab-events/prod/events", s3_client=client)
    assert isinstance(sink, S3Sink)
    buf = EventJournal(tmp_path / "j", sink, FakeClock(T0))
    buf.append(event(1))
    (key,) = buf.flush(force=True)
    client.put_object(Bucket="ab-events", Key="prod/events/notes.txt", Body=b"ignored")
    assert sink.list_keys() == [key]
    stored = client.list_objects_v2(Bucket="ab-events")["Contents"]
    assert f"prod/events/{key}" in {o["Key"] for o in stored}
    assert lines(sink.get(key))[0]["inference_id"] == "inf-1"
    with pytest.raises(StoreUnavailable):
        S3Sink(client, "no-such-bucket").put("k.jsonl.gz", b"x")


@pytest.mark.parametrize(
    ("ip", "agent", "dropped"),
    [
        ("10.0.0.1", "Mozilla/5.0", False),
        ("192.168.4.7", "Mozilla/5.0", True),  # in the CIDR
        ("203.0.113.9", "Mozilla/5.0", True),  # exact address
        ("10.0.0.1", "Googlebot/2.1", True),  # user agent pattern, case-insensitive
        ("10.0.0.1", "python-requests/2.31", True),
        ("not-an-ip", "Mozilla/5.0", False),
        (None, None, False),
    ],
)
def test_filter(ip: str | None, agent: str | None, dropped: bool) -> None:
    f = EventFilter.from_config(["192.168.0.0/16", "203.0.113.9"], ["bot", "^python-requests/"])
    assert f.drops(event(source_ip=ip, user_agent=agent)) == dropped


def test_filter_configuration_errors_are_named() -> None:
    with pytest.raises(InvalidParameter):
        EventFilter.from_config(["300.1.1.1"])
    with pytest.raises(InvalidParameter):
        EventFilter.from_config([], ["("])
