from __future__ import annotations

import io
import sys
import tarfile
from pathlib import Path

import pytest

from modelgate.artifacts.unpack import ArchiveError, Limits, Unpacked, extract
from modelgate.artifacts.workers import Budget
from modelgate.runtime.images import ImageMap, ImageNotRunnable, package_root
from modelgate.runtime.instance_types import shape_of


@pytest.mark.parametrize(
    ("image", "kind"),
    [
        ("683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1", "xgboost"),
        ("xgboost", "xgboost"),
        ("xgboost:latest", "xgboost"),
        ("sagemaker-scikit-learn:1.2-1-cpu-py3", "sklearn"),
        ("683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1", "sklearn"),
        ("sklearn", "sklearn"),
    ],
)
def test_builtin_images(image: str, kind: str) -> None:
    spec = ImageMap().resolve(image)
    assert spec.kind == kind
    assert spec.argv == (sys.executable, "-m", "modelgate.containers", kind, "serve")
    assert spec.env == {"PYTHONPATH": package_root()}


@pytest.mark.parametrize(
    ("image", "message"),
    [
        ("nginx:latest", "is not mapped to anything modelgate can run"),
        ("123.dkr.ecr.us-east-1.amazonaws.com/my-own-container:1", "is not mapped to anything modelgate can run"),
        ("command:relative/path", "needs an absolute path"),
        ("command:/definitely/not/here", "is not an executable file"),
    ],
)
def test_unrunnable_images(image: str, message: str) -> None:
    with pytest.raises(ImageNotRunnable, match=message):
        ImageMap(allow_command_images=True).resolve(image)


def test_command_image(tmp_path: Path) -> None:
    exe = tmp_path / "serve-me"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    assert ImageMap(allow_command_images=True).resolve(f"command:{exe}").argv == (str(exe), "serve")


@pytest.mark.parametrize(
    ("itype", "vcpus", "gib"),
    [
        ("ml.t2.medium", 2, 4),
        ("ml.m5.large", 2, 8),
        ("ml.m5.4xlarge", 16, 64),
        ("ml.c5.xlarge", 4, 8),
        ("ml.r5.2xlarge", 8, 64),
    ],
)
def test_instance_shapes(itype: str, vcpus: int, gib: int) -> None:
    shape = shape_of(itype)
    assert (shape.vcpus, shape.memory_bytes) == (vcpus, gib * 2**30)
    assert 1 <= shape.workers <= vcpus


def _tar(path: Path, members: list[tarfile.TarInfo], data: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for m in members:
            payload = data.get(m.name)
            tar.addfile(m, io.BytesIO(payload) if payload is not None else None)
    return path


def _file(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    return info


def unpack_tar(archive: Path, out: Path, max_bytes: int) -> Unpacked:
    """Unpack into ``out`` (made here); the cache's staging directory and rename are tested in test_artifacts.py."""
    out.mkdir()
    with open(archive, "rb") as f:
        return extract(f, archive.stat().st_size, out, Limits(max_bytes), Budget.lasting(30))


def test_unpack_ok(tmp_path: Path) -> None:
    archive = _tar(tmp_path / "a.tar.gz", [_file("code/inference.py", 2)], {"code/inference.py": b"ok"})
    unpack_tar(archive, tmp_path / "out", 1000)
    assert (tmp_path / "out" / "code" / "inference.py").read_bytes() == b"ok"


def _link(name: str, target: str, kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ([_file("../escape", 1)], "unsafe entry"),
        ([_link("evil", "/etc/passwd", tarfile.SYMTYPE)], "unsafe entry"),
        ([_link("evil", "../../outside", tarfile.SYMTYPE)], "unsafe entry"),
        ([_file("big", 2000)], "unpacks to more than 1000 bytes"),
    ],
)
def test_unpack_refuses(tmp_path: Path, members: list[tarfile.TarInfo], message: str) -> None:
    data = {m.name: b"x" * m.size for m in members if m.isfile()}
    archive = _tar(tmp_path / "a.tar.gz", members, data)
    with pytest.raises(ArchiveError, match=message):
        unpack_tar(archive, tmp_path / "out", 1000)
    assert not (tmp_path.parent / "outside").exists() and not (tmp_path.parent / "escape").exists()


def test_unpack_keeps_absolute_names_inside(tmp_path: Path) -> None:
    archive = _tar(tmp_path / "a.tar.gz", [_file("/abs", 1)], {"/abs": b"x"})
    unpack_tar(archive, tmp_path / "out", 1000)
    assert (tmp_path / "out" / "abs").read_bytes() == b"x"


def test_unpack_not_a_tar(tmp_path: Path) -> None:
    bad = tmp_path / "x.tar.gz"
    bad.write_bytes(b"nope")
    with pytest.raises(ArchiveError, match=r"not a valid tar\.gz archive"):
        unpack_tar(bad, tmp_path / "out", 1000)
