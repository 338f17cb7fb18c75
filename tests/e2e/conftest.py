"""Black-box fixtures: a real ``modelgate serve`` process per test, driven with boto3."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import tarfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

ECHO_SERVER = Path(__file__).parent / "containers" / "echo_server.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServerProcess:
    data_dir: Path
    port: int
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_path = self.data_dir.parent / f"server-{self.port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        env = {
            **os.environ,
            **self.env,
            "MODELGATE_DATA_DIR": str(self.data_dir),
            "MODELGATE_PORT": str(self.port),
        }
        log = open(self.log_path, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "modelgate", "serve"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log()}")
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"server did not start: {self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:] if self.log_path.exists() else ""

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def client(self, service: str, validate: bool = True) -> Any:
        """A boto3 client; ``validate=False`` turns off botocore's client-side checks so the server's show."""
        return boto3.client(
            service,
            endpoint_url=self.url,
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
            config=Config(retries={"max_attempts": 1}, read_timeout=120, parameter_validation=validate),
        )


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Any]:
    servers: list[ServerProcess] = []

    def make(**env: str) -> ServerProcess:
        defaults = {
            "MODELGATE_MAX_STARTUP_HEALTH_TIMEOUT_SECONDS": "15",
            "MODELGATE_DRAIN_TIMEOUT_SECONDS": "5",
            # The echo container is a command: image, which a server runs only when its operator allows it.
            "MODELGATE_ALLOW_COMMAND_IMAGES": "true",
            # the tests' model data lives in tmp_path, beside the data directory (tmp_path / "data")
            "MODELGATE_MODEL_DATA_ROOTS": json.dumps([str(tmp_path)]),
        }
        s = ServerProcess(tmp_path / "data", free_port(), {**defaults, **env})
        s.start()
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.stop()


@pytest.fixture
def server(server_factory: Any) -> ServerProcess:
    return server_factory()  # type: ignore[no-any-return]


@pytest.fixture
def sm(server: ServerProcess) -> Any:
    return server.client("sagemaker")


@pytest.fixture
def rt(server: ServerProcess) -> Any:
    return server.client("sagemaker-runtime")


@pytest.fixture
def echo_image(tmp_path: Path) -> str:
    """A ``command:`` image that runs the echo container."""
    script = tmp_path / "echo-container"
    script.write_text(f'#!/bin/sh\nexec {sys.executable} {ECHO_SERVER} "$@"\n')
    script.chmod(0o755)
    return f"command:{script}"


def model_tar(path: Path, files: dict[str, str]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, content in files.items():
            data = content.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def gzip_bomb(path: Path, size: int) -> Path:
    """A tar.gz whose one member, ``zeros``, declares ``size`` bytes of zeros, in about size/1000 bytes: gzip
    members of 1 MiB of zeros each (a gzip file may have many), so that making it takes milliseconds."""
    import gzip

    header = tarfile.TarInfo("zeros")
    header.size = size
    mib = gzip.compress(bytes(1 << 20), compresslevel=9, mtime=0)
    with open(path, "wb") as f:
        f.write(gzip.compress(header.tobuf(format=tarfile.GNU_FORMAT), mtime=0))
        for _ in range(size >> 20):
            f.write(mib)
        f.write(gzip.compress(bytes(size & ((1 << 20) - 1)) + bytes(-size % 512) + bytes(1024), mtime=0))
    return path


def wait_in_service(sm: Any, name: str, attempts: int = 60) -> dict[str, Any]:
    sm.get_waiter("endpoint_in_service").wait(
        EndpointName=name, WaiterConfig={"Delay": 0.5, "MaxAttempts": attempts}
    )
    return sm.describe_endpoint(EndpointName=name)  # type: ignore[no-any-return]


def wait_status(sm: Any, name: str, statuses: set[str], timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        d = sm.describe_endpoint(EndpointName=name)
        if d["EndpointStatus"] in statuses:
            return d  # type: ignore[no-any-return]
        if time.monotonic() > deadline:
            raise AssertionError(f"endpoint {name} stayed {d['EndpointStatus']}: {d}")
        time.sleep(0.2)


def deploy_echo(
    sm: Any,
    image: str,
    name: str,
    variants: list[tuple[str, float, int]],
    model_data: str | None = None,
    env: dict[str, str] | None = None,
    wait: bool = True,
) -> None:
    """Create one model per variant (tagged by ECHO_TAG), a config and an endpoint."""
    pvs = []
    for variant, weight, count in variants:
        container: dict[str, Any] = {"Image": image, "Environment": {"ECHO_TAG": variant, **(env or {})}}
        if model_data:
            container["ModelDataUrl"] = model_data
        sm.create_model(ModelName=f"{name}-{variant}", PrimaryContainer=container)
        pvs.append(
            {
                "VariantName": variant,
                "ModelName": f"{name}-{variant}",
                "InitialInstanceCount": count,
                "InstanceType": "ml.m5.large",
                "InitialVariantWeight": weight,
            }
        )
    sm.create_endpoint_config(EndpointConfigName=f"{name}-config", ProductionVariants=pvs)
    sm.create_endpoint(EndpointName=name, EndpointConfigName=f"{name}-config")
    if wait:
        wait_in_service(sm, name)


def instance_pids(server: ServerProcess) -> dict[str, int]:
    """Instance id → pid of every instance process the server runs."""
    import psutil

    assert server.proc is not None
    out: dict[str, int] = {}
    for p in psutil.Process(server.proc.pid).children(recursive=True):
        try:
            iid = p.environ().get("MODELGATE_INSTANCE_ID")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if iid and p.ppid() == server.proc.pid:
            out[iid] = p.pid
    return out


def all_instance_pids() -> dict[str, int]:
    """Every instance process on the machine, whoever started it (for reaping checks)."""
    import psutil

    out: dict[str, int] = {}
    for p in psutil.process_iter():
        try:
            iid = p.environ().get("MODELGATE_INSTANCE_ID")
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        if iid:
            out[iid] = p.pid
    return out
