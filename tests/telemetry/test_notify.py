"""Alarm actions: the SNS-shaped webhook POST, retries with backoff, and the Action history items."""

from __future__ import annotations

import asyncio
import json

import pytest

from modelgate.egress import EgressPolicy
from modelgate.telemetry.alarm_records import Alarm, AlarmConfig, HistoryItem
from modelgate.telemetry.model import MetricId, MetricQuery, MetricStat
from modelgate.telemetry.notify import (
    UNDELIVERED,
    AiohttpPoster,
    DeliveryFailed,
    DestinationRefused,
    Notifier,
    alarm_message,
)
from tests.telemetry.fakes import FakeClock, FakePoster

T0 = 1_664_131_837.811  # 2022-09-25T18:50:37.811Z
METRIC = MetricId.of("AWS/SageMaker", "Invocation5XXErrors", [("VariantName", "blue"), ("EndpointName", "ep")])


def alarm(**kw: object) -> Alarm:
    fields: dict[str, object] = {
        "alarm_actions": ("http://hook.test/a", "arn:aws:sns:us-east-1:123456789012:topic"),
        "ok_actions": ("https://hook.test/ok",),
        **kw,
    }
    config = AlarmConfig(name="errors", evaluation_periods=1, comparison_operator="GreaterThanThreshold",
                         threshold=5.0, metric=METRIC, statistic="Sum", period=60, **fields)  # type: ignore[arg-type]
    return Alarm(config, "arn:aws:cloudwatch:us-east-1:123456789012:alarm:errors", T0 - 101.306,
                 state_value="ALARM", state_reason="Threshold Crossed: ...", state_updated=T0)


def run(poster: FakePoster, a: Alarm, attempts: int = 3) -> tuple[list[HistoryItem], list[float]]:
    history: list[HistoryItem] = []
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    async def main() -> None:
        notifier = Notifier(poster, FakeClock(T0), "123456789012", "ca-central-1", history.append,
                            attempts=attempts, base_delay=0.5, sleep=sleep)
        notifier.notify(a, "INSUFFICIENT_DATA")
        await asyncio.sleep(0)
        for _ in range(20):
            if not notifier._tasks:
                break
            await asyncio.sleep(0.001)
        await notifier.close()

    asyncio.run(main())
    return history, sleeps


def test_webhook_receives_an_sns_notification() -> None:
    poster = FakePoster()
    history, sleeps = run(poster, alarm())
    [(url, body, headers)] = poster.calls
    assert url == "http://hook.test/a" and sleeps == []
    assert headers["x-amz-sns-message-type"] == "Notification"
    envelope = json.loads(body)
    assert envelope["Type"] == "Notification"
    assert envelope["Subject"] == 'ALARM: "errors" in Canada (Central)'
    message = json.loads(envelope["Message"])
    assert message["AlarmName"] == "errors" and message["AWSAccountId"] == "123456789012"
    assert message["NewStateValue"] == "ALARM" and message["OldStateValue"] == "INSUFFICIENT_DATA"
    assert message["StateChangeTime"] == "2022-09-25T18:50:37.811+0000"
    assert message["AlarmConfigurationUpdatedTimestamp"] == "2022-09-25T18:48:56.505+0000"
    assert message["Region"] == "Canada (Central)"
    assert message["AlarmActions"] == ["http://hook.test/a", "arn:aws:sns:us-east-1:123456789012:topic"]
    trigger = message["Trigger"]
    assert trigger["Statistic"] == "SUM" and trigger["StatisticType"] == "Statistic"
    assert trigger["Dimensions"] == [{"value": "ep", "name": "EndpointName"}, {"value": "blue", "name": "VariantName"}]
    assert "DatapointsToAlarm" not in trigger and trigger["Threshold"] == 5.0
    # the URL succeeded; the SNS ARN is recorded as not delivered
    by_action = {json.loads(h.data)["notificationResource"]: h for h in history}
    ok = by_action["http://hook.test/a"]
    assert ok.item_type == "Action" and ok.summary == "Successfully executed action http://hook.test/a"
    data = json.loads(ok.data)
    assert data["actionState"] == "Succeeded" and data["stateUpdateTimestamp"] == int(T0 * 1000)
    assert json.loads(data["publishedMessage"])["default"] == envelope["Message"]
    sns = json.loads(by_action["arn:aws:sns:us-east-1:123456789012:topic"].data)
    assert sns["actionState"] == "Failed" and "not run" in sns["error"]


