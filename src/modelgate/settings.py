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

from modelgate.egress import EgressPolicy, parse_rule

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
    # Model data (artifacts/): one archive and its unpacked files; everything unpacked in the cache; how many
    # times its size an archive may expand (decompression bombs); the threads that fetch and unpack.
    max_artifact_bytes: int = Field(default=10 * 1024 * 1024 * 1024, gt=0)
    max_artifact_cache_bytes: int = Field(default=20 * 1024 * 1024 * 1024, gt=0)
    max_artifact_expansion_ratio: float = Field(default=100.0, ge=1)
    artifact_workers: int = Field(default=4, ge=1, le=64)
    # Directories local model data (file:// URLs, paths) may be read from, besides the data directory.
    model_data_roots: list[Path] = Field(default_factory=list)
    # Destinations beyond public addresses that http(s) model data and alarm actions may reach (egress.py):
    # CIDRs or addresses (any port), address:port, [v6-address]:port, host:port.
    egress_allowlist: list[str] = Field(default_factory=list)
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
    # What runs a container Image (runtime/images.py): the operator's image map (inline JSON, or the path of a
    # JSON file; loaded and checked at start), and whether `command:<path>` images (any executable the API
    # caller names) may run at all.
    image_map: str | None = None
    allow_command_images: bool = False
    # Variables of the server's environment that instances get (e.g. proxies); nothing else of it is passed.
    instance_env_passthrough: list[str] = Field(default_factory=list)
    # Instance quotas (policies/capacity.py): ResourceLimitExceeded over them; and how many instances may be
    # starting (spawned, not yet healthy) at once, so that a large fleet starts in waves.
    max_instances_per_endpoint: int = Field(default=20, ge=1)
    max_instances: int = Field(default=40, ge=1)
    max_concurrent_instance_starts: int = Field(default=4, ge=1)
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

    @field_validator("instance_env_passthrough")
    @classmethod
    def _names(cls, v: list[str]) -> list[str]:
        bad = [n for n in v if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", n)]
        if bad:
            raise ValueError(f"not environment variable names: {', '.join(map(repr, bad))}")
        return v

    @field_validator("data_dir")
    @classmethod
    def _expand(cls, v: Path) -> Path:
        return v.expanduser().resolve()

    @field_validator("model_data_roots")
    @classmethod
    def _absolute_roots(cls, v: list[Path]) -> list[Path]:
        roots = [p.expanduser() for p in v]
        relative = [str(p) for p in roots if not p.is_absolute()]
        if relative:
            raise ValueError(f"model data roots must be absolute paths, not {', '.join(relative)}")
        return roots

    @field_validator("egress_allowlist")
    @classmethod
    def _parse_allowlist(cls, v: list[str]) -> list[str]:
        for entry in v:
            parse_rule(entry)  # a ValueError names the entry
        return v

    def model_data_directories(self) -> list[Path]:
        """Where local model data may be read from: the data directory and the operator's roots."""
        return [self.data_dir, *self.model_data_roots]

    def egress_policy(self) -> EgressPolicy:
        return EgressPolicy.from_entries(self.egress_allowlist)

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
