"""The HTTP layer of both front ends (``http1`` default, ``uvicorn``), over raw sockets where needed."""

from __future__ import annotations

import re
import signal
import socket
import time
from dataclasses import dataclass

import pytest

from modelgate.containers.http1 import encode_reply
from modelgate.containers.protocol import Reply
from tests.containers.conftest import Artifacts, Container, ContainerFactory, csv_rows


@dataclass
class FrontEnds:
    by_name: dict[str, Container]
    row: str


@pytest.fixture(scope="module")
def front_ends(artifacts: Artifacts, module_containers: ContainerFactory) -> FrontEnds:
    model_dir = artifacts.model_dir("front-ends", {"xgboost-model": artifacts.churn_v1})
    http1, uvicorn = module_containers.start_many(
        [("xgboost", model_dir, {}), ("xgboost", model_dir, {"MODELGATE_CONTAINER_HTTP": "uvicorn"})]
    )
    return FrontEnds({"http1": http1, "uvicorn": uvicorn}, csv_rows(artifacts.x_test[:1]))


def raw_exchange(port: int, data: bytes, *, expect_close: bool = False, timeout: float = 5.0) -> bytes:
    """Send ``data`` on a fresh connection and read until the server closes or goes quiet."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        deadline = time.monotonic() + timeout
        sock.settimeout(0.5 if not expect_close else timeout)
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)


def post(body: bytes, extra: str = "") -> bytes:
    return (
        f"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\n{extra}Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


@pytest.mark.parametrize("name", ["http1", "uvicorn"])
def test_routes_on_both_front_ends(name: str, front_ends: FrontEnds) -> None:
    c = front_ends.by_name[name]
    assert c.request("GET", "/ping").status == 200
    r = c.invoke(front_ends.row)
    assert r.status == 200 and r.headers["content-type"] == "text/csv" and r.text.endswith("\n")
    assert c.request("GET", "/invocations?x=1").status == 404
    assert (
        c.request("POST", "/invocations?trace=1", front_ends.row.encode(), {"Content-Type": "text/csv"}).status == 200
    )
    assert (c.invoke(b"").status, c.request("GET", "/nope").body) == (204, b"{}")
    assert c.invoke(b"1" * 6291457).status == 413
    c.close_connection()
    assert c.invoke(front_ends.row).status == 200


@pytest.mark.parametrize("name", ["http1", "uvicorn"])
def test_pipelined_requests_are_answered_in_order(name: str, front_ends: FrontEnds) -> None:
    row = front_ends.row.encode()
    data = post(row) + b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n" + post(b"", "Accept: text/csv\r\n")
    answer = raw_exchange(front_ends.by_name[name].port, data)
    statuses = re.findall(rb"HTTP/1\.1 (\d{3}) ", answer)
    assert statuses == [b"200", b"200", b"204"]


def test_expect_100_continue(front_ends: FrontEnds) -> None:
    port = front_ends.by_name["http1"].port
    body = front_ends.row.encode()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        head = post(body, "Expect: 100-continue\r\n")[: -len(body)]
        sock.sendall(head)
        assert sock.recv(1024) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 OK\r\n")
    big = b"POST /invocations HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 7000000\r\n\r\n"
    answer = raw_exchange(port, big, expect_close=True)
    assert answer.startswith(b"HTTP/1.1 413 Request Entity Too Large\r\n")
    assert b"connection: close" in answer


def test_chunked_body(front_ends: FrontEnds) -> None:
    row = front_ends.row.encode()
    half = len(row) // 2
    chunked = b"%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n" % (half, row[:half], len(row) - half, row[half:])
    data = b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\nTransfer-Encoding: chunked\r\n\r\n"
    answer = raw_exchange(front_ends.by_name["http1"].port, data + chunked)
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    assert answer.endswith(b"\n") and b"0." in answer.split(b"\r\n\r\n", 1)[1]


def test_http10_and_connection_close(front_ends: FrontEnds) -> None:
    port = front_ends.by_name["http1"].port
    answer = raw_exchange(port, b"GET /ping HTTP/1.0\r\n\r\n", expect_close=True)
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and b"connection: close" in answer
    answer = raw_exchange(port, b"GET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", expect_close=True)
    assert b"connection: close" in answer


def test_head_requests_get_no_body(front_ends: FrontEnds) -> None:
    port = front_ends.by_name["http1"].port
    answer = raw_exchange(port, b"HEAD /nope HTTP/1.1\r\nHost: x\r\n\r\nGET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
    assert answer == (
        b"HTTP/1.1 404 Not Found\r\ncontent-length: 2\r\ncontent-type: application/json\r\n\r\n"
        b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"
    )


def test_malformed_request_is_400_and_closed(front_ends: FrontEnds) -> None:
    answer = raw_exchange(front_ends.by_name["http1"].port, b"NOT HTTP AT ALL\r\n\r\n", expect_close=True)
    assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert front_ends.by_name["http1"].request("GET", "/ping").status == 200  # the server is fine


def test_header_values_cannot_split_the_response() -> None:
    raw = encode_reply(Reply(200, b"ok", "text/plain\r\nX-Evil: 1", "a\nb"), keep_alive=True)
    head = raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    assert head == [
        b"HTTP/1.1 200 OK",
        b"content-length: 2",
        b"content-type: text/plain  X-Evil: 1",
        b"x-amzn-sagemaker-custom-attributes: a b",
    ]


def test_sigterm_stops_the_process_cleanly(artifacts: Artifacts, containers: ContainerFactory) -> None:
    model_dir = artifacts.model_dir("sigterm", {"xgboost-model": artifacts.churn_v1})
    c = containers.start("xgboost", model_dir)
    assert c.request("GET", "/ping").status == 200
    assert c.proc is not None
    c.proc.send_signal(signal.SIGTERM)
    assert c.wait_exit(15) == 0
    assert c.failure_lines() == []


def test_port_in_use_is_a_failure_line(artifacts: Artifacts, containers: ContainerFactory) -> None:
    model_dir = artifacts.model_dir("port-in-use", {"xgboost-model": artifacts.churn_v1})
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        c = containers.spawn("xgboost", model_dir, SAGEMAKER_BIND_TO_PORT=str(port))
        assert c.wait_exit() == 1
    (line,) = c.failure_lines()
    assert f"Cannot listen on 127.0.0.1:{port}" in line
