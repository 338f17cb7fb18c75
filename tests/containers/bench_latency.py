"""Latency of one small XGBoost model, one CSV row per request (not collected by pytest).

    .venv/bin/python tests/containers/bench_latency.py [--requests 3000] [--rounds 3]

Starts ``python -m modelgate.containers xgboost serve`` on the demo ``churn-v1`` booster
(binary:logistic, 50 trees of depth 4, 20 features) with each front end (``http1``, the default,
and ``uvicorn``) and, for comparison, a do-nothing raw ASGI app on uvicorn; then sends sequential
``POST /invocations`` over one kept-alive ``http.client`` connection to each, alternating, and
prints median/p90/p99 per round, and the server's CPU time per request (user + system, from /proc;
it includes the 200 warm-up requests, so it slightly overstates), which varies much less than
wall time on a shared machine.
"""

from __future__ import annotations

import argparse
import http.client
import os
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from modelgate.demo_models import churn_sample_rows, train_churn_booster

EMPTY_APP = textwrap.dedent(
    """
    import sys, uvicorn

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        message = await receive()
        while message.get("more_body"):
            message = await receive()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/csv"), (b"content-length", b"4")]})
        await send({"type": "http.response.body", "body": b"0.5\\n"})

    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), http="httptools", loop="uvloop",
                lifespan="off", access_log=False, log_level="warning", server_header=False, date_header=False,
                proxy_headers=False)
    """
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ping(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("server exited")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/ping")
            if conn.getresponse().status == 200:
                conn.close()
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("server did not start")


def measure(port: int, body: bytes, n: int, warmup: int = 200) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Content-Type": "text/csv"}
    out = []
    for i in range(n + warmup):
        start = time.perf_counter()
        conn.request("POST", "/invocations", body, headers)
        resp = conn.getresponse()
        resp.read()
        if i >= warmup:
            out.append(time.perf_counter() - start)
        assert resp.status == 200
    conn.close()
    return sorted(out)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux), a load-independent cost figure."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def summary(lat: list[float], cpu: float) -> str:
    def pct(q: float) -> float:
        return lat[min(len(lat) - 1, int(len(lat) * q))] * 1e3

    return (
        f"median {pct(0.5):.3f} ms  p90 {pct(0.9):.3f} ms  p99 {pct(0.99):.3f} ms  "
        f"server CPU {cpu / len(lat) * 1e3:.3f} ms/request"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp) / "model"
        model_dir.mkdir()
        booster = train_churn_booster("churn-v1", seed=7)
        booster.save_model(str(model_dir / "xgboost-model.ubj"))
        (model_dir / "xgboost-model.ubj").rename(model_dir / "xgboost-model")
        app_file = Path(tmp) / "empty_app.py"
        app_file.write_text(EMPTY_APP)
        body = churn_sample_rows(1)[0].encode()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SAGEMAKER_", "SM_"))}
        ports = {"modelgate http1": free_port(), "modelgate uvicorn": free_port(), "empty ASGI app": free_port()}
        command = [sys.executable, "-m", "modelgate.containers", "xgboost", "serve"]
        base_env = {**env, "SM_MODEL_DIR": str(model_dir)}
        procs = {
            "modelgate http1": subprocess.Popen(
                command, env={**base_env, "SAGEMAKER_BIND_TO_PORT": str(ports["modelgate http1"])}
            ),
            "modelgate uvicorn": subprocess.Popen(
                command,
                env={
                    **base_env,
                    "SAGEMAKER_BIND_TO_PORT": str(ports["modelgate uvicorn"]),
                    "MODELGATE_CONTAINER_HTTP": "uvicorn",
                },
            ),
            "empty ASGI app": subprocess.Popen([sys.executable, str(app_file), str(ports["empty ASGI app"])], env=env),
        }
        try:
            for name, proc in procs.items():
                wait_ping(ports[name], proc)
            for round_no in range(args.rounds):
                for name, port in ports.items():
                    before = cpu_seconds(procs[name].pid)
                    lat = measure(port, body, args.requests)
                    cpu = cpu_seconds(procs[name].pid) - before
                    print(f"round {round_no + 1} {name:17s} {summary(lat, cpu)}", flush=True)
        finally:
            for proc in procs.values():
                proc.send_signal(signal.SIGTERM)
                proc.wait(10)


if __name__ == "__main__":
    main()
