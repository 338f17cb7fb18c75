"""The one-hop limit: a minimal aiohttp reverse proxy (aiohttp server, aiohttp client, uvloop).

``python bench/proxy.py PORT UPSTREAM_URL``: every request is forwarded to the same path on the
upstream over kept-alive connections; the answer's status, body and content type come back.
It does nothing else (no routing table, no metrics, no validation): what one hop costs at least.
"""

from __future__ import annotations

import asyncio
import sys

import aiohttp
import uvloop
from aiohttp import web


async def main(port: int, upstream: str) -> None:
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=60),
        auto_decompress=False,
        skip_auto_headers=("User-Agent", "Accept-Encoding"),
    )

    async def forward(request: web.Request) -> web.Response:
        body = await request.read()
        headers = {"Content-Type": request.headers.get("Content-Type", "application/octet-stream")}
        async with session.request(request.method, upstream + request.path_qs, data=body, headers=headers) as r:
            data = await r.read()
            content_type = r.headers.get("Content-Type", "application/octet-stream")
            return web.Response(body=data, status=r.status, headers={"Content-Type": content_type})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", forward)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await asyncio.Event().wait()


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1]), sys.argv[2].rstrip("/")))
