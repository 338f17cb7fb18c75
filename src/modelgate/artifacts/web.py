"""Downloading ``http(s)://`` model data: to allowed destinations only, by the address that was checked.

The host is resolved once and every address must pass the egress policy (``modelgate/egress.py``); the
connection goes to a checked address (TLS still verifies the certificate for the host name), so no second DNS
lookup can turn the destination into a private one. Redirects are followed only within the same origin
(scheme, host and port) and re-checked. Environment proxies are not used: through a proxy the check would
check nothing. Every read is bounded (``max_bytes``), waits at most ``STALL_SECONDS`` for the server, and
checks the work's budget, so a slow or endless answer stops at its deadline.

Imported on the first http(s) download only: ``http.client`` and ``ssl`` are about 1.2 MB of the gateway's
memory (bench/RESULTS.md, "Memory").
"""

from __future__ import annotations

import http.client
import socket
import ssl
import urllib.parse
from typing import BinaryIO

from modelgate.artifacts.workers import Budget
from modelgate.egress import EgressPolicy, IPAddress, Resolver, resolve_allowed, system_resolver

MAX_REDIRECTS = 5
STALL_SECONDS = 30.0
CHUNK = 1 << 16
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


class FetchFailed(Exception):
    """The download failed; the message says why, for the server's log (the caller shows a uniform text)."""


class TooLarge(Exception):
    """The answer is larger than the limit."""


def _connect(addresses: list[IPAddress], port: int, timeout: float | None) -> socket.socket:
    error: OSError = OSError("no address to connect to")
    for address in addresses:
        try:
            return socket.create_connection((str(address), port), timeout)
        except OSError as exc:
            error = exc
    raise error


class _PinnedHTTP(http.client.HTTPConnection):
    def __init__(self, host: str, port: int, addresses: list[IPAddress], timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.addresses = addresses
        self.socket: socket.socket | None = None  # kept after getresponse() hands the socket to the answer

    def connect(self) -> None:
        self.sock = self.socket = _connect(self.addresses, self.port, self.timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, addresses: list[IPAddress], timeout: float) -> None:
        self.tls = ssl.create_default_context()
        super().__init__(host, port, timeout=timeout, context=self.tls)
        self.addresses = addresses
        self.socket: socket.socket | None = None

    def connect(self) -> None:
        sock = _connect(self.addresses, self.port, self.timeout)
        self.sock = self.socket = self.tls.wrap_socket(sock, server_hostname=self.host)


def _origin(parts: urllib.parse.SplitResult) -> tuple[str, str, int]:
    return parts.scheme, (parts.hostname or "").lower(), parts.port or (443 if parts.scheme == "https" else 80)


def download(
    url: str,
    out: BinaryIO,
    budget: Budget,
    policy: EgressPolicy,
    max_bytes: int,
    resolver: Resolver = system_resolver,
) -> None:
    """Write the body of a 200 answer for ``url`` to ``out``; FetchFailed, DestinationRefused, TooLarge or
    WorkStopped otherwise."""
    parts = urllib.parse.urlsplit(url)
    for _ in range(MAX_REDIRECTS + 1):
        try:
            scheme, host, port = _origin(parts)
        except ValueError as exc:  # a port that is not a number
            raise FetchFailed(f"bad URL: {exc}") from exc
        if scheme not in ("http", "https") or not host:
            raise FetchFailed("not an http(s) URL with a host")
        addresses = resolve_allowed(policy, host, port, resolver)
        budget.check()
        pinned = _PinnedHTTPS if scheme == "https" else _PinnedHTTP
        conn = pinned(host, port, addresses, min(budget.remaining(), STALL_SECONDS))
        try:
            target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            conn.request("GET", target, headers={"User-Agent": "modelgate", "Accept-Encoding": "identity"})
            resp = conn.getresponse()
            if resp.status in _REDIRECTS:
                location = resp.getheader("Location") or ""
                nxt = urllib.parse.urlsplit(urllib.parse.urljoin(parts.geturl(), location))
                try:
                    same = _origin(nxt) == (scheme, host, port)
                except ValueError:
                    same = False
                if not same:
                    raise FetchFailed(f"redirected to another origin: {location!r}")
                parts = nxt
                continue
            if resp.status != 200:
                raise FetchFailed(f"HTTP {resp.status}")
            length = resp.getheader("Content-Length")
            if length is not None and length.isdigit() and int(length) > max_bytes:
                raise TooLarge()
            _copy(resp, conn.socket, out, budget, max_bytes)
            return
        except (OSError, http.client.HTTPException) as exc:
            budget.check()  # a read that timed out at the deadline: WorkStopped, as any other check would say
            raise FetchFailed(f"{type(exc).__name__}: {exc}") from exc
        finally:
            conn.close()
    raise FetchFailed(f"more than {MAX_REDIRECTS} redirects")


def _copy(
    resp: http.client.HTTPResponse, sock: socket.socket | None, out: BinaryIO, budget: Budget, max_bytes: int
) -> None:
    copied = 0
    while True:
        budget.check()
        if sock is not None:  # no read waits past the deadline
            sock.settimeout(max(0.001, min(budget.remaining(), STALL_SECONDS)))
        chunk = resp.read1(CHUNK)
        if not chunk:
            return
        copied += len(chunk)
        if copied > max_bytes:
            raise TooLarge()
        out.write(chunk)
