"""The browser policies of the HTTP front (api/browsers.py) as tables, the settings that feed them, and the
front's refusal answers."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from modelgate.api.browsers import BrowserGuard, browser_refusal, host_allowed
from modelgate.api.front_limits import header_block_size, refusal
from modelgate.errors import RequestHeadersTooLarge
from modelgate.settings import Settings

NAMES = frozenset({"localhost", "mg.example"})


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("localhost", True),
        ("localhost:8080", True),
        ("LocalHost:8080", True),
        ("localhost.", True),
        ("mg.example:443", True),
        ("127.0.0.1", True),
        ("127.0.0.1:8080", True),
        ("10.0.0.7:1", True),  # any IP literal: a rebinding page's origin is a name
        ("[::1]", True),
        ("[::1]:8080", True),
        ("[fe80::1]:80", True),
        ("attacker.example", False),
        ("attacker.example:8080", False),
        ("localhost.attacker.example", False),
        ("127.1", False),  # not an IP literal a browser sends (it writes 127.0.0.1): a name
        ("2130706433", False),
        ("localhost:", False),
        ("localhost:x", False),
        ("localhost:123456", False),
        ("[::1", False),
        ("[::1]x", False),
        ("[::1]:", False),
        ("[nope]:80", False),
        ("", False),
        (":8080", False),
    ],
)
def test_d9_host_allowed(host: str, allowed: bool) -> None:
    assert host_allowed(host, NAMES) is allowed


def test_d9_a_star_allows_any_host() -> None:
    assert host_allowed("anything.example:1", frozenset({"*"}))


ORIGINS = frozenset({"http://localhost:3000"})


@pytest.mark.parametrize(
    ("method", "origin", "fetch_site", "refused"),
    [
        ("POST", None, None, False),  # SDKs, the CLI, curl
        ("POST", "http://attacker.example", None, True),
        ("POST", "null", None, True),
        ("PUT", "http://attacker.example", "cross-site", True),
        ("DELETE", "http://attacker.example", None, True),
        ("POST", "http://localhost:3000", "cross-site", False),  # configured
        ("POST", "HTTP://LOCALHOST:3000", None, False),
        ("POST", "http://localhost:3001", "same-site", True),
        ("POST", None, "cross-site", True),
        ("POST", None, "same-site", True),  # another port on localhost is another origin
        ("POST", None, "same-origin", False),
        ("POST", None, "none", False),
        ("GET", "http://attacker.example", "cross-site", False),  # reads: the page cannot read the answer
        ("HEAD", "http://attacker.example", None, False),
        ("OPTIONS", "http://attacker.example", None, False),
    ],
)
def test_d9_browser_refusal(method: str, origin: str | None, fetch_site: str | None, refused: bool) -> None:
    assert (browser_refusal(method, origin, fetch_site, ORIGINS) is not None) is refused


def _headers(**values: str) -> list[tuple[bytes, bytes]]:
    return [(k.replace("_", "-").encode(), v.encode()) for k, v in values.items()]


def test_d9_the_guard_answers_preflights_and_adds_cors_headers_only_for_allowed_origins() -> None:
    guard = BrowserGuard.for_server("127.0.0.1", (), ["http://localhost:3000"])
    ok = guard.check("OPTIONS", _headers(origin="http://localhost:3000", access_control_request_method="POST"))
    assert ok.preflight is not None and ok.preflight.startswith(b"HTTP/1.1 204 No Content\r\n")
    assert b"access-control-allow-origin: http://localhost:3000\r\n" in ok.preflight
    assert ok.preflight.endswith(b"\r\n\r\n") and b"access-control-allow-headers" not in ok.preflight
    refused = guard.check("OPTIONS", _headers(origin="http://evil.example", access_control_request_method="POST"))
    assert refused.refusal is not None and refused.refusal.status == 403
    run = guard.check("POST", _headers(origin="http://localhost:3000", sec_fetch_site="cross-site"))
    assert run.refusal is None and run.cors is not None
    assert (b"access-control-allow-origin", b"http://localhost:3000") in run.cors
    plain = guard.check("GET", _headers(origin="http://evil.example"))
    assert plain.refusal is None and plain.cors is None and plain.preflight is None
    no_cors = BrowserGuard.for_server("127.0.0.1")
    refused = no_cors.check("OPTIONS", _headers(origin="http://localhost:3000", access_control_request_method="GET"))
    assert refused.refusal is not None


def test_d9_the_bound_name_is_allowed_and_host_values_are_remembered() -> None:
    guard = BrowserGuard.for_server("myhost.example", ["extra.example"])
    assert guard.host_ok(b"myhost.example:8080") and guard.host_ok(b"extra.example")
    assert not guard.host_ok(b"other.example")
    assert guard.ok_hosts == {b"myhost.example:8080", b"extra.example"}
    assert BrowserGuard.for_server("0.0.0.0").names == frozenset({"localhost"})
    message = guard.host_refusal(b"other.example").message
    assert "'other.example' is not a name of this server" in message


def test_d9_d10_settings() -> None:
    s = Settings(
        environ={"MODELGATE_ALLOWED_HOSTS": '["MG.example."]', "MODELGATE_CORS_ALLOWED_ORIGINS": '["HTTP://x:3000"]'}
    )
    assert s.allowed_hosts == ["mg.example"] and s.cors_allowed_origins == ["http://x:3000"]
    assert (s.max_url_bytes, s.max_header_bytes, s.max_header_count) == (8192, 65536, 100)
    assert (s.header_timeout_seconds, s.max_connections) == (10.0, 1000)
    for env in (
        {"MODELGATE_ALLOWED_HOSTS": '["http://x"]'},
        {"MODELGATE_ALLOWED_HOSTS": '["x:80"]'},
        {"MODELGATE_CORS_ALLOWED_ORIGINS": '["*"]'},
        {"MODELGATE_CORS_ALLOWED_ORIGINS": '["http://x/path"]'},
        {"MODELGATE_CORS_ALLOWED_ORIGINS": '["x.example"]'},
        {"MODELGATE_MAX_URL_BYTES": "70000"},  # httptools parses no URL above 65535 bytes
        {"MODELGATE_HEADER_TIMEOUT_SECONDS": "0"},
        {"MODELGATE_MAX_CONNECTIONS": "0"},
    ):
        with pytest.raises(ValidationError):
            Settings(environ=env)


def test_d10_refusals_are_whole_answers_that_close() -> None:
    answer = refusal(RequestHeadersTooLarge("too big"))
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 431 Request Header Fields Too Large"
    assert b"connection: close" in lines and b"x-amzn-errortype: RequestHeaderFieldsTooLarge" in lines
    assert f"content-length: {len(body)}".encode() in lines
    assert json.loads(body) == {"__type": "RequestHeaderFieldsTooLarge", "message": "too big"}
    assert header_block_size([(b"host", b"x"), (b"a", b"bc")]) == (4 + 1 + 4) + (1 + 2 + 4)
