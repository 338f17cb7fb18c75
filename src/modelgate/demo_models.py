"""Demo artifacts: two small XGBoost churn models, made locally from synthetic data.

Nothing is downloaded. The data has 20 numeric features (tenure, charges, support calls, ...) and a
binary churn label drawn from a logistic model of a few of them, so the boosters learn something
real. Both models are ``binary:logistic`` boosters of 50 trees; ``churn-v2`` is a little deeper and
slower-learning, so the two variants answer slightly differently (what an A/B test needs).

Each model is saved natively (UBJSON) as ``xgboost-model`` inside a ``model.tar.gz``, the layout
SageMaker's XGBoost training jobs produce and its container loads in algorithm mode.
"""

from __future__ import annotations

import io
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

N_FEATURES = 20
FEATURE_NAMES = (
    "tenure_months",
    "monthly_charges",
    "total_charges",
    "support_calls",
    "late_payments",
    "contract_months",
    "num_products",
    "data_usage_gb",
    "voice_minutes",
    "sms_count",
    "roaming_charges",
    "discount_pct",
    "age",
    "household_size",
    "autopay",
    "paperless_billing",
    "satisfaction_score",
    "outage_hours",
    "referrals",
    "days_since_upgrade",
)

MODEL_PARAMS: dict[str, dict[str, Any]] = {
    "churn-v1": {"max_depth": 4, "eta": 0.3, "subsample": 1.0, "min_child_weight": 1.0},
    "churn-v2": {"max_depth": 5, "eta": 0.2, "subsample": 0.9, "min_child_weight": 2.0},
}
NUM_ROUNDS = 50


def make_churn_data(n_rows: int, seed: int) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Synthetic churn features (rows x 20, float32) and a 0/1 churn label."""
    rng = np.random.default_rng(seed)
    tenure = rng.integers(1, 73, n_rows).astype(np.float64)
    monthly = rng.uniform(20.0, 120.0, n_rows)
    x = np.column_stack(
        [
            tenure,
            monthly,
            tenure * monthly * rng.uniform(0.9, 1.1, n_rows),
            rng.poisson(1.5, n_rows),
            rng.poisson(0.5, n_rows),
            rng.choice([1.0, 12.0, 24.0], n_rows, p=[0.5, 0.3, 0.2]),
            rng.integers(1, 6, n_rows),
            rng.gamma(2.0, 5.0, n_rows),
            rng.gamma(3.0, 100.0, n_rows),
            rng.poisson(50.0, n_rows),
            rng.exponential(5.0, n_rows),
            rng.choice([0.0, 5.0, 10.0, 20.0], n_rows),
            rng.integers(18, 80, n_rows),
            rng.integers(1, 7, n_rows),
            rng.integers(0, 2, n_rows),
            rng.integers(0, 2, n_rows),
            rng.integers(1, 11, n_rows),
            rng.exponential(2.0, n_rows),
            rng.poisson(0.3, n_rows),
            rng.integers(0, 1000, n_rows),
        ]
    )
    logit = (
        -1.0
        - 0.05 * (tenure - 24.0)
        + 0.02 * (monthly - 70.0)
        + 0.45 * x[:, 3]
        + 0.6 * x[:, 4]
        - 0.08 * (x[:, 5] - 6.0)
        - 0.3 * (x[:, 16] - 5.5)
        + 0.15 * x[:, 17]
        - 0.4 * x[:, 14]
    )
    label = (rng.uniform(size=n_rows) < 1.0 / (1.0 + np.exp(-logit))).astype(np.float32)
    return x.astype(np.float32), label


def train_churn_booster(name: str, seed: int, n_rows: int = 4000) -> Any:
    """One of the two demo boosters (``churn-v1`` or ``churn-v2``), trained on synthetic data."""
    import xgboost as xgb

    x, y = make_churn_data(n_rows, seed)
    params = {
        "objective": "binary:logistic",
        "eval_metric": "logloss",
        "nthread": 1,
        "seed": seed,
        "tree_method": "hist",
        **MODEL_PARAMS[name],
    }
    return xgb.train(params, xgb.DMatrix(x, label=y), num_boost_round=NUM_ROUNDS)


def write_model_tarball(booster: Any, path: Path) -> Path:
    """``model.tar.gz`` holding the booster saved natively (UBJSON) as ``xgboost-model``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        model_file = Path(tmp) / "xgboost-model.ubj"  # the extension names the format (no warning)
        booster.save_model(str(model_file))
        with tarfile.open(path, "w:gz") as tar:
            tar.add(model_file, arcname="xgboost-model")
    return path


def build_churn_artifacts(out_dir: Path, seed: int) -> dict[str, Path]:
    """Train both demo models and write ``<out_dir>/<name>/model.tar.gz`` for each."""
    out: dict[str, Path] = {}
    for offset, name in enumerate(sorted(MODEL_PARAMS)):
        booster = train_churn_booster(name, seed + offset)
        out[name] = write_model_tarball(booster, out_dir / name / "model.tar.gz")
    return out


def churn_sample_rows(n: int = 3, seed: int = 2024) -> list[str]:
    """A few CSV rows (no header, no label) to send to a churn endpoint, for the README."""
    x, _ = make_churn_data(n, seed)
    buffer = io.StringIO()
    np.savetxt(buffer, x, delimiter=",", fmt="%.6g")
    return buffer.getvalue().splitlines()
