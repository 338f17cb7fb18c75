"""Real XGBoost and scikit-learn models behind endpoints, through the running server."""

from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xgboost as xgb
from botocore.exceptions import ClientError
from sklearn.linear_model import LogisticRegression

from modelgate.demo_models import build_churn_artifacts, make_churn_data
from tests.e2e.conftest import wait_in_service, wait_status

XGB_IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1"
SKLEARN_IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"


def _tar(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _deploy(sm: Any, name: str, image: str, url: str, env: dict[str, str] | None = None, wait: bool = True) -> None:
    sm.create_model(ModelName=name, PrimaryContainer={"Image": image, "ModelDataUrl": url, "Environment": env or {}})
    sm.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[{"VariantName": "AllTraffic", "ModelName": name, "InitialInstanceCount": 1,
                             "InstanceType": "ml.m5.large"}],
    )
    sm.create_endpoint(EndpointName=name, EndpointConfigName=name)
    if wait:
        wait_in_service(sm, name)


@pytest.mark.slow
def test_xgboost_predictions_equal_the_library(sm: Any, rt: Any, tmp_path: Path) -> None:
    artifacts = build_churn_artifacts(tmp_path / "art", seed=3)
    _deploy(sm, "churn", XGB_IMAGE, f"file://{artifacts['churn-v1']}")
    x, _ = make_churn_data(25, seed=11)
    body = "\n".join(",".join(f"{v:.6g}" for v in row) for row in x)
    resp = rt.invoke_endpoint(EndpointName="churn", ContentType="text/csv", Body=body)
    got = [float(line) for line in resp["Body"].read().decode().split()]
    with tarfile.open(artifacts["churn-v1"]) as tar:
        tar.extractall(tmp_path / "unpacked", filter="data")
    booster = xgb.Booster()
    model_file = tmp_path / "unpacked" / "xgboost-model"
    booster.load_model(bytearray(model_file.read_bytes()))  # a buffer: no file-extension guessing
    parsed = np.array([[float(v) for v in line.split(",")] for line in body.split("\n")], dtype=np.float32)
    want = booster.predict(xgb.DMatrix(parsed))
    assert len(got) == 25
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    resp = rt.invoke_endpoint(EndpointName="churn", ContentType="text/csv", Accept="application/json", Body=body)
    scores = [p["score"] for p in __import__("json").loads(resp["Body"].read())["predictions"]]
    np.testing.assert_allclose(scores, want, rtol=1e-6, atol=1e-7)
    with pytest.raises(ClientError) as e:
        rt.invoke_endpoint(EndpointName="churn", ContentType="application/json", Body=b"[1,2]")
    assert e.value.response["Error"]["Code"] == "ModelError"
    assert e.value.response["OriginalStatusCode"] == 415


SCRIPT = """
import os, pickle
def model_fn(model_dir):
    with open(os.path.join(model_dir, "model.pkl"), "rb") as f:
        return pickle.load(f)
def predict_fn(data, model):
    if data.size == 1:
        raise ValueError("one feature is not enough for this model")
    return model.predict_proba(data.reshape(1, -1) if data.ndim == 1 else data)[:, 1]
"""

BROKEN = """
def model_fn(model_dir):
    raise RuntimeError("the weights are corrupt")
"""


@pytest.mark.slow
def test_sklearn_script_mode(sm: Any, rt: Any, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3))
    model = LogisticRegression().fit(x, (x[:, 0] > 0).astype(int))
    url = _tar(tmp_path / "m.tar.gz", {"model.pkl": pickle.dumps(model), "code/inference.py": SCRIPT.encode()})
    env = {"SAGEMAKER_PROGRAM": "inference.py", "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code"}
    _deploy(sm, "skl", SKLEARN_IMAGE, f"file://{url}", env)
    resp = rt.invoke_endpoint(EndpointName="skl", ContentType="text/csv", Accept="text/csv", Body=b"0.5,0.1,-0.2")
    got = float(resp["Body"].read().decode().strip().strip("[]"))
    want = model.predict_proba(np.array([[0.5, 0.1, -0.2]], dtype=np.float32))[0, 1]
    assert abs(got - want) < 1e-5
    with pytest.raises(ClientError) as e:
        rt.invoke_endpoint(EndpointName="skl", ContentType="text/csv", Body=b"0.5")
    err = e.value.response
    assert err["Error"]["Code"] == "ModelError"
    assert "one feature is not enough for this model" in err["OriginalMessage"]

    broken = _tar(tmp_path / "b.tar.gz", {"code/inference.py": BROKEN.encode()})
    _deploy(sm, "broken", SKLEARN_IMAGE, f"file://{broken}", env, wait=False)
    d = wait_status(sm, "broken", {"Failed", "InService"}, timeout=60)
    assert d["EndpointStatus"] == "Failed"
    assert "the weights are corrupt" in d["FailureReason"]
