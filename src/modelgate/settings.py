"""Settings, read once from the environment (prefix ``MODELGATE_``) and passed down.

A pydantic model that reads its fields from ``MODELGATE_<FIELD>`` (any case) when it is made, arguments
winning over the environment; values are validated and converted by pydantic, lists given as JSON. This
is the part of pydantic-settings that modelgate used; the library itself (its sources for dotenv, secrets
directories, cloud vaults, CLIs) cost the gateway 1.2 MB of resident memory (bench/RESULTS.md, "Memory").

``MODELGATE_FAULT_CRASH_AT`` is a test-only fault-injection point, never to be set in production: the
rollout controller sends SIGKILL to its own process at that point of a deployment, so that the tests
can check kill -9 recovery at an exact moment (``traffic-shift``: right after a state whose actions
change the traffic share was stored, before the share is published; ``traffic-shifted``: right after
the share was published). See docs/architecture.md, "Guarded deployments", Restart.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, get_origin

from pydantic import BaseModel, ConfigDict, Field, field_validator

ENV_PREFIX = "MODELGATE_"
_HOST_NAME = re.compile(r"^[A-Za-z0-9_]([A-Za-z0-9_.-]{0,252})$")
_ORIGIN = re.compile(r"^https?://([A-Za-z0-9_.-]+|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?$", re.IGNORECASE)


def default_data_dir() -> Path:
    return Path.home() / ".modelgate"


def from_environment(fields: Mapping[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    """The values of ``MODELGATE_<FIELD>`` variables for these fields; JSON for list fields."""
    values: dict[str, Any] = {}
    for key, raw in environ.items():
        if key[: len(ENV_PREFIX)].upper() != ENV_PREFIX:
            continue
        name = key[len(ENV_PREFIX) :].lower()
        field = fields.get(name)
        if field is None:
            continue  # not ours (or not any more): ignored, as before
        if get_origin(field.annotation) is list:
            try:
                values[name] = json.loads(raw)
            except ValueError as exc:
                raise ValueError(f"{key} must be a JSON list: {exc}") from None
        else:
            values[name] = raw
    return values


class Settings(BaseModel):
    model_config = ConfigDict(extra="ignore")

    def __init__(self, environ: Mapping[str, str] | None = None, **values: Any) -> None:
        """The environment's ``MODELGATE_*`` values (``os.environ`` unless given), then ``values`` over them."""
        found = from_environment(type(self).model_fields, os.environ if environ is None else environ)
        super().__init__(**{**found, **values})

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    allow_remote: bool = False
    data_dir: Path = Field(default_factory=default_data_dir)
    account_id: str = Field(default="123456789012", pattern=r"^\d{12}$")
    region: str = "us-east-1"
    invocation_timeout_seconds: float = Field(default=60.0, gt=0)
    max_payload_bytes: int = 6 * 1024 * 1024
    max_control_body_bytes: int = 8 * 1024 * 1024
    max_artifact_bytes: int = 10 * 1024 * 1024 * 1024
    ping_interval_seconds: float = Field(default=1.0, gt=0)
    default_startup_health_timeout_seconds: float = Field(default=600.0, gt=0)
    # Caps ContainerStartupHealthCheckTimeoutInSeconds (whose API minimum is 60 s): for tests and impatient operators.
    max_startup_health_timeout_seconds: float | None = Field(default=None, gt=0)
    drain_timeout_seconds: float = Field(default=30.0, ge=0)
    # Caps every deployment's MaximumExecutionTimeoutInSeconds (whose API minimum is 600 s): for tests and demos.
    max_rollout_execution_seconds: int | None = Field(default=None, gt=0)
    # Test-only fault injection (see the module docstring): SIGKILL the server at this rollout point.
    fault_crash_at: Literal["traffic-shift", "traffic-shifted"] | None = None
    # The green-vs-blue comparison during deployments (controllers/rollout_judge.py): how often it looks
    # (each look is one interval of the sequential test) and its false-alarm bound for an A/A update.
    rollout_comparison_interval_seconds: float = Field(default=10.0, gt=0)
    rollout_comparison_alpha: float = Field(default=0.05, gt=0, lt=1)
    allow_pip_install: bool = False
    # Multiplies each instance type's memory limit (an instance over it is stopped with a reason); tests use 0.01.
    memory_limit_scale: float = Field(default=1.0, gt=0)
    # A/B experiments: where events go (a directory or s3://bucket/prefix; default <data_dir>/ab-events),
    # how often they are flushed, and which sources are dropped before they count.
    ab_events_url: str | None = None
    ab_flush_seconds: float = Field(default=60.0, gt=0)
    ab_flush_bytes: int = Field(default=1024 * 1024, gt=0)
    ab_filter_source_ips: list[str] = Field(default_factory=list)
    ab_filter_user_agents: list[str] = Field(default_factory=list)
    demo: bool = False
    # The HTTP front (api/front_limits.py gives the reasons for the defaults; api/browsers.py the checks).
    max_url_bytes: int = Field(default=8 * 1024, ge=256, le=65535)  # httptools parses no URL above 65535
    max_header_bytes: int = Field(default=64 * 1024, ge=1024)
    max_header_count: int = Field(default=100, ge=16)
    header_timeout_seconds: float = Field(default=10.0, gt=0)
    max_connections: int = Field(default=1000, ge=1)
    # Host names accepted besides localhost, the bind name and IP literals ("*": any), e.g. the machine's
    # DNS name when bound off loopback; and the browser origins allowed to use the server (CORS).
    allowed_hosts: list[str] = Field(default_factory=list)
    cors_allowed_origins: list[str] = Field(default_factory=list)

    @field_validator("allowed_hosts")
    @classmethod
    def _host_names(cls, names: list[str]) -> list[str]:
        for name in names:
            if name != "*" and not _HOST_NAME.match(name):
                raise ValueError(
                    f"allowed_hosts: {name!r} is not a host name (a DNS name without port or scheme, or '*')"
                )
        return [name.lower().removesuffix(".") for name in names]

    @field_validator("cors_allowed_origins")
    @classmethod
    def _origins(cls, origins: list[str]) -> list[str]:
        for origin in origins:
            if not _ORIGIN.match(origin):
                raise ValueError(
                    f"cors_allowed_origins: {origin!r} is not an origin (scheme://host[:port], no path, no '*')"
                )
        return [origin.lower() for origin in origins]

    @field_validator("data_dir")
    @classmethod
    def _expand(cls, v: Path) -> Path:
        return v.expanduser().resolve()

    def check_bind(self) -> None:
        """Refuse a non-loopback address unless the user said so explicitly."""
        if self.allow_remote:
            return
        host = self.host
        if host == "localhost":
            return
        try:
            addr = ipaddress.ip_address(host)
        except ValueError as exc:
            raise ValueError(
                f"refusing to bind to {host!r}: only loopback addresses are allowed without --allow-remote "
                "(modelgate has no authentication yet)"
            ) from exc
        if not addr.is_loopback:
            raise ValueError(
                f"refusing to bind to {host}: it is not a loopback address; pass --allow-remote "
                "(or MODELGATE_ALLOW_REMOTE=true) to expose modelgate, which has no authentication yet"
            )
