"""The README's examples, run as written against a server started the way the quick start starts it.

Which blocks run: every fenced ``sh``/``bash``/``shell``/``console``/``python`` block of README.md has an HTML
comment on the line before it, ``<!-- readme-example: run -->`` or ``<!-- readme-example: skip (why) -->``;
an unmarked one fails ``test_d18_every_readme_example_is_marked``, so a new example cannot slip in
untested. (``text`` blocks, such as the CLI synopsis, are not examples.)

The server: ``scripts/quickstart.sh`` installs into ``.venv`` and then runs
``.venv/bin/modelgate serve --demo "$@"`` (checked here); the test runs that command, through this
interpreter (``python -m modelgate``), with the flags the README says it passes through: ``--port`` a free
port P and ``--data-dir`` a fresh directory. The examples run once ``churn-demo`` is InService.

What the test changes in the examples, and only where the README tells a user on another port to:
``127.0.0.1:8080`` becomes ``127.0.0.1:P`` in every runnable block (the Python snippet's ``endpoint_url``
and any ``--url``), and the shell session has ``MODELGATE_URL=http://127.0.0.1:P`` in its environment (the
CLI's default for ``--url``). Nothing else is rewritten.

How they run: the runnable shell blocks, in README order, as one bash session (as a user following the
README in one terminal: ``source .venv/bin/activate`` carries over) in a directory whose ``.venv`` is the
virtualenv running the tests (or, outside one, a stand-in with ``bin/activate``, ``bin/modelgate`` and
``bin/python``). Each command's exit status, standard output and standard error are kept apart and checked
against ``SHELL_EXPECTED``: every command must match one row. Each runnable Python block runs with
``.venv/bin/python`` and is checked against ``PYTHON_EXPECTED``.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.e2e.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
QUICKSTART_EXEC = 'exec .venv/bin/modelgate serve --demo "$@"'
SHELL_LANGS, PYTHON_LANGS = {"sh", "bash", "shell"}, {"python", "py"}
RUNNABLE_LANGS = SHELL_LANGS | PYTHON_LANGS
EXAMPLE_LANGS = RUNNABLE_LANGS | {"console", "pycon"}  # must be marked, run or skip
MARKER = re.compile(r"<!-- readme-example: (run|skip \(.+\)) -->")
DEFAULT_HOST_PORT = "127.0.0.1:8080"
IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1"

# (the command as the README writes it, without its trailing comment; what its stdout must contain; what
# its stderr must contain). Regular expressions; the command one must match the whole command.
SHELL_EXPECTED: list[tuple[str, str, str]] = [
    (r"source \.venv/bin/activate", r"", r""),
    (
        r"(\.venv/bin/)?modelgate endpoints",
        r"churn-demo +InService +churn-v1 \(weight 0\.9, 1 inst\), churn-v2 \(weight 0\.1, 1 inst\)",
        r"",
    ),
    (
        r"modelgate (--url http://127\.0\.0\.1:8080 )?describe churn-demo",
        r'"EndpointName": "churn-demo",[\s\S]*"EndpointStatus": "InService"',
        r"",
    ),
    (r"modelgate invoke churn-demo --body '([\d.]+,){19}[\d.]+'", r"\A0\.\d+\n\Z", r"# variant: churn-v[12]"),
    (
        r"modelgate invoke churn-demo --variant churn-v2 --body '([\d.]+,){19}[\d.]+'",
        r"\A0\.\d+\n\Z",
        r"# variant: churn-v2",
    ),
    (
        r"printf '(([\d.]+,){19}[\d.]+\\n){2}' \| modelgate invoke churn-demo",
        r"\A0\.\d+\n0\.\d+\n\Z",
        r"# variant: churn-v[12]",
    ),
]
# What each runnable Python block prints, in README order.
PYTHON_EXPECTED = [r"\Achurn-v[12] 0\.\d+\n\Z"]


@dataclass(frozen=True)
class Block:
    line: int  # of the opening fence, 1-based
    lang: str
    marker: str | None  # "run", "skip (...)", or None when unmarked
    text: str


def readme_blocks(text: str) -> list[Block]:
    """Every fenced block of the README with its language and its marker (the line just before it)."""
    lines = text.splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        m = re.fullmatch(r"```(\S*)\s*", lines[i])
        if not m:
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        before = MARKER.fullmatch(lines[i - 1].strip()) if i > 0 else None
        blocks.append(Block(i + 1, m.group(1), before.group(1) if before else None, "\n".join(lines[i + 1 : end])))
        i = end + 1
    return blocks


def runnable(lang: set[str]) -> list[Block]:
    return [b for b in readme_blocks(README.read_text()) if b.lang in lang and b.marker == "run"]


def commands(block: str) -> list[str]:
    """The commands of a shell block: one a line (a trailing backslash continues it); comments dropped."""
    out: list[str] = []
    pending = ""
    for raw in block.splitlines():
        line = pending + raw
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        pending = ""
        if line.strip() and not line.strip().startswith("#"):
            out.append(line.strip())
    return out


def without_comment(command: str) -> str:
    return re.sub(r"\s+#.*\Z", "", command)


def test_d18_every_readme_example_is_marked() -> None:
    blocks = readme_blocks(README.read_text())
    unmarked = [f"README.md:{b.line} ```{b.lang}" for b in blocks if b.lang in EXAMPLE_LANGS and b.marker is None]
    assert not unmarked, (
        "mark each example with <!-- readme-example: run --> (and give it a row in SHELL_EXPECTED or "
        f"PYTHON_EXPECTED) or <!-- readme-example: skip (why) --> on the line before it: {unmarked}"
    )
    wrong = [f"README.md:{b.line} ```{b.lang}" for b in blocks if b.marker == "run" and b.lang not in RUNNABLE_LANGS]
    assert not wrong, f"only {sorted(RUNNABLE_LANGS)} blocks can run: {wrong}"
    assert runnable(SHELL_LANGS) and runnable(PYTHON_LANGS)


# --- the server, as the quick start starts it ----------------------------------------------------------


@dataclass
class DemoServer:
    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def client(self, service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=self.url,
            region_name="us-east-1",
            aws_access_key_id="x",
            aws_secret_access_key="x",
            config=Config(retries={"max_attempts": 1}),
        )


def _server_env() -> dict[str, str]:
    """The test's environment without MODELGATE_* (the flags say where to serve; the client default is ours)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("MODELGATE_")}


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoServer]:
    quickstart = (ROOT / "scripts" / "quickstart.sh").read_text().strip().splitlines()
    assert quickstart[-1] == QUICKSTART_EXEC, "the quick start no longer runs what this test runs"
    tmp = tmp_path_factory.mktemp("readme")
    port = free_port()
    log_path = tmp / "server.log"
    argv = ["serve", "--demo", "--port", str(port), "--data-dir", str(tmp / "data")]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "modelgate", *argv], stdout=log, stderr=subprocess.STDOUT, env=_server_env()
        )
    server = DemoServer(port, proc, log_path)
    try:
        _wait_in_service(server)
        yield server
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _wait_in_service(server: DemoServer, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"server exited: {server.log()[-3000:]}")
        try:
            with urllib.request.urlopen(server.url + "/healthz", timeout=1):
                pass
            status = server.client("sagemaker").describe_endpoint(EndpointName="churn-demo")["EndpointStatus"]
        except (OSError, ClientError):
            status = None
        if status == "InService":
            return
        if status == "Failed":
            raise RuntimeError(f"churn-demo failed: {server.log()[-3000:]}")
        time.sleep(0.25)
    raise RuntimeError(f"churn-demo not InService within {timeout} s: {server.log()[-3000:]}")


