"""Script mode of both images, black-box: user scripts in the model's ``code/`` folder."""

from __future__ import annotations

import io
import json
import pickle
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import xgboost as xgb
from sklearn.linear_model import LogisticRegression

from tests.containers.conftest import Artifacts, Container, ContainerFactory, csv_rows

ALL_FOUR = """
import json, os
import numpy as np
import xgboost as xgb

def model_fn(model_dir):
    booster = xgb.Booster()
    booster.load_model(os.path.join(model_dir, "model.ubj"))
    return booster

def input_fn(request_body, content_type, context):
    assert isinstance(request_body, str), type(request_body)
    assert content_type == "application/json", content_type
    return xgb.DMatrix(np.asarray(json.loads(request_body)["instances"], dtype=np.float32))

def predict_fn(data, model):
    return model.predict(data)

def output_fn(prediction, accept, context):
    if context.custom_attributes:
        context.response_custom_attributes = "seen=" + context.custom_attributes
    return json.dumps({"scores": prediction.tolist(), "accept": accept}), "application/vnd.scores+json"
"""

ONLY_MODEL_FN = """
import os, pickle

def model_fn(model_dir):
    with open(os.path.join(model_dir, "model.pkl"), "rb") as f:
        return pickle.load(f)
"""

TRANSFORM = """
import json, os, pickle
import numpy as np

def model_fn(model_dir):
    with open(os.path.join(model_dir, "model.pkl"), "rb") as f:
        return pickle.load(f)

def transform_fn(model, request_body, content_type, accept):
    rows = [[float(v) for v in line.split(",")] for line in request_body.decode().strip().splitlines()]
    proba = model.predict_proba(np.asarray(rows))[:, 1]
    return json.dumps({"proba": proba.tolist(), "content_type": content_type, "accept": accept}), "application/x-proba"
"""

RAISES = """
def model_fn(model_dir):
    return "model"

def predict_fn(data, model):
    raise ValueError("feature 'tenure' must be positive")
"""

XGB_DEFAULTS = """
import os
import xgboost as xgb

def model_fn(model_dir):
    booster = xgb.Booster()
    booster.load_model(os.path.join(model_dir, "model.ubj"))
    return booster
"""


def write_model(root: Path, name: str, script: str, files: dict[str, bytes], code_dir: str = "code") -> Path:
    model_dir = root / name
    (model_dir / code_dir).mkdir(parents=True)
    (model_dir / code_dir / "inference.py").write_text(textwrap.dedent(script))
    for filename, data in files.items():
        (model_dir / filename).write_bytes(data)
    return model_dir


def booster_bytes(booster: xgb.Booster) -> bytes:
    return bytes(booster.save_raw("ubj"))


def shadowing_model(root: Path) -> Path:
    """A script named like a module the container itself uses (json)."""
    model_dir = root / "shadowing"
    (model_dir / "code").mkdir(parents=True)
    (model_dir / "code" / "json.py").write_text(
        "def model_fn(model_dir):\n    return 7\n\ndef predict_fn(data, model):\n    return [model, len(data)]\n"
    )
    return model_dir


@dataclass
class Scripts:
    all_four: Container
    only_model_fn: Container
    transform: Container
    raises: Container
    xgb_defaults: Container
    shadowing: Container
    sklearn_model: LogisticRegression
    x: np.ndarray


@pytest.fixture(scope="module")
def scripts(artifacts: Artifacts, module_containers: ContainerFactory) -> Scripts:
    root = artifacts.root / "scripts"
    x = artifacts.x_small
    y = (x[:, 0] > 0).astype(int)
    clf = LogisticRegression().fit(x, y)
    churn = booster_bytes(artifacts.churn_v1)
    program = {"SAGEMAKER_PROGRAM": "inference.py"}
    specs = [
        (
            "xgboost",
            write_model(root, "all-four", ALL_FOUR, {"model.ubj": churn}),
            {**program, "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code"},
        ),
        ("sklearn", write_model(root, "only-model-fn", ONLY_MODEL_FN, {"model.pkl": pickle.dumps(clf)}), program),
        ("sklearn", write_model(root, "transform", TRANSFORM, {"model.pkl": pickle.dumps(clf)}), program),
        ("sklearn", write_model(root, "raises", RAISES, {}), {"SAGEMAKER_PROGRAM": "inference"}),
        ("xgboost", write_model(root, "xgb-defaults", XGB_DEFAULTS, {"model.ubj": churn}), program),
        ("sklearn", shadowing_model(root), {"SAGEMAKER_PROGRAM": "json.py"}),
    ]
    all_four, only_model_fn, transform, raises, xgb_defaults, shadowing = module_containers.start_many(specs)
    return Scripts(all_four, only_model_fn, transform, raises, xgb_defaults, shadowing, sklearn_model=clf, x=x)


