"""requirements.txt beside a script: pip-installed per model when allowed."""

from __future__ import annotations

import base64
import hashlib
import zipfile
from pathlib import Path

from tests.containers.conftest import ContainerFactory

SCRIPT = """
import mgdemo_dep

def model_fn(model_dir):
    return mgdemo_dep.VALUE

def predict_fn(data, model):
    return [model + 1]
"""


def handmade_wheel(directory: Path) -> Path:
    """A pure-Python wheel built by hand (no build backend, no index needed)."""
    files = {
        "mgdemo_dep/__init__.py": b"VALUE = 41\n",
        "mgdemo_dep-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: mgdemo-dep\nVersion: 1.0\n",
        "mgdemo_dep-1.0.dist-info/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: handmade\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record = []
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    record.append("mgdemo_dep-1.0.dist-info/RECORD,,")
    path = directory / "mgdemo_dep-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as whl:
        for name, data in files.items():
            whl.writestr(name, data)
        whl.writestr("mgdemo_dep-1.0.dist-info/RECORD", "\n".join(record) + "\n")
    return path


def test_requirements_are_installed_when_allowed(tmp_path: Path, containers: ContainerFactory) -> None:
    wheel = handmade_wheel(tmp_path)
    model_dir = tmp_path / "model"
    (model_dir / "code").mkdir(parents=True)
    (model_dir / "code" / "inference.py").write_text(SCRIPT)
    (model_dir / "code" / "requirements.txt").write_text(f"{wheel}\n")
    c = containers.start("sklearn", model_dir, SAGEMAKER_PROGRAM="inference.py", MODELGATE_ALLOW_PIP_INSTALL="true")
    r = c.invoke("[1]", content_type="application/json")
    assert (r.status, r.body) == (200, b"[42]")
    (deps,) = tmp_path.glob(".deps-*")
    assert (deps / ".complete").is_file() and (deps / "mgdemo_dep" / "__init__.py").is_file()


def test_failed_install_is_a_failure_line(tmp_path: Path, containers: ContainerFactory) -> None:
    model_dir = tmp_path / "model"
    (model_dir / "code").mkdir(parents=True)
    (model_dir / "code" / "inference.py").write_text(SCRIPT)
    (model_dir / "code" / "requirements.txt").write_text(f"{tmp_path / 'no-such-file.whl'}\n")
    c = containers.spawn("sklearn", model_dir, SAGEMAKER_PROGRAM="inference.py", MODELGATE_ALLOW_PIP_INSTALL="true")
    assert c.wait_exit() == 1
    (line,) = c.failure_lines()
    assert f"pip install -r {model_dir / 'code' / 'requirements.txt'} failed" in line
