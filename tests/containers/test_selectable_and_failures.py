"""Selectable outputs (SAGEMAKER_INFERENCE_OUTPUT) and load failures of algorithm mode, black-box."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np
import pytest
import xgboost as xgb

from modelgate.containers import recordio
from tests.containers.conftest import Artifacts, Container, ContainerFactory, csv_rows


@dataclass
class Selectable:
    binary: Container  # churn-v1, keys predicted_label,probabilities,probability
    softprob: Container  # multi:softprob, keys PREDICTED_LABEL, labels, raw_scores, predicted_score
    regression: Container  # reg:squarederror, predicted_score (and an invalid key)
    batch: Container  # churn-v1 with SAGEMAKER_BATCH, no selectable output
    ranker: Container  # rank:pairwise: no selectable keys


@pytest.fixture(scope="module")
def selectable(artifacts: Artifacts, module_containers: ContainerFactory) -> Selectable:
    a = artifacts
    ranker = xgb.train(
        {"objective": "rank:pairwise", "nthread": 1}, xgb.DMatrix(a.x_small, label=[0, 1] * 4, group=[8]), 2
    )
    churn = a.model_dir("sel-churn", {"xgboost-model": a.churn_v1})
    specs = [
        ("xgboost", churn, {"SAGEMAKER_INFERENCE_OUTPUT": "predicted_label, probabilities,probability"}),
        (
            "xgboost",
            a.model_dir("sel-softprob", {"xgboost-model": a.softprob}),
            {"SAGEMAKER_INFERENCE_OUTPUT": "PREDICTED_LABEL,labels,raw_scores,predicted_score"},
        ),
        (
            "xgboost",
            a.model_dir("sel-reg", {"xgboost-model": a.regression}),
            {"SAGEMAKER_INFERENCE_OUTPUT": "predicted_score,probability", "SAGEMAKER_BATCH": "true"},
        ),
        ("xgboost", churn, {"SAGEMAKER_BATCH": "true"}),
        (
            "xgboost",
            a.model_dir("sel-rank", {"xgboost-model": ranker}),
            {"SAGEMAKER_INFERENCE_OUTPUT": "predicted_label"},
        ),
    ]
    return Selectable(*module_containers.start_many(specs))


def test_binary_selectable_json(selectable: Selectable, artifacts: Artifacts) -> None:
    x = artifacts.x_test[:4]
    p = artifacts.churn_v1.predict(xgb.DMatrix(x)).tolist()
    r = selectable.binary.invoke(csv_rows(x), accept="application/json")
    assert r.status == 200
    assert json.loads(r.body) == {
        "predictions": [{"predicted_label": int(v > 0.5), "probability": v, "probabilities": [1.0 - v, v]} for v in p]
    }


def test_binary_selectable_csv_keeps_the_requested_order(selectable: Selectable, artifacts: Artifacts) -> None:
    x = artifacts.x_test[:2]
    p = artifacts.churn_v1.predict(xgb.DMatrix(x)).tolist()
    r = selectable.binary.invoke(csv_rows(x))  # default Accept: text/csv
    assert r.headers["content-type"] == "text/csv"
    assert r.text == "\n".join(f'{int(v > 0.5)},"{[1.0 - v, v]}",{v}' for v in p)


def test_binary_selectable_jsonlines_and_recordio(selectable: Selectable, artifacts: Artifacts) -> None:
    x = artifacts.x_test[:3]
    p = artifacts.churn_v1.predict(xgb.DMatrix(x))
    r = selectable.binary.invoke(csv_rows(x), accept="application/jsonlines")
    lines = [json.loads(line) for line in r.text.splitlines()]
    assert [line["probability"] for line in lines] == p.tolist()
    r = selectable.binary.invoke(csv_rows(x), accept="application/x-recordio-protobuf")
    labels = [recordio.read_map(rec, 2) for rec in recordio.iter_records(r.body)]
    assert [lab["probability"].values[0] for lab in labels if lab["probability"]] == p.tolist()
    assert [lab["predicted_label"].values.tolist() for lab in labels if lab["predicted_label"]] == [
        [float(v > 0.5)] for v in p
    ]


def test_selectable_406(selectable: Selectable, artifacts: Artifacts) -> None:
    r = selectable.binary.invoke(csv_rows(artifacts.x_test[:1]), accept="text/plain")
    assert r.status == 406
    assert r.text.startswith("Accept type text/plain is not supported.")


def test_softprob_selectable_and_invalid_key_is_nan(selectable: Selectable, artifacts: Artifacts) -> None:
    x = artifacts.x_small[:2]
    probs = artifacts.softprob.predict(xgb.DMatrix(x))
    r = selectable.softprob.invoke(csv_rows(x), accept="application/json")
    assert r.status == 200
    rows = json.loads(r.body)["predictions"]  # NaN is written as the container writes it
    for row, prob in zip(rows, probs, strict=True):
        assert row["predicted_label"] == int(np.argmax(prob))
        assert row["labels"] == [0, 1, 2]
        assert row["raw_scores"] == prob.tolist()
        assert math.isnan(row["predicted_score"])  # not valid for multi:softprob


def test_regression_selectable_in_batch_mode(selectable: Selectable, artifacts: Artifacts) -> None:
    x = artifacts.x_small[:3]
    want = artifacts.regression.predict(xgb.DMatrix(x)).tolist()
    r = selectable.regression.invoke(csv_rows(x))
    assert r.text == "".join(f"{v},nan\n" for v in want)


def test_batch_mode_writes_one_prediction_per_line(selectable: Selectable, artifacts: Artifacts) -> None:
    x = artifacts.x_test[:3]
    want = artifacts.churn_v1.predict(xgb.DMatrix(x)).tolist()
    r = selectable.batch.invoke(csv_rows(x), accept="application/json")  # any Accept
    assert r.text == "".join(f"{v}\n" for v in want)


def test_objective_without_selectable_output_is_500(selectable: Selectable, artifacts: Artifacts) -> None:
    r = selectable.ranker.invoke(csv_rows(artifacts.x_small[:1]))
    assert (r.status, r.text) == (500, "Objective `rank:pairwise` unsupported for selectable inference predictions.")


# ------------------------------------------------------------------------------------------ load failures

FAILURES = {
    "empty": ("xgboost", "No model file found in"),
    "garbage": ("xgboost", "cannot be loaded:"),
    "sklearn-without-script": (
        "sklearn",
        "The scikit-learn container needs an inference script: set SAGEMAKER_PROGRAM",
    ),
}


@pytest.fixture(scope="module")
def failed(artifacts: Artifacts, module_containers: ContainerFactory) -> dict[str, Container]:
    """All failing containers started at once (their imports overlap), then waited for."""
    out = {}
    for case, (framework, _) in FAILURES.items():
        model_dir = artifacts.root / f"fail-{case}"
        model_dir.mkdir()
        if case == "garbage":
            (model_dir / "xgboost-model").write_bytes(b"\x00not a model at all")
        out[case] = module_containers.spawn(framework, model_dir)
    for c in out.values():
        c.wait_exit()
    return out


@pytest.mark.parametrize("case", sorted(FAILURES))
def test_load_failures_exit_with_one_failure_line(case: str, failed: dict[str, Container]) -> None:
    c = failed[case]
    assert c.wait_exit() == 1
    (line,) = c.failure_lines()
    assert FAILURES[case][1] in line
    assert "Traceback" not in line