def _checkout(tmp: Path) -> Path:
    """A directory whose ``.venv`` is the quick start's: the virtualenv running the tests, or a stand-in."""
    root = tmp / "checkout"
    root.mkdir()
    bin_dir = Path(sys.executable).parent
    if (bin_dir / "activate").exists() and (bin_dir / "modelgate").exists():
        (root / ".venv").symlink_to(bin_dir.parent, target_is_directory=True)
        return root
    venv_bin = root / ".venv" / "bin"
    venv_bin.mkdir(parents=True)
    (venv_bin / "python").symlink_to(sys.executable)
    (venv_bin / "modelgate").write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m modelgate "$@"\n')
    (venv_bin / "modelgate").chmod(0o755)
    (venv_bin / "activate").write_text(f"PATH={shlex.quote(str(venv_bin))}:$PATH\nexport PATH\n")
    return root


def _on_port(text: str, port: int) -> str:
    return text.replace(DEFAULT_HOST_PORT, f"127.0.0.1:{port}")


@dataclass(frozen=True)
class Ran:
    command: str
    rc: int
    out: str
    err: str


def run_shell_session(cmds: list[str], cwd: Path, env: dict[str, str], out_dir: Path) -> list[Ran]:
    """Run the commands in one bash process (state carries over), each one's status and output apart."""
    script = ["set -o pipefail"]
    for i, cmd in enumerate(cmds):
        script += [f"{{ {cmd}", f'}} >"{out_dir}/{i}.out" 2>"{out_dir}/{i}.err"', f'echo $? >"{out_dir}/{i}.rc"']
    subprocess.run(["bash", "-c", "\n".join(script)], cwd=cwd, env=env, timeout=180, check=False)
    ran = []
    for i, cmd in enumerate(cmds):
        rc_file = out_dir / f"{i}.rc"
        rc = int(rc_file.read_text()) if rc_file.exists() else -1
        ran.append(Ran(cmd, rc, (out_dir / f"{i}.out").read_text(), (out_dir / f"{i}.err").read_text()))
    return ran


