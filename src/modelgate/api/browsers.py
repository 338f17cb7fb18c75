"""Who may drive the server from a web browser: the Host check, the Origin check, and CORS if configured.

modelgate has no authentication; it listens on loopback so that only this machine's users reach it.
A web page in the user's browser is not one of them, but without these checks it could drive the
server (and through ``command:`` images, run programs):

* **DNS rebinding.** A page on ``attacker.example`` makes its name resolve to 127.0.0.1 and then talks
  to the server as a same-origin page, reading every answer. The browser still sends
  ``Host: attacker.example``. So the Host header must name this server: ``localhost``, the name it was
  bound to, a name the operator listed (``MODELGATE_ALLOWED_HOSTS``), or an IP literal. An IP literal is
  always accepted: a page can only use one as its own origin when the page itself comes from that
  address, which rebinding cannot arrange. A request without Host (HTTP/1.0) is accepted: browsers
  always send one.
* **Cross-site requests (CSRF).** Any page can send a "simple" request without asking (a form post,
  ``fetch`` with ``mode: "no-cors"``): GET, HEAD or POST with a form or ``text/plain`` body and no
  custom header. It cannot read the answer, but the request is executed. Browsers mark such requests
  with ``Origin`` (every cross-origin POST, forms included) and ``Sec-Fetch-Site``, headers a page
  cannot forge and that SDKs, the CLI and curl never send. So a state-changing request (any method but
  GET, HEAD and OPTIONS) that carries an ``Origin`` not listed in ``MODELGATE_CORS_ALLOWED_ORIGINS``,
  or, without ``Origin``, a ``Sec-Fetch-Site`` other than ``same-origin`` or ``none``, is refused with
  403. This covers InvokeEndpoint too, whose body is the model's own content type (``text/csv``,
  ``text/plain``...) and so cannot be required to be one a form cannot send. The protocols add their
  own requirement where a form could otherwise pass: the JSON protocols need ``X-Amz-Target``, the
  query protocol an SDK header (api/query.py), rpc-v2-cbor its ``smithy-protocol`` header (api/cbor.py).
* **CORS, only if configured.** With no allowed origins (the default), no answer carries CORS headers,
  so a page can never read one, and a preflight (OPTIONS with ``Access-Control-Request-Method``) is
  refused. For a listed origin, preflights are answered and answers carry
  ``Access-Control-Allow-Origin``, so a browser application (the AWS SDK for JavaScript) can use the
  server.

The front (api/front.py) looks at Host on every request (a set lookup once a value was seen) and calls
:meth:`BrowserGuard.check` only for requests that carry ``Origin`` or ``Sec-Fetch-Site``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from modelgate.errors import CrossOriginRefused, HostNotAllowed, ModelgateError

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})  # no state changes: cross-origin reads are CORS's job
_SAME_SITE = frozenset({"same-origin", "none"})  # Sec-Fetch-Site: the page itself, or the user typed the URL
_ALLOWED_METHODS = b"GET, HEAD, POST, PUT, DELETE"
_EXPOSED = (
    b"x-amzn-requestid, x-amzn-errortype, x-amzn-query-error, x-amzn-invoked-production-variant, "
    b"x-amzn-sagemaker-custom-attributes, smithy-protocol, date"
)
PREFLIGHT_MAX_AGE = b"600"
_CACHED_HOSTS = 256  # distinct Host values remembered as allowed (a client varying its port adds one each)


def host_allowed(host: str, names: frozenset[str]) -> bool:
    """Does the Host header value ``host`` (``name[:port]``, ``IPv4[:port]`` or ``[IPv6][:port]``) name
    this server? ``names`` are the accepted names, lower case; ``*`` accepts any. The port is not
    checked: a rebinding page's name is what gives it away, and ports differ behind forwarding."""
    if "*" in names:
        return True
    if host.startswith("["):
        literal, bracket, rest = host[1:].partition("]")
        if not bracket or (rest and not (rest[0] == ":" and _is_port(rest[1:]))):
            return False
        try:
            ipaddress.IPv6Address(literal)
        except ValueError:
            return False
        return True
    name, colon, port = host.partition(":")
    if not name or (colon and not _is_port(port)):
        return False
    try:
        ipaddress.IPv4Address(name)
    except ValueError:
        return name.lower().removesuffix(".") in names
    return True


def _is_port(text: str) -> bool:
    return 0 < len(text) <= 5 and text.isascii() and text.isdigit()


def browser_refusal(method: str, origin: str | None, fetch_site: str | None, origins: frozenset[str]) -> str | None:
    """Why this request, judged by the headers a browser adds, must not run; None if it may."""
    if method in SAFE_METHODS:
        return None
    if origin is not None:
        if origin.lower() in origins:
            return None
        return (
            f"A browser page of origin {origin} may not send {method} requests to modelgate; list the origin in "
            "MODELGATE_CORS_ALLOWED_ORIGINS to allow it."
        )
    if fetch_site is not None and fetch_site.lower() not in _SAME_SITE:
        return (
            f"A browser request from another site (Sec-Fetch-Site: {fetch_site}) may not send {method} requests "
            "to modelgate."
        )
    return None


