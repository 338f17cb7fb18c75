"""Model loading and prediction of algorithm mode, in-process."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import xgboost as xgb
from scipy import sparse

from modelgate.containers.errors import LoadFailure
from modelgate.containers.xgb_fastpath import fast_predictor, public_predictor
from modelgate.containers.xgb_model import _majority_vote, load_model
from tests.containers.conftest import Artifacts


def test_json_model_without_extension_loads(tmp_path: Path, artifacts: Artifacts) -> None:
    artifacts.churn_v1.save_model(str(tmp_path / "model.json"))
    (tmp_path / "model.json").rename(tmp_path / "xgboost-model")
    model = load_model(tmp_path, ensemble=True)
    x = artifacts.x_test[:5]
    np.testing.assert_array_equal(model.predict(x), artifacts.churn_v1.predict(xgb.DMatrix(x)))
    assert not model.pickled


def test_pickled_scikit_learn_wrapper_is_unwrapped(tmp_path: Path, artifacts: Artifacts) -> None:
    clf = xgb.XGBClassifier(n_estimators=5, max_depth=2, n_jobs=1).fit(artifacts.x_small, [0, 1] * 4)
    (tmp_path / "model.pkl").write_bytes(pickle.dumps(clf))
    model = load_model(tmp_path, ensemble=True)
    assert model.pickled and model.objective == "binary:logistic"
    np.testing.assert_allclose(model.predict(artifacts.x_small), clf.predict_proba(artifacts.x_small)[:, 1], rtol=1e-6)


def test_pickle_of_something_else_is_a_load_failure(tmp_path: Path) -> None:
    (tmp_path / "model.pkl").write_bytes(pickle.dumps({"not": "a booster"}))
    with pytest.raises(LoadFailure, match="the pickle holds a dict, not a Booster"):
        load_model(tmp_path, ensemble=True)


def test_fast_path_matches_the_public_api(artifacts: Artifacts) -> None:
    booster = artifacts.churn_v2
    fast = fast_predictor(booster, 20, 0)
    public = public_predictor(booster, 0)
    assert fast is not public  # the C-API path passed its self-check
    x = artifacts.x_test.copy()
    x[::3, 5] = np.nan
    np.testing.assert_array_equal(fast(x), public(x))
    np.testing.assert_array_equal(fast(x[:1]), booster.predict(xgb.DMatrix(x[:1])))
    np.testing.assert_array_equal(fast(np.asfortranarray(x.astype(np.float64))), public(x))
    softprob = fast_predictor(artifacts.softprob, 4, 0)
    assert softprob(artifacts.x_small).shape == (8, 3)


def test_narrow_sparse_and_dense_inputs_are_padded_with_missing(tmp_path: Path, artifacts: Artifacts) -> None:
    artifacts.churn_v1.save_model(str(tmp_path / "m.ubj"))
    model = load_model(tmp_path, ensemble=True)
    x = artifacts.x_test[:3, :12]
    padded = np.hstack([x, np.full((3, 8), np.nan, dtype=np.float32)])
    want = artifacts.churn_v1.predict(xgb.DMatrix(padded))
    np.testing.assert_array_equal(model.predict(x), want)
    absent_zeros = np.where(padded == 0, np.nan, padded)  # a CSR matrix does not store zeros: missing
    want_sparse = artifacts.churn_v1.predict(xgb.DMatrix(absent_zeros))
    np.testing.assert_array_equal(model.predict(sparse.csr_matrix(x)), want_sparse)
    with pytest.raises(ValueError, match=r"\(20 vs\. 21\)"):
        model.predict(np.zeros((1, 21), dtype=np.float32))


def test_majority_vote_ties_go_to_the_smallest_class() -> None:
    votes = np.array([[2, 0, 1], [2, 1, 0], [1, 1, 2]], dtype=np.float32)
    assert _majority_vote(votes).tolist() == [2.0, 1.0, 0.0]
