"""Map a container ``Image`` to what runs it here.

Supported images (anything else is refused at CreateModel with a ValidationException):

* ``command:/absolute/path/to/executable`` — bring your own container without Docker: the executable
  is started as ``<path> serve`` (as SageMaker runs ``docker run <image> serve``) and must serve the
  SageMaker container contract (``GET /ping``, ``POST /invocations``) on ``$SAGEMAKER_BIND_TO_PORT``;
  the model directory is in ``$SM_MODEL_DIR``.
* XGBoost: ``<account>.dkr.ecr.<region>.amazonaws.com/sagemaker-xgboost:<version>``, ``sagemaker-xgboost``,
  ``xgboost`` (optionally ``:<tag>``) — the built-in XGBoost container (``modelgate.containers``).
* scikit-learn: ``…/sagemaker-scikit-learn:<version>``, ``sagemaker-scikit-learn``, ``sklearn``,
  ``scikit-learn`` — the built-in scikit-learn script-mode container.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass

from modelgate.errors import ValidationException

SUPPORTED = (
    "command:<absolute path to an executable that serves /ping and /invocations on $SAGEMAKER_BIND_TO_PORT>; "
    "XGBoost (<account>.dkr.ecr.<region>.amazonaws.com/sagemaker-xgboost:<version>, or xgboost); "
    "scikit-learn (<account>.dkr.ecr.<region>.amazonaws.com/sagemaker-scikit-learn:<version>, or sklearn)"
)

_BUILTIN = (
    (
        "xgboost",
        re.compile(r"^(?:[^/]+/)*(?:sagemaker-xgboost|xgboost)(?::[\w.\-]+)?(?:@sha256:[0-9a-f]+)?$"),
    ),
    (
        "sklearn",
        re.compile(
            r"^(?:[^/]+/)*(?:sagemaker-scikit-learn|scikit-learn|sklearn)(?::[\w.\-]+)?(?:@sha256:[0-9a-f]+)?$"
        ),
    ),
)


@dataclass(frozen=True)
class LaunchSpec:
    kind: str  # "command", "xgboost" or "sklearn"
    argv: tuple[str, ...]


def resolve_image(image: str) -> LaunchSpec:
    """What runs ``image``; ValidationException naming the supported images when nothing can."""
    if image.startswith("command:"):
        path = image[len("command:") :]
        if path.startswith("//"):
            path = path[2:]
        if not os.path.isabs(path):
            raise ValidationException(
                f"Image {image!r} cannot be run: a command: image needs an absolute path. Supported images: "
                f"{SUPPORTED}."
            )
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            raise ValidationException(
                f"Image {image!r} cannot be run: {path} is not an executable file. Supported images: {SUPPORTED}."
            )
        return LaunchSpec("command", (path, "serve"))
    for kind, rx in _BUILTIN:
        if rx.match(image):
            return LaunchSpec(kind, (sys.executable, "-m", "modelgate.containers", kind, "serve"))
    raise ValidationException(f"Image {image!r} cannot be run by modelgate. Supported images: {SUPPORTED}.")
