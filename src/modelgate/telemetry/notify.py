"""Alarm actions: an ``http(s)://`` action receives a POST shaped like CloudWatch's SNS notification.

The body is an SNS HTTP(S) delivery (``Type: Notification``, ``Subject``, ``Message``, ...) whose
``Message`` is the CloudWatch alarm JSON (reference §7). There is no SNS topic, so ``TopicArn`` names a
per-account pseudo-topic and ``Signature`` is empty. Delivery is retried with exponential backoff; each
action's outcome becomes an ``Action`` history item. Any other action ARN (SNS, Auto Scaling, EC2, ...) is
accepted and recorded as not delivered.

Like model data (``egress.py``), an action URL reaches public addresses only, or those the operator opens
with ``MODELGATE_EGRESS_ALLOWLIST``: the host is resolved once by a checking resolver and aiohttp connects to
the addresses it returned; a literal address is checked before the request; redirects are not followed. A
failed delivery is recorded with one text whatever the cause (the cause goes to the server's log), so that
DescribeAlarmHistory cannot be used to scan ports.

All network I/O goes through :class:`Poster`, so tests replace it with a fake.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
import logging
import socket
import urllib.parse
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from modelgate.clock import Clock
from modelgate.egress import EgressPolicy, literal_address
from modelgate.policies.alarms import iso_time
from modelgate.telemetry.alarm_records import Alarm, HistoryItem
from modelgate.telemetry.documents import dimensions_doc, metric_doc

if TYPE_CHECKING:
    import aiohttp
    import aiohttp.abc

log = logging.getLogger(__name__)

REGION_NAMES = {
    "us-east-1": "US East (N. Virginia)",
    "us-east-2": "US East (Ohio)",
    "us-west-1": "US West (N. California)",
    "us-west-2": "US West (Oregon)",
    "ca-central-1": "Canada (Central)",
    "eu-west-1": "EU (Ireland)",
    "eu-west-2": "EU (London)",
    "eu-west-3": "EU (Paris)",
    "eu-central-1": "EU (Frankfurt)",
    "eu-north-1": "EU (Stockholm)",
    "ap-south-1": "Asia Pacific (Mumbai)",
    "ap-northeast-1": "Asia Pacific (Tokyo)",
    "ap-northeast-2": "Asia Pacific (Seoul)",
    "ap-southeast-1": "Asia Pacific (Singapore)",
    "ap-southeast-2": "Asia Pacific (Sydney)",
    "sa-east-1": "South America (Sao Paulo)",
}


UNDELIVERED = "The notification could not be delivered (the server's log has the cause)."


class DeliveryFailed(Exception):
    """A poster's own client error, mapped at the boundary; the message names the original's type."""


class DestinationRefused(DeliveryFailed):
    """The URL's destination is not allowed (egress.py); not retried."""


class Poster(Protocol):
    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> int:
        """POST and return the HTTP status; raise OSError/DeliveryFailed/TimeoutError on failure."""
        ...

    async def close(self) -> None: ...