@pytest.mark.slow
def test_d18_readme_examples_run_as_written(demo_server: DemoServer, tmp_path: Path) -> None:
    checkout = _checkout(tmp_path)
    port = demo_server.port
    shell_blocks = runnable(SHELL_LANGS)
    cmds = [c for b in shell_blocks for c in commands(b.text)]
    failures: list[str] = []
    expectations = []
    for cmd in cmds:
        rows = [row for row in SHELL_EXPECTED if re.fullmatch(row[0], without_comment(cmd))]
        if len(rows) != 1:
            failures.append(f"{cmd!r}: matches {len(rows)} rows of SHELL_EXPECTED (give it exactly one)")
        expectations.append(rows[0] if rows else None)
    unused = [row[0] for row in SHELL_EXPECTED if row not in expectations]
    assert not unused, f"rows of SHELL_EXPECTED that no README command matches: {unused}"
    env = {**_server_env(), "MODELGATE_URL": demo_server.url}
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    for ran, row in zip(
        run_shell_session([_on_port(c, port) for c in cmds], checkout, env, out_dir), expectations, strict=True
    ):
        if ran.rc != 0:
            failures.append(f"{ran.command!r} exited {ran.rc}: {ran.out}{ran.err}")
        elif row is not None and not (re.search(row[1], ran.out) and re.search(row[2], ran.err)):
            failures.append(f"{ran.command!r} printed stdout {ran.out!r}, stderr {ran.err!r}; expected {row[1:]}")

    python_blocks = runnable(PYTHON_LANGS)
    assert len(python_blocks) == len(PYTHON_EXPECTED), "give each runnable Python block a row in PYTHON_EXPECTED"
    for block, expected in zip(python_blocks, PYTHON_EXPECTED, strict=True):
        done = subprocess.run(
            [str(checkout / ".venv" / "bin" / "python"), "-c", _on_port(block.text, port)],
            cwd=checkout,
            env=_server_env(),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if done.returncode != 0 or not re.search(expected, done.stdout):
            failures.append(
                f"README.md:{block.line}: python exited {done.returncode}: {done.stdout}{done.stderr}; "
                f"expected {expected}"
            )
    assert not failures, "\n".join(failures)


# --- the demo's banner ---------------------------------------------------------------------------------


BANNER = re.compile(r"\n((?:  .*\n)+)or .*boto3.*:\n((?:  .*\n)+)")


def banner_examples(log: str) -> tuple[list[str], str, str]:
    """The shell commands, the Python interpreter (the one named, else this one) and the Python code the
    demo printed: the indented lines before and after the ``or ... boto3 ...:`` line."""
    m = BANNER.search(log)
    assert m, f"no banner in the server's output: {log[-3000:]}"
    named = re.search(r"boto3 \((.+) has it\):", m.group(0))
    python = shlex.split(named.group(1))[0] if named else sys.executable
    return [ln.strip() for ln in m.group(1).splitlines()], python, textwrap.dedent(m.group(2))


@pytest.mark.slow
def test_d18_demo_banner_commands_work_as_printed(demo_server: DemoServer, tmp_path: Path) -> None:
    """On a port other than 8080 the banner's commands work as printed: from another directory, in the
    environment the server was started from (no MODELGATE_URL; the venv's bin not necessarily on PATH)."""
    deadline = time.monotonic() + 10  # the banner follows InService by at most a poll
    while not BANNER.search(demo_server.log()) and time.monotonic() < deadline:
        time.sleep(0.1)
    cmds, python, code = banner_examples(demo_server.log())
    expected = {"endpoints": r"churn-demo +InService", "invoke": r"\A0\.\d+\n\Z"}
    failures = []
    for cmd in cmds:
        done = subprocess.run(
            cmd, shell=True, cwd=tmp_path, env=_server_env(), capture_output=True, text=True, timeout=60, check=False
        )
        kind = "invoke" if " invoke " in cmd else "endpoints"
        if done.returncode != 0 or not re.search(expected[kind], done.stdout):
            failures.append(f"{cmd!r} exited {done.returncode}: {done.stdout}{done.stderr}")
    done = subprocess.run(
        [python, "-c", code], cwd=tmp_path, env=_server_env(), capture_output=True, text=True, timeout=60
    )
    if done.returncode != 0 or not re.fullmatch(r"churn-v[12] 0\.\d+\n", done.stdout):
        failures.append(f"{code!r} exited {done.returncode}: {done.stdout}{done.stderr}")
    assert not failures, "\n".join(failures)
    assert [c.split()[1] for c in cmds] == ["endpoints", "invoke"], cmds
    assert all(re.search(f"--url {demo_server.url}( |$)", c) for c in cmds), cmds


# --- "Not supported yet": each row is what the server refuses, with that error ------------------------

PV = {"VariantName": "v", "ModelName": "churn-v1", "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}

REFUSALS: dict[str, Callable[[Any, Any], object]] = {
    "ServerlessConfig": lambda sm, rt: sm.create_endpoint_config(
        EndpointConfigName="ns",
        ProductionVariants=[
            {
                "VariantName": "v",
                "ModelName": "churn-v1",
                "ServerlessConfig": {"MemorySizeInMB": 2048, "MaxConcurrency": 5},
            }
        ],
    ),
    "ManagedInstanceScaling": lambda sm, rt: sm.create_endpoint_config(
        EndpointConfigName="ns",
        ProductionVariants=[{**PV, "ManagedInstanceScaling": {"Status": "ENABLED", "MaxInstanceCount": 2}}],
    ),
    "InstancePools": lambda sm, rt: sm.create_endpoint_config(
        EndpointConfigName="ns",
        ProductionVariants=[
            {
                "VariantName": "v",
                "ModelName": "churn-v1",
                "InstancePools": [{"InstanceType": "ml.m5.large", "Priority": 1}],
            }
        ],
    ),
    "AsyncInferenceConfig": lambda sm, rt: sm.create_endpoint_config(
        EndpointConfigName="ns",
        ProductionVariants=[PV],
        AsyncInferenceConfig={"OutputConfig": {"S3OutputPath": "s3://b/o"}},
    ),
    "ShadowProductionVariants": lambda sm, rt: sm.create_endpoint_config(
        EndpointConfigName="ns", ProductionVariants=[PV], ShadowProductionVariants=[{**PV, "VariantName": "shadow"}]
    ),
    "DataCaptureConfig": lambda sm, rt: sm.create_endpoint_config(
        EndpointConfigName="ns",
        ProductionVariants=[PV],
        DataCaptureConfig={
            "InitialSamplingPercentage": 100,
            "DestinationS3Uri": "s3://b/capture",
            "CaptureOptions": [{"CaptureMode": "Input"}],
        },
    ),
    "ExplainerConfig": lambda sm, rt: sm.create_endpoint_config(
        EndpointConfigName="ns",
        ProductionVariants=[PV],
        ExplainerConfig={"ClarifyExplainerConfig": {"ShapConfig": {"ShapBaselineConfig": {"ShapBaseline": "1"}}}},
    ),
    "Containers": lambda sm, rt: sm.create_model(ModelName="ns", Containers=[{"Image": IMAGE}, {"Image": IMAGE}]),
    "Mode": lambda sm, rt: sm.create_model(
        ModelName="ns", PrimaryContainer={"Image": IMAGE, "Mode": "MultiModel", "ModelDataUrl": "s3://b/models/"}
    ),
    "InvokeEndpointAsync": lambda sm, rt: rt.invoke_endpoint_async(
        EndpointName="churn-demo", InputLocation="s3://b/in.csv"
    ),
    "InvokeEndpointWithResponseStream": lambda sm, rt: rt.invoke_endpoint_with_response_stream(
        EndpointName="churn-demo", Body=b"1", ContentType="text/csv"
    ),
    "CreateTrainingJob": lambda sm, rt: sm.create_training_job(
        TrainingJobName="ns",
        AlgorithmSpecification={"TrainingInputMode": "File", "TrainingImage": IMAGE},
        RoleArn="arn:aws:iam::123456789012:role/r",
        OutputDataConfig={"S3OutputPath": "s3://b/o"},
        ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1},
        StoppingCondition={"MaxRuntimeInSeconds": 60},
    ),
}


def not_supported_rows(text: str) -> dict[str, tuple[str, str]]:
    """The README's "Not supported yet" table: first `name` of the first column -> (code, message)."""
    section = text.split("#### Not supported yet", 1)[1].split("\n#", 1)[0]
    rows: dict[str, tuple[str, str]] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 3 or cells[0] in ("not supported", "---"):
            continue
        key = re.search(r"`([^`]+)`", cells[0])
        error = re.fullmatch(r"`(\w+)`: (.+)", cells[2])
        assert key and error, f"README row not understood: {line}"
        rows[key.group(1)] = (error.group(1), error.group(2))
    return rows


@pytest.mark.slow
def test_d18_not_supported_yet_lists_what_is_refused(demo_server: DemoServer) -> None:
    rows = not_supported_rows(README.read_text())
    assert set(rows) == set(REFUSALS), "README's Not supported yet table and REFUSALS list different things"
    sm, rt = demo_server.client("sagemaker"), demo_server.client("sagemaker-runtime")
    for key, (code, message) in rows.items():
        with pytest.raises(ClientError) as exc:
            REFUSALS[key](sm, rt)
        assert (exc.value.response["Error"]["Code"], exc.value.response["Error"]["Message"]) == (code, message), key
    # nothing was created
    assert [m["ModelName"] for m in sm.list_models()["Models"]] == ["churn-v2", "churn-v1"]
    assert [c["EndpointConfigName"] for c in sm.list_endpoint_configs()["EndpointConfigs"]] == ["churn-demo-config"]
    assert [e["EndpointName"] for e in sm.list_endpoints()["Endpoints"]] == ["churn-demo"]
