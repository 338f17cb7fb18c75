"""Dense in-place prediction through XGBoost's C API, without the Python wrapper's per-call work.

``Booster.inplace_predict`` spends about 250 us per call in Python (type sniffing, building the
array interface and the JSON config, wrapping the output) around a C call that, for one row of a
small model, takes 50-100 us. The gateway's hot path is exactly that case, so this module calls
the documented C function ``XGBoosterPredictFromDense`` directly, with the JSON config built once,
the array interface built with one f-string, and one proxy DMatrix per thread reused across calls
(without one, XGBoost builds a proxy and its context per call, reading cgroup files; reusing it
takes the C call from 70-100 us to about 45 us here). What remains is XGBoost's own per-call work:
parsing the config, setting the device (with a regex), walking the trees for their depth.

Safety net: the predictor is checked at load time against ``Booster.inplace_predict`` on probe rows
(zeros, NaNs, random values); on any difference or error (another XGBoost build, a changed ABI) the
public method is used instead. The output buffer XGBoost returns is thread-local to the calling
thread and is copied before the call returns, so one predictor serves several threads. The
returned arrays are read-only.
"""

from __future__ import annotations

import ctypes
import json
import logging
import math
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

log = logging.getLogger(__name__)

DensePredict = Callable[[npt.NDArray[np.float32]], npt.NDArray[np.float32]]


def public_predictor(booster: Any, iteration_end: int) -> DensePredict:
    def predict(data: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        out = booster.inplace_predict(
            data, iteration_range=(0, iteration_end), missing=math.nan, validate_features=False
        )
        return np.asarray(out, dtype=np.float32)

    return predict


def _c_api_predictor(booster: Any, iteration_end: int) -> DensePredict:
    from xgboost import core  # the loaded libxgboost; its C API is public, the handle attribute too

    lib = core._LIB
    check = core._check_call
    fn = lib.XGBoosterPredictFromDense
    config = json.dumps(
        {
            "type": 0,
            "training": False,
            "iteration_begin": 0,
            "iteration_end": iteration_end,
            "missing": math.nan,
            "strict_shape": False,
            "cache_id": 0,
        }
    ).encode()
    handle = booster.handle
    # Per thread: a proxy DMatrix (XGBoost sets the array on it per call) and the out-parameters.
    local = threading.local()
    frombuffer = np.frombuffer
    string_at = ctypes.string_at
    byref = ctypes.byref

    def thread_state() -> tuple[Any, ...]:
        proxy = ctypes.c_void_p()
        check(lib.XGProxyDMatrixCreate(byref(proxy)))
        shape = ctypes.POINTER(ctypes.c_uint64)()
        dims = ctypes.c_uint64()
        preds = ctypes.POINTER(ctypes.c_float)()
        state = (proxy, shape, dims, preds, byref(shape), byref(dims), byref(preds))
        local.state = state
        return state

    def predict(data: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        proxy, shape, dims, preds, shape_ref, dims_ref, preds_ref = getattr(local, "state", None) or thread_state()
        if data.dtype != np.float32 or not data.flags.c_contiguous:
            data = np.ascontiguousarray(data, dtype=np.float32)
        rows, cols = data.shape
        interface = (
            f'{{"data":[{data.ctypes.data},true],"shape":[{rows},{cols}],"strides":null,"typestr":"<f4","version":3}}'
        ).encode()
        check(fn(handle, interface, config, proxy, shape_ref, dims_ref, preds_ref))
        if dims.value == 1:
            out_shape: tuple[int, ...] = (shape[0],)
            size = shape[0]
        else:
            out_shape = tuple(int(shape[i]) for i in range(dims.value))
            size = 1
            for extent in out_shape:
                size *= extent
        if size == 0:
            return np.zeros(out_shape, dtype=np.float32)
        out = frombuffer(string_at(preds, size * 4), dtype=np.float32)
        return out if dims.value == 1 else out.reshape(out_shape)

    return predict


def fast_predictor(booster: Any, num_features: int, iteration_end: int) -> DensePredict:
    """The C-API predictor when it agrees with ``Booster.inplace_predict`` on probe rows."""
    public = public_predictor(booster, iteration_end)
    try:
        fast = _c_api_predictor(booster, iteration_end)
        rng = np.random.default_rng(7)
        probes = np.vstack(
            [
                np.zeros((1, num_features), dtype=np.float32),
                np.full((1, num_features), np.nan, dtype=np.float32),
                rng.normal(0.0, 3.0, size=(5, num_features)).astype(np.float32),
            ]
        )
        for batch in (probes[:1], probes[1:2], probes):
            if not np.array_equal(fast(batch), public(batch), equal_nan=True):
                log.warning("XGBoost C-API fast path disagrees with inplace_predict; not using it")
                return public
    except Exception as exc:  # an XGBoost build without the symbol or with another layout
        log.warning("XGBoost C-API fast path unavailable (%s); using inplace_predict", exc)
        return public
    return fast