def cors_headers(origin: str) -> list[tuple[bytes, bytes]]:
    """What an answer to an allowed origin carries, so that the page may read it."""
    return [
        (b"access-control-allow-origin", origin.encode("latin-1")),
        (b"access-control-expose-headers", _EXPOSED),
        (b"vary", b"origin"),
    ]


def preflight_answer(origin: str, request_headers: str | None) -> bytes:
    """The whole 204 answer to an allowed origin's preflight: the methods modelgate serves, and the
    headers the page asked for (an allowed origin is trusted with any)."""
    head = [
        b"HTTP/1.1 204 No Content",
        b"access-control-allow-origin: " + origin.encode("latin-1"),
        b"access-control-allow-methods: " + _ALLOWED_METHODS,
        b"access-control-max-age: " + PREFLIGHT_MAX_AGE,
        b"vary: origin, access-control-request-method, access-control-request-headers",
        b"content-length: 0",
    ]
    if request_headers:
        head.insert(3, b"access-control-allow-headers: " + request_headers.encode("latin-1"))
    return b"\r\n".join(head) + b"\r\n\r\n"


@dataclass(frozen=True, slots=True)
class Verdict:
    """What to do with a request that came from a browser: refuse it, answer its preflight, or run it
    (with ``cors`` headers on its answer when its origin is allowed)."""

    refusal: ModelgateError | None = None
    preflight: bytes | None = None
    cors: list[tuple[bytes, bytes]] | None = None


_RUN = Verdict()


class BrowserGuard:
    """The Host names and CORS origins of one server, with the Host values already found allowed."""

    def __init__(self, names: Iterable[str], origins: Iterable[str] = ()) -> None:
        self.names = frozenset(n.lower().removesuffix(".") for n in names) | {"localhost"}
        self.origins = frozenset(o.lower() for o in origins)
        self.ok_hosts: set[bytes] = set()  # the front's fast path: a Host value seen before and allowed

    @classmethod
    def for_server(cls, bind_host: str, extra_names: Iterable[str] = (), origins: Iterable[str] = ()) -> BrowserGuard:
        """The names a server bound to ``bind_host`` answers to: its bind name (unless an IP
        literal or a wildcard address, which any IP literal already passes), plus ``extra_names``."""
        names = list(extra_names)
        try:
            ipaddress.ip_address(bind_host)
        except ValueError:
            if bind_host:
                names.append(bind_host)
        return cls(names, origins)

    def host_ok(self, host: bytes) -> bool:
        """Is this Host value allowed? Remembered when it is (up to a bound)."""
        ok = host_allowed(host.decode("latin-1"), self.names)
        if ok and len(self.ok_hosts) < _CACHED_HOSTS:
            self.ok_hosts.add(host)
        return ok

    def host_refusal(self, host: bytes) -> ModelgateError:
        shown = host.decode("latin-1")[:200]
        return HostNotAllowed(
            f"Host {shown!r} is not a name of this server (DNS rebinding protection); use localhost or an IP "
            "address, or list the name in MODELGATE_ALLOWED_HOSTS."
        )

    def check(self, method: str, headers: list[tuple[bytes, bytes]]) -> Verdict:
        """Judge a request that carries ``Origin`` or ``Sec-Fetch-Site`` (header names in lower case)."""
        origin = fetch_site = wanted_method = wanted_headers = None
        for name, value in headers:
            if name == b"origin":
                origin = value.decode("latin-1")
            elif name == b"sec-fetch-site":
                fetch_site = value.decode("latin-1")
            elif name == b"access-control-request-method":
                wanted_method = value.decode("latin-1")
            elif name == b"access-control-request-headers":
                wanted_headers = value.decode("latin-1")
        allowed = origin is not None and origin.lower() in self.origins
        if method == "OPTIONS" and origin is not None and wanted_method is not None:
            if not allowed:
                return Verdict(
                    refusal=CrossOriginRefused(
                        f"Cross-origin requests from {origin} are not allowed (no CORS unless configured: "
                        "MODELGATE_CORS_ALLOWED_ORIGINS)."
                    )
                )
            assert origin is not None
            return Verdict(preflight=preflight_answer(origin, wanted_headers))
        reason = browser_refusal(method, origin, fetch_site, self.origins)
        if reason is not None:
            return Verdict(refusal=CrossOriginRefused(reason))
        if allowed:
            assert origin is not None
            return Verdict(cors=cors_headers(origin))
        return _RUN
