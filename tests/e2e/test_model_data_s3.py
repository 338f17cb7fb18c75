"""Model data from s3:// through boto3's S3 client, with moto's server standing in for S3."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from tests.e2e.conftest import deploy_echo, free_port, model_tar, wait_status


@pytest.fixture
def s3_url() -> Iterator[str]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def test_s3_model_data(server_factory: Any, echo_image: str, tmp_path: Path, s3_url: str) -> None:
    s3 = boto3.client("s3", endpoint_url=s3_url, region_name="us-east-1",
                      aws_access_key_id="test", aws_secret_access_key="test")
    s3.create_bucket(Bucket="models")
    tar = model_tar(tmp_path / "model.tar.gz", {"model.txt": "from-s3"})
    s3.upload_file(str(tar), "models", "churn/model.tar.gz")
    server = server_factory(
        AWS_ENDPOINT_URL_S3=s3_url, AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test",
        AWS_DEFAULT_REGION="us-east-1",
    )
    sm, rt = server.client("sagemaker"), server.client("sagemaker-runtime")
    deploy_echo(sm, echo_image, "s3ep", [("A", 1.0, 1)], model_data="s3://models/churn/model.tar.gz")
    assert rt.invoke_endpoint(EndpointName="s3ep", Body=b"q")["Body"].read() == b"A|from-s3|q"
    deploy_echo(sm, echo_image, "s3missing", [("A", 1.0, 1)], model_data="s3://models/nope.tar.gz", wait=False)
    d = wait_status(sm, "s3missing", {"Failed", "InService"})
    assert d["EndpointStatus"] == "Failed"
    assert "could not be downloaded" in d["FailureReason"] and "s3://models/nope.tar.gz" in d["FailureReason"]
    # boto3 runs in a child process (modelgate.artifacts.s3): its error comes back with its type and text
    assert "could not be downloaded: ClientError: An error occurred (404)" in d["FailureReason"], d["FailureReason"]
