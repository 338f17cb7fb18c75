"""Model data that never ends, blocks or explodes, and the disk it takes (review D4 and D8), through a real
server with boto3."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
from botocore.exceptions import ClientError

from tests.e2e.conftest import ServerProcess, deploy_echo, gzip_bomb, model_tar, wait_in_service, wait_status


def _create(sm: Any, image: str, name: str, url: str, timeout: int | None = None) -> None:
    sm.create_model(ModelName=name, PrimaryContainer={"Image": image, "ModelDataUrl": url})
    pv: dict[str, Any] = {"VariantName": "V", "ModelName": name, "InitialInstanceCount": 1,
                          "InstanceType": "ml.m5.large"}  # fmt: skip
    if timeout is not None:
        pv["ModelDataDownloadTimeoutInSeconds"] = timeout
    sm.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[pv])


def _delete_all(sm: Any, name: str) -> None:
    sm.delete_endpoint(EndpointName=name)
    sm.delete_endpoint_config(EndpointConfigName=name)
    sm.delete_model(ModelName=name)


def _bytes_under(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def test_d4_dev_zero_and_fifo_model_data_fail_fast_and_leave_the_server_idle(
    server_factory: Any, echo_image: str, tmp_path: Path
) -> None:
    """The review's six /dev/zero models (here through symbolic links that appear after CreateModel, so that they
    reach the fetch) and a FIFO: each fails at once with a reason, a normal endpoint still becomes InService at
    once, the server's CPU goes back to idle, and SIGTERM stops it within seconds."""
    server = server_factory()
    sm = server.client("sagemaker")
    hostile = [f"z{i}" for i in range(6)] + ["fifo"]
    for name in hostile:
        _create(sm, echo_image, name, f"file://{tmp_path / name}.tar.gz", timeout=60)
    for i in range(6):  # after CreateModel checked the path, before the endpoint fetches it
        (tmp_path / f"z{i}.tar.gz").symlink_to("/dev/zero")
    os.mkfifo(tmp_path / "fifo.tar.gz")
    for name in hostile:
        sm.create_endpoint(EndpointName=name, EndpointConfigName=name)
    good = model_tar(tmp_path / "good.tar.gz", {"model.txt": "fine"})
    started = time.monotonic()
    deploy_echo(sm, echo_image, "normal", [("A", 1.0, 1)], model_data=f"file://{good}", wait=False)
    d = wait_status(sm, "normal", {"InService", "Failed"}, timeout=20)
    assert d["EndpointStatus"] == "InService", d.get("FailureReason")
    assert time.monotonic() - started < 15
    for name in hostile:
        d = wait_status(sm, name, {"InService", "Failed"}, timeout=10)
        assert d["EndpointStatus"] == "Failed"
        reason = d["FailureReason"]
        if name == "fifo":
            assert f"Model data file://{tmp_path}/fifo.tar.gz is not a regular file or a directory." in reason
        else:
            assert f"Model data file://{tmp_path}/{name}.tar.gz is in /dev, /proc or /sys" in reason

    assert server.proc is not None
    proc = psutil.Process(server.proc.pid)
    proc.cpu_percent(None)
    time.sleep(3)
    assert proc.cpu_percent(None) < 50, "the server kept burning CPU after the endpoints failed"

    stop = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    server.proc.wait(15)
    assert time.monotonic() - stop < 8, "SIGTERM did not stop the server promptly"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("file:///dev/zero", "Model data file:///dev/zero is in /dev, /proc or /sys; it must be a regular file or a "
         "directory."),
        ("/dev/urandom", "Model data /dev/urandom is in /dev, /proc or /sys"),
        ("file:///proc/self/environ", "is in /dev, /proc or /sys"),
        ("file:///etc", "Model data file:///etc is outside the directories model data may be read from: the data "
         "directory and those listed in MODELGATE_MODEL_DATA_ROOTS."),
        ("/root", "is outside the directories model data may be read from"),
        ("file:///etc/shadow", "is outside the directories model data may be read from"),
    ],
)  # fmt: skip
def test_d4_devices_and_paths_outside_the_roots_are_refused_at_create_model(sm: Any, echo_image: str, url: str,
                                                                           message: str) -> None:  # fmt: skip
    with pytest.raises(ClientError) as err:
        sm.create_model(ModelName="m", PrimaryContainer={"Image": echo_image, "ModelDataUrl": url})
    assert err.value.response["Error"]["Code"] == "ValidationException"
    assert message in err.value.response["Error"]["Message"]
    assert sm.list_models()["Models"] == []


def test_d8_a_decompression_bomb_is_refused_before_it_is_written(
    server: ServerProcess, sm: Any, echo_image: str, tmp_path: Path
) -> None:
    """1 GiB of zeros in about 1 MB of gzip: refused at its first header, with the limit's setting named; the
    server writes (almost) nothing and leaves nothing in the cache."""
    bomb = gzip_bomb(tmp_path / "bomb.tar.gz", 1 << 30)
    assert bomb.stat().st_size < 1_200_000
    assert server.proc is not None
    proc = psutil.Process(server.proc.pid)
    written = proc.io_counters().write_chars
    deploy_echo(sm, echo_image, "bomb", [("V", 1.0, 1)], model_data=f"file://{bomb}", wait=False)
    d = wait_status(sm, "bomb", {"InService", "Failed"}, timeout=60)
    assert d["EndpointStatus"] == "Failed"
    assert "could not be unpacked: the archive expands to more than 100 times its" in d["FailureReason"]
    assert "(MODELGATE_MAX_ARTIFACT_EXPANSION_RATIO)" in d["FailureReason"]
    assert proc.io_counters().write_chars - written < 16 << 20
    models = server.data_dir / "artifacts" / "models"
    assert [p.name for p in models.iterdir() if p.name != "empty"] == []


