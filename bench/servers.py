"""Starting and stopping what is measured: the floor instance, the one-hop proxy, a modelgate server.

Every process is started here and stopped by its PID (and its descendants' PIDs), never by name.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import psutil

BENCH = Path(__file__).resolve().parent
PYTHON = sys.executable
IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1"
INSTANCE_TYPE = "ml.m5.large"  # 2 vCPUs: SAGEMAKER_MODEL_SERVER_WORKERS=2 on this 2-core machine
FLOOR_WORKERS = "2"  # the floor gets what modelgate gives its instances here


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def spawn(
    cmd: list[str], log: Path, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as f:
        return subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}, cwd=cwd)


def stop(proc: subprocess.Popen[bytes], grace: float = 30.0) -> None:
    """SIGTERM the process, wait, then SIGTERM/SIGKILL whichever of its descendants are left, by PID."""
    try:
        descendants = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        descendants = []
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    alive = [p for p in descendants if p.is_running()]
    for p in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.terminate()
    _, alive = psutil.wait_procs(alive, timeout=5)
    for p in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()


def tail(log: Path, n: int = 3000) -> str:
    return log.read_text(errors="replace")[-n:] if log.exists() else ""


def post(url: str, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, body, {"Content-Type": content_type, **(headers or {})}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def wait_until(ready: Any, proc: subprocess.Popen[bytes], log: Path, timeout: float, what: str) -> None:
    """Poll ``ready()`` (True when up; OSError counts as not yet) until it holds, the process exits or time is up."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited ({proc.returncode}): {tail(log)}")
        try:
            if ready():
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{what} not ready after {timeout:.0f} s: {tail(log)}")


def start_floor(model_dir: Path, logs: Path) -> tuple[subprocess.Popen[bytes], str]:
    """The model served directly: ``python -m modelgate.containers xgboost serve``."""
    port = free_port()
    env = {
        "SAGEMAKER_BIND_TO_PORT": str(port),
        "SM_MODEL_DIR": str(model_dir),
        "SAGEMAKER_MODEL_SERVER_WORKERS": FLOOR_WORKERS,
        "PYTHONUNBUFFERED": "1",
    }
    log = logs / "floor.log"
    proc = spawn([PYTHON, "-m", "modelgate.containers", "xgboost", "serve"], log, env)
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: urllib.request.urlopen(url + "/ping", timeout=2).status == 200, proc, log, 60, "floor")
    return proc, url


def start_proxy(upstream: str, logs: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    log = logs / "one-hop.log"
    proc = spawn([PYTHON, str(BENCH / "proxy.py"), str(port), upstream], log)
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: urllib.request.urlopen(url + "/ping", timeout=2).status == 200, proc, log, 30, "proxy")
    return proc, url


class Modelgate:
    """A real ``modelgate serve`` on a fresh data directory, driven with boto3 like any user would."""

    def __init__(self, work: Path, logs: Path, name: str = "modelgate") -> None:
        data = work / f"{name}-data"
        shutil.rmtree(data, ignore_errors=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = logs / f"{name}.log"
        env = {
            "MODELGATE_DATA_DIR": str(data),
            "MODELGATE_PORT": str(self.port),
            "MODELGATE_DRAIN_TIMEOUT_SECONDS": "5",
            "MODELGATE_MODEL_DATA_ROOTS": json.dumps([str(work)]),  # the churn tarballs are made under work/
        }
        self.proc = spawn([PYTHON, "-m", "modelgate", "serve"], self.log, env)
        wait_until(
            lambda: urllib.request.urlopen(self.url + "/healthz", timeout=2).status == 200,
            self.proc,
            self.log,
            60,
            "modelgate serve",
        )
        self.sm, self.cw = self.client("sagemaker"), self.client("cloudwatch")

    def client(self, service: str) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            service,
            endpoint_url=self.url,
            region_name="us-east-1",
            aws_access_key_id="bench",
            aws_secret_access_key="bench",
            config=Config(retries={"max_attempts": 2}),
        )

    def create_model(self, name: str, tarball: Path) -> None:
        self.sm.create_model(ModelName=name, PrimaryContainer={"Image": IMAGE, "ModelDataUrl": f"file://{tarball}"})

    def deploy(self, endpoint: str, variants: list[tuple[str, float, int]]) -> None:
        """``variants``: (model name, which is also the variant name, weight, instance count)."""
        pvs = [
            {
                "VariantName": m,
                "ModelName": m,
                "InitialInstanceCount": n,
                "InstanceType": INSTANCE_TYPE,
                "InitialVariantWeight": w,
            }
            for m, w, n in variants
        ]
        self.sm.create_endpoint_config(EndpointConfigName=endpoint, ProductionVariants=pvs)
        self.sm.create_endpoint(EndpointName=endpoint, EndpointConfigName=endpoint)
        self.sm.get_waiter("endpoint_in_service").wait(
            EndpointName=endpoint, WaiterConfig={"Delay": 1, "MaxAttempts": 120}
        )

    def delete(self, endpoint: str) -> None:
        self.sm.delete_endpoint(EndpointName=endpoint)
        self.sm.get_waiter("endpoint_deleted").wait(
            EndpointName=endpoint, WaiterConfig={"Delay": 1, "MaxAttempts": 120}
        )
        self.sm.delete_endpoint_config(EndpointConfigName=endpoint)

    def invocations_url(self, endpoint: str) -> str:
        return f"{self.url}/endpoints/{endpoint}/invocations"

    def metric(self, endpoint: str, variant: str, metric: str, since: dt.datetime, samples: int) -> float | None:
        """The p50 of ``metric`` (microseconds) over one period from ``since`` until now, once it holds at least
        ``samples`` samples (recording is asynchronous); None if it never does within 15 s."""
        start = since.replace(second=0, microsecond=0)
        dims = [{"Name": "EndpointName", "Value": endpoint}, {"Name": "VariantName", "Value": variant}]
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            end = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
            query = {
                "Namespace": "AWS/SageMaker",
                "MetricName": metric,
                "Dimensions": dims,
                "StartTime": start,
                "EndTime": end,
                "Period": int((end - start).total_seconds()),
            }
            count = self.cw.get_metric_statistics(**query, Statistics=["SampleCount"])["Datapoints"]
            if count and sum(p["SampleCount"] for p in count) >= samples:
                points = self.cw.get_metric_statistics(**query, ExtendedStatistics=["p50"])["Datapoints"]
                if len(points) == 1:
                    return float(points[0]["ExtendedStatistics"]["p50"])
            time.sleep(0.5)
        return None

    def stop(self) -> None:
        stop(self.proc)
