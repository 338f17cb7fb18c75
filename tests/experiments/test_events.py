"""The event log: line format, buffering and flushing, partitions, sinks and the filter."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from modelgate.experiments.errors import InvalidParameter, StoreUnavailable
from modelgate.experiments.events import Event, EventBuffer, EventFilter, partition
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


def test_buffer_flushes_when_old_enough() -> None:
    clock, sink = FakeClock(T0), MemorySink()
    buf = EventBuffer(sink, clock, max_age=60.0, writer_id="w1")
    buf.append(event(1))
    buf.append(event(2))
    assert not buf.due() and buf.flush() == [] and sink.objects == {}
    clock.advance(60)
    assert buf.due()
    (key,) = buf.flush()
    assert key.startswith("year=2024/month=06/day=01/hour=12/events-20240601T120000Z-w1-")
    assert key.endswith(".jsonl.gz")
    assert [x["inference_id"] for x in lines(sink.objects[key])] == ["inf-1", "inf-2"]
    assert buf.flush() == []


def test_buffer_seals_a_batch_at_max_bytes() -> None:
    clock, sink = FakeClock(T0), MemorySink()
    size = len(event(0).to_json()) + 1
    buf = EventBuffer(sink, clock, max_bytes=3 * size, max_age=60.0)
    for i in range(7):
        buf.append(event(i))
    assert buf.due()  # two full batches sealed, no time passed
    keys = buf.flush()
    assert [len(lines(sink.objects[k])) for k in keys] == [3, 3]
    assert [len(lines(sink.objects[k])) for k in buf.flush(force=True)] == [1]


def test_a_refused_batch_is_kept_and_retried() -> None:
    clock, sink = FakeClock(T0), MemorySink()
    buf = EventBuffer(sink, clock, max_age=1.0)
    buf.append(event(1))
    clock.advance(1)
    sink.fail = True
    assert buf.flush() == []
    buf.append(event(2))
    sink.fail = False
    keys = buf.flush(force=True)
    assert [x["inference_id"] for k in keys for x in lines(sink.objects[k])] == ["inf-1", "inf-2"]


def test_pending_batches_beyond_the_limit_are_dropped_and_counted() -> None:
    clock, sink = FakeClock(T0), MemorySink()
    size = len(event(0).to_json()) + 1
    buf = EventBuffer(sink, clock, max_bytes=size, max_pending_bytes=2 * size)
    sink.fail = True
    for i in range(4):
        buf.append(event(i))
    buf.flush()
    assert buf.dropped_events == 2
    sink.fail = False
    keys = buf.flush()
    assert [x["inference_id"] for k in keys for x in lines(sink.objects[k])] == ["inf-2", "inf-3"]


def test_buffer_settings_are_validated() -> None:
    with pytest.raises(InvalidParameter):
        EventBuffer(MemorySink(), FakeClock(), max_bytes=0)


def test_directory_sink_writes_atomically_and_lists_only_complete_files(tmp_path: Path) -> None:
    sink = DirectorySink(tmp_path / "events")
    assert sink.list_keys() == []
    sink.put("year=2024/month=06/day=01/hour=12/a.jsonl.gz", b"x")
    (tmp_path / "events/year=2024/month=06/day=01/hour=12/.b.jsonl.gz.tmp").write_bytes(b"partial")
    assert sink.list_keys() == ["year=2024/month=06/day=01/hour=12/a.jsonl.gz"]
    assert sink.get("year=2024/month=06/day=01/hour=12/a.jsonl.gz") == b"x"
    with pytest.raises(StoreUnavailable):
        sink.put("year=2024/month=06/day=01/hour=12/a.jsonl.gz", b"again")  # never overwrites
    with pytest.raises(StoreUnavailable):
        sink.put("../escape.jsonl.gz", b"x")


def test_buffer_to_directory_is_readable_as_plain_gzip_json_lines(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    sink = sink_from_url(str(tmp_path / "ev"))
    buf = EventBuffer(sink, clock)
    buf.append(event(1))
    (key,) = buf.flush(force=True)
    with gzip.open(tmp_path / "ev" / key, "rt") as f:
        assert json.loads(f.readline())["user_id"] == "u1"


@mock_aws
def test_s3_sink_round_trip() -> None:
    client = boto3.client("s3", region_name="us-east-1")
    client.create_bucket(Bucket="ab-events")
    sink = sink_from_url("s3://ab-events/prod/events", s3_client=client)
    assert isinstance(sink, S3Sink)
    buf = EventBuffer(sink, FakeClock(T0))
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
