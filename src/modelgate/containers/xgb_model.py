"""Finding, loading and running the boosters of XGBoost algorithm mode (reference §2.1, §2.3).

Every regular, non-dot file directly in the model directory is a candidate (sorted by name, so the
"first" file is stable); each is tried with ``pickle.load`` and then ``Booster.load_model``. With
``SAGEMAKER_INFERENCE_ENSEMBLE`` true (the default) all are loaded and their predictions averaged,
or majority-voted for ``multi:softmax``/``binary:hinge``; otherwise only the first is loaded.

Prediction runs all rows of a request in one call per booster, with ``nthread=1`` per booster as
the containers set it (concurrency comes from the worker threads).
"""

from __future__ import annotations

import json
import logging
import math
import os
import pickle
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import xgboost as xgb
from scipy import sparse

from modelgate.containers.errors import LoadFailure, one_line
from modelgate.containers.payloads import Features
from modelgate.containers.xgb_fastpath import DensePredict, fast_predictor

log = logging.getLogger(__name__)

VOTING_OBJECTIVES = frozenset({"multi:softmax", "binary:hinge"})


@dataclass(frozen=True, slots=True)
class LoadedBooster:
    path: Path
    booster: Any  # xgboost.Booster
    pickled: bool
    iteration_end: int  # 0 = all trees
    predict_dense: DensePredict

    def predict(self, features: Features) -> npt.NDArray[np.float32]:
        if isinstance(features, np.ndarray):
            return self.predict_dense(features)
        out = self.booster.inplace_predict(
            features, iteration_range=(0, self.iteration_end), missing=math.nan, validate_features=False
        )
        return np.asarray(out, dtype=np.float32)


@dataclass(frozen=True, slots=True)
class XGBoostModel:
    boosters: tuple[LoadedBooster, ...]
    objective: str
    num_class: str  # as in the booster's config ("0" when not a multi-class model)
    num_features: int

    @property
    def pickled(self) -> bool:
        """The container checks feature counts by the first model's format only."""
        return self.boosters[0].pickled

    def predict(self, features: Features) -> npt.NDArray[np.float32]:
        if len(self.boosters) == 1 and isinstance(features, np.ndarray) and features.shape[1] == self.num_features:
            return self.boosters[0].predict_dense(features)  # the common case, without detours
        features = self._fit_width(features)
        preds = [b.predict(features) for b in self.boosters]
        if len(preds) == 1:
            return preds[0]
        stacked = np.stack(preds)
        if self.objective in VOTING_OBJECTIVES:
            return _majority_vote(stacked)
        return np.asarray(np.mean(stacked, axis=0, dtype=np.float32), dtype=np.float32)

    def _fit_width(self, features: Features) -> Features:
        """Fewer columns than the model: the rest are missing, as with a narrower DMatrix."""
        rows, cols = features.shape
        if cols > self.num_features:
            raise ValueError(
                f"Number of columns does not match number of features in booster ({self.num_features} vs. {cols})."
            )
        if cols == self.num_features:
            return features
        if isinstance(features, np.ndarray):
            padded = np.full((rows, self.num_features), np.nan, dtype=np.float32)
            padded[:, :cols] = features
            return padded
        wide = sparse.csr_matrix((features.data, features.indices, features.indptr), shape=(rows, self.num_features))
        return wide


def _majority_vote(stacked: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Per row, the most frequent prediction across models; ties go to the smallest value."""
    out = np.empty(stacked.shape[1:], dtype=np.float32)
    for index in range(stacked.shape[1]):
        values, counts = np.unique(stacked[:, index], return_counts=True)
        out[index] = values[int(np.argmax(counts))]
    return out


def model_files(model_dir: Path) -> list[Path]:
    try:
        names = sorted(os.listdir(model_dir))
    except OSError as exc:
        raise LoadFailure(f"Model directory {model_dir} cannot be read: {exc}") from None
    files = []
    for name in names:
        path = model_dir / name
        if not path.is_file():
            continue
        if name.startswith("."):
            log.warning("Skipping hidden file %s in the model directory", path)
            continue
        files.append(path)
    return files


def load_booster(path: Path) -> tuple[Any, bool]:
    """(booster, pickled): ``pickle.load`` first, then ``Booster.load_model``."""
    try:
        with open(path, "rb") as f:
            obj = pickle.load(f)  # the containers load pickled boosters, by design
    except Exception as exc_pkl:
        booster = xgb.Booster()
        try:
            with warnings.catch_warnings():  # "Unknown file format: ``": names carry no extension
                warnings.simplefilter("ignore", UserWarning)
                booster.load_model(str(path))
        except Exception as exc_xgb:
            raise LoadFailure(
                f"Model at {path} cannot be loaded: {one_line(str(exc_pkl))} | {one_line(str(exc_xgb))}"
            ) from None
        return booster, False
    if isinstance(obj, xgb.Booster):
        return obj, True
    if hasattr(obj, "get_booster"):  # a pickled scikit-learn wrapper (XGBClassifier, ...)
        return obj.get_booster(), True
    raise LoadFailure(f"Model at {path} cannot be loaded: the pickle holds a {type(obj).__name__}, not a Booster")


def load_model(model_dir: Path, *, ensemble: bool) -> XGBoostModel:
    files = model_files(model_dir)
    if not files:
        raise LoadFailure(f"No model file found in {model_dir} (expected e.g. xgboost-model)")
    if not ensemble:
        files = files[:1]
    loaded: list[LoadedBooster] = []
    first_config: dict[str, Any] = {}
    num_features = 0
    for path in files:
        log.info("Loading the model from %s", path)
        booster, pickled = load_booster(path)
        try:
            booster.set_param("nthread", 1)
            config = json.loads(booster.save_config())
            features = int(booster.num_features())
        except Exception as exc:
            raise LoadFailure(f"Model at {path} cannot be loaded: {one_line(str(exc))}") from None
        if not loaded:
            first_config, num_features = config, features
        iteration_end = _iteration_end(booster, config)
        loaded.append(
            LoadedBooster(path, booster, pickled, iteration_end, fast_predictor(booster, features, iteration_end))
        )
    learner = first_config.get("learner", {})
    return XGBoostModel(
        boosters=tuple(loaded),
        objective=str(learner.get("objective", {}).get("name", "")),
        num_class=str(learner.get("learner_model_param", {}).get("num_class", "0")),
        num_features=num_features,
    )


def _iteration_end(booster: Any, config: dict[str, Any]) -> int:
    """Old pickled boosters carry ``best_ntree_limit`` (trees, not rounds); use it, as the containers do."""
    limit = int(getattr(booster, "best_ntree_limit", 0) or 0)
    if limit <= 0:
        return 0
    gbtree = config.get("learner", {}).get("gradient_booster", {})
    parallel = int(gbtree.get("gbtree_model_param", {}).get("num_parallel_tree", 1) or 1)
    return max(1, limit // max(1, parallel))
