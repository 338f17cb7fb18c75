"""uvicorn's httptools protocol, stamping each request's arrival for ``OverheadLatency``.

The runtime handler starts only after uvicorn has parsed the request and scheduled a task for it;
the time before that is the gateway's too. :meth:`on_message_begin` runs inside ``data_received``
when the request's first bytes are parsed, so the stamp is the earliest moment the process knows of
the request (what the kernel and the event loop's queue added before is invisible to any server).
"""

from __future__ import annotations

import time
from typing import cast

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from modelgate.api.runtime import ARRIVED


class TimedHttpToolsProtocol(HttpToolsProtocol):
    def on_message_begin(self) -> None:
        super().on_message_begin()
        cast(dict[str, object], self.scope)[ARRIVED] = time.perf_counter()
