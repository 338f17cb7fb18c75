"""The command line's parsing (``--url`` before or after the command, ``$MODELGATE_URL``), its help, and
the demo banner's pure parts (the URL a client uses, how to run the command, the text)."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from modelgate.cli import DEFAULT_URL, build_parser, client_url, parse_args
from modelgate.demo import banner, cli_command

U1, U2, ENV = "http://127.0.0.1:9001", "http://127.0.0.1:9002", "http://10.0.0.5:8080"


@pytest.mark.parametrize(
    ("argv", "environ", "url"),
    [
        (["endpoints"], {}, DEFAULT_URL),
        (["endpoints"], {"MODELGATE_URL": ENV}, ENV),
        (["endpoints"], {"MODELGATE_URL": ""}, DEFAULT_URL),  # set but empty: as if unset
        (["--url", U1, "endpoints"], {}, U1),
        (["endpoints", "--url", U1], {}, U1),
        (["--url", U1, "endpoints"], {"MODELGATE_URL": ENV}, U1),  # the option beats the environment
        (["--url", U1, "endpoints", "--url", U2], {}, U2),  # the later one wins
        (["--url", U1, "describe", "churn-demo"], {}, U1),
        (["describe", "churn-demo", "--url", U1], {}, U1),
        (["--url", U1, "invoke", "churn-demo", "--body", "1,2"], {}, U1),
        (["invoke", "churn-demo", "--url", U1, "--body", "1,2"], {}, U1),
        (["--url", U1, "ab-stats", "x"], {}, U1),
        (["ab-promote", "x", "--url", U1], {}, U1),
    ],
)
def test_d18_url_before_or_after_the_command(argv: list[str], environ: dict[str, str], url: str) -> None:
    assert parse_args(argv, environ).url == url


def test_d18_url_is_refused_for_serve(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        parse_args(["--url", U1, "serve"], {})
    assert exc.value.code == 2
    assert "--url is for the client commands; serve takes --host and --port" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_args(["serve", "--url", U1], {})
    assert "unrecognized arguments: --url" in capsys.readouterr().err


COMMANDS = ("serve", "endpoints", "describe", "invoke", "ab-stats", "ab-promote")


def _help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exc:
        parse_args([*argv, "--help"], {})
    assert exc.value.code == 0
    return capsys.readouterr().out


def test_d18_help_says_what_each_command_does_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    top = _help([], capsys)
    assert "--url URL" in top and "$MODELGATE_URL" in top and DEFAULT_URL in top
    for name in COMMANDS:
        line = next(ln for ln in top.splitlines() if ln.strip().startswith(name + " "))
        assert len(line.split(None, 1)[1]) > 20, line  # the summary sits on the command's own line
        text = _help([name], capsys)
        description = text.split("\n\n")[1]
        assert "\n" not in description and description.endswith("."), text
        assert ("--url URL" in text) == (name != "serve"), text


def test_d18_url_help_names_the_environment_default() -> None:
    assert f"default $MODELGATE_URL: {ENV}" in " ".join(build_parser({"MODELGATE_URL": ENV}).format_help().split())


@pytest.mark.parametrize(
    ("host", "port", "url"),
    [
        ("127.0.0.1", 8080, DEFAULT_URL),
        ("127.0.0.1", 9000, "http://127.0.0.1:9000"),
        ("localhost", 8080, "http://localhost:8080"),
        ("0.0.0.0", 8080, DEFAULT_URL),  # a wildcard bind: connect to loopback
        ("::", 8081, "http://[::1]:8081"),
        ("::1", 8081, "http://[::1]:8081"),
        ("192.168.1.20", 80, "http://192.168.1.20:80"),
    ],
)
def test_d18_client_url(host: str, port: int, url: str) -> None:
    assert client_url(host, port) == url


def test_d18_cli_command(tmp_path: Path) -> None:
    bin_dir = tmp_path / "my venv" / "bin"
    bin_dir.mkdir(parents=True)
    python = str(bin_dir / "python")
    # no modelgate script next to the interpreter: python -m
    assert cli_command(python, None, tmp_path) == f"{shlex.quote(python)} -m modelgate"
    script = bin_dir / "modelgate"
    script.write_text("")
    # the venv is not on PATH (the quick start): its script, quoted, absolute
    assert cli_command(python, None, tmp_path) == shlex.quote(str(script))
    assert cli_command("my venv/bin/python", None, tmp_path) == shlex.quote(str(script))
    other = tmp_path / "other-modelgate"
    other.write_text("")
    assert cli_command(python, str(other), tmp_path) == shlex.quote(str(script))
    # the venv is activated: plain modelgate
    assert cli_command(python, str(script), tmp_path) == "modelgate"


@pytest.mark.parametrize(
    ("url", "option"),
    [(DEFAULT_URL, ""), ("http://127.0.0.1:9000", " --url http://127.0.0.1:9000")],
)
def test_d18_banner_names_the_url_unless_default(url: str, option: str) -> None:
    text = banner("/v/bin/modelgate", "/v/bin/python", url, "1,2")
    assert f"  /v/bin/modelgate endpoints{option}\n" in text
    assert f"  /v/bin/modelgate invoke churn-demo{option} --body '1,2'\n" in text
    assert "or in Python with boto3 (/v/bin/python has it):\n  import boto3\n" in text
    assert f"endpoint_url='{url}'" in text
