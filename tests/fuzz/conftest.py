"""One real ``modelgate serve`` process per fuzz module, and the run settings.

The server runs with ``command:`` images allowed (the echo container of tests/e2e, and one that exits at
start so that endpoints fail), short startup and rollout limits so that deployments end within the run,
and a 1 s drain.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.conftest import ECHO_SERVER, ServerProcess, free_port
from tests.fuzz.wire import Client

SERVER_ENV = {
    "MODELGATE_ALLOW_COMMAND_IMAGES": "true",
    "MODELGATE_MAX_STARTUP_HEALTH_TIMEOUT_SECONDS": "10",
    "MODELGATE_DRAIN_TIMEOUT_SECONDS": "1",
    "MODELGATE_MAX_ROLLOUT_EXECUTION_SECONDS": "20",
    "MODELGATE_AB_FLUSH_SECONDS": "1",
}


@dataclass
class FuzzServer:
    server: ServerProcess
    client: Client
    echo_image: str
    failing_image: str
    model_dir: str


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzServer]:
    root = tmp_path_factory.mktemp("fuzz")
    echo = root / "echo-container"
    echo.write_text(f'#!/bin/sh\nexec {sys.executable} {ECHO_SERVER} "$@"\n')
    echo.chmod(0o755)
    failing = root / "failing-container"
    failing.write_text("#!/bin/sh\necho 'MODELGATE-FAILURE: this container never starts' >&2\nexit 1\n")
    failing.chmod(0o755)
    model_dir = root / "model"
    model_dir.mkdir()
    (model_dir / "model.txt").write_text("fuzz-model\n")
    server = ServerProcess(root / "data", free_port(), dict(SERVER_ENV))
    server.start()
    client = Client(server.port)
    try:
        yield FuzzServer(server, client, f"command:{echo}", f"command:{failing}", str(model_dir))
    finally:
        client.close()
        server.stop()


def log_of(server: ServerProcess) -> str:
    return Path(server.log_path).read_text(errors="replace") if Path(server.log_path).exists() else ""
