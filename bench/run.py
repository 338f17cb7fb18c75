"""The benchmark suite of issue 5: every scenario side by side, in one invocation.

    .venv/bin/python bench/run.py [--smoke] [--duration 10] [--out bench/out] [--no-peers]
                                  [--profile] [--soak 600]

Scenarios: floor, one-hop, modelgate (1 variant x 1 and 2 instances; 2 weighted variants), MLServer
(default config; parallel_workers 0) and TorchServe, each at concurrency 1 and 16. ``--smoke``: floor
and modelgate only, 2 s each, no peers; the exit status says whether every answer was right.
Writes ``<out>/results.json`` and ``<out>/report.md``; see bench/README.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import churn
import peers
import pyspy
import report
import servers
from load import Probe, Run, measure, require_wrk, tree

CONCURRENCY = (1, 16)
SCALING = (1, 2, 4, 16)  # mg-1v1i and mg-1v2i: where do the cores saturate?
CSV = "text/csv"
TARGET_VARIANT = "X-Amzn-SageMaker-Target-Variant"
GROUPS = ("floor", "modelgate", "peers")  # floor includes one-hop


def machine() -> dict[str, object]:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = re.search(r"model name\s*:\s*(.+)", cpuinfo)
    mem_kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))  # type: ignore[union-attr]
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=servers.BENCH
    ).stdout.strip()
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.splitlines()[:1]
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": commit,
        "nproc": os.cpu_count(),
        "memory_gib": round(mem_kb / 2**20, 1),
        "cpu": model.group(1) if model else platform.processor(),
        "load_at_start": os.getloadavg(),
        "python": platform.python_version(),
        "wrk": wrk_version[0] if wrk_version else "?",
        "command": " ".join([".venv/bin/python", *sys.argv]),
    }


class Suite:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.out: Path = args.out.resolve()
        self.work = self.out / "work"
        shutil.rmtree(self.work, ignore_errors=True)
        self.logs = self.work / "logs"
        self.logs.mkdir(parents=True)
        self.duration: float = 2.0 if args.smoke else args.duration
        self.warmup: float = 0.0 if args.smoke else args.warmup
        self.runs: list[Run] = []
        self.notes: list[str] = []
        self.metrics: dict[str, dict[str, list[float | None]]] = {}  # scenario -> metric -> p50 per round
        self.round = 1
        self.soak: list[float] | None = None
        self.profile: str | None = None

    def probe(self, key: str, url: str, body: bytes, content_type: str, answers: list[bytes], mode: str) -> Probe:
        d = self.work / "probes"
        d.mkdir(exist_ok=True)
        (d / f"{key}.body").write_bytes(body)
        expected = []
        for i, answer in enumerate(answers):
            (d / f"{key}.expected{i}").write_bytes(answer)
            expected.append(d / f"{key}.expected{i}")
        return Probe(url, d / f"{key}.body", content_type, mode, tuple(expected))

    def reference(
        self, url: str, body: bytes, content_type: str, model: churn.ChurnModel, headers: dict[str, str] | None = None
    ) -> bytes:
        """One answer, checked against the booster's own prediction: what every answer under load must equal."""
        status, answer = servers.post(url, body, content_type, headers)
        if status != 200:
            raise RuntimeError(f"{url} answered {status}: {answer[:300]!r}")
        churn.check_answer(answer, model)
        return answer

    def measure_all(
        self, scenario: str, probe: Probe, pids: list[int], after: Callable[[Run], None] | None = None
    ) -> None:
        levels = SCALING if scenario in ("mg-1v1i", "mg-1v2i") and not self.args.smoke else CONCURRENCY
        for c in levels:
            run = measure(scenario, probe, pids, c, self.duration, self.warmup)
            run.round = self.round
            self.runs.append(run)
            print(
                f"{scenario:17} c={c:<3} {run.rps:8,.0f} req/s  p50 {run.p50_ms:6.2f}  p99 {run.p99_ms:6.2f} ms  "
                f"cpu {run.server_cpu_ms_per_req:.3f} ms/req  rss {run.peak_rss_mb:4.0f} MB  load {run.load1:.2f}"
                + (
                    ""
                    if run.ok
                    else f"  WRONG: {run.non200} non-200, {run.wrong} wrong, "
                    f"{run.socket_errors} socket errors, first: {run.sample}"
                ),
                flush=True,
            )
            if after is not None:
                after(run)

    def floor_and_one_hop(self, model: churn.ChurnModel) -> None:
        floor, url = servers.start_floor(model.model_dir, self.logs)
        try:
            body = churn.ROW.encode()
            answer = self.reference(url + "/invocations", body, CSV, model)
            self.measure_all(
                "floor", self.probe("floor", url + "/invocations", body, CSV, [answer], "exact"), [floor.pid]
            )
            if self.args.smoke:
                return
            proxy, purl = servers.start_proxy(url, self.logs)
            try:
                answer = self.reference(purl + "/invocations", body, CSV, model)
                probe = self.probe("one-hop", purl + "/invocations", body, CSV, [answer], "exact")
                self.measure_all("one-hop", probe, [proxy.pid, floor.pid])
            finally:
                servers.stop(proxy)
        finally:
            servers.stop(floor)

    def modelgate(self, models: dict[str, churn.ChurnModel]) -> None:
        """The modelgate scenarios."""
        mg = servers.Modelgate(self.work, self.logs)
        try:
            for m in models.values():
                mg.create_model(m.name, m.tarball)
            v1, v2 = models["churn-v1"], models["churn-v2"]
            layouts = {"mg-1v1i": [(v1, 1.0, 1)], "mg-1v2i": [(v1, 1.0, 2)], "mg-2v": [(v1, 0.5, 1), (v2, 0.5, 1)]}
            if self.args.smoke:
                layouts = {"mg-1v1i": layouts["mg-1v1i"]}
            if self.args.scenarios:  # mg-ab runs on mg-2v's endpoint, right after it
                wanted = set(self.args.scenarios.split(",")) | ({"mg-2v"} if "mg-ab" in self.args.scenarios else set())
                layouts = {k: v for k, v in layouts.items() if k in wanted}
            for scenario, variants in layouts.items():
                endpoint = f"bench-{scenario.removeprefix('mg-')}".replace("+", "-")
                mg.deploy(endpoint, [(m.name, w, n) for m, w, n in variants])
                url, body = mg.invocations_url(endpoint), churn.ROW.encode()
                answers = [self.reference(url, body, CSV, m, {TARGET_VARIANT: m.name}) for m, _, _ in variants]
                probe = self.probe(scenario, url, body, CSV, answers, "exact")
                names = [m.name for m, _, _ in variants]
                after = functools.partial(self.read_metrics, mg, endpoint, names, dt.datetime.now(dt.UTC))
                if self._wanted(scenario):
                    self.measure_all(scenario, probe, [mg.proc.pid], after)
                if scenario == "mg-1v1i" and self.args.profile and self.round == 1:
                    self.run_profile(probe, mg.proc.pid)
                if scenario == "mg-1v1i" and self.args.soak and self.round == 1:
                    self.run_soak(probe, mg.proc.pid)
                if scenario == "mg-2v" and not self.args.smoke and self._wanted("mg-ab"):
                    self.ab(mg, endpoint, answers)
                mg.delete(endpoint)
        finally:
            mg.stop()

    def _wanted(self, scenario: str) -> bool:
        return not self.args.scenarios or scenario in self.args.scenarios.split(",")

    def ab(self, mg: servers.Modelgate, endpoint: str, answers: list[bytes]) -> None:
        """The 2-variant endpoint behind the A/B API: a Thompson-sampling experiment assigns each user
        (a pool of 5,000, see check_ab.lua) a variant, records the event, and invokes through the router."""
        status, reply = servers.post(
            mg.url + "/register",
            json.dumps({"endpoint_name": endpoint, "strategy": "ThompsonSampling"}).encode(),
            "application/json",
            {"X-Amz-Date": time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())},  # administrative: an AWS header
        )
        if status not in (200, 201):
            raise RuntimeError(f"A/B register answered {status}: {reply[:300]!r}")
        body = json.dumps({"endpoint_name": endpoint, "data": churn.ROW, "content_type": CSV, "user_id": "{{user}}"})
        # The A/B API answers the model's output parsed as JSON under "predictions" (Starlette's compact JSON).
        expected = [b'"predictions":' + json.dumps(json.loads(a)).encode() for a in answers]
        probe = self.probe("mg-ab", mg.url + "/invocation", body.encode(), "application/json", expected, "ab")
        self.measure_all("mg-ab", probe, [mg.proc.pid])

    def read_metrics(
        self, mg: servers.Modelgate, endpoint: str, variants: list[str], since: dt.datetime, run: Run
    ) -> None:
        """After the c=1 run: the p50 of OverheadLatency and ModelLatency that modelgate itself reports."""
        if run.concurrency != 1 or self.args.smoke:
            return
        need = run.requests // len(variants) // 2
        got = self.metrics.setdefault(run.scenario, {})
        for v in variants:
            for metric in ("OverheadLatency", "ModelLatency"):
                p50 = mg.metric(endpoint, v, metric, since, need)
                got.setdefault(f"{metric}[{v}]", []).append(p50)
                print(f"  {metric}[{v}] p50: {p50 if p50 is None else round(p50)} us", flush=True)

    def run_profile(self, probe: Probe, pid: int) -> None:
        """An extra c=16 run (not in the table) with py-spy sampling the server and its instance."""
        raw = self.out / "profile-modelgate.txt"
        try:
            spy = pyspy.record(pid, self.duration, raw)
        except RuntimeError as exc:
            self.notes.append(f"profile: {exc}")
            return
        time.sleep(0.5)
        run = measure("mg-1v1i (profiled)", probe, [pid], 16, self.duration, 0)
        _, err = spy.communicate(timeout=60)
        if not raw.exists():
            self.notes.append(f"profile: py-spy wrote nothing: {err.decode(errors='replace')[-500:]}")
            return
        self.profile = f"(c=16, {run.rps:,.0f} req/s while profiled)\n" + pyspy.summarize(raw)
        (self.out / "profile-summary.txt").write_text(self.profile)
        print(self.profile, flush=True)

    def run_soak(self, probe: Probe, pid: int) -> None:
        """c=16 for --soak seconds in one-minute runs; the server tree's resident memory after each."""
        self.soak = []
        chunks = max(1, round(self.args.soak / 60))
        for i in range(chunks):
            run = measure("mg-1v1i (soak)", probe, [pid], 16, min(60, self.args.soak), 0)
            mb = sum(p.memory_info().rss for p in tree([pid])) / 2**20
            self.soak.append(mb)
            print(f"soak {i + 1}/{chunks}: {run.rps:,.0f} req/s, {mb:.0f} MB, answers ok: {run.ok}", flush=True)
            if not run.ok:
                self.notes.append(f"soak minute {i + 1}: wrong answers ({run.non200} non-200, {run.wrong} wrong)")

    def peers(self, model: churn.ChurnModel) -> None:
        root = self.out / "peers"
        root.mkdir(parents=True, exist_ok=True)
        v2 = peers.mlserver_body(churn.ROW)
        for scenario, pw in (("mlserver-default", None), ("mlserver-pw0", 0)):
            ports = [servers.free_port() for _ in range(3)]
            try:
                proc, url = peers.start_mlserver(root, model.ubj, pw, self.logs, ports)
            except (peers.NotInstalled, RuntimeError, OSError, subprocess.SubprocessError) as exc:
                self.notes.append(f"{scenario}: not measured: {exc}"[:600])
                print(self.notes[-1], flush=True)
                continue
            try:
                answer = self.reference(url, v2, "application/json", model)
                needle = re.search(rb'"data":\s*\[[^\]]*\]', answer)
                assert needle is not None, answer
                probe = self.probe(scenario, url, v2, "application/json", [needle.group()], "contains")
                self.measure_all(scenario, probe, [proc.pid])
            finally:
                servers.stop(proc)
        ports = [servers.free_port() for _ in range(3)]
        try:
            proc, url = peers.start_torchserve(root, model.ubj, self.logs, ports)
        except (peers.NotInstalled, RuntimeError, OSError, subprocess.SubprocessError) as exc:
            self.notes.append(f"torchserve: not measured: {exc}"[:600])
            print(self.notes[-1], flush=True)
            return
        try:
            body = churn.ROW.encode()
            answer = self.reference(url, body, CSV, model)
            self.measure_all("torchserve", self.probe("torchserve", url, body, CSV, [answer], "exact"), [proc.pid])
        finally:
            servers.stop(proc)

    def write(self, info: dict[str, object]) -> str:
        rows = report.aggregate(self.runs)
        medians = {
            s: {k: statistics.median(got) if (got := [v for v in vs if v is not None]) else None for k, vs in m.items()}
            for s, m in self.metrics.items()
        }
        found = report.targets(rows, medians.get("mg-1v1i", {}).get("OverheadLatency[churn-v1]"), self.soak)
        rounds = f", median of {self.args.rounds} rounds" if self.args.rounds > 1 else ""
        lines = [
            f"# Benchmark report ({'smoke' if self.args.smoke else f'{self.duration:g} s per run'}{rounds})",
            "",
            *[f"- {k}: {v}" for k, v in info.items()],
            "",
            report.table(rows),
            "",
            "What modelgate reported for its c=1 runs (GetMetricStatistics p50, microseconds; median, per round):",
            "",
            *[
                f"- {s} {k}: {_us(medians[s][k])} ({', '.join(map(_us, vs))})"
                for s, m in self.metrics.items()
                for k, vs in m.items()
            ],
            "",
            report.targets_table(found),
            "",
            *[f"- note: {n}" for n in self.notes],
        ]
        if self.profile:
            lines += ["", "## py-spy, modelgate server and instance under load", "", "```", self.profile, "```"]
        text = "\n".join(lines) + "\n"
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "report.md").write_text(text)
        (self.out / "results.json").write_text(
            json.dumps(
                {
                    "machine": info,
                    "runs": [r.as_dict() for r in self.runs],
                    "aggregated": [r.as_dict() for r in rows],
                    "metrics_p50_us": self.metrics,
                    "targets": [t.__dict__ for t in found],
                    "soak_rss_mb": self.soak,
                    "notes": self.notes,
                },
                indent=2,
            )
        )
        return text


