"""Resident memory of modelgate: the gateway process and one model instance, after real use.

    .venv/bin/python bench/memory.py [--imports] [--s3] [--invocations 2000] [--settle 5] [--no-floor] [--json FILE]

Starts a real ``modelgate serve`` on a fresh data directory and a free port (``servers.Modelgate``),
creates the churn demo model (``churn-v1``, as ``bench/run.py``) and an endpoint with one variant and
one instance with boto3, sends ``--invocations`` InvokeEndpoint requests (every answer checked) and a
CloudWatch GetMetricStatistics, waits ``--settle`` seconds, then prints the resident memory of the
gateway process and of the instance (its process tree): RSS, USS (memory only that process holds) and
PSS (USS plus its share of what it shares with others), from psutil's ``memory_full_info``. The floor
(the same model served by one instance process, no gateway) is measured the same way for the ratio
of issue 5 (total <= 1.5 x floor), unless ``--no-floor``. ``--s3``: the model data comes from ``s3://``
(moto's S3 server, started here), so the gateway's S3 download is part of what is measured.

``--imports`` also prints what each top-level package that the gateway imports adds to the RSS of a fresh
interpreter: "alone" is ``import X`` and nothing else; "in order" imports them one after the other in
the order ``modelgate.server`` first imports them, so a package's dependencies count with the first
package that needs them and the column sums to the total; then the rest of ``modelgate.server`` and
``modelgate.server.build()`` (the wired application, no endpoint).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import churn
import psutil
import servers
from load import tree

MB = 2**20
CSV = "text/csv"


@dataclass(frozen=True)
class Footprint:
    processes: int
    rss_mb: float
    uss_mb: float
    pss_mb: float

    def row(self, label: str) -> str:
        return f"| {label} | {self.processes} | {self.rss_mb:.1f} | {self.uss_mb:.1f} | {self.pss_mb:.1f} |"


def footprint(procs: list[psutil.Process]) -> Footprint:
    rss = uss = pss = 0
    for p in procs:
        m = p.memory_full_info()
        rss, uss, pss = rss + m.rss, uss + m.uss, pss + m.pss
    return Footprint(len(procs), rss / MB, uss / MB, pss / MB)


def invoke(url: str, n: int, model: churn.ChurnModel) -> None:
    """``n`` InvokeEndpoint requests on one kept-alive connection, every answer checked."""
    u = http.client.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname or "127.0.0.1", u.port, timeout=10)
    body = churn.ROW.encode()
    try:
        for _ in range(n):
            conn.request("POST", u.path, body, {"Content-Type": CSV})
            r = conn.getresponse()
            answer = r.read()
            if r.status != 200:
                raise RuntimeError(f"InvokeEndpoint answered {r.status}: {answer[:300]!r}")
            churn.check_answer(answer, model)
    finally:
        conn.close()


def s3_model_data(tarball: Path) -> tuple[str, Any]:
    """moto's S3 server (a test dependency) in this process, holding the tarball; the servers started later
    inherit the environment that points boto3 at it. Returns the model data URL and the server to stop."""
    import boto3
    from moto.server import ThreadedMotoServer

    port = servers.free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    env = {"AWS_ENDPOINT_URL_S3": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "bench",
           "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"}  # fmt: skip
    os.environ.update(env)
    s3 = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL_S3"], region_name="us-east-1")
    s3.create_bucket(Bucket="models")
    s3.upload_file(str(tarball), "models", "churn/model.tar.gz")
    return "s3://models/churn/model.tar.gz", moto


def measure_modelgate(
    work: Path, model: churn.ChurnModel, invocations: int, settle: float, model_data: str | None = None
) -> dict[str, Footprint]:
    logs = work / "logs"
    mg = servers.Modelgate(work, logs)
    try:
        idle = footprint([psutil.Process(mg.proc.pid)])
        if model_data is None:
            mg.create_model(model.name, model.tarball)
        else:
            container = {"Image": servers.IMAGE, "ModelDataUrl": model_data}
            mg.sm.create_model(ModelName=model.name, PrimaryContainer=container)
        endpoint = "memory-1v1i"
        mg.deploy(endpoint, [(model.name, 1.0, 1)])
        started = time.time()
        invoke(mg.invocations_url(endpoint), invocations, model)
        mg.sm.describe_endpoint(EndpointName=endpoint)
        mg.cw.get_metric_statistics(
            Namespace="AWS/SageMaker",
            MetricName="ModelLatency",
            Dimensions=[{"Name": "EndpointName", "Value": endpoint}, {"Name": "VariantName", "Value": model.name}],
            StartTime=started - 120,
            EndTime=time.time() + 60,
            Period=60,
            Statistics=["SampleCount"],
        )
        time.sleep(settle)
        gateway = psutil.Process(mg.proc.pid)
        instance = tree([mg.proc.pid])
        instance = [p for p in instance if p.pid != mg.proc.pid]
        if not instance:
            raise RuntimeError(f"the endpoint's instance is not running: {servers.tail(mg.log)}")
        return {
            "gateway, started (no endpoint)": idle,
            "gateway": footprint([gateway]),
            "instance": footprint(instance),
        }
    finally:
        mg.stop()


def measure_floor(work: Path, model: churn.ChurnModel, invocations: int, settle: float) -> Footprint:
    proc, url = servers.start_floor(model.model_dir, work / "logs")
    try:
        invoke(url + "/invocations", invocations, model)
        time.sleep(settle)
        return footprint(tree([proc.pid]))
    finally:
        servers.stop(proc)


# --- --imports: what each top-level package adds to a fresh interpreter --------------------------------

_RSS = """
import os
def rss():
    return int(open('/proc/self/statm').read().split()[1]) * os.sysconf('SC_PAGE_SIZE')
