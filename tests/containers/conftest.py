"""Shared helpers: start real container processes, talk HTTP to them, build model artifacts once."""

from __future__ import annotations

import http.client
import os
import pickle
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import xgboost as xgb

from modelgate.demo_models import make_churn_data, train_churn_booster

FAILURE_PREFIX = "MODELGATE-FAILURE: "
START_TIMEOUT = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")


@dataclass
class Container:
    """One ``python -m modelgate.containers <framework> serve`` process."""

    framework: str
    model_dir: Path
    env: dict[str, str]
    log_path: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    _conn: http.client.HTTPConnection | None = None

    def spawn(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SAGEMAKER_", "MODELGATE_", "SM_"))}
        env.update(
            {
                "SM_MODEL_DIR": str(self.model_dir),
                "SAGEMAKER_BIND_TO_PORT": str(self.port),
                "MODELGATE_ALLOW_PIP_INSTALL": "false",
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(self.env)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "modelgate.containers", self.framework, "serve"],
                env=env,
                cwd=self.model_dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"container exited with {self.proc.returncode}: {self.log()}")
            try:
                if self.request("GET", "/ping").status == 200:
                    return
            except OSError:
                self.close_connection()
                time.sleep(0.05)
        raise RuntimeError(f"container did not answer /ping in {timeout} s: {self.log()}")

    def wait_exit(self, timeout: float = START_TIMEOUT) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def failure_lines(self) -> list[str]:
        return [line for line in self.log().splitlines() if line.startswith(FAILURE_PREFIX)]

    def close_connection(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> Response:
        if self._conn is None:
            self._conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            self._conn.request(method, path, body=body, headers=headers or {})
            resp = self._conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException):
            self.close_connection()
            raise
        if resp.will_close:
            self.close_connection()
        return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)

    def invoke(
        self, body: bytes | str, content_type: str | None = "text/csv", accept: str | None = None, **headers: str
    ) -> Response:
        hdrs = dict(headers)
        if content_type is not None:
            hdrs["Content-Type"] = content_type
        if accept is not None:
            hdrs["Accept"] = accept
        raw = body.encode() if isinstance(body, str) else body
        return self.request("POST", "/invocations", raw, hdrs)

    def stop(self) -> None:
        self.close_connection()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


class ContainerFactory:
    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.started: list[Container] = []

    def spawn(self, framework: str, model_dir: Path, **env: str) -> Container:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        c = Container(framework, model_dir, env, self.log_dir / f"container-{len(self.started)}.log")
        self.started.append(c)
        c.spawn()
        return c

    def start(self, framework: str, model_dir: Path, **env: str) -> Container:
        c = self.spawn(framework, model_dir, **env)
        c.wait_ready()
        return c

    def start_many(self, specs: list[tuple[str, Path, dict[str, str]]]) -> list[Container]:
        """Start several at once: their imports overlap, so the suite waits once."""
        out = [self.spawn(framework, model_dir, **env) for framework, model_dir, env in specs]
        for c in out:
            c.wait_ready()
        return out

    def stop_all(self) -> None:
        for c in self.started:
            c.stop()


@pytest.fixture
def containers(tmp_path: Path) -> Iterator[ContainerFactory]:
    factory = ContainerFactory(tmp_path / "logs")
    yield factory
    factory.stop_all()


@pytest.fixture(scope="module")
def module_containers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ContainerFactory]:
    factory = ContainerFactory(tmp_path_factory.mktemp("logs"))
    yield factory
    factory.stop_all()


# ---------------------------------------------------------------------------------------------- artifacts


@dataclass
class Artifacts:
    root: Path
    churn_v1: Any  # xgboost.Booster, 20 features, binary:logistic
    churn_v2: Any
    softmax: list[Any]  # three multi:softmax boosters (4 features, 3 classes)
    softprob: Any  # multi:softprob, 4 features, 3 classes
    regression: Any  # reg:squarederror, 4 features
    x_test: npt.NDArray[np.float32]  # churn rows
    x_small: npt.NDArray[np.float32]  # rows for the 4-feature models

    def model_dir(self, name: str, files: dict[str, Any], pickled: bool = False) -> Path:
        """A model directory holding ``files`` (name -> booster), saved natively or pickled."""
        path = self.root / name
        path.mkdir(parents=True, exist_ok=True)
        for filename, booster in files.items():
            target = path / filename
            if pickled:
                target.write_bytes(pickle.dumps(booster))
            else:
                tmp = path / (filename + ".ubj")
                booster.save_model(str(tmp))
                tmp.rename(target)
        return path


def _small_data(seed: int) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(600, 4)).astype(np.float32)
    y = (np.digitize(x[:, 0] + 0.5 * x[:, 1], [-0.5, 0.5])).astype(np.float32)
    return x, y


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Artifacts:
    x, y = _small_data(3)
    dtrain = xgb.DMatrix(x, label=y)
    base = {"nthread": 1, "max_depth": 3, "seed": 1}
    softmax = [
        xgb.train({**base, "objective": "multi:softmax", "num_class": 3, "eta": eta}, dtrain, rounds)
        for eta, rounds in ((0.3, 5), (0.1, 3), (0.5, 8))
    ]
    softprob = xgb.train({**base, "objective": "multi:softprob", "num_class": 3}, dtrain, 5)
    regression = xgb.train({**base, "objective": "reg:squarederror"}, xgb.DMatrix(x, label=x[:, 0] * 2), 5)
    x_test, _ = make_churn_data(64, seed=99)
    return Artifacts(
        root=tmp_path_factory.mktemp("models"),
        churn_v1=train_churn_booster("churn-v1", seed=7, n_rows=1500),
        churn_v2=train_churn_booster("churn-v2", seed=8, n_rows=1500),
        softmax=softmax,
        softprob=softprob,
        regression=regression,
        x_test=x_test,
        x_small=_small_data(5)[0][:8],
    )


def csv_rows(x: npt.NDArray[np.float32]) -> str:
    """Rows as CSV text with every float32 written exactly (repr of the double value)."""
    return "\n".join(",".join(repr(float(v)) for v in row) for row in x)


def floats(text: str) -> npt.NDArray[np.float32]:
    return np.array([float(v) for v in text.split()], dtype=np.float32)