def _us(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.0f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="2 s runs of floor and modelgate only; for CI")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per timed run (default 10)")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of load before each timed run (default 3)")
    parser.add_argument("--out", type=Path, default=servers.BENCH / "out", help="output directory")
    parser.add_argument("--no-peers", action="store_true", help="skip MLServer and TorchServe")
    parser.add_argument("--profile", action="store_true", help="py-spy the modelgate server in an extra c=16 run")
    parser.add_argument("--only", default=",".join(GROUPS), help=f"comma-separated subset of {','.join(GROUPS)}")
    parser.add_argument(
        "--scenarios", default="", help="comma-separated modelgate scenarios to run (e.g. mg-2v,mg-ab); default all"
    )
    parser.add_argument("--rounds", type=int, default=1, help="repeat every scenario; the table shows medians")
    parser.add_argument("--soak", type=float, default=0, help="seconds of c=16 on modelgate to watch memory")
    args = parser.parse_args()
    only = set(args.only.split(","))
    if not only <= set(GROUPS):
        parser.error(f"--only takes {','.join(GROUPS)}")
    require_wrk()
    suite = Suite(args)
    info = machine()
    print(f"machine: {info}", flush=True)
    models = churn.prepare(suite.work)
    for suite.round in range(1, args.rounds + 1):
        print(f"round {suite.round} of {args.rounds}", flush=True)
        if "floor" in only:
            suite.floor_and_one_hop(models["churn-v1"])
        if "modelgate" in only:
            suite.modelgate(models)
        if not (args.smoke or args.no_peers) and "peers" in only:
            suite.peers(models["churn-v1"])
    print(suite.write(info))
    bad = [f"{r.scenario} c={r.concurrency}" for r in suite.runs if not r.ok]
    if bad:
        print(f"WRONG ANSWERS in: {', '.join(bad)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
