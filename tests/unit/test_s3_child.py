"""S3 model data is downloaded by a child process (modelgate.artifacts.s3); its errors come back as text."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelgate.artifacts import s3
from tests.e2e.conftest import free_port


def test_the_childs_error_comes_back_with_its_type(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with pytest.raises(s3.S3Error, match=r"^EndpointConnectionError: Could not connect to the endpoint URL"):
        s3.fetch("bucket", "key.tar.gz", tmp_path / "out", timeout=5)


def test_an_interpreter_error_is_its_last_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script = tmp_path / "python"
    lines = ["#!/bin/sh", "echo 'Traceback (most recent call last):' >&2", "echo 'ImportError: no boto3' >&2", "exit 1"]
    script.write_text("\n".join(lines))
    script.chmod(0o755)
    monkeypatch.setattr("sys.executable", str(script))
    with pytest.raises(s3.S3Error, match=r"^ImportError: no boto3$"):
        s3.fetch("bucket", "key", tmp_path / "out", timeout=5)
