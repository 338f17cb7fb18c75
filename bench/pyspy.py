"""py-spy under load: where a server process tree spends its time, summarized per process."""

from __future__ import annotations

import collections
import re
import shutil
import subprocess
import sys
from pathlib import Path

_LINE = re.compile(r":\d+\)")


def py_spy() -> str | None:
    local = Path(sys.executable).with_name("py-spy")
    return str(local) if local.exists() else shutil.which("py-spy")


def record(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes]:
    """Start sampling ``pid`` and its subprocesses for ``seconds`` into ``out`` (collapsed stacks)."""
    exe = py_spy()
    if exe is None:
        raise RuntimeError("py-spy is not installed: `.venv/bin/pip install py-spy`")
    cmd = [
        exe,
        "record",
        "--pid",
        str(pid),
        "--subprocesses",
        "--nonblocking",
        "--rate",
        "250",
        "--duration",
        str(max(1, round(seconds))),
        "--format",
        "raw",
        "--output",
        str(out),
    ]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _package(frame: str) -> str:
    """``send (uvicorn/protocols/http/httptools_impl.py)`` -> ``uvicorn``."""
    m = re.search(r"\(([^/()]+)/", frame)
    return m.group(1) if m else frame


def summarize(raw: Path, top: int = 15) -> str:
    """Per process: samples, then the functions with the most samples on top of the stack (self) and
    anywhere in it (inclusive), as shares of that process's samples."""
    per_process: dict[str, list[tuple[list[str], int]]] = collections.defaultdict(list)
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [_LINE.sub(")", f) for f in stack.split(";")]
        # with --subprocesses a child's stacks start with its ancestors' "process ..." frames, then its own
        marks = [i for i, f in enumerate(frames) if f.startswith("process ")]
        process = frames[marks[-1]] if marks else "process"
        per_process[process].append((frames[marks[-1] + 1 :] if marks else frames, int(count)))
    out = []
    for process, stacks in sorted(per_process.items(), key=lambda kv: -sum(n for _, n in kv[1])):
        total = sum(n for _, n in stacks)
        own: collections.Counter[str] = collections.Counter()
        incl: collections.Counter[str] = collections.Counter()
        for frames, n in stacks:
            if frames:
                own[frames[-1]] += n
            for f in set(frames):
                incl[f] += n
        packages: collections.Counter[str] = collections.Counter()
        for f, n in own.items():
            packages[_package(f)] += n
        out.append(f"{process}: {total} samples")
        out.append("  self, by package: " + ", ".join(f"{p} {100 * n / total:.0f}%" for p, n in packages.most_common()))
        out.append("  self:")
        out += [f"    {100 * n / total:5.1f}%  {f}" for f, n in own.most_common(top)]
        out.append("  inclusive:")
        out += [f"    {100 * n / total:5.1f}%  {f}" for f, n in incl.most_common(top + 10)]
    return "\n".join(out)
