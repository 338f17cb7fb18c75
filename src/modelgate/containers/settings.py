"""The container's settings, read once from the environment the gateway (or SageMaker) gives it.

The variable names are SageMaker's, not ``MODELGATE_``-prefixed ones, because they come from the
model's ``ContainerDefinition.Environment`` unchanged; the two ``MODELGATE_`` variables are set by
the gateway.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from modelgate.containers.errors import LoadFailure

DEFAULT_MAX_CONTENT_LENGTH = 6 * 1024 * 1024  # 6291456, the containers' MAX_CONTENT_LENGTH default
MAX_CONTENT_LENGTH_CAP = 20 * 1024 * 1024  # the XGBoost container caps MAX_CONTENT_LENGTH here


@dataclass(frozen=True, slots=True)
class ContainerSettings:
    port: int
    model_dir: Path
    program: str | None  # SAGEMAKER_PROGRAM: script mode when set
    submit_directory: str | None  # SAGEMAKER_SUBMIT_DIRECTORY, as given
    default_accept: str | None  # SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT; each mode has its own default
    inference_output: str | None  # SAGEMAKER_INFERENCE_OUTPUT (selectable output keys), as given
    ensemble: bool  # SAGEMAKER_INFERENCE_ENSEMBLE == "true" (the default)
    batch: bool  # SAGEMAKER_BATCH set: batch transform output layout
    workers: int  # SAGEMAKER_MODEL_SERVER_WORKERS: predictions that may run at once
    max_content_length: int
    allow_pip_install: bool  # MODELGATE_ALLOW_PIP_INSTALL
    deps_dir: Path | None  # MODELGATE_DEPS_DIR: where requirements are installed, if set
    front_end: str  # MODELGATE_CONTAINER_HTTP: "httptools" (default) or "uvicorn"

    @classmethod
    def from_environ(cls, env: Mapping[str, str] | None = None) -> ContainerSettings:
        e = os.environ if env is None else env
        model_dir = e.get("SM_MODEL_DIR") or e.get("MODELGATE_MODEL_DIR") or "/opt/ml/model"
        deps = e.get("MODELGATE_DEPS_DIR")
        return cls(
            port=_int(e, "SAGEMAKER_BIND_TO_PORT", 8080, low=0, high=65535),
            model_dir=Path(model_dir),
            program=e.get("SAGEMAKER_PROGRAM") or None,
            submit_directory=e.get("SAGEMAKER_SUBMIT_DIRECTORY") or None,
            default_accept=e.get("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT") or None,
            inference_output=e.get("SAGEMAKER_INFERENCE_OUTPUT"),
            ensemble=e.get("SAGEMAKER_INFERENCE_ENSEMBLE", "true").strip().lower() == "true",
            batch=bool(e.get("SAGEMAKER_BATCH")),
            workers=_int(e, "SAGEMAKER_MODEL_SERVER_WORKERS", 1, low=1, high=1024),
            max_content_length=min(
                _int(e, "MAX_CONTENT_LENGTH", DEFAULT_MAX_CONTENT_LENGTH, low=1, high=2**40),
                MAX_CONTENT_LENGTH_CAP,
            ),
            allow_pip_install=e.get("MODELGATE_ALLOW_PIP_INSTALL", "false").strip().lower() in ("1", "true", "yes"),
            deps_dir=Path(deps) if deps else None,
            front_end=(e.get("MODELGATE_CONTAINER_HTTP") or "httptools").strip().lower(),
        )


def _int(env: Mapping[str, str], name: str, default: int, *, low: int, high: int) -> int:
    raw = env.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise LoadFailure(f"{name}={raw!r} is not an integer") from None
    if not low <= value <= high:
        raise LoadFailure(f"{name}={value} is out of range [{low}, {high}]")
    return value
