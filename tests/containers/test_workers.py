"""SAGEMAKER_MODEL_SERVER_WORKERS bounds how many predictions run at once."""

from __future__ import annotations

import http.client
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.containers.conftest import Container, ContainerFactory

SCRIPT = """
import threading, time

_lock = threading.Lock()
_active = 0
_peak = 0

def model_fn(model_dir):
    return None

def predict_fn(data, model):
    global _active, _peak
    with _lock:
        _active += 1
        _peak = max(_peak, _active)
    time.sleep(0.25)
    with _lock:
        _active -= 1
    return {"peak": _peak}
"""


def call(port: int) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", "/invocations", body=b"[[1.0]]", headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        assert resp.status == 200
        return int(json.loads(resp.read())["peak"])
    finally:
        conn.close()


@pytest.fixture(scope="module")
def workers(tmp_path_factory: pytest.TempPathFactory, module_containers: ContainerFactory) -> dict[int, Container]:
    model_dir: Path = tmp_path_factory.mktemp("workers")
    (model_dir / "code").mkdir()
    (model_dir / "code" / "inference.py").write_text(SCRIPT)
    program = {"SAGEMAKER_PROGRAM": "inference.py"}
    one, three = module_containers.start_many(
        [
            ("sklearn", model_dir, program),  # default: 1
            ("sklearn", model_dir, {**program, "SAGEMAKER_MODEL_SERVER_WORKERS": "3"}),
        ]
    )
    return {1: one, 3: three}


@pytest.mark.parametrize("count", [1, 3])
def test_concurrent_predictions_are_bounded_by_workers(count: int, workers: dict[int, Container]) -> None:
    port = workers[count].port
    with ThreadPoolExecutor(5) as pool:
        peaks = list(pool.map(call, [port] * 5))
    assert max(peaks) == count
