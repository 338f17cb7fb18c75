"""A tiny container for tests: serves the SageMaker contract on $SAGEMAKER_BIND_TO_PORT.

The request body steers it:
    status:<code>      answer with that status and a message
    sleep:<seconds>    sleep, then answer
    die                exit at once without answering
    environ            answer with the instance's environment as JSON
    alloc:<MiB>        keep that much more memory
    anything else      answered 200 with "<ECHO_TAG>|<model.txt contents>|<body>"
Content-Type, Accept and X-Amzn-SageMaker-Custom-Attributes are echoed back in headers.
$ECHO_ALLOCATE_MB=<n> holds n MiB from the start.
$ECHO_GRANDCHILD=1 starts a long-sleeping child process of its own (in its own session).
$ECHO_STARTUP=fail makes it exit at start with a MODELGATE-FAILURE line ($ECHO_FAILURE_TEXT, if set, is
its reason); =crash exits with code 7 without one; =hang never answers /ping.
$ECHO_STDERR=<text> writes that text to stderr (its log) at start.
$ECHO_LISTEN_DELAY=<seconds> waits that long before it listens (a slow start, a model slow to load).
$ECHO_ALWAYS_STATUS=<code> answers every invocation with that status (a model that is broken at runtime).
$ECHO_ERROR_RATE=<p> answers an invocation with status 500 with probability p (a flaky model).
$ECHO_REQUEST_LOG=<path> appends one line per invocation answered to that file (shared by instances).
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stall

    def log_message(self, format: str, *args: object) -> None:
        return

    def _answer(self, status: int, body: bytes, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path == "/ping":
            if os.environ.get("ECHO_STARTUP") == "hang":
                self._answer(503, b"not ready")
                return
            self._answer(200, b"")
        else:
            self._answer(404, b"{}")

    def do_POST(self) -> None:
        n = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(n) if n else b""
        if self.path != "/invocations":
            self._answer(404, b"{}")
            return
        text = body.decode("utf-8", "replace")
        if (log := os.environ.get("ECHO_REQUEST_LOG")) is not None:
            with open(log, "a") as f:  # one short append per request: atomic across instances
                f.write(f"{os.getpid()}\n")
        if (always := os.environ.get("ECHO_ALWAYS_STATUS")) is not None:
            self._answer(int(always), f"the model always fails with status {always}".encode())
            return
        if random.random() < float(os.environ.get("ECHO_ERROR_RATE", "0")):
            self._answer(500, b"the model failed at random")
            return
        if text.startswith("status:"):
            code = int(text.split(":", 1)[1])
            self._answer(code, f"the model refused with status {code}".encode())
            return
        if text.startswith("sleep:"):
            time.sleep(float(text.split(":", 1)[1]))
        if text == "die":
            os._exit(3)
        if text == "environ":
            self._answer(200, json.dumps(dict(os.environ)).encode(), {"Content-Type": "application/json"})
            return
        if text.startswith("alloc:"):
            _hoard.append(bytearray(int(text.split(":", 1)[1]) * 2**20))
        model = Path(os.environ["SM_MODEL_DIR"]) / "model.txt"
        content = model.read_text().strip() if model.exists() else "-"
        tag = os.environ.get("ECHO_TAG", "echo")
        headers = {"Content-Type": self.headers.get("Content-Type") or "application/octet-stream"}
        if self.headers.get("Accept"):
            headers["X-Echo-Accept"] = self.headers["Accept"]
        attrs = self.headers.get("X-Amzn-SageMaker-Custom-Attributes")
        if attrs is not None:
            headers["X-Amzn-SageMaker-Custom-Attributes"] = "echo:" + attrs
        self._answer(200, f"{tag}|{content}|{text}".encode(), headers)


_hoard: list[bytearray] = []


def main() -> None:
    if os.environ.get("ECHO_STDERR"):
        sys.stderr.write(os.environ["ECHO_STDERR"] + "\n")
        sys.stderr.flush()
    if os.environ.get("ECHO_STARTUP") == "fail":
        reason = os.environ.get("ECHO_FAILURE_TEXT", "the echo model refused to load on purpose")
        sys.stderr.write(f"MODELGATE-FAILURE: {reason}\n")
        sys.exit(1)
    if os.environ.get("ECHO_STARTUP") == "crash":
        sys.exit(7)
    if os.environ.get("ECHO_GRANDCHILD") == "1":
        # A forked worker of our own: the server's death signal does not reach it.
        import subprocess

        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
    if os.environ.get("ECHO_ALLOCATE_MB"):
        _hoard.append(bytearray(int(os.environ["ECHO_ALLOCATE_MB"]) * 2**20))
    time.sleep(float(os.environ.get("ECHO_LISTEN_DELAY", "0")))
    port = int(os.environ["SAGEMAKER_BIND_TO_PORT"])
    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


if __name__ == "__main__":
    main()
