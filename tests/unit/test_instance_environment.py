"""D1: what a model's Environment may set, the instance environment built from scratch, and what of an
instance's log may reach an API answer (runtime/environment.py, runtime/process.py)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from modelgate.runtime.environment import base_environment, first_refusal, instance_environment, refusal
from modelgate.runtime.process import describe_exit, failure_line, sanitize_reason

STARTS = "it changes how a program, the shell or the dynamic loader starts"
OURS = "modelgate sets it for every instance"


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("BASH_ENV", "$(id > /tmp/PWNED)", STARTS),
        ("ENV", "/tmp/x", STARTS),
        ("SHELLOPTS", "xtrace", STARTS),
        ("BASHOPTS", "x", STARTS),
        ("PS4", "$(id)", STARTS),
        ("PROMPT_COMMAND", "id", STARTS),
        ("IFS", "/", STARTS),
        ("LD_PRELOAD", "/tmp/evil.so", STARTS),
        ("LD_LIBRARY_PATH", "/tmp", STARTS),
        ("ld_audit", "/tmp/a.so", STARTS),  # names are matched in any case
        ("DYLD_INSERT_LIBRARIES", "/tmp/x.dylib", STARTS),
        ("PYTHONSTARTUP", "/tmp/x.py", STARTS),
        ("PYTHONPATH", "/tmp", STARTS),
        ("PYTHONWARNINGS", "x", STARTS),
        ("PERL5OPT", "-Mx", STARTS),
        ("PERL5LIB", "/tmp", STARTS),
        ("RUBYOPT", "-rx", STARTS),
        ("NODE_OPTIONS", "--require /tmp/x.js", STARTS),
        ("JAVA_TOOL_OPTIONS", "-javaagent:/tmp/x.jar", STARTS),
        ("_JAVA_OPTIONS", "-Dx", STARTS),
        ("GCONV_PATH", "/tmp", STARTS),
        ("BASH_FUNC_ls%%", "() { id; }", STARTS),
        ("SAGEMAKER_BIND_TO_PORT", "22", OURS),
        ("SM_MODEL_DIR", "/etc", OURS),
        ("HOME", "/root", OURS),
        ("MODELGATE_INSTANCE_ID", "i-x", OURS),
        ("MODELGATE_ALLOW_PIP_INSTALL", "true", OURS),
        ("MODELGATE_X", "1", OURS),
        ("GREETING", "a\0b", "its value contains a NUL character"),
        # What models do set: allowed.
        ("SAGEMAKER_PROGRAM", "inference.py", None),
        ("SAGEMAKER_MODEL_SERVER_WORKERS", "2", None),
        ("SAGEMAKER_CONTAINER_LOG_LEVEL", "20", None),
        ("MODELGATE_CONTAINER_HTTP", "uvicorn", None),  # the built-in containers' documented knob
        ("OMP_NUM_THREADS", "2", None),
        ("ECHO_TAG", "A", None),
        ("PATH", "/usr/bin", None),
        ("LANG", "de_DE.UTF-8", None),
    ],
)
def test_d1_model_environment_refusals(key: str, value: str, expected: str | None) -> None:
    assert refusal(key, value) == expected


def test_d1_first_refusal_names_the_first_refused_key() -> None:
    assert first_refusal({"B": "1", "LD_PRELOAD": "x", "BASH_ENV": "y"}) == ("BASH_ENV", STARTS)
    assert first_refusal({"A": "1"}) is None


def test_d1_instance_environment_is_built_from_scratch() -> None:
    server = {"AWS_SECRET_ACCESS_KEY": "s3cr3t", "MODELGATE_X": "1", "HTTPS_PROXY": "http://p:3128", "PATH": "/evil"}
    base = base_environment(["HTTPS_PROXY", "NOT_SET"], server)
    assert base == {
        "PATH": f"{os.path.dirname(sys.executable)}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "TZ": "UTC",
        "HTTPS_PROXY": "http://p:3128",
    }
    env = instance_environment(
        base,
        {"ECHO_TAG": "A", "SAGEMAKER_MODEL_SERVER_WORKERS": "3", "SAGEMAKER_BIND_TO_PORT": "1"},
        {"SAGEMAKER_BIND_TO_PORT": "9000", "HOME": "/data/homes/i-1"},
        {"SAGEMAKER_MODEL_SERVER_WORKERS": "2", "OTHER_DEFAULT": "d"},
    )
    assert env["SAGEMAKER_BIND_TO_PORT"] == "9000"  # the contract wins over everything
    assert env["SAGEMAKER_MODEL_SERVER_WORKERS"] == "3"  # the model wins over a default
    assert env["OTHER_DEFAULT"] == "d" and env["ECHO_TAG"] == "A" and env["HOME"] == "/data/homes/i-1"
    assert "AWS_SECRET_ACCESS_KEY" not in env and "MODELGATE_X" not in env


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("the weights are corrupt", "the weights are corrupt"),
        ("red \x1b[31mtext\x1b[0m", "red ?[31mtext?[0m"),
        ("tabs\tand\r\nnewlines", "tabs and newlines"),
        ("  padded  ", "padded"),
        ("nul\0byte", "nul?byte"),
        ("x" * 300, "x" * 253 + "..."),
        ("é ünïcode", "é ünïcode"),
        ("\u202ereversed", "?reversed"),  # a bidi override is not printable
    ],
)
def test_d1_sanitize_reason(text: str, expected: str) -> None:
    assert sanitize_reason(text) == expected
    assert len(sanitize_reason(text)) <= 256


@pytest.mark.parametrize(
    ("log", "expected"),
    [
        ("starting\nMODELGATE-FAILURE: no model file\n", "no model file"),
        ("MODELGATE-FAILURE: first\nMODELGATE-FAILURE: second\ntrailing noise\n", "second"),
        ("root:x:0:0:root:/root:/bin/bash\n", None),  # any other log text never comes back
        ("exfil user=root shadow_lines=24\n", None),
        ("", None),
        ("MODELGATE-FAILURE: \x1b]0;title\x07" + "y" * 1000 + "\n", "?]0;title?" + "y" * 243 + "..."),
    ],
)
def test_d1_failure_line_returns_only_the_contract_line(tmp_path: Path, log: str, expected: str | None) -> None:
    path = tmp_path / "i.log"
    path.write_text(log)
    assert failure_line(path) == expected


def test_d1_failure_line_of_a_missing_log() -> None:
    assert failure_line(Path("/definitely/not/here.log")) is None


@pytest.mark.parametrize(
    ("code", "expected"),
    [(0, "exited with code 0"), (127, "exited with code 127"), (-9, "was killed by signal SIGKILL"),
     (-15, "was killed by signal SIGTERM"), (-200, "was killed by signal 200")],
)  # fmt: skip
def test_describe_exit(code: int, expected: str) -> None:
    assert describe_exit(code) == expected