def test_d8_the_cache_has_a_quota_and_deletes_give_the_space_back(
    server_factory: Any, echo_image: str, tmp_path: Path
) -> None:
    """Two 2 MB models under a 3 MB quota: the second is refused (the setting named) and leaves nothing; once the
    first's endpoint, config and model are deleted, the cache is back to its size before and the second fits."""
    server = server_factory(MODELGATE_MAX_ARTIFACT_CACHE_BYTES=str(3_000_000))
    sm, rt = server.client("sagemaker"), server.client("sagemaker-runtime")
    cache = server.data_dir / "artifacts"
    before = _bytes_under(cache)
    a = model_tar(tmp_path / "a.tar.gz", {"model.txt": "a", "w.bin": os.urandom(2_000_000).hex()[:2_000_000]})
    b = model_tar(tmp_path / "b.tar.gz", {"model.txt": "b", "w.bin": os.urandom(2_000_000).hex()[:2_000_000]})
    _create(sm, echo_image, "a", f"file://{a}")
    sm.create_endpoint(EndpointName="a", EndpointConfigName="a")
    wait_in_service(sm, "a")
    assert _bytes_under(cache) - before > 2_000_000
    _create(sm, echo_image, "b", f"file://{b}")
    sm.create_endpoint(EndpointName="b", EndpointConfigName="b")
    d = wait_status(sm, "b", {"InService", "Failed"})
    assert d["EndpointStatus"] == "Failed"
    assert (
        "the artifact cache would hold more than 3000000 bytes (MODELGATE_MAX_ARTIFACT_CACHE_BYTES)"
        in (d["FailureReason"])
    )
    assert len([p for p in (cache / "models").iterdir() if p.name != "empty"]) == 1  # a's, nothing of b's

    _delete_all(sm, "a")
    deadline = time.monotonic() + 15
    while _bytes_under(cache) > before + 4096 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _bytes_under(cache) <= before + 4096, sorted(str(p) for p in cache.rglob("*"))
    sm.delete_endpoint(EndpointName="b")
    wait_status_gone(sm, "b")
    sm.create_endpoint(EndpointName="b", EndpointConfigName="b")
    wait_in_service(sm, "b")
    assert rt.invoke_endpoint(EndpointName="b", Body=b"q")["Body"].read() == b"echo|b|q"


def wait_status_gone(sm: Any, name: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            sm.describe_endpoint(EndpointName=name)
        except ClientError:
            return
        time.sleep(0.2)
    raise AssertionError(f"endpoint {name} was not deleted")


def test_d8_an_artifact_an_instance_uses_is_kept(server: ServerProcess, sm: Any, rt: Any, echo_image: str,
                                                 tmp_path: Path) -> None:  # fmt: skip
    """The file behind a URL changes; a second model of the same URL gets the new data; deleting the first model
    collects nothing its running endpoint still reads from."""
    tar = model_tar(tmp_path / "m.tar.gz", {"model.txt": "old"})
    _create(sm, echo_image, "one", f"file://{tar}")
    sm.create_endpoint(EndpointName="one", EndpointConfigName="one")
    wait_in_service(sm, "one")
    model_tar(tar, {"model.txt": "new"})
    _create(sm, echo_image, "two", f"file://{tar}")
    sm.create_endpoint(EndpointName="two", EndpointConfigName="two")
    wait_in_service(sm, "two")
    sm.delete_model(ModelName="one")
    sm.delete_model(ModelName="two")  # both endpoints keep their snapshots; "one" uses the old digest
    time.sleep(0.5)
    assert rt.invoke_endpoint(EndpointName="one", Body=b"q")["Body"].read() == b"echo|old|q"
    assert rt.invoke_endpoint(EndpointName="two", Body=b"q")["Body"].read() == b"echo|new|q"
    models = server.data_dir / "artifacts" / "models"
    assert len([p for p in models.iterdir() if p.name != "empty"]) == 2
    sm.delete_endpoint(EndpointName="one")
    wait_status_gone(sm, "one")
    deadline = time.monotonic() + 10
    while len([p for p in models.iterdir() if p.name != "empty"]) > 1 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len([p for p in models.iterdir() if p.name != "empty"]) == 1
    assert rt.invoke_endpoint(EndpointName="two", Body=b"q")["Body"].read() == b"echo|new|q"


def test_d8_a_restart_collects_what_nothing_names(server_factory: Any, tmp_path: Path) -> None:
    """What a killed server left half unpacked, and directories no stored model names, go at the next start."""
    server = server_factory()
    server.stop()
    models = server.data_dir / "artifacts" / "models"
    for leftover in (".unpack-killed", "0" * 64):
        (models / leftover).mkdir(parents=True, exist_ok=True)
        (models / leftover / "w.bin").write_bytes(bytes(1_000_000))
    server.start()
    deadline = time.monotonic() + 10
    while _bytes_under(server.data_dir / "artifacts") > 4096 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _bytes_under(server.data_dir / "artifacts") <= 4096
