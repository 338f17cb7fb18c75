"""The default ``input_fn``/``predict_fn``/``output_fn`` of script mode, per container (reference §3).

They differ between the two images:

=============  ===========================================================  =============================
function       XGBoost                                                      scikit-learn
=============  ===========================================================  =============================
input_fn       DMatrix from text/csv, text/libsvm, text/x-libsvm,           exact application/json,
               application/x-recordio-protobuf (parameters allowed; CSV     text/csv (csv.reader, then
               is not stripped, so a trailing newline is an error)          squeeze: one row becomes 1-D),
                                                                            application/x-npy; JSON and
                                                                            CSV cast to float32
predict_fn     ``model.predict(data, validate_features=False)``             ``model.predict(data)``
output_fn      exact application/json (a list), text/csv (one row per line, ``np.savetxt`` with ``%s``),
               application/x-npy
=============  ===========================================================  =============================

Unsupported types raise :class:`UnsupportedFormatError`, which (like every handler error in script
mode) the server answers with 500 and ``<ExceptionType>: <message>``.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import numpy as np

from modelgate.containers import payloads
from modelgate.containers.mediatypes import bare_media_type

JSON = "application/json"
CSV = "text/csv"
NPY = "application/x-npy"
UTF8_TYPES = frozenset({JSON, CSV})


class UnsupportedFormatError(Exception):
    def __init__(self, content_type: str) -> None:
        super().__init__(f"Content type {content_type} is not supported by this framework.")


def _text(data: str | bytes) -> str:
    return data if isinstance(data, str) else data.decode("utf-8")


def _raw(data: str | bytes) -> bytes:
    return data if isinstance(data, bytes) else data.encode("utf-8")


# ------------------------------------------------------------------------------------------------ XGBoost


def xgb_input_fn(input_data: str | bytes, content_type: str) -> Any:
    import xgboost as xgb

    bare = bare_media_type(content_type)
    if bare == CSV:
        return xgb.DMatrix(payloads.parse_csv(_text(input_data), strip=False))
    if bare in ("text/libsvm", "text/x-libsvm"):
        return xgb.DMatrix(payloads.parse_libsvm(_text(input_data), zero_based_shift=False))
    if bare == "application/x-recordio-protobuf":
        return xgb.DMatrix(payloads.parse_recordio_protobuf(_raw(input_data)))
    raise UnsupportedFormatError(content_type)


def xgb_predict_fn(input_data: Any, model: Any) -> Any:
    return model.predict(input_data, validate_features=False)


# ------------------------------------------------------------------------------------------ scikit-learn


def sklearn_input_fn(input_data: str | bytes, content_type: str) -> Any:
    if content_type == JSON:
        return np.array(json.loads(_text(input_data))).astype(np.float32)
    if content_type == CSV:
        reader = csv.reader(io.StringIO(_text(input_data)), delimiter=",", quotechar='"', doublequote=True, strict=True)
        return np.array(list(reader)).squeeze().astype(np.float32)
    if content_type == NPY:
        return np.load(io.BytesIO(_raw(input_data)), allow_pickle=False)
    raise UnsupportedFormatError(content_type)


def sklearn_predict_fn(input_data: Any, model: Any) -> Any:
    return model.predict(input_data)


# ------------------------------------------------------------------------------------------------- both


def _to_list(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def output_fn(prediction: Any, accept: str) -> tuple[bytes, str]:
    if accept == JSON:
        return json.dumps(prediction, default=_to_list).encode(), JSON
    if accept == CSV:
        stream = io.StringIO()
        np.savetxt(stream, np.asarray(prediction), delimiter=",", fmt="%s")
        return stream.getvalue().encode(), CSV
    if accept == NPY:
        buffer = io.BytesIO()
        np.save(buffer, np.asarray(prediction))
        return buffer.getvalue(), NPY
    raise UnsupportedFormatError(accept)
