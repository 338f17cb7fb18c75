"""CloudWatch's errors, as modelgate errors.

Each class's ``code`` is the botocore *shape name* (what goes in ``__type``); :data:`QUERY_CODES` maps it
to the wire code of the query protocol (the ``x-amzn-query-error`` header, and ``<Code>`` in XML), which
is what ``cw.exceptions.<ShapeName>`` matches (reference §1.2)::

    ModelgateError
    ├── CloudWatchValidation        ValidationException → ValidationError (400)
    ├── InvalidParameterValue       InvalidParameterValueException → InvalidParameterValue (400)
    ├── InvalidParameterCombination InvalidParameterCombinationException → InvalidParameterCombination (400)
    ├── MissingParameter            MissingRequiredParameterException → MissingParameter (400)
    ├── InvalidFormat               InvalidFormatFault → InvalidFormat (400)
    ├── LimitExceeded               LimitExceededFault → LimitExceeded (400)
    ├── InvalidNextToken            InvalidNextToken (400)
    └── AlarmNotFound               ResourceNotFound (404)
"""

from __future__ import annotations

from modelgate.errors import ModelgateError

QUERY_CODES: dict[str, str] = {
    "ValidationException": "ValidationError",
    "InvalidParameterValueException": "InvalidParameterValue",
    "InvalidParameterCombinationException": "InvalidParameterCombination",
    "MissingRequiredParameterException": "MissingParameter",
    "InvalidFormatFault": "InvalidFormat",
    "LimitExceededFault": "LimitExceeded",
    "InvalidNextToken": "InvalidNextToken",
    "ResourceNotFound": "ResourceNotFound",
    "InternalServiceFault": "InternalServiceError",
    "InternalFailure": "InternalServiceError",
}

# The shape-validation code (``1 validation error detected: ...``): CloudWatch answers these with
# ValidationError, as its XML answers quoted in public issues show.
VALIDATION_SHAPE = "ValidationException"


class CloudWatchValidation(ModelgateError):
    code = "ValidationException"
    status = 400


class InvalidParameterValue(ModelgateError):
    code = "InvalidParameterValueException"
    status = 400


class InvalidParameterCombination(ModelgateError):
    code = "InvalidParameterCombinationException"
    status = 400


class MissingParameter(ModelgateError):
    code = "MissingRequiredParameterException"
    status = 400


class InvalidFormat(ModelgateError):
    code = "InvalidFormatFault"
    status = 400


class LimitExceeded(ModelgateError):
    code = "LimitExceededFault"
    status = 400


class InvalidNextToken(ModelgateError):
    code = "InvalidNextToken"
    status = 400


class AlarmNotFound(ModelgateError):
    code = "ResourceNotFound"
    status = 404
