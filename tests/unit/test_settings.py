"""Settings from MODELGATE_* variables (settings.py): names in any case, arguments over the environment,
pydantic's conversions and errors, lists as JSON, other variables ignored."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from modelgate.settings import Settings


@pytest.mark.parametrize(
    ("environ", "field", "expected"),
    [
        ({}, "port", 8080),
        ({"MODELGATE_PORT": "9001"}, "port", 9001),
        ({"modelgate_port": "9002"}, "port", 9002),  # any case, as pydantic-settings read them
        ({"MODELGATE_ALLOW_REMOTE": "true"}, "allow_remote", True),
        ({"MODELGATE_ALLOW_REMOTE": "0"}, "allow_remote", False),
        ({"MODELGATE_INVOCATION_TIMEOUT_SECONDS": "2.5"}, "invocation_timeout_seconds", 2.5),
        ({"MODELGATE_MAX_STARTUP_HEALTH_TIMEOUT_SECONDS": "3"}, "max_startup_health_timeout_seconds", 3.0),
        ({"MODELGATE_FAULT_CRASH_AT": "traffic-shift"}, "fault_crash_at", "traffic-shift"),
        ({"MODELGATE_AB_FILTER_SOURCE_IPS": '["10.0.0.1", "::1"]'}, "ab_filter_source_ips", ["10.0.0.1", "::1"]),
        ({"MODELGATE_AB_EVENTS_URL": "s3://b/p"}, "ab_events_url", "s3://b/p"),
        ({"MODELGATE_DATA_DIR": "/tmp/x/../y"}, "data_dir", Path("/tmp/y")),
        ({"MODELGATE_MODEL_DATA_ROOTS": '["/srv/models"]'}, "model_data_roots", [Path("/srv/models")]),
        ({"MODELGATE_EGRESS_ALLOWLIST": '["127.0.0.1:9000"]'}, "egress_allowlist", ["127.0.0.1:9000"]),
        ({"MODELGATE_MAX_ARTIFACT_CACHE_BYTES": "1000"}, "max_artifact_cache_bytes", 1000),
        ({"MODELGATE_MAX_ARTIFACT_EXPANSION_RATIO": "20"}, "max_artifact_expansion_ratio", 20.0),
        ({"MODELGATE_CONTAINER_HTTP": "uvicorn", "OTHER": "1"}, "port", 8080),  # not ours: ignored
        ({}, "allow_command_images", False),
        ({"MODELGATE_ALLOW_COMMAND_IMAGES": "true"}, "allow_command_images", True),
        ({"MODELGATE_IMAGE_MAP": "/etc/modelgate/images.json"}, "image_map", "/etc/modelgate/images.json"),
        ({"MODELGATE_INSTANCE_ENV_PASSTHROUGH": '["HTTPS_PROXY"]'}, "instance_env_passthrough", ["HTTPS_PROXY"]),
        ({}, "max_instances_per_endpoint", 20),
        ({}, "max_instances", 40),
        ({}, "max_concurrent_instance_starts", 4),
    ],
)
def test_values_from_the_environment(environ: dict[str, str], field: str, expected: Any) -> None:
    assert getattr(Settings(environ), field) == expected


def test_arguments_win_over_the_environment() -> None:
    s = Settings({"MODELGATE_PORT": "9001", "MODELGATE_HOST": "::1"}, port=9100)
    assert (s.port, s.host) == (9100, "::1")


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"MODELGATE_PORT": "eighty"}, "port\n  Input should be a valid integer"),
        ({"MODELGATE_PORT": "70000"}, "Input should be less than or equal to 65535"),
        ({"MODELGATE_ACCOUNT_ID": "12"}, "String should match pattern"),
        ({"MODELGATE_FAULT_CRASH_AT": "later"}, "Input should be 'traffic-shift' or 'traffic-shifted'"),
        ({"MODELGATE_INVOCATION_TIMEOUT_SECONDS": "0"}, "Input should be greater than 0"),
        ({"MODELGATE_INSTANCE_ENV_PASSTHROUGH": '["HTTPS_PROXY", "A=B"]'}, "not environment variable names: 'A=B'"),
        ({"MODELGATE_MAX_INSTANCES": "0"}, "Input should be greater than or equal to 1"),
        ({"MODELGATE_MAX_CONCURRENT_INSTANCE_STARTS": "0"}, "Input should be greater than or equal to 1"),
        ({"MODELGATE_MODEL_DATA_ROOTS": '["models"]'}, "model data roots must be absolute paths, not models"),
        ({"MODELGATE_EGRESS_ALLOWLIST": '["intranet"]'}, "'intranet' is not a CIDR, an IP address"),
        ({"MODELGATE_MAX_ARTIFACT_EXPANSION_RATIO": "0.5"}, "Input should be greater than or equal to 1"),
        ({"MODELGATE_ARTIFACT_WORKERS": "0"}, "Input should be greater than or equal to 1"),
    ],
)
def test_invalid_values_are_named(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings(environ)


def test_a_list_must_be_json() -> None:
    with pytest.raises(ValueError, match="MODELGATE_AB_FILTER_USER_AGENTS must be a JSON list"):
        Settings({"MODELGATE_AB_FILTER_USER_AGENTS": "curl/8"})


def test_os_environ_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELGATE_REGION", "eu-west-1")
    assert Settings().region == "eu-west-1"
