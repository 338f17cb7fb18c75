"""Fixtures: a live CloudWatch server per test (fresh data directory) and boto3 clients for it."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import botocore.model
import pytest

from tests.cloudwatch.server import LiveServer, start_server


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    srv = start_server(tmp_path)
    yield srv
    srv.stop()


def client(url: str) -> Any:
    return boto3.client(
        "cloudwatch", endpoint_url=url, region_name="us-east-1", aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="secret",
    )


@pytest.fixture
def cw(server: LiveServer) -> Any:
    return client(server.url)


@pytest.fixture(params=["json", "smithy-rpc-v2-cbor", "query"])
def any_protocol_cw(server: LiveServer, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A cloudwatch client that speaks the given protocol (botocore picks the first it supports)."""
    monkeypatch.setattr(botocore.model, "PRIORITY_ORDERED_SUPPORTED_PROTOCOLS", (request.param,))
    cw = client(server.url)
    assert cw.meta.service_model.resolved_protocol == request.param
    return cw


class Webhook:
    """A tiny local HTTP server that records every POST."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # http.server's naming
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hook.received.append({"path": self.path, "headers": dict(self.headers), "body": json.loads(body)})
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    yield hook
    hook.close()
