"""The results table, the figures derived from it, and each target of issue 5: reached or not."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, replace

from load import Run

LABELS = {
    "floor": "floor: one instance process, no gateway",
    "one-hop": "one-hop limit: floor behind a minimal aiohttp proxy",
    "mg-1v1i": "modelgate: 1 variant, 1 instance",
    "mg-1v2i": "modelgate: 1 variant, 2 instances",
    "mg-2v": "modelgate: 2 variants 50/50, 1 instance each",
    "mg-ab": "modelgate: the same 2 variants through the A/B API (Thompson sampling, 5,000 users)",
    "mlserver-default": "MLServer 1.7.1, default config (parallel_workers 1)",
    "mlserver-pw0": "MLServer 1.7.1, parallel_workers 0",
    "torchserve": "TorchServe 0.12.0, default config (2 workers)",
}
PEERS = ("mlserver-default", "mlserver-pw0", "torchserve")


_MEDIANS = (
    "load1",
    "rps",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "max_ms",
    "server_cpu_ms_per_req",
    "peak_rss_mb",
    "machine_busy_pct",
    "client_cpu_ms_per_req",
)


def aggregate(runs: list[Run]) -> list[Run]:
    """One row per scenario and concurrency: the median of each figure over the rounds, answers summed."""
    groups: dict[tuple[str, int], list[Run]] = {}
    for r in runs:
        groups.setdefault((r.scenario, r.concurrency), []).append(r)
    out = []
    for rs in groups.values():
        med = {f: statistics.median(getattr(r, f) for r in rs) for f in _MEDIANS}
        sums = {f: sum(getattr(r, f) for r in rs) for f in ("requests", "non200", "wrong", "socket_errors")}
        matched = [sum(col) for col in zip(*(r.matched for r in rs), strict=True)]
        sample = next((r.sample for r in rs if not r.ok), rs[0].sample)
        rps = [r.rps for r in rs]
        out.append(
            replace(
                rs[0], **med, **sums, matched=matched, sample=sample, round=len(rs), rps_min=min(rps), rps_max=max(rps)
            )
        )
    return out


def table(runs: list[Run]) -> str:
    """Aggregated runs: medians over the rounds (req/s with its range when there were several)."""
    head = (
        "| scenario | conc. | req/s | p50 ms | p90 ms | p99 ms | server CPU ms/req | peak RSS MB "
        "| machine busy % | load avg | answers right |"
    )
    rows = [head, "|" + "---|" * 11]
    for r in runs:
        right = sum(r.matched)
        spread = f" ({r.rps_min:,.0f}-{r.rps_max:,.0f})" if r.round > 1 else ""
        split = "" if len(r.matched) < 2 else " (" + " / ".join(str(m) for m in r.matched) + ")"
        answers = f"{right}/{r.requests}{split}" + (
            "" if r.ok else f" **{r.non200} non-200, {r.wrong} wrong, {r.socket_errors} socket errors**"
        )
        rows.append(
            f"| {LABELS.get(r.scenario, r.scenario)} | {r.concurrency} | {r.rps:,.0f}{spread} | {r.p50_ms:.2f} | "
            f"{r.p90_ms:.2f} | {r.p99_ms:.2f} | {r.server_cpu_ms_per_req:.3f} | {r.peak_rss_mb:.0f} | "
            f"{r.machine_busy_pct:.0f} | {r.load1:.2f} | {answers} |"
        )
    return "\n".join(rows)


@dataclass
class Target:
    name: str
    reached: bool | None  # None: could not be measured in this run
    figure: str


def targets(runs: list[Run], metric_p50_us: float | None, soak: list[float] | None) -> list[Target]:
    by = {(r.scenario, r.concurrency): r for r in runs}
    floor1, floor16 = by.get(("floor", 1)), by.get(("floor", 16))
    mg1, mg16 = by.get(("mg-1v1i", 1)), by.get(("mg-1v1i", 16))
    hop16 = by.get(("one-hop", 16))
    peers16 = [by[(p, 16)] for p in PEERS if (p, 16) in by]
    best = max(peers16, key=lambda r: r.rps, default=None)
    out: list[Target] = []

    def add(name: str, ok: bool | None, figure: str) -> None:
        out.append(Target(name, ok, figure))

    if floor1 and mg1:
        d50, d99 = mg1.p50_ms - floor1.p50_ms, mg1.p99_ms - floor1.p99_ms
        add(
            "overhead at c=1, median <= 0.25 ms over the floor",
            d50 <= 0.25,
            f"{d50:+.3f} ms ({mg1.p50_ms:.3f} vs {floor1.p50_ms:.3f})",
        )
        add(
            "overhead at c=1, p99 <= 1.0 ms over the floor",
            d99 <= 1.0,
            f"{d99:+.3f} ms ({mg1.p99_ms:.3f} vs {floor1.p99_ms:.3f})",
        )
    if mg16 and best:
        ratio = mg16.rps / best.rps
        add(
            "throughput c=16 >= 2 x best peer",
            ratio >= 2.0,
            f"{ratio:.2f} x ({mg16.rps:,.0f} vs {best.rps:,.0f} req/s, {LABELS[best.scenario]})",
        )
        p99 = mg16.p99_ms / best.p99_ms
        add("p99 c=16 <= 0.6 x best peer's", p99 <= 0.6, f"{p99:.2f} x ({mg16.p99_ms:.2f} vs {best.p99_ms:.2f} ms)")
    elif mg16:
        add("throughput c=16 >= 2 x best peer", None, "no peer ran")
        add("p99 c=16 <= 0.6 x best peer's", None, "no peer ran")
    if mg16 and hop16:
        ratio = mg16.rps / hop16.rps
        add(
            "throughput c=16 >= 0.9 x one-hop limit",
            ratio >= 0.9,
            f"{ratio:.2f} x ({mg16.rps:,.0f} vs {hop16.rps:,.0f} req/s)",
        )
    if mg16:
        add(
            "server CPU per request at c=16 <= 0.6 ms",
            mg16.server_cpu_ms_per_req <= 0.6,
            f"{mg16.server_cpu_ms_per_req:.3f} ms (floor {floor16.server_cpu_ms_per_req:.3f} ms)"
            if floor16
            else f"{mg16.server_cpu_ms_per_req:.3f} ms",
        )
    pairs = [(c, by.get(("mg-1v1i", c)), by.get(("mg-1v2i", c))) for c in (1, 2, 4, 16)]
    shown = [
        f"c={c}: {two.rps / one.rps:.2f} x (busy {one.machine_busy_pct:.0f}% / {two.machine_busy_pct:.0f}%)"
        for c, one, two in pairs
        if one and two
    ]
    if shown:
        add("2 instances vs 1: throughput grows until the cores are saturated", None, "; ".join(shown))
    if floor1 and mg1:
        external_us = (mg1.p50_ms - floor1.p50_ms) * 1000
        if metric_p50_us is None:
            add("OverheadLatency p50 within 0.1 ms of the measured overhead", None, "metric not available")
        else:
            diff = metric_p50_us - external_us
            add(
                "OverheadLatency p50 within 0.1 ms of the measured overhead",
                abs(diff) <= 100,
                f"metric {metric_p50_us:.0f} us vs measured {external_us:.0f} us ({diff:+.0f} us)",
            )
    if floor16 and mg16:
        ratio = mg16.peak_rss_mb / floor16.peak_rss_mb
        add(
            "memory <= 1.5 x floor",
            ratio <= 1.5,
            f"{ratio:.2f} x ({mg16.peak_rss_mb:.0f} vs {floor16.peak_rss_mb:.0f} MB)",
        )
        mls = [by[(p, 16)] for p in ("mlserver-default", "mlserver-pw0") if (p, 16) in by]
        if mls:
            small = min(mls, key=lambda r: r.peak_rss_mb)
            ratio = mg16.peak_rss_mb / small.peak_rss_mb
            add(
                "memory <= 0.6 x MLServer's",
                ratio <= 0.6,
                f"{ratio:.2f} x ({mg16.peak_rss_mb:.0f} vs {small.peak_rss_mb:.0f} MB, {LABELS[small.scenario]})",
            )
        else:
            add("memory <= 0.6 x MLServer's", None, "MLServer did not run")
    if soak:
        growth = (soak[-1] - soak[0]) / soak[0] * 100
        add(
            "memory flat over the soak at c=16 (growth <= 5%)",
            growth <= 5.0,
            f"{growth:+.1f}% ({soak[0]:.0f} MB after the first minute, {soak[-1]:.0f} MB at the end, "
            f"peak {max(soak):.0f} MB)",
        )
    return out


def targets_table(items: list[Target]) -> str:
    rows = ["| target | reached | figure |", "|---|---|---|"]
    for t in items:
        mark = {True: "yes", False: "**no**", None: "n/a"}[t.reached]
        rows.append(f"| {t.name} | {mark} | {t.figure} |")
    return "\n".join(rows)
