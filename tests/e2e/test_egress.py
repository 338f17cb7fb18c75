"""SSRF through http(s) model data and alarm actions (review D6), through a real server with boto3 and local
listeners that record every request they get."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.e2e.conftest import deploy_echo, free_port, model_tar, wait_status


class Listener:
    """An HTTP server on 127.0.0.1 that records each request; ``routes`` maps a path to (status, headers, body)."""

    def __init__(self, routes: dict[str, tuple[int, dict[str, str], bytes]] | None = None) -> None:
        self.requests: list[tuple[str, str]] = []
        self.routes = routes or {}
        listener = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                listener.requests.append((self.command, self.path))
                if self.command == "POST":
                    self.rfile.read(int(self.headers.get("Content-Length", "0")))
                status, headers, body = listener.routes.get(self.path, (200, {}, b"{}"))
                self.send_response(status)
                for k, v in {**headers, "Content-Length": str(len(body))}.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

            def log_message(self, *args: object) -> None:
                return

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def listeners() -> Iterator[list[Listener]]:
    made: list[Listener] = []
    yield made
    for listener in made:
        listener.close()


def _listen(made: list[Listener], routes: dict[str, tuple[int, dict[str, str], bytes]] | None = None) -> Listener:
    listener = Listener(routes)
    made.append(listener)
    return listener


def _failure(sm: Any, name: str) -> str:
    d = wait_status(sm, name, {"InService", "Failed"}, timeout=60)
    assert d["EndpointStatus"] == "Failed", d
    return str(d["FailureReason"])


def test_d6_loopback_and_private_model_data_is_refused_and_nothing_is_contacted(
    server_factory: Any, echo_image: str, listeners: list[Listener]
) -> None:
    """Literal addresses and localhost are refused at CreateModel; a name that resolves to loopback (127.1 is
    127.0.0.1 to the resolver) fails the endpoint with the one fetch failure text. The listener gets nothing."""
    target = _listen(listeners)
    server = server_factory()
    sm = server.client("sagemaker")
    for i, url in enumerate([
        f"http://127.0.0.1:{target.port}/direct",
        f"http://localhost:{target.port}/named",
        f"http://[::1]:{target.port}/v6",
        f"http://[::ffff:127.0.0.1]:{target.port}/mapped",
        "http://169.254.169.254/latest/meta-data/",
        "https://10.0.0.1/model.tar.gz",
    ]):  # fmt: skip
        with pytest.raises(ClientError) as err:
            sm.create_model(ModelName=f"m{i}", PrimaryContainer={"Image": echo_image, "ModelDataUrl": url})
        assert err.value.response["Error"]["Code"] == "ValidationException"
        assert err.value.response["Error"]["Message"] == (
            f"ModelDataUrl {url} names a loopback, link-local, private or reserved address; modelgate fetches "
            "model data from such addresses only when MODELGATE_EGRESS_ALLOWLIST allows them."
        )
    url = f"http://127.1:{target.port}/resolved"
    deploy_echo(sm, echo_image, "rebound", [("V", 1.0, 1)], model_data=url, wait=False)
    assert _failure(sm, "rebound") == (
        "The primary container for production variant V did not pass the ping health check: "
        f"Could not fetch the model data from {url} (the server's log has the cause)."
    )
    assert target.requests == []
    assert "resolves to 127.0.0.1, which is not a public address" in server.log()


def test_d6_redirects_stay_within_the_origin(
    server_factory: Any, echo_image: str, tmp_path: Path, listeners: list[Listener]
) -> None:
    """With the allowlist opening one port, a redirect to another origin is refused before it is followed (the
    other listener gets nothing); a redirect within the origin is followed."""
    target = _listen(listeners)
    tar = model_tar(tmp_path / "m.tar.gz", {"model.txt": "via-http"}).read_bytes()
    redirector = _listen(listeners, {
        "/away": (302, {"Location": f"http://127.0.0.1:{target.port}/stolen"}, b""),
        "/same": (302, {"Location": "/model.tar.gz"}, b""),
        "/model.tar.gz": (200, {}, tar),
    })  # fmt: skip
    server = server_factory(MODELGATE_EGRESS_ALLOWLIST=json.dumps([f"127.0.0.1:{redirector.port}"]))
    sm, rt = server.client("sagemaker"), server.client("sagemaker-runtime")
    away = f"http://127.0.0.1:{redirector.port}/away"
    deploy_echo(sm, echo_image, "away", [("V", 1.0, 1)], model_data=away, wait=False)
    reason = _failure(sm, "away")
    assert target.requests == []
    assert reason.endswith(f"Could not fetch the model data from {away} (the server's log has the cause).")
    deploy_echo(sm, echo_image, "same", [("V", 1.0, 1)], model_data=f"http://127.0.0.1:{redirector.port}/same")
    assert rt.invoke_endpoint(EndpointName="same", Body=b"q")["Body"].read() == b"V|via-http|q"
    assert ("GET", "/same") in redirector.requests and ("GET", "/model.tar.gz") in redirector.requests


def test_d6_failure_reasons_do_not_tell_ports_apart(
    server_factory: Any, echo_image: str, listeners: list[Listener]
) -> None:
    """Two closed ports, a port that accepts and hangs up, an HTTP 404, an HTML page (not an archive would say
    something: it is an allowed server that answered), and a destination the allowlist does not open: the
    FailureReasons of the network failures are one text, without an errno or a status."""
    closed1, closed2 = free_port(), free_port()
    hangup = socket.socket()
    hangup.bind(("127.0.0.1", 0))
    hangup.listen(8)
    stop = threading.Event()

    def hang_up() -> None:
        hangup.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = hangup.accept()
            except TimeoutError:
                continue
            conn.close()

    hanger = threading.Thread(target=hang_up, daemon=True)
    hanger.start()
    http404 = _listen(listeners, {"/x": (404, {}, b"not here")})
    ports = [closed1, closed2, hangup.getsockname()[1], http404.port]
    server = server_factory(MODELGATE_EGRESS_ALLOWLIST=json.dumps([f"127.0.0.1:{p}" for p in ports]))
    sm = server.client("sagemaker")
    try:
        urls = [f"http://127.0.0.1:{p}/x" for p in ports] + [f"http://127.1:{free_port()}/x"]
        for i, url in enumerate(urls):
            deploy_echo(sm, echo_image, f"p{i}", [("V", 1.0, 1)], model_data=url, wait=False)
        reasons = [_failure(sm, f"p{i}").replace(url, "<url>") for i, url in enumerate(urls)]
    finally:
        stop.set()
        hanger.join(5)
        hangup.close()
    assert len(set(reasons)) == 1, reasons
    assert reasons[0].endswith("Could not fetch the model data from <url> (the server's log has the cause).")
    assert not re.search(r"Errno|refused|404|reset|Disconnected|timed out", reasons[0])


def _hostname_resolving_to_loopback() -> str | None:
    for name in (socket.gethostname(), "localhost.localdomain", "ip6-localhost"):
        try:
            infos = socket.getaddrinfo(name, 80, type=socket.SOCK_STREAM)
        except OSError:
            continue
        if name != "localhost" and infos and all(i[4][0] in ("127.0.0.1", "::1") or i[4][0].startswith("127.")
                                                 for i in infos):  # fmt: skip
            return name
    return None


def test_d6_alarm_actions_reach_no_private_destination(server_factory: Any, listeners: list[Listener]) -> None:
    """PutMetricAlarm refuses a literal loopback or private action URL; an action whose name resolves to loopback
    is accepted but never posted to, and its history says so in the one text."""
    hook = _listen(listeners)
    server = server_factory()
    cw = server.client("cloudwatch")
    alarm: dict[str, Any] = {
        "AlarmName": "a", "Namespace": "Test", "MetricName": "m", "Statistic": "Sum", "Period": 10,
        "EvaluationPeriods": 1, "Threshold": 0.0, "ComparisonOperator": "GreaterThanThreshold",
    }  # fmt: skip
    for url in (f"http://127.0.0.1:{hook.port}/hook", f"http://localhost:{hook.port}/hook",
                "http://169.254.169.254/hook", "https://192.168.1.1/hook"):  # fmt: skip
        with pytest.raises(ClientError) as err:
            cw.put_metric_alarm(**alarm, AlarmActions=[url])
        assert err.value.response["Error"]["Code"] == "ValidationError"
        assert err.value.response["Error"]["Message"] == (
            f"The action {url} names a loopback, link-local, private or reserved address; modelgate posts alarm "
            "notifications to such addresses only when MODELGATE_EGRESS_ALLOWLIST allows them."
        )
    assert cw.describe_alarms(AlarmNames=["a"])["MetricAlarms"] == []
    name = _hostname_resolving_to_loopback()
    if name is None:
        pytest.skip("no host name other than localhost resolves to loopback here")
    url = f"http://{name}:{hook.port}/hook"
    cw.put_metric_alarm(**alarm, AlarmActions=[url])
    cw.set_alarm_state(AlarmName="a", StateValue="ALARM", StateReason="test")
    deadline = time.monotonic() + 15
    actions: list[dict[str, Any]] = []
    while not actions and time.monotonic() < deadline:
        time.sleep(0.2)
        actions = cw.describe_alarm_history(AlarmName="a", HistoryItemType="Action")["AlarmHistoryItems"]
    assert actions, "no Action history item"
    data = json.loads(actions[0]["HistoryData"])
    assert data["actionState"] == "Failed"
    assert data["error"] == "The notification could not be delivered (the server's log has the cause)."
    assert hook.requests == []
