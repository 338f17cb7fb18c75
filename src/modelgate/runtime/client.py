"""HTTP to instances: kept-alive connections, one shared pool, named errors.

The forward is the only I/O on the request path. ``InstanceDied`` and ``InstanceTimeout`` let the
router answer AWS-shaped errors without knowing the transport.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import aiohttp


class InstanceUnreachable(Exception):
    """The connection to the instance failed or broke before an answer (it died, or is dying)."""


class InstanceTimeout(Exception):
    """The instance did not answer within the invocation timeout."""


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: bytes
    content_type: str | None
    custom_attributes: str | None


class InstanceClient:
    def __init__(self, invocation_timeout: float) -> None:
        self._timeout = aiohttp.ClientTimeout(total=invocation_timeout)
        self._ping_timeout = aiohttp.ClientTimeout(total=2.0)
        self._session: aiohttp.ClientSession | None = None

    def _sess(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=60, enable_cleanup_closed=True)
            self._session = aiohttp.ClientSession(
                connector=connector,
                auto_decompress=False,
                skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type"),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def invoke(self, base_url: str, body: bytes, headers: dict[str, str]) -> Reply:
        try:
            async with self._sess().post(
                base_url + "/invocations", data=body, headers=headers, timeout=self._timeout
            ) as resp:
                data = await resp.read()
                return Reply(
                    resp.status,
                    data,
                    resp.headers.get("Content-Type"),
                    resp.headers.get("X-Amzn-SageMaker-Custom-Attributes"),
                )
        except TimeoutError as exc:
            raise InstanceTimeout(str(exc)) from exc
        except (aiohttp.ClientError, ConnectionError, asyncio.IncompleteReadError) as exc:
            raise InstanceUnreachable(f"{type(exc).__name__}: {exc}") from exc

    async def ping(self, base_url: str) -> bool:
        try:
            async with self._sess().get(base_url + "/ping", timeout=self._ping_timeout) as resp:
                await resp.read()
                return resp.status == 200
        except (TimeoutError, aiohttp.ClientError, ConnectionError):
            return False
