"""Download one S3 object, in a child process: ``python -m modelgate.artifacts.s3 BUCKET KEY DEST TIMEOUT``.

The gateway runs this as a child so that boto3 never enters the gateway's own memory: importing boto3 and
building an S3 client add about 20 MB to a process's RSS, which stays after the client is dropped
(bench/RESULTS.md, "Memory"). The child inherits the environment (credentials, region,
``AWS_ENDPOINT_URL_S3``). On failure it writes ``<ExceptionType>: <message>`` as the last line of its
stderr (a JSON string) and exits with status 1; :func:`fetch` raises :class:`S3Error` with that text.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from modelgate.artifacts.workers import Budget

GRACE_SECONDS = 5.0  # the caller's own timeout answers first; the child is killed this much later
POLL_SECONDS = 0.2  # how often the wait for the child checks the budget (deadline, caller gone, server stopping)


class S3Error(Exception):
    """The download failed; the message is ``<ExceptionType>: <message>`` of the child's error."""


def download(bucket: str, key: str, dest: Path, timeout: float) -> None:
    """The download itself, with boto3 (run in the child)."""
    import boto3
    from botocore.config import Config

    s3 = boto3.client("s3", config=Config(connect_timeout=timeout, read_timeout=timeout, retries={"max_attempts": 2}))
    with open(dest, "wb") as out:
        s3.download_fileobj(bucket, key, out)


def fetch(
    bucket: str, key: str, dest: Path, timeout: float, budget: Budget | None = None, max_bytes: int | None = None
) -> None:
    """Run :func:`download` in a child process; raise S3Error with the child's error. The wait is a loop that
    checks the ``budget`` and the size written so far: the child is killed as soon as the budget says stop
    (WorkStopped) or the object turns out larger than ``max_bytes`` (S3Error)."""
    budget = budget or Budget.lasting(timeout + GRACE_SECONDS)
    cmd = [sys.executable, "-m", __name__, bucket, key, str(dest), repr(timeout)]
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
        limit = time.monotonic() + timeout + GRACE_SECONDS
        try:
            while proc.poll() is None:
                budget.check()
                if time.monotonic() > limit:
                    raise S3Error(f"TimeoutError: the download did not finish within {timeout:.0f} s")
                if max_bytes is not None and dest.exists() and dest.stat().st_size > max_bytes:
                    raise S3Error(f"the object is larger than {max_bytes} bytes (MODELGATE_MAX_ARTIFACT_BYTES)")
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(POLL_SECONDS)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        err.seek(max(0, err.seek(0, 2) - (1 << 16)))  # the last line is the answer
        stderr = err.read().decode(errors="replace")
    if proc.returncode != 0:
        lines = stderr.strip().splitlines()
        if not lines:
            raise S3Error(f"the download exited with status {proc.returncode}")
        try:
            text = json.loads(lines[-1])
        except ValueError:  # the child died before main() could answer (an interpreter error)
            text = lines[-1]
        raise S3Error(str(text))


def main(argv: list[str]) -> int:
    bucket, key, dest, timeout = argv
    try:
        download(bucket, key, Path(dest), float(timeout))
    except Exception as exc:
        print(json.dumps(f"{type(exc).__name__}: {exc}"), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
