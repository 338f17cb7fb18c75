"""The demo churn artifacts: built locally, loadable the way algorithm mode loads them."""

from __future__ import annotations

import tarfile
import time
from pathlib import Path

import numpy as np

from modelgate.containers.xgb_model import load_model
from modelgate.demo_models import N_FEATURES, build_churn_artifacts, churn_sample_rows, make_churn_data


def test_build_churn_artifacts(tmp_path: Path) -> None:
    start = time.monotonic()
    paths = build_churn_artifacts(tmp_path / "out", seed=11)
    elapsed = time.monotonic() - start
    assert sorted(paths) == ["churn-v1", "churn-v2"]
    x, _ = make_churn_data(50, seed=5)
    preds = {}
    for name, path in paths.items():
        assert path.name == "model.tar.gz" and path.is_file()
        with tarfile.open(path) as tar:
            assert tar.getnames() == ["xgboost-model"]
            tar.extractall(tmp_path / name, filter="data")
        model = load_model(tmp_path / name, ensemble=True)
        assert (model.objective, model.num_features, model.pickled) == ("binary:logistic", N_FEATURES, False)
        assert model.boosters[0].booster.num_boosted_rounds() == 50
        preds[name] = model.predict(x)
        assert ((preds[name] > 0) & (preds[name] < 1)).all()
    assert not np.array_equal(preds["churn-v1"], preds["churn-v2"])  # two different variants
    assert elapsed < 10  # both trained in well under 3 s on an idle machine


def test_labels_depend_on_the_features() -> None:
    x, y = make_churn_data(4000, seed=1)
    assert x.shape == (4000, N_FEATURES) and x.dtype == np.float32
    assert 0.15 < y.mean() < 0.6
    assert y[x[:, 3] >= 3].mean() > y[x[:, 3] == 0].mean()  # more support calls, more churn


def test_sample_rows_are_csv_with_20_fields() -> None:
    rows = churn_sample_rows(3)
    assert len(rows) == 3
    assert all(len(row.split(",")) == N_FEATURES for row in rows)
    assert churn_sample_rows(3) == rows  # deterministic