"""

_DISCOVER = """
import json, sys
before = set(sys.modules)
import modelgate.server
packages = {}
for name in sys.modules:
    top = name.partition('.')[0]
    if name in before or top == 'modelgate' or top in sys.stdlib_module_names or top.startswith('_'):
        continue
    packages.setdefault(top, []).append(name)
print(json.dumps(packages))
"""

# Import a package with the submodules modelgate.server loads of it (a submodule that cannot be imported on its
# own, such as botocore's vendored six.moves, is skipped: it comes with the others).
_IMPORT = """
def load(modules):
    for m in modules:
        try:
            __import__(m)
        except Exception:
            pass
"""

_ALONE = _RSS + _IMPORT + "b = rss()\nload({modules!r})\nprint(rss() - b)\n"

_IN_ORDER = (
    _RSS
    + _IMPORT
    + """
import json, sys, tempfile
out = [['(bare interpreter)', rss(), []]]
def tops():
    return {{n.partition('.')[0] for n in sys.modules}}
def step(label, fn):
    seen = tops()
    b = rss()
    fn()
    new = sorted(t for t in tops() - seen - {{label}} if t not in sys.stdlib_module_names and not t.startswith('_'))
    out.append([label, rss() - b, new])
for name, modules in {packages!r}.items():
    if name not in sys.modules:
        step(name, lambda: load(modules))
step('modelgate.server (its own modules, and the stdlib)', lambda: __import__('modelgate.server'))
def build():
    import os
    os.environ['MODELGATE_DATA_DIR'] = tempfile.mkdtemp(prefix='mg-memory-')
    from modelgate.server import build
    from modelgate.settings import Settings
    globals()['server'] = build(Settings())
step('build(settings): the wired app, no endpoint', build)
print(json.dumps(out))
"""
)


def _python(code: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELGATE_")}
    return subprocess.run([servers.PYTHON, "-c", code], capture_output=True, text=True, check=True, env=env).stdout


def import_table() -> list[str]:
    packages: dict[str, list[str]] = json.loads(_python(_DISCOVER))
    rows = json.loads(_python(_IN_ORDER.format(packages=packages)))
    bare = rows[0][1]
    lines = [
        f"Fresh interpreter ({servers.PYTHON}): {bare / MB:.1f} MB RSS before any import.",
        "",
        "| import | alone MB | in order MB | other packages it brought in |",
        "|---|---|---|---|",
    ]
    total = 0
    for label, delta, new in rows[1:]:
        total += delta
        alone = ""
        if label in packages:
            alone = f"{int(_python(_ALONE.format(modules=packages[label]))) / MB:.1f}"
        lines.append(f"| {label} | {alone} | {delta / MB:.1f} | {', '.join(new)} |")
    lines.append(f"| **total over the bare interpreter** | | **{total / MB:.1f}** | |")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--imports", action="store_true", help="also the RSS each top-level import adds")
    parser.add_argument("--invocations", type=int, default=2000, help="InvokeEndpoint requests (default 2000)")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds to wait before reading (default 5)")
    parser.add_argument("--no-floor", action="store_true", help="skip the floor (one instance, no gateway)")
    parser.add_argument("--s3", action="store_true", help="model data from s3:// (moto's server) instead of file://")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=servers.BENCH
    ).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "src"], capture_output=True, text=True, cwd=servers.BENCH)
    print(f"commit {commit}{' (src/ modified)' if dirty.stdout.strip() else ''}", flush=True)
    with tempfile.TemporaryDirectory(prefix="mg-memory-") as tmp:
        work = Path(tmp)
        model = churn.prepare(work)["churn-v1"]
        model_data, moto = s3_model_data(model.tarball) if args.s3 else (None, None)
        try:
            figures = measure_modelgate(work, model, args.invocations, args.settle, model_data)
        finally:
            if moto is not None:
                moto.stop()
        if not args.no_floor:
            figures["floor"] = measure_floor(work, model, args.invocations, args.settle)
    gw, inst = figures["gateway"], figures["instance"]
    total = Footprint(gw.processes + inst.processes, gw.rss_mb + inst.rss_mb, gw.uss_mb + inst.uss_mb,
                      gw.pss_mb + inst.pss_mb)  # fmt: skip
    source = "s3:// (moto)" if args.s3 else "file://"
    print(f"\nmodel data from {source}; after {args.invocations} invocations and {args.settle:.0f} s idle:\n")
    print("| process | processes | RSS MB | USS MB | PSS MB |")
    print("|---|---|---|---|---|")
    for label, f in figures.items():
        if label != "floor":
            print(f.row(label))
    print(total.row("**total: gateway + instance**"))
    if "floor" in figures:
        floor = figures["floor"]
        print(floor.row("floor: the instance alone, no gateway"))
        print(
            f"\ntotal / floor: {total.rss_mb / floor.rss_mb:.2f} x RSS, {total.pss_mb / floor.pss_mb:.2f} x PSS "
            f"(target 1.5 x: the gateway may hold {1.5 * floor.rss_mb - inst.rss_mb:.0f} MB RSS beside this instance)"
        )
    imports: list[str] = []
    if args.imports:
        imports = import_table()
        print("\n" + "\n".join(imports))
    if args.json:
        data: dict[str, Any] = {"commit": commit, "figures": {k: asdict(v) for k, v in figures.items()}}
        data["imports"] = imports
        args.json.write_text(json.dumps(data, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