def test_all_four_functions_and_custom_attributes(scripts: Scripts, artifacts: Artifacts) -> None:
    x = artifacts.x_test[:3]
    body = json.dumps({"instances": x.tolist()})
    r = scripts.all_four.invoke(
        body, content_type="application/json", **{"X-Amzn-SageMaker-Custom-Attributes": "trace-id=42"}
    )
    assert r.status == 200, r.text
    assert r.headers["content-type"] == "application/vnd.scores+json"
    assert r.headers["x-amzn-sagemaker-custom-attributes"] == "seen=trace-id=42"
    answer = json.loads(r.body)
    assert answer["accept"] == "application/json"  # Accept absent: application/json
    assert answer["scores"] == artifacts.churn_v1.predict(xgb.DMatrix(x)).tolist()
    r = scripts.all_four.invoke(body, content_type="application/json", accept="text/csv")
    assert json.loads(r.body)["accept"] == "text/csv"
    assert "x-amzn-sagemaker-custom-attributes" not in r.headers  # only when the script sets it


def test_sklearn_defaults_json_csv_npy(scripts: Scripts) -> None:
    x = scripts.x[:4]
    want = scripts.sklearn_model.predict(x.astype(np.float32)).tolist()
    r = scripts.only_model_fn.invoke(json.dumps(x.tolist()), content_type="application/json")
    assert (r.status, r.headers["content-type"]) == (200, "application/json")
    assert json.loads(r.body) == want
    r = scripts.only_model_fn.invoke(csv_rows(x), content_type="text/csv", accept="text/csv")
    assert (r.status, r.headers["content-type"]) == (200, "text/csv")
    assert r.text.split() == [str(v) for v in want]
    buf = io.BytesIO()
    np.save(buf, x)
    r = scripts.only_model_fn.invoke(buf.getvalue(), content_type="application/x-npy", accept="application/x-npy")
    assert r.status == 200
    assert np.load(io.BytesIO(r.body)).tolist() == want


def test_sklearn_default_errors_are_500_with_the_message(scripts: Scripts) -> None:
    r = scripts.only_model_fn.invoke("1,2", content_type="application/x-yaml")
    assert (r.status, r.text) == (
        500,
        "UnsupportedFormatError: Content type application/x-yaml is not supported by this framework.",
    )
    r = scripts.only_model_fn.invoke(
        json.dumps(scripts.x[:2].tolist()), content_type="application/json", accept="application/xml"
    )
    assert r.status == 500 and r.text.startswith("UnsupportedFormatError: Content type application/xml")
    # As in the container: one CSV row is squeezed to 1-D, which scikit-learn refuses.
    r = scripts.only_model_fn.invoke(csv_rows(scripts.x[:1]), content_type="text/csv")
    assert r.status == 500 and r.text.startswith("ValueError: Expected 2D array, got 1D array instead")


def test_transform_fn(scripts: Scripts) -> None:
    x = scripts.x[:3]
    r = scripts.transform.invoke(csv_rows(x), content_type="text/plain", accept="application/x-proba")
    assert (r.status, r.headers["content-type"]) == (200, "application/x-proba")
    answer = json.loads(r.body)
    assert answer["content_type"] == "text/plain" and answer["accept"] == "application/x-proba"
    np.testing.assert_allclose(
        answer["proba"], scripts.sklearn_model.predict_proba(x.astype(np.float64))[:, 1], rtol=1e-12
    )


def test_exception_in_predict_fn_is_500_with_its_message(scripts: Scripts) -> None:
    r = scripts.raises.invoke("[[1, 2]]", content_type="application/json")
    assert r.status == 500
    assert r.text == "ValueError: feature 'tenure' must be positive"
    assert "Traceback" not in r.text
    assert scripts.raises.request("GET", "/ping").status == 200  # still serving


