"""XGBoost algorithm mode, black-box: real container processes driven over HTTP.

Predictions are compared exactly (float32 equality) with what XGBoost computes in-process for the
same boosters, through ``Booster.predict(DMatrix)`` as the SageMaker container calls it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pytest
import xgboost as xgb

from modelgate.containers import recordio
from tests.containers.conftest import Artifacts, Container, ContainerFactory, csv_rows, floats


@dataclass
class Fleet:
    native: Container  # churn-v1 saved natively, defaults
    pickled: Container  # churn-v1 pickled
    ensemble: Container  # churn-v1 + churn-v2, averaged; default Accept application/json
    first_only: Container  # the same two files, SAGEMAKER_INFERENCE_ENSEMBLE=false
    vote: Container  # three multi:softmax boosters, majority vote
    softprob: Container  # multi:softprob, native


@pytest.fixture(scope="module")
def fleet(artifacts: Artifacts, module_containers: ContainerFactory) -> Fleet:
    a = artifacts
    pair = a.model_dir("ensemble", {"xgboost-model-0": a.churn_v1, "xgboost-model-1": a.churn_v2})
    (pair / ".hidden").write_text("not a model")  # dotfiles are skipped
    (pair / "subdir").mkdir(exist_ok=True)  # sub-directories are ignored
    specs = [
        ("xgboost", a.model_dir("native", {"xgboost-model": a.churn_v1}), {}),
        ("xgboost", a.model_dir("pickled", {"xgboost-model": a.churn_v1}, pickled=True), {}),
        ("xgboost", pair, {"SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT": "application/json"}),
        ("xgboost", pair, {"SAGEMAKER_INFERENCE_ENSEMBLE": "false"}),
        ("xgboost", a.model_dir("vote", {f"m{i}": b for i, b in enumerate(a.softmax)}), {}),
        ("xgboost", a.model_dir("softprob", {"xgboost-model": a.softprob}), {}),
    ]
    return Fleet(*module_containers.start_many(specs))


def expected(booster: xgb.Booster, x: np.ndarray) -> np.ndarray:
    return booster.predict(xgb.DMatrix(x), validate_features=False)


# ------------------------------------------------------------------------------------ inputs and values


def test_ping_and_unknown_paths(fleet: Fleet) -> None:
    assert fleet.native.request("GET", "/ping").status == 200
    for method, path in (("GET", "/"), ("GET", "/models"), ("POST", "/ping"), ("GET", "/invocations")):
        r = fleet.native.request(method, path)
        assert (r.status, r.body) == (404, b"{}"), (method, path)


def test_one_csv_row(fleet: Fleet, artifacts: Artifacts) -> None:
    x = artifacts.x_test[:1]
    r = fleet.native.invoke(csv_rows(x))
    assert r.status == 200
    assert r.headers["content-type"] == "text/csv"
    assert r.text.endswith("\n") and r.text.count("\n") == 1
    assert floats(r.text).tolist() == expected(artifacts.churn_v1, x).tolist()


def test_many_csv_rows_in_one_request(fleet: Fleet, artifacts: Artifacts) -> None:
    x = artifacts.x_test
    r = fleet.native.invoke(csv_rows(x) + "\n", content_type="text/csv; charset=utf-8")
    assert r.status == 200
    got = floats(r.text)
    assert len(got) == len(x)
    np.testing.assert_array_equal(got, expected(artifacts.churn_v1, x))


def test_csv_missing_values_are_nan(fleet: Fleet, artifacts: Artifacts) -> None:
    x = artifacts.x_test[:2].copy()
    x[0, 3] = np.nan
    x[1, 0] = np.nan
    body = csv_rows(x).replace("nan", "")
    r = fleet.native.invoke(body)
    np.testing.assert_array_equal(floats(r.text), expected(artifacts.churn_v1, x))


def test_libsvm_rows(fleet: Fleet, artifacts: Artifacts) -> None:
    x = artifacts.x_test[:5]
    lines = [" ".join(["0"] + [f"{j + 1}:{float(v)!r}" for j, v in enumerate(row) if v != 0]) for row in x]
    for content_type in ("text/libsvm", "text/x-libsvm", None):
        r = fleet.native.invoke("\n".join(lines), content_type=content_type)
        assert r.status == 200, r.text
        dense_nan = np.where(x == 0, np.nan, x)  # absent entries are missing, not zero
        np.testing.assert_array_equal(floats(r.text), expected(artifacts.churn_v1, dense_nan))


def test_recordio_protobuf_dense_and_sparse(fleet: Fleet, artifacts: Artifacts) -> None:
    x = artifacts.x_test[:4]
    dense = recordio.write_records([recordio.record(features={"values": recordio.float32_tensor(row)}) for row in x])
    r = fleet.native.invoke(dense, content_type="application/x-recordio-protobuf")
    assert r.status == 200, r.text
    np.testing.assert_array_equal(floats(r.text), expected(artifacts.churn_v1, x))

    keys = [0, 3, 4, 16]
    sparse_rows = [
        recordio.record(features={"values": recordio.float32_tensor(row[keys], keys=keys, shape=[20])}) for row in x
    ]
    r = fleet.native.invoke(recordio.write_records(sparse_rows), content_type="application/x-recordio-protobuf")
    assert r.status == 200, r.text
    only = np.full_like(x, np.nan)
    only[:, keys] = x[:, keys]
    np.testing.assert_array_equal(floats(r.text), expected(artifacts.churn_v1, only))


def test_pickled_model_predicts_the_same(fleet: Fleet, artifacts: Artifacts) -> None:
    x = artifacts.x_test[:8]
    r = fleet.pickled.invoke(csv_rows(x))
    assert r.status == 200
    np.testing.assert_array_equal(floats(r.text), expected(artifacts.churn_v1, x))


def test_ensemble_is_averaged(fleet: Fleet, artifacts: Artifacts) -> None:
    x = artifacts.x_test[:6]
    r = fleet.ensemble.invoke(csv_rows(x))  # no Accept: SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT=application/json
    assert r.status == 200
    assert r.headers["content-type"] == "application/json"
    scores = [p["score"] for p in json.loads(r.body)["predictions"]]
    mean = np.mean([expected(artifacts.churn_v1, x), expected(artifacts.churn_v2, x)], axis=0, dtype=np.float32)
    np.testing.assert_allclose(scores, mean, rtol=1e-6)
    r = fleet.ensemble.invoke(csv_rows(x), accept="*/*")
    assert r.headers["content-type"] == "application/json"


def test_ensemble_off_uses_the_first_file(fleet: Fleet, artifacts: Artifacts) -> None:
    x = artifacts.x_test[:6]
    r = fleet.first_only.invoke(csv_rows(x))
    np.testing.assert_array_equal(floats(r.text), expected(artifacts.churn_v1, x))


def test_softmax_ensemble_is_majority_voted(fleet: Fleet, artifacts: Artifacts) -> None:
    x = artifacts.x_small
    r = fleet.vote.invoke(csv_rows(x))
    assert r.status == 200
    votes = np.stack([expected(b, x) for b in artifacts.softmax])
    majority = [np.bincount(votes[:, i].astype(int), minlength=3).argmax() for i in range(len(x))]
    assert floats(r.text).tolist() == [float(v) for v in majority]


def test_softprob_rows_are_comma_joined(fleet: Fleet, artifacts: Artifacts) -> None:
    x = artifacts.x_small[:3]
    r = fleet.softprob.invoke(csv_rows(x))
    rows = [[float(v) for v in line.split(",")] for line in r.text.splitlines()]
    np.testing.assert_array_equal(np.array(rows, dtype=np.float32), expected(artifacts.softprob, x))
    r = fleet.softprob.invoke(csv_rows(x), accept="application/json")
    assert [len(p["score"]) for p in json.loads(r.body)["predictions"]] == [3, 3, 3]


# ------------------------------------------------------------------------------------------------ outputs


def test_json_jsonlines_and_recordio_answers(fleet: Fleet, artifacts: Artifacts) -> None:
    x = artifacts.x_test[:3]
    want = expected(artifacts.churn_v1, x).tolist()
    r = fleet.native.invoke(csv_rows(x), accept="application/json")
    assert r.headers["content-type"] == "application/json"
    assert json.loads(r.body) == {"predictions": [{"score": s} for s in want]}
    r = fleet.native.invoke(csv_rows(x), accept="application/jsonlines")
    assert [json.loads(line) for line in r.text.splitlines()] == [{"score": s} for s in want]
    r = fleet.native.invoke(csv_rows(x), accept="application/x-recordio-protobuf; charset=binary")
    assert r.headers["content-type"] == "application/x-recordio-protobuf"
    scores = [recordio.read_map(rec, 2)["score"] for rec in recordio.iter_records(r.body)]
    assert [s.values.tolist() for s in scores if s is not None] == [[s] for s in want]


def test_custom_attributes_are_not_echoed_in_algorithm_mode(fleet: Fleet, artifacts: Artifacts) -> None:
    r = fleet.native.invoke(csv_rows(artifacts.x_test[:1]), **{"X-Amzn-SageMaker-Custom-Attributes": "trace=1"})
    assert r.status == 200
    assert "x-amzn-sagemaker-custom-attributes" not in r.headers


# ------------------------------------------------------------------------------------------ status codes


def test_empty_body_is_204(fleet: Fleet) -> None:
    r = fleet.native.invoke(b"")
    assert (r.status, r.body) == (204, b"")


@pytest.mark.parametrize(
    ("content_type", "body", "start"),
    [
        ("application/json", b"[[1,2]]", "application/json is not an accepted ContentType: csv, libsvm, parquet"),
        ("application/x-parquet", b"PAR1", "Content-type application/x-parquet is not supported."),
        ("text/csv; label_size=2", b"1,2", "text/csv; label_size=2 is not an accepted csv ContentType."),
        ("text/csv", b"1,2\n3", "Loading csv data failed with Exception, please ensure data is in csv format:"),
        ("text/csv", b"\xff\xfe", "Loading csv data failed with Exception"),
        ("application/x-recordio-protobuf", b"garbage!", "Loading recordio-protobuf data failed with Exception"),
    ],
)
def test_unsupported_or_unparseable_is_415(fleet: Fleet, content_type: str, body: bytes, start: str) -> None:
    r = fleet.native.invoke(body, content_type=content_type)
    assert r.status == 415
    assert r.text.startswith(start)


def test_too_many_columns_is_400(fleet: Fleet, artifacts: Artifacts) -> None:
    wide = np.hstack([artifacts.x_test[:1], artifacts.x_test[:1, :3]])
    r = fleet.native.invoke(csv_rows(wide))
    assert r.status == 400
    assert r.text.startswith("Unable to evaluate payload provided: ")
    assert "20 vs. 23" in r.text


def test_pickled_model_feature_count_message(fleet: Fleet, artifacts: Artifacts) -> None:
    wide = np.hstack([artifacts.x_test[:1], artifacts.x_test[:1, :1]])
    r = fleet.pickled.invoke(csv_rows(wide))
    assert (r.status, r.text) == (
        400,
        "Unable to evaluate payload provided: Feature size of csv inference data 21 is not consistent "
        "with feature size of trained model 20.",
    )
    narrow = artifacts.x_test[:2, :19]  # one missing column is tolerated: treated as missing
    r = fleet.pickled.invoke(csv_rows(narrow))
    assert r.status == 200
    padded = np.hstack([narrow, np.full((2, 1), np.nan, dtype=np.float32)])
    np.testing.assert_array_equal(floats(r.text), expected(artifacts.churn_v1, padded))


def test_unsupported_accept_is_406_after_prediction(fleet: Fleet, artifacts: Artifacts) -> None:
    r = fleet.native.invoke(csv_rows(artifacts.x_test[:1]), accept="application/xml")
    assert r.status == 406
    assert r.text == (
        "Accept type application/xml is not supported. Please use supported accept types: "
        "['application/json', 'application/jsonlines', 'application/x-recordio-protobuf', 'text/csv']."
    )
    r = fleet.native.invoke(b"1,2\n3", accept="application/xml")  # a bad body fails first
    assert r.status == 415


def test_payload_over_6291456_bytes_is_413(fleet: Fleet, artifacts: Artifacts) -> None:
    r = fleet.native.invoke(b"1" * 6291457)
    assert r.status == 413
    fleet.native.close_connection()
    r = fleet.native.invoke(csv_rows(artifacts.x_test[:1]))  # and the container keeps serving
    assert r.status == 200


def test_execution_parameters(fleet: Fleet) -> None:
    r = fleet.native.request("GET", "/execution-parameters")
    assert r.status == 200
    body = json.loads(r.body)
    assert body["BatchStrategy"] == "MULTI_RECORD" and body["MaxPayloadInMB"] == 6
