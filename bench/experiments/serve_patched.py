"""``modelgate serve`` with prototype changes swapped in at start-up, to measure them before they go to src/.

    python bench/experiments/serve_patched.py raw-client no-proxy-headers

- ``raw-client``: the instance client of ``raw_client.py`` instead of aiohttp's (``modelgate.server.InstanceClient``);
- ``no-proxy-headers``: ``uvicorn.Config(proxy_headers=False)``: uvicorn then does not wrap the app in its
  ProxyHeadersMiddleware (modelgate never sits behind a proxy that sets X-Forwarded-For here).

Settings come from the environment as for ``modelgate serve``.
"""

from __future__ import annotations

import functools
import sys
import types

import uvicorn

from modelgate import server
from modelgate.settings import Settings

CHANGES = ("raw-client", "no-proxy-headers")


def main(changes: list[str]) -> None:
    unknown = set(changes) - set(CHANGES)
    if unknown:
        raise SystemExit(f"unknown change(s) {sorted(unknown)}; known: {', '.join(CHANGES)}")
    if "raw-client" in changes:
        from raw_client import RawInstanceClient

        server.InstanceClient = RawInstanceClient  # type: ignore[misc,assignment]
    if "no-proxy-headers" in changes:
        config = functools.partial(uvicorn.Config, proxy_headers=False)
        server.uvicorn = types.SimpleNamespace(Config=config, Server=uvicorn.Server)  # type: ignore[assignment]
    server.serve(Settings())


if __name__ == "__main__":
    main(sys.argv[1:])
