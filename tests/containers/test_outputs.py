"""Answers of algorithm mode: plain scores and selectable outputs, computed as the container does."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from modelgate.containers import recordio, xgb_outputs
from modelgate.containers.xgb_outputs import encode_scores, encode_selected, select, selected_keys

BINARY = np.array([0.6, 0.1], dtype=np.float64).astype(np.float32)
ALL_BINARY_KEYS = ["predicted_label", "labels", "probability", "probabilities", "raw_score", "raw_scores"]


def test_selected_keys_are_lowercased_and_stripped() -> None:
    assert selected_keys(" Predicted_Label, probabilities ") == ["predicted_label", "probabilities"]


def test_binary_logistic_all_keys() -> None:
    rows = select(BINARY, ALL_BINARY_KEYS, "binary:logistic", "0")
    p = float(np.float32(0.6))
    assert rows[0] == {
        "predicted_label": 1,
        "labels": [0, 1],
        "probability": p,
        "probabilities": [1.0 - p, p],
        "raw_score": p,
        "raw_scores": [1.0 - p, p],
    }
    assert rows[1]["predicted_label"] == 0


@pytest.mark.parametrize(
    ("objective", "raw", "key", "expected"),
    [
        ("binary:hinge", [1.0], "predicted_label", 1.0),
        ("binary:logitraw", [-7.5], "predicted_label", 0),
        ("binary:logitraw", [0.5], "raw_scores", [0.5, 0.5]),
        ("multi:softmax", [2.0], "predicted_label", 2.0),
        ("multi:softmax", [2.0], "labels", [0, 1, 2]),
        ("reg:squarederror", [3.25], "predicted_score", 3.25),
    ],
)
def test_per_objective_values(objective: str, raw: list[float], key: str, expected: object) -> None:
    (row,) = select(np.array(raw, dtype=np.float32), [key], objective, "3")
    assert row == {key: expected}


def test_softprob_keys() -> None:
    probs = np.array([[0.125, 0.5, 0.375]], dtype=np.float32)
    (row,) = select(probs, ["predicted_label", "probability", "probabilities", "labels"], "multi:softprob", "3")
    assert row == {"predicted_label": 1, "labels": [0, 1, 2], "probability": 0.5, "probabilities": [0.125, 0.5, 0.375]}


def test_keys_invalid_for_the_objective_are_nan() -> None:
    (row,) = select(
        np.array([0.5], dtype=np.float32), ["predicted_score", "predicted_label", "foo"], "reg:logistic", "0"
    )
    assert row["predicted_score"] == 0.5
    assert math.isnan(row["predicted_label"]) and math.isnan(row["foo"])


def test_unsupported_objective_is_an_error() -> None:
    message = r"Objective `rank:pairwise` unsupported for selectable inference predictions\."
    with pytest.raises(ValueError, match=message):
        select(BINARY, ["predicted_label"], "rank:pairwise", "0")


ROWS = [
    {"predicted_label": 1, "probabilities": [0.4, 0.6]},
    {"predicted_label": 0, "probabilities": [0.9, 0.1]},
]
KEYS = ["predicted_label", "probabilities"]


def test_selected_encodings() -> None:
    assert encode_selected(ROWS, KEYS, "application/json", batch=False) == json.dumps({"predictions": ROWS}).encode()
    assert encode_selected(ROWS, KEYS, "application/jsonlines", batch=False) == (
        b'{"predicted_label": 1, "probabilities": [0.4, 0.6]}\n{"predicted_label": 0, "probabilities": [0.9, 0.1]}\n'
    )
    assert encode_selected(ROWS, KEYS, "text/csv", batch=False) == b'1,"[0.4, 0.6]"\n0,"[0.9, 0.1]"'
    assert encode_selected(ROWS, KEYS, "text/csv", batch=True) == b'1,"[0.4, 0.6]"\n0,"[0.9, 0.1]"\n'
    body = encode_selected(ROWS, KEYS, "application/x-recordio-protobuf", batch=False)
    labels = [recordio.read_map(r, 2) for r in recordio.iter_records(body)]
    assert [lab["predicted_label"].values.tolist() for lab in labels if lab["predicted_label"]] == [[1.0], [0.0]]
    assert np.allclose(labels[1]["probabilities"].values, [0.9, 0.1])  # type: ignore[union-attr]


def test_score_encodings() -> None:
    preds = np.array([0.5, 0.25], dtype=np.float32)
    assert encode_scores(preds, "text/csv", batch=False) == b"0.5\n0.25\n"
    assert (
        encode_scores(preds, "application/json", batch=False) == b'{"predictions": [{"score": 0.5}, {"score": 0.25}]}'
    )
    assert encode_scores(preds, "application/jsonlines", batch=False) == b'{"score": 0.5}\n{"score": 0.25}\n'
    assert encode_scores(preds, "text/csv", batch=True) == b"0.5\n0.25\n"
    multi = np.array([[0.5, 0.5], [0.25, 0.75]], dtype=np.float32)
    assert encode_scores(multi, "text/csv", batch=False) == b"0.5,0.5\n0.25,0.75\n"
    assert encode_scores(multi, "text/csv", batch=True) == b"[0.5, 0.5]\n[0.25, 0.75]\n"
    assert json.loads(encode_scores(multi, "application/json", batch=False)) == {
        "predictions": [{"score": [0.5, 0.5]}, {"score": [0.25, 0.75]}]
    }
    body = encode_scores(preds, xgb_outputs.RECORDIO, batch=False)
    scores = [recordio.read_map(r, 2)["score"] for r in recordio.iter_records(body)]
    assert [s.values.tolist() for s in scores if s is not None] == [[0.5], [0.25]]
