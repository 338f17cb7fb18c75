"""``python -m modelgate.containers {xgboost|sklearn} serve``: load the model, then serve it.

Thread pools of the numeric libraries default to one thread (``OMP_NUM_THREADS``,
``OPENBLAS_NUM_THREADS``, ...), as the XGBoost container sets them: instances share the machine's
cores and run their predictions on ``SAGEMAKER_MODEL_SERVER_WORKERS`` threads instead. The model's
Environment can override them. They are set before numpy is first imported.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence

FRAMEWORKS = ("xgboost", "sklearn")
_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
USAGE = "usage: python -m modelgate.containers {xgboost|sklearn} serve"


def _fail(reason: str) -> int:
    from modelgate.containers.errors import FAILURE_PREFIX, one_line

    sys.stderr.write(FAILURE_PREFIX + one_line(reason) + "\n")
    sys.stderr.flush()
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2 or args[0] not in FRAMEWORKS or args[1] != "serve":
        sys.stderr.write(USAGE + "\n")
        return 2
    framework = args[0]
    for name in _THREAD_VARIABLES:
        os.environ.setdefault(name, "1")
    level = os.environ.get("SAGEMAKER_CONTAINER_LOG_LEVEL", "").strip()  # e.g. "20" (INFO), as SageMaker's
    logging.basicConfig(
        stream=sys.stderr,
        level=int(level) if level.isdigit() else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )

    from modelgate.containers.errors import LoadFailure, describe
    from modelgate.containers.protocol import Handler
    from modelgate.containers.settings import ContainerSettings

    try:
        settings = ContainerSettings.from_environ()
        handler: Handler
        if settings.program:
            from modelgate.containers.script_handler import load_script_handler

            handler = load_script_handler(framework, settings)
        elif framework == "xgboost":
            from modelgate.containers.xgb_algorithm import XGBoostAlgorithmHandler
            from modelgate.containers.xgb_model import load_model

            handler = XGBoostAlgorithmHandler(load_model(settings.model_dir, ensemble=settings.ensemble), settings)
        else:
            raise LoadFailure(
                "The scikit-learn container needs an inference script: set SAGEMAKER_PROGRAM "
                "(e.g. inference.py, with model_fn) in the model's Environment"
            )
    except LoadFailure as exc:
        return _fail(exc.reason)
    except Exception as exc:
        logging.getLogger(__name__).exception("Loading the model failed")
        return _fail(f"Loading the model failed: {describe(exc)}")

    from modelgate.containers.server import serve

    logging.getLogger(__name__).info(
        "Serving %s on 127.0.0.1:%d with %d worker(s)", framework, settings.port, settings.workers
    )
    try:
        serve(handler, settings.port, settings.workers, settings.max_content_length, settings.front_end)
    except LoadFailure as exc:
        return _fail(exc.reason)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
