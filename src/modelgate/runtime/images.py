"""What runs a container ``Image`` here: the operator's image map, not the API caller, decides.

CreateModel accepts any image botocore's pattern accepts (as SageMaker does); the image is resolved
when instances are provisioned, and one that nothing here can run fails the endpoint with a
FailureReason that names it and the setting that maps it.

Rules, first match wins:

1. the operator's map (``MODELGATE_IMAGE_MAP``, loaded once at start by :func:`load_image_map`): each rule
   maps an image pattern (a shell-style glob over the whole image string, ``fnmatch``'s ``*``, ``?`` and
   ``[...]``, where ``*`` also matches ``/``; without wildcards, the exact image) to a built-in runtime
   (``xgboost``, ``sklearn``) or to an allowed local executable, started as ``<path> serve`` (as
   SageMaker runs ``docker run <image> serve``);
2. the built-in images: ``<account>.dkr.ecr.<region>.amazonaws.com/sagemaker-xgboost:<version>``,
   ``sagemaker-xgboost``, ``xgboost`` (optionally ``:<tag>``); ``…/sagemaker-scikit-learn:<version>``,
   ``sagemaker-scikit-learn``, ``sklearn``, ``scikit-learn``;
3. ``command:/absolute/path/to/executable``, only when the operator allows it
   (``MODELGATE_ALLOW_COMMAND_IMAGES=true``): bring your own container without Docker, the executable
   the caller names. Off by default, because it lets whoever can call the API run any program on the
   host as the server's user.

A container must serve the SageMaker contract (``GET /ping``, ``POST /invocations``) on
``$SAGEMAKER_BIND_TO_PORT``; the model directory is in ``$SM_MODEL_DIR``.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import stat
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import modelgate

MAP_SETTING = "MODELGATE_IMAGE_MAP"
COMMAND_SETTING = "MODELGATE_ALLOW_COMMAND_IMAGES"
RUNTIMES = ("xgboost", "sklearn")

_BUILTIN = (
    (
        "xgboost",
        re.compile(r"^(?:[^/]+/)*(?:sagemaker-xgboost|xgboost)(?::[\w.\-]+)?(?:@sha256:[0-9a-f]+)?$"),
    ),
    (
        "sklearn",
        re.compile(r"^(?:[^/]+/)*(?:sagemaker-scikit-learn|scikit-learn|sklearn)(?::[\w.\-]+)?(?:@sha256:[0-9a-f]+)?$"),
    ),
)


class ImageNotRunnable(Exception):
    """Nothing here runs the image; ``reason`` is for a FailureReason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ImageMapError(ValueError):
    """The operator's image map cannot be used; the server refuses to start (exit 2) with this reason."""


@dataclass(frozen=True)
class LaunchSpec:
    kind: str  # "command" or a built-in runtime ("xgboost", "sklearn")
    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)  # contract variables this launch needs


@dataclass(frozen=True)
class ImageRule:
    pattern: str  # a glob over the whole image (exact when it has no wildcard)
    runtime: str | None = None  # a built-in runtime...
    command: str | None = None  # ... or an allowed executable (absolute path)

    def matches(self, image: str) -> bool:
        return fnmatch.fnmatchcase(image, self.pattern)


def package_root() -> str:
    """The directory the running ``modelgate`` package is imported from: the built-in runtimes import the
    same code as the server (a worktree on PYTHONPATH as much as an installed wheel)."""
    return str(Path(modelgate.__file__).resolve().parent.parent)


def builtin_launch(runtime: str) -> LaunchSpec:
    return LaunchSpec(
        runtime,
        (sys.executable, "-m", "modelgate.containers", runtime, "serve"),
        {"PYTHONPATH": package_root()},
    )


