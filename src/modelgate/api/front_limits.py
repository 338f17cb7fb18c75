"""The HTTP front's limits (settings, with the reasons for their defaults) and the answers it refuses with.

Without limits one client could hold the server: httptools' binding joins a header's pieces with
``bytes +=``, so a 64 MB header was buffered and took seconds of the event loop (quadratic), and a
connection that sent nothing, or one header byte a second, was kept forever. The defaults:

* ``max_url_bytes`` 8 KiB (414): Apache's ``LimitRequestLine`` and nginx's buffer for the request line
  are 8 KiB. modelgate's URLs are a name of at most 63 characters and a few path segments; the query
  protocol travels in the body.
* ``max_header_bytes`` 64 KiB (431): the header lines' total, names and values with ``: `` and CRLF.
  SigV4, the SDKs' headers and 1 KiB of CustomAttributes need about 2 KiB; nginx allows 32 KiB, Node.js
  16 KiB, h11 16 KiB for a whole head, Go 1 MiB. A head still arriving is refused once the data read
  while it was incomplete passes the limit, so at most one read (uvloop reads up to 250 KB) beyond it
  is ever buffered.
* ``max_header_count`` 100 (431): Apache's ``LimitRequestFields``; a request needs about ten.
* ``header_timeout_seconds`` 10 (408, or a quiet close when nothing was sent): a new connection must
  deliver its first request's headers within it, and any request its headers within it of its first
  byte. An absolute deadline, not an idle one, so one byte a second does not keep a connection (Apache's
  ``mod_reqtimeout`` gives 20-40 s over the internet; the clients here are local).
* ``keep_alive_seconds`` 5: uvicorn's, which the gateway had; an idle kept-alive connection closes.
* ``max_connections`` 1000 (503): a connection costs a file descriptor and some memory; beyond the limit
  a new connection is answered ``503 ServiceUnavailable`` (which the SDKs retry) and closed, instead of
  the process running out of descriptors.

Refusals are whole HTTP answers with ``connection: close``: a JSON body with ``__type`` and ``message``
(what the AWS JSON parsers read) and ``x-amzn-errortype`` (what the rest-json parser reads).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from modelgate.api.asgi_cycle import STATUS_LINE
from modelgate.errors import ModelgateError

KEEP_ALIVE_SECONDS = 5.0
LINGER_SECONDS = 2.0  # after a refusal: how long the rest of the client's data is read and dropped


@dataclass(frozen=True, slots=True)
class FrontLimits:
    max_url_bytes: int = 8 * 1024
    max_header_bytes: int = 64 * 1024
    max_header_count: int = 100
    header_timeout_seconds: float = 10.0
    keep_alive_seconds: float = KEEP_ALIVE_SECONDS
    max_connections: int = 1000


def refusal(exc: ModelgateError) -> bytes:
    """The whole answer that refuses a request with ``exc`` and closes the connection."""
    body = json.dumps({"__type": exc.code, "message": exc.message}).encode()
    return b"".join(
        (
            STATUS_LINE[exc.status],
            b"content-type: application/json\r\nx-amzn-errortype: ",
            exc.code.encode(),
            b"\r\ncontent-length: %d\r\nconnection: close\r\n\r\n" % len(body),
            body,
        )
    )


def header_block_size(headers: list[tuple[bytes, bytes]]) -> int:
    """The size of the header lines as sent: name, ``: ``, value and CRLF each."""
    return sum(len(name) + len(value) + 4 for name, value in headers)
