"""Answers of XGBoost algorithm mode: plain scores and selectable outputs (reference §2.5, §2.6).

Plain scores (no ``SAGEMAKER_INFERENCE_OUTPUT``):

==============================  =================================================================
``text/csv``                    one row per line, ``\\n``-terminated; multi-class rows comma-joined
``application/json``            ``{"predictions": [{"score": 0.43}, ...]}`` (a list for softprob)
``application/jsonlines``       ``{"score": 0.43}`` per line (the containers fail here; we answer)
``application/x-recordio-...``  one Record per row, ``label["score"]`` a float32 tensor (likewise)
``SAGEMAKER_BATCH`` set         ``str(prediction)`` per line plus a final newline, whatever Accept
==============================  =================================================================

Selectable outputs: per-objective keys computed per row exactly as the containers' ``serve_utils``
does (keys invalid for the objective become NaN), then encoded as JSON, JSON lines, CSV (keys in the
requested order, lists quoted as ``"[0.1, 0.9]"``, rows ``\\n``-joined) or RecordIO-protobuf (each
key a float32 tensor under ``label``).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from modelgate.containers import recordio

log = logging.getLogger(__name__)

CSV = "text/csv"
JSON = "application/json"
JSONLINES = "application/jsonlines"
RECORDIO = "application/x-recordio-protobuf"
SUPPORTED_ACCEPTS = [JSON, JSONLINES, RECORDIO, CSV]

PREDICTED_LABEL, LABELS = "predicted_label", "labels"
PROBABILITY, PROBABILITIES = "probability", "probabilities"
RAW_SCORE, RAW_SCORES = "raw_score", "raw_scores"
PREDICTED_SCORE = "predicted_score"
_KEY_ORDER = (PREDICTED_LABEL, LABELS, PROBABILITY, PROBABILITIES, RAW_SCORE, RAW_SCORES, PREDICTED_SCORE)

_CLASSIFIER_KEYS = (PREDICTED_LABEL, LABELS, RAW_SCORE, RAW_SCORES)
_PROBABILISTIC_KEYS = (PREDICTED_LABEL, LABELS, PROBABILITY, PROBABILITIES, RAW_SCORE, RAW_SCORES)
VALID_KEYS: dict[str, tuple[str, ...]] = {
    "reg:squarederror": (PREDICTED_SCORE,),
    "reg:logistic": (PREDICTED_SCORE,),
    "reg:gamma": (PREDICTED_SCORE,),
    "reg:absoluteerror": (PREDICTED_SCORE,),
    "reg:tweedie": (PREDICTED_SCORE,),
    "binary:logistic": _PROBABILISTIC_KEYS,
    "multi:softprob": _PROBABILISTIC_KEYS,
    "binary:logitraw": _CLASSIFIER_KEYS,
    "binary:hinge": _CLASSIFIER_KEYS,
    "multi:softmax": _CLASSIFIER_KEYS,
}


def selected_keys(raw: str) -> list[str]:
    """``SAGEMAKER_INFERENCE_OUTPUT`` as the containers read it: lower-cased, spaces removed."""
    return raw.replace(" ", "").lower().split(",")


# ------------------------------------------------------------------------------------------ plain scores


def encode_scores(preds: npt.NDArray[np.float32], accept: str, *, batch: bool) -> bytes:
    rows: list[Any] = preds.tolist()
    if batch:
        return ("\n".join(map(str, rows)) + "\n").encode()
    if accept == CSV:
        if preds.ndim == 1:
            return ("\n".join(map(str, rows)) + "\n").encode()
        return "".join(",".join(map(str, row)) + "\n" for row in rows).encode()
    if accept == JSON:
        return json.dumps({"predictions": [{"score": row} for row in rows]}).encode()
    if accept == JSONLINES:
        return "".join(json.dumps({"score": row}) + "\n" for row in rows).encode()
    if accept == RECORDIO:
        return recordio.write_records(
            [recordio.record(label={"score": recordio.float32_tensor(_as_list(row))}) for row in rows]
        )
    raise ValueError(f"{accept} is not a supported Accept type")


def _as_list(value: Any) -> list[float]:
    if isinstance(value, list):
        return [float(v) for v in value]
    return [float(value)]


# ------------------------------------------------------------------------------------ selectable output


def select(preds: npt.NDArray[np.float32], keys: Sequence[str], objective: str, num_class: str) -> list[dict[str, Any]]:
    """Per row, the requested keys, computed the way the containers compute them."""
    if objective not in VALID_KEYS:
        raise ValueError(f"Objective `{objective}` unsupported for selectable inference predictions.")
    valid = VALID_KEYS[objective]
    wanted = [k for k in _KEY_ORDER if k in keys and k in valid]
    invalid = list(dict.fromkeys(k for k in keys if k not in valid))
    if invalid:
        log.warning(
            "Selected key(s) %s incompatible for objective '%s'. Please use list of compatible "
            "selectable inference predictions: %s",
            invalid,
            objective,
            list(valid),
        )
    labels = _labels(objective, num_class)
    out = []
    for raw in preds:
        row: dict[str, Any] = {}
        for key in wanted:
            row[key] = _compute(key, objective, raw, labels)
        for key in invalid:
            row[key] = math.nan
        out.append(row)
    return out


def _labels(objective: str, num_class: str) -> Any:
    if "binary:" in objective:
        return [0, 1]
    if "multi:" in objective and num_class and num_class != "0":
        return list(range(int(num_class)))
    return math.nan


def _compute(key: str, objective: str, raw: npt.NDArray[np.float32], labels: Any) -> Any:
    if key == LABELS:
        return labels
    if objective == "multi:softprob":
        if key == PREDICTED_LABEL:
            return int(np.argmax(raw))
        if key in (PROBABILITY, RAW_SCORE):
            return float(max(raw))
        return [float(v) for v in raw]  # probabilities, raw_scores
    value = float(raw)
    if key == PREDICTED_LABEL:
        if objective == "binary:logistic":
            return int(value > 0.5)
        if objective == "binary:logitraw":
            return int(value > 0)
        return value  # binary:hinge, multi:softmax: the class as a float
    if key in (PROBABILITY, RAW_SCORE, PREDICTED_SCORE):
        return value
    return [1.0 - value, value]  # probabilities, raw_scores


def encode_selected(rows: list[dict[str, Any]], keys: Sequence[str], accept: str, *, batch: bool) -> bytes:
    if accept == JSON:
        return json.dumps({"predictions": rows}).encode()
    if accept == JSONLINES:
        return "".join(json.dumps(row) + "\n" for row in rows).encode()
    if accept == CSV:
        text = "\n".join(",".join(_csv_field(row[k]) for k in keys) for row in rows)
        return (text + "\n" if batch else text).encode()
    if accept == RECORDIO:
        return recordio.write_records(
            [recordio.record(label={k: recordio.float32_tensor(_as_list(v)) for k, v in row.items()}) for row in rows]
        )
    raise ValueError(f"{accept} is not an accepted content type for selectable inference output")


def _csv_field(value: Any) -> str:
    return f'"{value}"' if isinstance(value, list) else str(value)
