"""``read_body`` (api/http.py), which every ASGI handler of the gateway reads its request body with."""

from __future__ import annotations

import asyncio

import pytest

from modelgate.api.http import Message, Receive, read_body
from modelgate.errors import ModelgateError


def _receiver(*messages: Message) -> Receive:
    queue = list(messages)

    async def receive() -> Message:
        return queue.pop(0)

    return receive


def test_d13_read_body_raises_when_the_client_leaves_before_the_end() -> None:
    async def main() -> None:
        cut = _receiver({"type": "http.request", "body": b'{"a":', "more_body": True}, {"type": "http.disconnect"})
        with pytest.raises(ModelgateError) as caught:
            await read_body(cut, 100, "too large")
        assert caught.value.code == "ClientDisconnected"
        assert caught.value.message == "The client disconnected before the whole request body arrived."
        first = {"type": "http.request", "body": b"{", "more_body": True}
        whole = _receiver(first, {"type": "http.request", "body": b"}"})
        assert await read_body(whole, 100, "too large") == b"{}"
        with pytest.raises(ModelgateError) as caught:
            await read_body(_receiver({"type": "http.request", "body": b"x" * 101}), 100, "too large")
        assert (caught.value.code, caught.value.status) == ("ValidationError", 413)

    asyncio.run(main())
