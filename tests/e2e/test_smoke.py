from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.e2e.conftest import deploy_echo, model_tar


def test_create_invoke_delete(sm: Any, rt: Any, echo_image: str, tmp_path: Path) -> None:
    tar = model_tar(tmp_path / "model.tar.gz", {"model.txt": "weights-v1"})
    deploy_echo(sm, echo_image, "smoke", [("A", 1.0, 1)], model_data=f"file://{tar}")
    resp = rt.invoke_endpoint(EndpointName="smoke", Body=b"hello", ContentType="text/plain")
    assert resp["Body"].read() == b"A|weights-v1|hello"
    assert resp["InvokedProductionVariant"] == "A"
    sm.delete_endpoint(EndpointName="smoke")
    sm.get_waiter("endpoint_deleted").wait(
        EndpointName="smoke", WaiterConfig={"Delay": 0.5, "MaxAttempts": 60}
    )
