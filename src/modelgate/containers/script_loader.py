"""Script mode, at load time: find the user's module, install its requirements, import it.

Where the script is looked for, first match wins:

1. ``SAGEMAKER_SUBMIT_DIRECTORY`` when it is a local directory or a local ``.tar.gz``; a path under
   ``/opt/ml/model`` (what the SageMaker SDK writes when it repacks code into the model archive) is
   read under ``SM_MODEL_DIR`` instead. ``s3://`` sources are not fetched by the container.
2. the ``code/`` folder of the model directory.

A ``requirements.txt`` beside the script is pip-installed into a per-content directory
(``$MODELGATE_DEPS_DIR/.deps-<hash>`` or ``<SM_MODEL_DIR>/../.deps-<hash>``) put first on
``sys.path``, when ``MODELGATE_ALLOW_PIP_INSTALL`` is true; otherwise an ``ImportError`` from the
script is reported together with the requirements file that was not installed.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path, PurePosixPath
from types import ModuleType

from modelgate.containers.errors import LoadFailure, describe, one_line
from modelgate.containers.settings import ContainerSettings

log = logging.getLogger(__name__)

SAGEMAKER_MODEL_DIR = PurePosixPath("/opt/ml/model")
PIP_TIMEOUT_SECONDS = 900


def script_filename(program: str) -> str:
    name = program.strip()
    return name if name.endswith(".py") else name + ".py"


def candidate_dirs(settings: ContainerSettings) -> tuple[list[Path], list[str]]:
    """Directories to search, and notes on sources that were skipped (for the failure message)."""
    dirs: list[Path] = []
    notes: list[str] = []
    submit = settings.submit_directory
    if submit:
        if "://" in submit and not submit.startswith("file://"):
            notes.append(f"SAGEMAKER_SUBMIT_DIRECTORY {submit} is not fetched by modelgate containers")
        else:
            local = Path(submit.removeprefix("file://"))
            posix = PurePosixPath(local.as_posix())
            if posix == SAGEMAKER_MODEL_DIR or SAGEMAKER_MODEL_DIR in posix.parents:
                local = settings.model_dir / posix.relative_to(SAGEMAKER_MODEL_DIR)
            if local.is_file() and tarfile.is_tarfile(local):
                dirs.append(_extract(local))
            elif local.is_dir():
                dirs.append(local)
            else:
                notes.append(f"SAGEMAKER_SUBMIT_DIRECTORY {submit} does not exist here")
    dirs.append(settings.model_dir / "code")
    return dirs, notes


def _extract(archive: Path) -> Path:
    target = Path(tempfile.mkdtemp(prefix="modelgate-code-"))
    with tarfile.open(archive) as tar:
        tar.extractall(target, filter="data")
    return target


def locate_script(settings: ContainerSettings) -> Path:
    assert settings.program is not None
    filename = script_filename(settings.program)
    dirs, notes = candidate_dirs(settings)
    for directory in dirs:
        path = directory / filename
        if path.is_file():
            return path
    searched = ", ".join(str(d) for d in dirs)
    extra = f" ({'; '.join(notes)})" if notes else ""
    raise LoadFailure(f"SAGEMAKER_PROGRAM {filename} was not found in {searched}{extra}")


# ------------------------------------------------------------------------------------------ requirements


def deps_target(requirements: Path, settings: ContainerSettings) -> Path:
    digest = hashlib.sha256()
    digest.update(requirements.read_bytes())
    digest.update(f"{sys.version_info[:2]}|{sys.platform}|{sys.prefix}".encode())
    base = settings.deps_dir or settings.model_dir.parent
    return base / f".deps-{digest.hexdigest()[:16]}"


def install_requirements(requirements: Path, settings: ContainerSettings) -> Path:
    """pip-install once per requirements content; returns the directory to put on sys.path."""
    target = deps_target(requirements, settings)
    if (target / ".complete").is_file():
        log.info("Requirements of %s already installed in %s", requirements, target)
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "--no-input",
        "--quiet",
        "--target",
        str(staging),
        "-r",
        str(requirements),
    ]
    log.info("Installing %s into %s", requirements, target)
    try:
        done = subprocess.run(
            command,
            cwd=requirements.parent,
            capture_output=True,
            text=True,
            timeout=PIP_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired:
        shutil.rmtree(staging, ignore_errors=True)
        raise LoadFailure(f"pip install -r {requirements} did not finish in {PIP_TIMEOUT_SECONDS} s") from None
    if done.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        tail = [line for line in (done.stderr or done.stdout).splitlines() if line.strip()][-3:]
        raise LoadFailure(f"pip install -r {requirements} failed (exit {done.returncode}): {one_line(' '.join(tail))}")
    (staging / ".complete").write_text("ok\n")
    try:
        os.replace(staging, target)
    except OSError:  # another instance finished first: use its copy
        shutil.rmtree(staging, ignore_errors=True)
        if not (target / ".complete").is_file():
            raise
    return target


# ------------------------------------------------------------------------------------------------ import


def import_script(path: Path, settings: ContainerSettings) -> ModuleType:
    requirements = path.parent / "requirements.txt"
    installed = False
    if requirements.is_file() and settings.allow_pip_install:
        sys.path.insert(0, str(install_requirements(requirements, settings)))
        installed = True
    sys.path.insert(0, str(path.parent))
    module_name = path.stem
    if module_name in sys.modules:  # e.g. a script named xgboost.py must not replace the library
        module_name = f"modelgate_user_script_{module_name}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise LoadFailure(f"{path} cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except ImportError as exc:
        sys.modules.pop(module_name, None)
        hint = ""
        if requirements.is_file() and not installed:
            hint = (
                f"; {requirements} was not installed (pip installs are disabled: set "
                "MODELGATE_ALLOW_PIP_INSTALL=true on the modelgate server to install it)"
            )
        raise LoadFailure(f"Importing {path.name} failed: {describe(exc)}{hint}") from None
    except (Exception, SystemExit) as exc:  # SyntaxError, errors at the script's top level
        sys.modules.pop(module_name, None)
        raise LoadFailure(f"Importing {path.name} failed: {describe(exc)}") from None
    return module
