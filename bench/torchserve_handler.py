"""TorchServe handler for the churn booster: one CSV row in, the score and a newline out (as the floor).

Runs inside TorchServe's worker (its own virtual environment), not in modelgate's.
"""

import os

import numpy as np
import xgboost as xgb

_booster = None


def handle(data, context):  # type: ignore[no-untyped-def]
    global _booster
    if _booster is None:
        _booster = xgb.Booster(model_file=os.path.join(context.system_properties["model_dir"], "model.ubj"))
        _booster.set_param("nthread", 1)
    if data is None:
        return None
    out = []
    for item in data:
        body = item.get("body") or item.get("data")
        if isinstance(body, (bytes, bytearray)):
            body = body.decode()
        x = np.array([body.split(",")], dtype=np.float32)
        out.append(f"{float(_booster.inplace_predict(x)[0])!r}\n")
    return out