def test_retries_with_backoff_then_succeeds() -> None:
    poster = FakePoster([500, ConnectionRefusedError("refused"), 200])
    history, sleeps = run(poster, alarm(alarm_actions=("http://hook.test/a",)))
    assert len(poster.calls) == 3 and sleeps == [0.5, 1.0]
    [item] = history
    assert json.loads(item.data)["actionState"] == "Succeeded" and json.loads(item.data)["attempts"] == 3


def test_gives_up_after_the_last_attempt() -> None:
    poster = FakePoster([503, 503, 503, 200])
    history, sleeps = run(poster, alarm(alarm_actions=("http://hook.test/a",)))
    assert len(poster.calls) == 3 and sleeps == [0.5, 1.0]
    [item] = history
    assert item.summary == "Failed to execute action http://hook.test/a"
    assert json.loads(item.data)["error"] == "HTTP 503"


@pytest.mark.parametrize(
    "error",
    [DeliveryFailed("ServerDisconnectedError: Server disconnected"), ConnectionRefusedError(111, "refused"),
     TimeoutError(), DestinationRefused("127.0.0.1:1 is not allowed")],
)  # fmt: skip
def test_d6_every_failure_is_recorded_with_one_text(error: Exception) -> None:
    """No errno or client error in the history (it would tell closed ports from open ones); the log has it."""
    poster = FakePoster([error])
    history, _ = run(poster, alarm(alarm_actions=("http://hook.test/a",)), attempts=1)
    [item] = history
    assert json.loads(item.data)["error"] == UNDELIVERED


def test_aiohttp_poster_posts_and_maps_client_errors() -> None:
    """A real POST to a local server, then to one that hangs up: aiohttp's error becomes DeliveryFailed."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        fields = dict(h.partition(b":")[::2] for h in head.split(b"\r\n")[1:] if h)
        length = int(next(v for k, v in fields.items() if k.lower() == b"content-length"))
        await reader.readexactly(length)
        writer.write(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.close()

    async def main() -> None:
        poster = AiohttpPoster(timeout=5, egress=EgressPolicy.from_entries(["127.0.0.1"]))
        try:
            for handler, expected in ((answer, 204), (hang_up, None)):
                server = await asyncio.start_server(handler, "127.0.0.1", 0)
                port = server.sockets[0].getsockname()[1]
                async with server:
                    url = f"http://127.0.0.1:{port}/hook"
                    if expected is not None:
                        assert await poster.post(url, b"{}", {"Content-Type": "text/plain"}) == expected
                    else:
                        with pytest.raises(DeliveryFailed, match=r"^ServerDisconnectedError: "):
                            await poster.post(url, b"{}", {"Content-Type": "text/plain"})
        finally:
            await poster.close()

    asyncio.run(main())


def test_only_the_new_states_actions_run() -> None:
    poster = FakePoster()
    a = alarm()
    a.state_value = "OK"
    run(poster, a)
    assert [c[0] for c in poster.calls] == ["https://hook.test/ok"]
    assert json.loads(poster.calls[0][1])["Subject"].startswith("OK: ")
    a.state_value = "INSUFFICIENT_DATA"
    assert run(FakePoster(), a) == ([], [])


def test_math_alarm_trigger() -> None:
    queries = (MetricQuery("m", MetricStat(METRIC, 60, "Sum"), return_data=False),
               MetricQuery("e", expression="m * 2", label="double"))
    config = AlarmConfig(name="m", evaluation_periods=2, comparison_operator="LessThanThreshold", threshold=1.0,
                         metrics=queries, datapoints_to_alarm=1, treat_missing_data="breaching")
    message = alarm_message(Alarm(config, "arn", T0), "OK", "1", "xx-none-1")
    trigger = message["Trigger"]
    assert "MetricName" not in trigger and trigger["DatapointsToAlarm"] == 1 and trigger["Period"] == 60
    assert trigger["Metrics"][0]["MetricStat"]["Metric"]["Dimensions"][0] == {"value": "ep", "name": "EndpointName"}
    assert trigger["Metrics"][1] == {"Id": "e", "Expression": "m * 2", "Label": "double", "ReturnData": True}
    assert message["Region"] == "xx-none-1"
