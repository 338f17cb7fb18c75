"""Serving a loaded handler on 127.0.0.1:``SAGEMAKER_BIND_TO_PORT`` until SIGTERM.

Two HTTP front ends, the same routes (``routes``) and the same scheduler (``scheduling``):

- ``httptools`` (default): ``http1``, an asyncio protocol on uvloop parsed by httptools;
- ``uvicorn``: ``asgi``, a raw ASGI callable on uvicorn (httptools, uvloop, access log and
  lifespan off, no proxy-headers middleware).

``MODELGATE_CONTAINER_HTTP`` in the model's Environment picks one.

Latency, measured with ``tests/containers/bench_latency.py`` (one ``binary:logistic`` booster of
50 trees of depth 4 on 20 features, one CSV row per ``POST /invocations``, 3,000 sequential requests
after 200 warm-up ones over one kept-alive ``http.client`` connection, client time included; five
alternating rounds on the 2-vCPU VM while another session's tests were running, so ranges):

==========================  ===============  ===============  ========================
front end                   median           p90              server CPU per request
==========================  ===============  ===============  ========================
``http1`` (default)         0.23-0.34 ms     0.34-0.52 ms     0.17-0.19 ms
``asgi`` on uvicorn         0.29-0.33 ms     0.33-0.48 ms     0.24-0.26 ms
empty ASGI app on uvicorn   0.15-0.26 ms     0.17-0.29 ms     0.08-0.12 ms
==========================  ===============  ===============  ========================

The median of ``http1`` was 0.23-0.25 ms in the three calmer rounds. Wall times follow the load
of the machine: with a load average near 4 on the 2 vCPUs, a later run gave medians of 0.48-0.52 ms
(``http1``, 0.29-0.30 ms CPU), 0.46-0.62 ms (uvicorn, 0.32-0.41 ms CPU) and 0.27-0.38 ms (empty
app). Of the CPU per request of ``http1``, XGBoost's own per-call work
(``XGBoosterPredictFromDense``: parsing the config, setting the device, walking the trees for their
depth) is about 0.05 ms on a quiet machine; see ``xgb_fastpath``.
"""

from __future__ import annotations

import logging
import socket

from modelgate.containers.errors import LoadFailure
from modelgate.containers.protocol import Handler
from modelgate.containers.scheduling import Invoker

log = logging.getLogger(__name__)

KEEP_ALIVE_SECONDS = 75  # longer than the gateway's pooled-connection idle time (60 s)
FRONT_ENDS = ("httptools", "uvicorn")


def bind(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError as exc:
        sock.close()
        raise LoadFailure(f"Cannot listen on 127.0.0.1:{port}: {exc.strerror or exc}") from None
    return sock


def serve(handler: Handler, port: int, workers: int, max_content_length: int, front_end: str = "httptools") -> None:
    """Listen until SIGTERM/SIGINT; :class:`LoadFailure` if the port cannot be bound."""
    if front_end not in FRONT_ENDS:
        raise LoadFailure(f"MODELGATE_CONTAINER_HTTP={front_end!r} is not one of {', '.join(FRONT_ENDS)}")
    sock = bind(port)
    invoker = Invoker(handler, workers)
    try:
        if front_end == "uvicorn":
            from modelgate.containers.asgi import ContainerApp, serve_uvicorn

            serve_uvicorn(ContainerApp(handler, invoker, max_content_length), sock, KEEP_ALIVE_SECONDS)
        else:
            from modelgate.containers.http1 import serve_http1

            serve_http1(handler, invoker, max_content_length, sock, KEEP_ALIVE_SECONDS)
    finally:
        invoker.shutdown()
        sock.close()