class AiohttpPoster:
    def __init__(self, timeout: float = 5.0, egress: EgressPolicy | None = None) -> None:
        self._timeout = timeout
        self._egress = egress or EgressPolicy()
        self._session: aiohttp.ClientSession | None = None

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> int:
        # aiohttp is imported on the first delivery, not at start: it adds about 8 MB to the gateway's RSS
        # (bench/memory.py --imports), for alarms with http(s) actions only.
        import aiohttp

        parts = urllib.parse.urlsplit(url)
        try:
            host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError as exc:
            raise DestinationRefused(f"bad URL: {exc}") from exc
        literal = literal_address(host)  # aiohttp connects to a literal address without asking the resolver
        if literal is not None and not self._egress.allows(host, port, literal):
            raise DestinationRefused(f"{host}:{port} is not a public address and not allowed")
        if self._session is None:
            connector = aiohttp.TCPConnector(resolver=_checked_resolver(self._egress), use_dns_cache=False)
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=self._timeout)
            )
        try:
            async with self._session.post(url, data=body, headers=dict(headers), allow_redirects=False) as resp:
                await resp.read()
                return resp.status
        except aiohttp.ClientError as exc:
            raise DeliveryFailed(f"{type(exc).__name__}: {exc}") from exc

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _checked_resolver(policy: EgressPolicy) -> aiohttp.abc.AbstractResolver:
    """aiohttp's threaded resolver, refusing a name any of whose addresses the policy does not allow."""
    from aiohttp.abc import AbstractResolver, ResolveResult
    from aiohttp.resolver import ThreadedResolver

    class CheckedResolver(AbstractResolver):
        def __init__(self) -> None:
            self._inner = ThreadedResolver()

        async def resolve(
            self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
        ) -> list[ResolveResult]:
            found = await self._inner.resolve(host, port, family)
            refused = [r["host"] for r in found if not policy.allows(host, port, ipaddress.ip_address(r["host"]))]
            if refused or not found:  # not an OSError: aiohttp lets it through as it is, so it is not retried
                raise DestinationRefused(f"{host}:{port} resolves to {', '.join(refused) or 'nothing'}: not allowed")
            return found

        async def close(self) -> None:
            await self._inner.close()

    return CheckedResolver()


def is_url(action: str) -> bool:
    return action.startswith(("http://", "https://"))


def alarm_message(alarm: Alarm, old_state: str, account_id: str, region: str) -> dict[str, Any]:
    c = alarm.config
    trigger: dict[str, Any] = {}
    if c.metric is not None:
        trigger["MetricName"] = c.metric.name
        trigger["Namespace"] = c.metric.namespace
        if c.statistic is not None:
            trigger["StatisticType"] = "Statistic"
            trigger["Statistic"] = c.statistic.upper()
        else:
            trigger["StatisticType"] = "ExtendedStatistic"
            trigger["ExtendedStatistic"] = c.extended_statistic
        trigger["Unit"] = c.unit
        trigger["Dimensions"] = [{"value": d["Value"], "name": d["Name"]} for d in dimensions_doc(c.metric.dimensions)]
    else:
        trigger["Metrics"] = [_trigger_query(q) for q in c.metrics]
    trigger["Period"] = c.evaluation_period
    trigger["EvaluationPeriods"] = c.evaluation_periods
    if c.datapoints_to_alarm is not None:
        trigger["DatapointsToAlarm"] = c.datapoints_to_alarm
    trigger["ComparisonOperator"] = c.comparison_operator
    trigger["Threshold"] = float(c.threshold)
    trigger["TreatMissingData"] = c.treat_missing_data or ""
    trigger["EvaluateLowSampleCountPercentile"] = c.evaluate_low_sample_count_percentile or ""
    return {
        "AlarmName": c.name,
        "AlarmDescription": c.description,
        "AWSAccountId": account_id,
        "AlarmConfigurationUpdatedTimestamp": iso_time(alarm.configuration_updated),
        "NewStateValue": alarm.state_value,
        "NewStateReason": alarm.state_reason,
        "StateChangeTime": iso_time(alarm.state_updated),
        "Region": REGION_NAMES.get(region, region),
        "AlarmArn": alarm.arn,
        "OldStateValue": old_state,
        "OKActions": list(c.ok_actions),
        "AlarmActions": list(c.alarm_actions),
        "InsufficientDataActions": list(c.insufficient_data_actions),
        "Trigger": trigger,
    }


def _trigger_query(q: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"Id": q.id}
    if q.expression is not None:
        out["Expression"] = q.expression
    if q.metric_stat is not None:
        ms = q.metric_stat
        metric = metric_doc(ms.metric)
        metric["Dimensions"] = [{"value": d["Value"], "name": d["Name"]} for d in metric["Dimensions"]]
        out["MetricStat"] = {"Metric": metric, "Period": ms.period, "Stat": ms.stat}
    out["Label"] = q.label
    out["ReturnData"] = q.return_data
    return out