@dataclass(frozen=True)
class ImageMap:
    rules: tuple[ImageRule, ...] = ()
    allow_command_images: bool = False

    def resolve(self, image: str) -> LaunchSpec:
        """What runs ``image``; :class:`ImageNotRunnable` with a reason naming the image and the fix."""
        for rule in self.rules:
            if rule.matches(image):
                if rule.runtime is not None:
                    return builtin_launch(rule.runtime)
                assert rule.command is not None
                return LaunchSpec("command", (rule.command, "serve"))
        for kind, rx in _BUILTIN:
            if rx.match(image):
                return builtin_launch(kind)
        if image.startswith("command:"):
            return self._command(image)
        raise ImageNotRunnable(
            f"Image {image!r} is not mapped to anything modelgate can run: the operator can map it to a built-in "
            f"runtime ({', '.join(RUNTIMES)}) or to an allowed local executable in {MAP_SETTING}."
        )

    def _command(self, image: str) -> LaunchSpec:
        if not self.allow_command_images:
            raise ImageNotRunnable(
                f"Image {image!r} cannot be run: command: images are off on this server; the operator can allow "
                f"them with {COMMAND_SETTING}=true, or map the image to an allowed executable or a built-in "
                f"runtime in {MAP_SETTING}."
            )
        path = image[len("command:") :]
        if path.startswith("//"):
            path = path[2:]
        if not os.path.isabs(path):
            raise ImageNotRunnable(f"Image {image!r} cannot be run: a command: image needs an absolute path.")
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            raise ImageNotRunnable(f"Image {image!r} cannot be run: {path} is not an executable file.")
        return LaunchSpec("command", (path, "serve"))


def load_image_map(value: str | None, allow_command_images: bool) -> ImageMap:
    """The operator's map from ``MODELGATE_IMAGE_MAP``: inline JSON (a value starting with ``[`` or ``{``)
    or the path of a JSON file. The JSON is a list of rules (or ``{"rules": [...]}``), each
    ``{"image": "<pattern>", "runtime": "xgboost"|"sklearn"}`` or ``{"image": "<pattern>", "command":
    "/absolute/path"}``; a command must be an executable regular file now. ImageMapError otherwise."""
    if value is None or not value.strip():
        return ImageMap((), allow_command_images)
    text = value.strip()
    if text[0] in "[{":
        where = f"{MAP_SETTING} (inline JSON)"
    else:
        where = f"{MAP_SETTING} file {text}"
        try:
            text = Path(text).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ImageMapError(f"{where} cannot be read: {exc}") from None
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise ImageMapError(f"{where} is not valid JSON: {exc}") from None
    if isinstance(doc, dict) and set(doc) == {"rules"}:
        doc = doc["rules"]
    if not isinstance(doc, list):
        raise ImageMapError(f'{where} must be a JSON list of rules (or {{"rules": [...]}})')
    return ImageMap(tuple(_rule(where, i, r) for i, r in enumerate(doc, 1)), allow_command_images)


def _rule(where: str, n: int, raw: Any) -> ImageRule:
    def bad(why: str) -> ImageMapError:
        return ImageMapError(f"{where}, rule {n}: {why}")

    if not isinstance(raw, dict):
        raise bad('a rule is an object {"image": ..., "runtime": ...} or {"image": ..., "command": ...}')
    unknown = sorted(set(raw) - {"image", "runtime", "command"})
    if unknown:
        raise bad(f"unknown key(s) {', '.join(unknown)}; a rule has image and one of runtime or command")
    pattern = raw.get("image")
    if not isinstance(pattern, str) or not pattern.strip():
        raise bad("image must be a non-empty string (an image, or a glob with * ? [...])")
    if ("runtime" in raw) == ("command" in raw):
        raise bad("give exactly one of runtime or command")
    if "runtime" in raw:
        if raw["runtime"] not in RUNTIMES:
            raise bad(f"runtime must be one of {', '.join(RUNTIMES)}, not {raw['runtime']!r}")
        return ImageRule(pattern, runtime=raw["runtime"])
    command = raw["command"]
    if not isinstance(command, str) or not os.path.isabs(command):
        raise bad(f"command must be an absolute path, not {command!r}")
    try:
        st = os.stat(command)
    except OSError as exc:
        raise bad(f"command {command} cannot be used: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode) or not os.access(command, os.X_OK):
        raise bad(f"command {command} is not an executable regular file")
    return ImageRule(pattern, command=command)
