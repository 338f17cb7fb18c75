"""The benchmark suite works and checks answers: its smoke mode, and its wrk answer checker.

No timing is asserted here: benchmarks never run as timed tests. Both tests need wrk
(`apt-get install -y wrk`) and skip without it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
needs_wrk = pytest.mark.skipif(
    shutil.which("wrk") is None, reason="wrk is not installed: `apt-get update && apt-get install -y wrk`"
)


@pytest.mark.slow
@needs_wrk
def test_smoke_run_serves_every_answer_right(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH / "run.py"), "--smoke", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    runs = results["runs"]
    assert {(r["scenario"], r["concurrency"]) for r in runs} == {
        ("floor", 1),
        ("floor", 16),
        ("mg-1v1i", 1),
        ("mg-1v1i", 16),
    }
    for r in runs:
        assert r["ok"], r
        assert r["requests"] > 0
        assert sum(r["matched"]) == r["requests"]
        assert r["server_cpu_ms_per_req"] > 0
        assert r["peak_rss_mb"] > 0
    assert (tmp_path / "report.md").read_text().count("| modelgate: 1 variant, 1 instance |") == 2


class _Fixed(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        return

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        body = b"0.25\n" if self.headers.get("Content-Type") == "text/csv" else b"nope"
        self.send_response(200 if body != b"nope" else 415)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def fixed_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Fixed)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/invocations"
    server.shutdown()
    server.server_close()


@pytest.mark.slow
@needs_wrk
def test_the_checker_counts_wrong_bodies_and_statuses(fixed_server: str, tmp_path: Path) -> None:
    sys.path.insert(0, str(BENCH))
    try:
        from load import Probe, wrk
    finally:
        sys.path.remove(str(BENCH))
    (tmp_path / "body").write_bytes(b"1,2,3")
    (tmp_path / "right").write_bytes(b"0.25\n")
    (tmp_path / "other").write_bytes(b"0.5\n")
    right, other = tmp_path / "right", tmp_path / "other"

    def run(content_type: str, mode: str, *expected: Path) -> dict[str, str]:
        fields, _ = wrk(Probe(fixed_server, tmp_path / "body", content_type, mode, expected), 2, 1)
        assert int(fields["requests"]) > 0
        return fields

    ok = run("text/csv", "exact", other, right)
    assert (ok["wrong"], ok["non200"], ok["matched"]) == ("0", "0", f"0,{ok['requests']}")
    wrong = run("text/csv", "exact", other)
    assert wrong["wrong"] == wrong["requests"]
    assert "0.5" not in wrong["sample"] and "0.25" in wrong["sample"]
    contains = run("text/csv", "contains", tmp_path / "body")  # "1,2,3" is not in "0.25\n"
    assert contains["wrong"] == contains["requests"]
    refused = run("application/json", "exact", right)
    assert refused["non200"] == refused["requests"]
    assert refused["sample"].startswith('"415')