class Notifier:
    """Fires an alarm's actions for its new state in background tasks; ``record`` receives the history."""

    def __init__(
        self,
        poster: Poster,
        clock: Clock,
        account_id: str,
        region: str,
        record: Callable[[HistoryItem], None],
        attempts: int = 4,
        base_delay: float = 1.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.poster = poster
        self.clock = clock
        self.account_id = account_id
        self.region = region
        self.record = record
        self.attempts = attempts
        self.base_delay = base_delay
        self.sleep = sleep
        self._tasks: set[asyncio.Task[None]] = set()

    def notify(self, alarm: Alarm, old_state: str) -> None:
        actions = alarm.config.actions_for(alarm.state_value)
        if not actions:
            return
        message = json.dumps(alarm_message(alarm, old_state, self.account_id, self.region), separators=(",", ":"))
        subject = f'{alarm.state_value}: "{alarm.name}" in {REGION_NAMES.get(self.region, self.region)}'
        for action in actions:
            if is_url(action):
                task = asyncio.get_running_loop().create_task(
                    self._deliver(alarm.name, alarm.state_updated, action, subject, message)
                )
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            else:
                self._history(
                    alarm.name,
                    alarm.state_updated,
                    action,
                    message,
                    None,
                    "modelgate delivers only http(s) URL actions; this action was recorded, not run",
                )

    async def _deliver(self, name: str, changed: float, url: str, subject: str, message: str) -> None:
        topic = f"arn:aws:sns:{self.region}:{self.account_id}:modelgate-alarm-actions"
        message_id = str(uuid.uuid4())
        envelope = {
            "Type": "Notification",
            "MessageId": message_id,
            "TopicArn": topic,
            "Subject": subject,
            "Message": message,
            "Timestamp": _sns_time(self.clock.now()),
            "SignatureVersion": "1",
            "Signature": "",
            "SigningCertURL": "",
            "UnsubscribeURL": "",
        }
        body = json.dumps(envelope).encode()
        headers = {
            "Content-Type": "text/plain; charset=UTF-8",
            "x-amz-sns-message-type": "Notification",
            "x-amz-sns-message-id": message_id,
            "x-amz-sns-topic-arn": topic,
            "User-Agent": "modelgate-alarms",
        }
        error = "no attempt made"
        for attempt in range(self.attempts):
            if attempt:
                await self.sleep(self.base_delay * 2 ** (attempt - 1))
            try:
                status = await self.poster.post(url, body, headers)
            except DestinationRefused as exc:
                log.warning("alarm %s: action %s refused: %s", name, url, exc)
                self._history(name, changed, url, message, attempt + 1, UNDELIVERED)
                return
            except (DeliveryFailed, OSError, TimeoutError) as exc:
                error = UNDELIVERED  # the same text for every failure: the history is no port scanner
                log.warning("alarm %s: action %s attempt %d failed: %s: %s", name, url, attempt + 1,
                            type(exc).__name__, exc)  # fmt: skip
            else:
                if 200 <= status < 300:
                    self._history(name, changed, url, message, attempt + 1, None)
                    return
                error = f"HTTP {status}"
                log.warning("alarm %s: action %s attempt %d failed: %s", name, url, attempt + 1, error)
        self._history(name, changed, url, message, self.attempts, error)

    def _history(
        self, name: str, changed: float, action: str, message: str, attempts: int | None, error: str | None
    ) -> None:
        data: dict[str, Any] = {
            "actionState": "Succeeded" if error is None else "Failed",
            "stateUpdateTimestamp": int(changed * 1000),
            "notificationResource": action,
            "publishedMessage": json.dumps({"default": message}, separators=(",", ":")),
        }
        if attempts is not None:
            data["attempts"] = attempts
        if error is None:
            summary = f"Successfully executed action {action}"
        else:
            data["error"] = error
            summary = (
                f"Failed to execute action {action}" if attempts is not None else f"Action not delivered: {action}"
            )
        self.record(HistoryItem(name, self.clock.now(), "Action", summary[:255], json.dumps(data)))

    async def close(self) -> None:
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.poster.close()


def _sns_time(ts: float) -> str:
    t = dt.datetime.fromtimestamp(ts, dt.UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"
