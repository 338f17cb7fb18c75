"""The model every scenario serves: the churn demo boosters, one CSV row, and the right answers."""

from __future__ import annotations

import re
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xgboost as xgb

from modelgate.demo_models import build_churn_artifacts, churn_sample_rows

SEED = 7  # as the demo endpoint
TOLERANCE = 1e-6
_NUMBER = re.compile(rb"-?\d+\.\d+(?:[eE][-+]?\d+)?")


@dataclass(frozen=True)
class ChurnModel:
    name: str
    tarball: Path  # model.tar.gz, what modelgate's CreateModel points at
    model_dir: Path  # the unpacked tarball (xgboost-model), what an instance process gets as SM_MODEL_DIR
    ubj: Path  # the same booster as model.ubj, for the peers
    score: float  # what the booster answers for ROW, computed here with xgboost


ROW = churn_sample_rows(1)[0]  # one row of 20 features
assert len(ROW.split(",")) == 20


def prepare(work: Path) -> dict[str, ChurnModel]:
    """Train the demo boosters (churn-v1, churn-v2), unpack them and compute each one's answer to ROW."""
    models = {}
    for name, tarball in build_churn_artifacts(work / "artifacts", SEED).items():
        model_dir = work / "models" / name
        model_dir.mkdir(parents=True, exist_ok=True)
        with tarfile.open(tarball) as tar:
            tar.extractall(model_dir, filter="data")
        booster = xgb.Booster()
        booster.load_model(bytearray((model_dir / "xgboost-model").read_bytes()))
        ubj = work / "models" / f"{name}.ubj"
        booster.save_model(str(ubj))
        row = np.array([[float(v) for v in ROW.split(",")]], dtype=np.float32)
        score = float(booster.predict(xgb.DMatrix(row))[0])
        models[name] = ChurnModel(name, tarball, model_dir, ubj, score)
    return models


def first_number(answer: bytes) -> float:
    """The first decimal number in an answer (CSV, JSON or V2 inference protocol alike)."""
    m = _NUMBER.search(answer)
    if m is None:
        raise ValueError(f"no number in the answer {answer[:200]!r}")
    return float(m.group())


def check_answer(answer: bytes, model: ChurnModel) -> None:
    got = first_number(answer)
    if abs(got - model.score) > TOLERANCE:
        raise ValueError(f"{model.name} should answer {model.score}, answered {got} ({answer[:200]!r})")
