"""The peers, each installed by the suite into its own virtual environment under the output directory.

MLServer 1.7.1 with mlserver-xgboost (uvloop pinned to 0.21.0: its workers crash at start with 0.23),
and TorchServe 0.12 (Java, plus a CPU build of torch: its worker imports torch) with a small
handler (``torchserve_handler.py``) that runs the same booster. An installation that fails is reported
as such; it never fails the whole run.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

from servers import spawn, wait_until

BASE_PYTHON = getattr(sys, "_base_executable", sys.executable)
XGBOOST = "xgboost==3.2.0"  # the version modelgate's containers use
MLSERVER = ["mlserver==1.7.1", "mlserver-xgboost==1.7.1", "uvloop==0.21.0", XGBOOST]
TORCHSERVE = ["torchserve==0.12.0", "torch-model-archiver==0.12.0", "pyyaml", XGBOOST]
# A CPU build of torch: from PyTorch's CPU index, or where that is out of reach (this VM reaches PyPI only)
# from the CPU wheel pip finds on the machine (`/opt/wheels` here). PyPI's own torch is a CUDA build of
# several GB, which the `+cpu` local version keeps out.
TORCH_CPU = ["torch==2.13.0+cpu", "--extra-index-url", "https://download.pytorch.org/whl/cpu"]
HANDLER = Path(__file__).with_name("torchserve_handler.py")
# One OpenMP thread per prediction, as modelgate's containers (and SageMaker's XGBoost container) set it.
# With the library default (a thread per core), a one-row prediction on this 2-core machine stalls in
# OpenMP's barrier whenever another process holds a core: MLServer fell from about 550 to 80 requests/s.
THREADS = {"OMP_NUM_THREADS": "1"}


class NotInstalled(Exception):
    pass


def venv(root: Path, name: str, *requirements: list[str]) -> Path:
    """``root/name``, a virtual environment with ``requirements`` (each one pip call); kept between runs."""
    env = root / name
    marker = env / "bench-installed.json"
    if marker.exists() and json.loads(marker.read_text()) == list(requirements):
        return env
    shutil.rmtree(env, ignore_errors=True)
    log = root / f"{name}-install.log"
    print(f"installing {name} into {env} (log: {log}) ...", flush=True)
    steps = [[BASE_PYTHON, "-m", "venv", str(env)]]
    steps += [[str(env / "bin" / "pip"), "install", "-q", *r] for r in requirements]
    with open(log, "w") as f:
        for cmd in steps:
            if subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, timeout=1200).returncode != 0:
                lines = log.read_text(errors="replace").strip().splitlines()
                raise NotInstalled(f"`{' '.join(cmd[-6:])}` failed: {lines[-1] if lines else '?'}")
    marker.write_text(json.dumps(list(requirements)))
    return env


def start_mlserver(
    root: Path, ubj: Path, parallel_workers: int | None, logs: Path, ports: list[int]
) -> tuple[subprocess.Popen[bytes], str]:
    """MLServer with its defaults except the ports (and ``parallel_workers`` when given)."""
    env = venv(root, "mlserver-venv", MLSERVER)
    name = "mlserver-default" if parallel_workers is None else f"mlserver-pw{parallel_workers}"
    repo = root / name
    shutil.rmtree(repo, ignore_errors=True)
    (repo / "churn").mkdir(parents=True)
    shutil.copy(ubj, repo / "churn" / "model.ubj")
    settings: dict[str, object] = {
        "host": "127.0.0.1",
        "http_port": ports[0],
        "grpc_port": ports[1],
        "metrics_port": ports[2],
    }
    if parallel_workers is not None:
        settings["parallel_workers"] = parallel_workers
    (repo / "settings.json").write_text(json.dumps(settings))
    (repo / "churn" / "model-settings.json").write_text(
        json.dumps(
            {"name": "churn", "implementation": "mlserver_xgboost.XGBoostModel", "parameters": {"uri": "./model.ubj"}}
        )
    )
    log = logs / f"{name}.log"
    proc = spawn([str(env / "bin" / "mlserver"), "start", "."], log, env=THREADS, cwd=repo)
    url = f"http://127.0.0.1:{ports[0]}"
    ready = f"{url}/v2/models/churn/ready"
    wait_until(lambda: urllib.request.urlopen(ready, timeout=2).status == 200, proc, log, 180, name)
    return proc, f"{url}/v2/models/churn/infer"


def mlserver_body(row: str) -> bytes:
    """The row as an Open Inference Protocol (V2) request: MLServer's own wire format."""
    values = [float(v) for v in row.split(",")]
    return json.dumps(
        {"inputs": [{"name": "x", "shape": [1, len(values)], "datatype": "FP32", "data": values}]}
    ).encode()


def start_torchserve(root: Path, ubj: Path, logs: Path, ports: list[int]) -> tuple[subprocess.Popen[bytes], str]:
    """TorchServe with its defaults (workers = cores) except the addresses and token authorization."""
    if shutil.which("java") is None:
        raise NotInstalled("no java on PATH")
    env = venv(root, "torchserve-venv", TORCHSERVE, TORCH_CPU)
    home = root / "torchserve"
    shutil.rmtree(home, ignore_errors=True)
    (home / "store").mkdir(parents=True)
    shutil.copy(ubj, home / "model.ubj")
    subprocess.run(
        [
            str(env / "bin" / "torch-model-archiver"),
            "--model-name",
            "churn",
            "--version",
            "1.0",
            "--handler",
            str(HANDLER),
            "--extra-files",
            str(home / "model.ubj"),
            "--export-path",
            str(home / "store"),
            "--force",
        ],
        check=True,
        capture_output=True,
    )
    (home / "config.properties").write_text(
        f"inference_address=http://127.0.0.1:{ports[0]}\nmanagement_address=http://127.0.0.1:{ports[1]}\n"
        f"metrics_address=http://127.0.0.1:{ports[2]}\ndisable_token_authorization=true\n"
    )
    log = logs / "torchserve.log"
    cmd = [
        str(env / "bin" / "torchserve"),
        "--start",
        "--foreground",
        "--ncs",
        "--ts-config",
        "config.properties",
        "--model-store",
        "store",
        "--models",
        "churn=churn.mar",
    ]
    proc = spawn(cmd, log, env={"PATH": f"{env / 'bin'}:/usr/bin:/bin", **THREADS}, cwd=home)
    url = f"http://127.0.0.1:{ports[0]}/predictions/churn"

    def ready() -> bool:
        with urllib.request.urlopen(f"http://127.0.0.1:{ports[1]}/models/churn", timeout=2) as r:
            workers = json.loads(r.read())[0]["workers"]
        return bool(workers) and all(w["status"] == "READY" for w in workers)

    wait_until(ready, proc, log, 180, "torchserve")
    return proc, url
