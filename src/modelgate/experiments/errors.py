"""Errors of the A/B experiments API.

Each is one line: its code and HTTP status. The HTTP adapter renders them as
``{"code": ..., "message": ...}``; the service raises nothing else on purpose.

    ModelgateError
    └── ExperimentError                (400)
        ├── InvalidRequest             (400: a missing or malformed field)
        ├── InvalidReward              (400: a reward outside [0, 1] or not a number)
        ├── InvalidStrategy            (400: an unknown strategy name)
        ├── InvalidParameter           (400: epsilon, warmup, alpha, horizon or looks out of range)
        ├── NoVariants                 (400: an experiment needs at least one variant)
        ├── VariantMismatch            (400: endpoint_variant is not the variant that served inference_id)
        ├── UnknownVariant             (400: a variant the experiment does not have)
        ├── UnsupportedMediaType       (415: a state-changing request that is not Content-Type: application/json)
        ├── AccessDenied               (403: an administrative request without the administrator's guard)
        ├── ExperimentNotFound         (404: no experiment was ever registered for the endpoint)
        ├── AssignmentNotFound         (404: no live assignment of the user on the endpoint)
        ├── InferenceNotFound          (404: a conversion for an inference id this server did not issue)
        ├── InferenceUserMismatch      (403: a conversion for an inference issued to another user)
        ├── InferenceFailed            (409: a conversion for an invocation that failed)
        ├── AlreadyConverted           (409: the inference already has the rewards its experiment allows)
        ├── DuplicateInferenceId       (409: an invocation that reuses an inference id already served)
        ├── NoWinner                   (409: promote without a variant while the verdict names none)
        └── StoreUnavailable           (503: the assignment or experiment store, or the event log, failed)
"""

from __future__ import annotations

from modelgate.errors import ModelgateError


class ExperimentError(ModelgateError):
    code = "ExperimentError"
    status = 400


class InvalidRequest(ExperimentError):
    code = "InvalidRequest"


class InvalidReward(ExperimentError):
    code = "InvalidReward"


class InvalidStrategy(ExperimentError):
    code = "InvalidStrategy"


class InvalidParameter(ExperimentError):
    code = "InvalidParameter"


class NoVariants(ExperimentError):
    code = "NoVariants"


class VariantMismatch(ExperimentError):
    code = "VariantMismatch"


class UnknownVariant(ExperimentError):
    code = "UnknownVariant"


class UnsupportedMediaType(ExperimentError):
    code = "UnsupportedMediaType"
    status = 415


class AccessDenied(ExperimentError):
    code = "AccessDenied"
    status = 403


class InferenceNotFound(ExperimentError):
    code = "InferenceNotFound"
    status = 404


class InferenceUserMismatch(ExperimentError):
    code = "InferenceUserMismatch"
    status = 403


class InferenceFailed(ExperimentError):
    code = "InferenceFailed"
    status = 409


class AlreadyConverted(ExperimentError):
    code = "AlreadyConverted"
    status = 409


class DuplicateInferenceId(ExperimentError):
    code = "DuplicateInferenceId"
    status = 409


class ExperimentNotFound(ExperimentError):
    code = "ExperimentNotFound"
    status = 404


class AssignmentNotFound(ExperimentError):
    code = "AssignmentNotFound"
    status = 404


class NoWinner(ExperimentError):
    code = "NoWinner"
    status = 409


class StoreUnavailable(ExperimentError):
    code = "StoreUnavailable"
    status = 503
    sender_fault = False
