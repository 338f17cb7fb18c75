"""Event sinks: a local directory (the data directory) or an ``s3://bucket/prefix`` through boto3.

Both write whole objects atomically, so a reader never sees half a file: the directory sink writes a
hidden temporary file, fsyncs it and renames it into place; S3's PutObject is atomic by itself. Both
accept the same object twice (the event journal flushes a segment again after a crash between its put
and its deletion): S3 overwrites it with the same bytes; the directory sink keeps the file it has if it
holds the same bytes, and refuses different ones.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from modelgate.experiments.errors import StoreUnavailable
from modelgate.experiments.events import EventSink

SUFFIX = ".jsonl.gz"


class DirectorySink:
    def __init__(self, root: Path) -> None:
        self.root = root

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        if path.exists():
            if path.read_bytes() == data:
                return  # the same segment flushed again after a crash: already there
            # keys carry a per-process writer id, so this is a wiring mistake, not a race
            raise StoreUnavailable(f"event file {key} already exists with other contents; refusing to overwrite it")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.tmp")
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
            fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise StoreUnavailable(f"cannot write event file {key}: {exc.strerror}") from exc

    def list_keys(self) -> list[str]:
        if not self.root.exists():
            return []
        found = (p for p in self.root.rglob(f"*{SUFFIX}") if not p.name.startswith("."))
        return sorted(p.relative_to(self.root).as_posix() for p in found)

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except OSError as exc:
            raise StoreUnavailable(f"cannot read event file {key}: {exc.strerror}") from exc

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise StoreUnavailable(f"event key {key!r} escapes the event directory")
        return path


class S3Sink:
    """Event files under ``s3://bucket/prefix/`` through a boto3 S3 client (any S3-compatible store)."""

    def __init__(self, client: Any, bucket: str, prefix: str = "") -> None:
        self._client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""

    def put(self, key: str, data: bytes) -> None:
        try:
            self._client.put_object(
                Bucket=self.bucket, Key=self.prefix + key, Body=data, ContentType="application/x-ndjson"
            )
        except Exception as exc:  # botocore's ClientError and BotoCoreError have no common base we import
            raise StoreUnavailable(f"cannot write s3://{self.bucket}/{self.prefix}{key}: {exc}") from exc

    def list_keys(self) -> list[str]:
        out: list[str] = []
        try:
            pages = self._client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix)
            for page in pages:
                for obj in page.get("Contents", []):
                    key = str(obj["Key"])[len(self.prefix) :]
                    if key.endswith(SUFFIX):
                        out.append(key)
        except Exception as exc:
            raise StoreUnavailable(f"cannot list s3://{self.bucket}/{self.prefix}: {exc}") from exc
        return sorted(out)

    def get(self, key: str) -> bytes:
        try:
            body = self._client.get_object(Bucket=self.bucket, Key=self.prefix + key)["Body"]
            return bytes(body.read())
        except Exception as exc:
            raise StoreUnavailable(f"cannot read s3://{self.bucket}/{self.prefix}{key}: {exc}") from exc


def sink_from_url(url: str, s3_client: Any = None) -> EventSink:
    """``s3://bucket/prefix`` (with the given or a default boto3 client) or a local directory path."""
    if url.startswith("s3://"):
        bucket, _, prefix = url[len("s3://") :].partition("/")
        if not bucket:
            raise StoreUnavailable(f"no bucket in {url!r}")
        if s3_client is None:
            # Imported for an s3:// sink only: boto3 adds about 5 MB to the gateway's RSS, a client about 15 MB.
            import boto3

            s3_client = boto3.client("s3")
        return S3Sink(s3_client, bucket, prefix)
    return DirectorySink(Path(url))