def test_a_script_named_like_a_library_does_not_replace_it(scripts: Scripts) -> None:
    r = scripts.shadowing.invoke("[[1, 2], [3, 4]]", content_type="application/json")
    assert (r.status, r.body) == (200, b"[7, 2]")


def test_xgboost_script_defaults(scripts: Scripts, artifacts: Artifacts) -> None:
    x = artifacts.x_test[:3]
    r = scripts.xgb_defaults.invoke(csv_rows(x), content_type="text/csv; charset=utf-8")
    assert (r.status, r.headers["content-type"]) == (200, "application/json")
    want = artifacts.churn_v1.predict(xgb.DMatrix(x))
    assert json.loads(r.body) == want.tolist()
    r = scripts.xgb_defaults.invoke(csv_rows(x), content_type="text/csv", accept="text/csv")
    assert r.text.split() == [str(v) for v in want]  # np.savetxt with %s: one row per line
    r = scripts.xgb_defaults.invoke(csv_rows(x) + "\n", content_type="text/csv")  # not stripped, as there
    assert r.status == 500
    r = scripts.xgb_defaults.invoke("[1]", content_type="application/json")
    assert (r.status, r.text) == (
        500,
        "UnsupportedFormatError: Content type application/json is not supported by this framework.",
    )


# ------------------------------------------------------------------------------------------ load failures

FAILING = {
    "model-fn-raises": (
        "def model_fn(model_dir):\n    raise RuntimeError('cannot open weights.bin')\n",
        "model_fn in inference.py failed: RuntimeError: cannot open weights.bin",
    ),
    "no-model-fn": ("def predict_fn(data, model):\n    return data\n", "inference.py defines no model_fn"),
    "transform-and-input": (
        "def model_fn(d):\n    return 1\n"
        "def transform_fn(m, b, c, a):\n    return b\n"
        "def input_fn(b, c):\n    return b\n",
        "UserError: Cannot use transform_fn implementation with input_fn, predict_fn, and/or output_fn",
    ),
    "syntax-error": ("def model_fn(model_dir)\n    return 1\n", "Importing inference.py failed: SyntaxError:"),
    "missing-requirement": (
        "import mg_absent_dependency_xyz\ndef model_fn(model_dir):\n    return 1\n",
        "Importing inference.py failed: ModuleNotFoundError: No module named 'mg_absent_dependency_xyz'; ",
    ),
}


@pytest.fixture(scope="module")
def failed(artifacts: Artifacts, module_containers: ContainerFactory) -> dict[str, Container]:
    root = artifacts.root / "failing-scripts"
    out = {}
    for case, (script, _) in FAILING.items():
        model_dir = write_model(root, case, script, {})
        if case == "missing-requirement":
            (model_dir / "code" / "requirements.txt").write_text("mg-absent-dependency-xyz==1.0\n")
        out[case] = module_containers.spawn("sklearn", model_dir, SAGEMAKER_PROGRAM="inference.py")
    for c in out.values():
        c.wait_exit()
    return out


@pytest.mark.parametrize("case", sorted(FAILING))
def test_script_load_failures(case: str, failed: dict[str, Container]) -> None:
    c = failed[case]
    assert c.wait_exit() == 1
    (line,) = c.failure_lines()
    assert FAILING[case][1] in line, line
    if case == "missing-requirement":
        assert str(c.model_dir / "code" / "requirements.txt") in line
        assert "was not installed" in line and "MODELGATE_ALLOW_PIP_INSTALL" in line


def test_script_not_found(artifacts: Artifacts, containers: ContainerFactory) -> None:
    model_dir = artifacts.root / "no-script"
    model_dir.mkdir()
    c = containers.spawn(
        "xgboost", model_dir, SAGEMAKER_PROGRAM="serve.py", SAGEMAKER_SUBMIT_DIRECTORY="s3://bucket/sourcedir.tar.gz"
    )
    assert c.wait_exit() == 1
    (line,) = c.failure_lines()
    assert "SAGEMAKER_PROGRAM serve.py was not found in" in line
    assert "s3://bucket/sourcedir.tar.gz is not fetched" in line
