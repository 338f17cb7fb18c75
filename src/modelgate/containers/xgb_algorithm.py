"""XGBoost algorithm mode: the built-in algorithm's artifacts served without a user script.

The status table of the container's Flask app (reference §2.4), in the order it applies:

======  ============================================================================================
204     empty body
415     Content-Type not accepted, or the body does not parse as that type (the container's texts)
400     ``Unable to evaluate payload provided: ...`` (prediction failed, feature-count check)
406     Accept not one of the four supported types (checked after prediction, as the container does)
500     selectable output failed (e.g. the objective has no selectable keys)
======  ============================================================================================

(413 for bodies over ``MAX_CONTENT_LENGTH`` is answered by the server before a handler runs.)
"""

from __future__ import annotations

import json
import os
from typing import Literal

from modelgate.containers import payloads, xgb_outputs
from modelgate.containers.errors import (
    BadRequest,
    NoContent,
    NotAcceptable,
    ServerError,
    UnsupportedMediaType,
    clean_message,
)
from modelgate.containers.mediatypes import resolve_accept, split_media_type
from modelgate.containers.protocol import Invocation, Reply
from modelgate.containers.settings import ContainerSettings
from modelgate.containers.xgb_model import XGBoostModel

Kind = Literal["csv", "libsvm", "recordio-protobuf"]

_VALID_CONTENT_TYPES = (
    "csv, libsvm, parquet, recordio-protobuf, text/csv, text/libsvm, text/x-libsvm, "
    "application/x-parquet, application/x-recordio-protobuf"
)
_LIBSVM = frozenset({"libsvm", "text/libsvm", "text/x-libsvm"})
_PARQUET = frozenset({"parquet", "application/x-parquet"})
_RECORDIO = frozenset({"recordio-protobuf", "application/x-recordio-protobuf"})


def content_kind(content_type: str | None) -> Kind:
    """The container's ``get_content_type``: absent means libsvm; errors are 415 texts."""
    if content_type is None or not content_type.strip():
        return "libsvm"
    bare, params = split_media_type(content_type)
    if bare in _LIBSVM:
        return "libsvm"
    if "csv" in bare:
        if bare in ("csv", "text/csv"):
            label_size = params.get("label_size")
            if label_size is not None and label_size != "1":
                raise UnsupportedMediaType(
                    f"{content_type.lower()} is not an accepted csv ContentType. "
                    "Optional parameter label_size must be equal to 1"
                )
            return "csv"
    elif bare in _PARQUET:
        raise UnsupportedMediaType(f"Content-type {content_type} is not supported.")
    elif bare in _RECORDIO:
        return "recordio-protobuf"
    raise UnsupportedMediaType(f"{content_type} is not an accepted ContentType: {_VALID_CONTENT_TYPES}.")


def parse_body(kind: Kind, body: bytes) -> payloads.Features:
    try:
        if kind == "csv":
            return payloads.parse_csv(body.decode("utf-8"))
        if kind == "libsvm":
            return payloads.parse_libsvm(body.decode("utf-8"))
        return payloads.parse_recordio_protobuf(body)
    except Exception as exc:
        if kind == "recordio-protobuf":
            raise UnsupportedMediaType(
                "Loading recordio-protobuf data failed with Exception, please ensure data is in "
                f"recordio-protobuf format: {type(exc)} {exc}"
            ) from None
        raise UnsupportedMediaType(
            f"Loading {kind} data failed with Exception, please ensure data is in {kind} format:\n {type(exc)}\n {exc}"
        ) from None


def check_feature_count(kind: Kind, data_columns: int, model_features: int) -> None:
    """The container's check for pickled models (one missing column tolerated, issue #410)."""
    x, y = model_features, data_columns
    if kind == "libsvm":
        if y > x + 1:
            raise ValueError(
                f"Feature size of libsvm inference data {y} is larger than feature size of trained model {x}."
            )
    elif not (x == y or x == y + 1):
        raise ValueError(
            f"Feature size of {kind} inference data {y} is not consistent with feature size of trained model {x}."
        )


class XGBoostAlgorithmHandler:
    initial_cost_estimate = 0.0

    def __init__(self, model: XGBoostModel, settings: ContainerSettings) -> None:
        self.model = model
        self.default_accept = settings.default_accept or xgb_outputs.CSV
        self.batch = settings.batch
        self.keys = (
            xgb_outputs.selected_keys(settings.inference_output) if settings.inference_output is not None else None
        )
        self.max_payload_mb = settings.max_content_length // (1024 * 1024)
        self._kinds: dict[str | None, Kind] = {}

    def invoke(self, request: Invocation) -> Reply:
        if not request.body:
            raise NoContent("")
        kind = self._kinds.get(request.content_type)
        if kind is None:
            kind = content_kind(request.content_type)
            if len(self._kinds) < 256:
                self._kinds[request.content_type] = kind
        features = parse_body(kind, request.body)
        try:
            if self.model.pickled:
                check_feature_count(kind, features.shape[1], self.model.num_features)
            preds = self.model.predict(features)
        except Exception as exc:
            raise BadRequest(f"Unable to evaluate payload provided: {clean_message(str(exc))}") from None
        if self.batch and self.keys is None:
            return Reply(200, xgb_outputs.encode_scores(preds, xgb_outputs.CSV, batch=True), xgb_outputs.CSV)
        accept = resolve_accept(request.accept, self.default_accept)
        if accept not in xgb_outputs.SUPPORTED_ACCEPTS:
            raise NotAcceptable(
                f"Accept type {accept} is not supported. Please use supported accept types: "
                f"{xgb_outputs.SUPPORTED_ACCEPTS}."
            )
        if self.keys is None:
            return Reply(200, xgb_outputs.encode_scores(preds, accept, batch=False), accept)
        try:
            rows = xgb_outputs.select(preds, self.keys, self.model.objective, self.model.num_class)
            body = xgb_outputs.encode_selected(rows, self.keys, accept, batch=self.batch)
        except Exception as exc:
            raise ServerError(str(exc)) from None
        return Reply(200, body, accept)

    def execution_parameters(self) -> Reply | None:
        params = {
            "MaxConcurrentTransforms": os.cpu_count() or 1,
            "BatchStrategy": "MULTI_RECORD",
            "MaxPayloadInMB": self.max_payload_mb,
        }
        return Reply(200, json.dumps(params).encode(), "application/json")
