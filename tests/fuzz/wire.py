"""Raw HTTP for the fuzzer: the exact bytes of each request, the answer, and how to show both.

Requests go out through ``http.client`` with every header given by us (``Host`` and ``Content-Length``
included, nothing added), so :meth:`RawRequest.raw` is byte for byte what the server read; botocore's
serializers would refuse or repair the inputs the fuzzer is after. One keep-alive connection per client,
opened again when the server closed it.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import cbor2

Outcome = tuple[int, str]  # (status, AWS error code); ACCEPTED for any 2xx
ACCEPTED: Outcome = (200, "")
IDLE_REOPEN_SECONDS = 2.0  # the server closes a keep-alive connection after 5 s idle
SHOWN_BYTES = 3000  # of a request or answer body in a failure message; the length is always given


@dataclass(frozen=True)
class RawRequest:
    method: str
    path: str  # as sent: already percent-encoded where needed
    headers: tuple[tuple[str, bytes], ...]
    body: bytes = b""
    label: str = ""  # what the fuzzer meant to send: the operation, the protocol, the mutation
    expect: frozenset[Outcome] | None = None  # the only answers it may get (a refusal with its code); None: any

    def raw(self) -> bytes:
        head = f"{self.method} {self.path} HTTP/1.1\r\n".encode()
        head += b"".join(name.encode() + b": " + value + b"\r\n" for name, value in self.headers)
        return head + b"\r\n" + self.body

    def header(self, name: str) -> bytes | None:
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None


@dataclass(frozen=True)
class RawAnswer:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def json(self) -> Any:
        """The body as JSON, or None when it is not JSON."""
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    def cbor(self) -> Any:
        try:
            return cbor2.loads(self.body)
        except Exception:
            return None


CLOSED_EARLY = RawAnswer(0, (("x-fuzz", "the server closed the connection before the request was all sent"),), b"")


def request(
    method: str,
    path: str,
    body: bytes = b"",
    headers: list[tuple[str, bytes]] | None = None,
    label: str = "",
    host: bytes = b"127.0.0.1",
) -> RawRequest:
    """A request with ``Host`` first and ``Content-Length`` last, as most clients send them."""
    hs = [("Host", host), *(headers or []), ("Content-Length", str(len(body)).encode())]
    return RawRequest(method, path, tuple(hs), body, label)


_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")


def well_formed_head(req: RawRequest) -> bool:
    """Are the header values ones HTTP allows (no control character but tab)? The HTTP layer refuses any other
    head (400 BadRequest) before a request is looked at."""
    return not any(_CONTROL.search(value) for _, value in req.headers)


def with_headers(
    req: RawRequest,
    *,
    host: bytes | None = None,
    drop: Iterable[str] = (),
    add: Iterable[tuple[str, bytes]] = (),
    expect: frozenset[Outcome] | None = None,
) -> RawRequest:
    """``req`` with another ``Host``, without the headers named in ``drop``, with ``add`` before ``Content-Length``,
    and ``expect`` as the only answers it may get."""
    dropped = {name.lower() for name in drop}
    headers = [
        (k, host if host is not None and k.lower() == "host" else v) for k, v in req.headers if k.lower() not in dropped
    ]
    last = [headers.pop()] if headers and headers[-1][0].lower() == "content-length" else []
    return dataclasses.replace(req, headers=(*headers, *add, *last), expect=expect)


def _shown(data: bytes) -> str:
    text = repr(data[:SHOWN_BYTES])
    return text + (f" ... ({len(data)} bytes in all)" if len(data) > SHOWN_BYTES else "")


def show(req: RawRequest, answer: RawAnswer | None, port: int) -> str:
    """The request (as bytes a socket can replay) and the answer, for a failure message."""
    lines = [f"request ({req.label}):", f"  {_shown(req.raw())}"]
    if answer is None:
        lines.append("answer: none (the connection closed)")
    else:
        heads = "; ".join(f"{k}: {v}" for k, v in answer.headers)
        lines += [f"answer: {answer.status} [{heads}]", f"  {_shown(answer.body)}"]
    if len(req.raw()) <= SHOWN_BYTES:
        lines.append(
            "replay: python3 -c \"import socket; s=socket.create_connection(('127.0.0.1', "
            f'{port})); s.sendall({req.raw()!r}); print(s.recv(65536))"'
        )
    return "\n".join(lines)


@dataclass
class Client:
    """One keep-alive connection to the server under test."""

    port: int
    timeout: float = 30.0
    _conn: http.client.HTTPConnection | None = field(default=None, repr=False)
    _used: float = 0.0

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            self._conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def send(self, req: RawRequest) -> RawAnswer | None:
        """The answer; :data:`CLOSED_EARLY` when the server closed the connection before it had read the whole
        request (it refused it early: a body over the limit, a header the parser refused) and the answer it
        may have sent first could not be read; None when it closed without an answer to a request it had read
        in full, or took longer than the timeout."""
        if self._conn is not None and time.monotonic() - self._used > IDLE_REOPEN_SECONDS:
            self.close()  # the server closes idle keep-alive connections: never send on one it may have closed
        conn = self._connection()
        sent = False
        try:
            conn.putrequest(req.method, req.path, skip_host=True, skip_accept_encoding=True)
            for name, value in req.headers:
                conn.putheader(name, value)
            try:
                conn.endheaders(req.body)
                sent = True
            except (BrokenPipeError, ConnectionResetError):
                pass  # an answer sent before the close may still be there to read
            resp = conn.getresponse()
            body = resp.read()
        except (OSError, http.client.HTTPException):
            self.close()
            return None if sent else CLOSED_EARLY
        self._used = time.monotonic()
        if resp.will_close or not sent:
            self.close()
        return RawAnswer(resp.status, tuple(resp.getheaders()), body)

    def json_call(self, target: str, params: dict[str, Any], version: str = "1.1") -> Any:
        """A well-formed JSON RPC call for the fuzzer's own bookkeeping; its parsed answer (or raises)."""
        body = json.dumps(params).encode()
        headers = [("X-Amz-Target", target.encode()), ("Content-Type", f"application/x-amz-json-{version}".encode())]
        answer = self.send(request("POST", "/", body, headers, label=f"probe {target}"))
        if answer is None or answer.status != 200:
            raise ProbeFailed(target, params, answer)
        return answer.json()


class ProbeFailed(Exception):
    """A bookkeeping call (a List* or Describe* the fuzzer makes to observe state) did not answer 200."""

    def __init__(self, target: str, params: dict[str, Any], answer: RawAnswer | None) -> None:
        shown = "no answer" if answer is None else f"{answer.status} {answer.body[:500]!r}"
        super().__init__(f"{target} {params} -> {shown}")
        self.answer = answer
