"""The built-in model containers: worker processes that serve models as SageMaker's images do.

``python -m modelgate.containers {xgboost|sklearn} serve`` is what the gateway runs for the
``sagemaker-xgboost`` and ``sagemaker-scikit-learn`` images. The process loads the model from
``SM_MODEL_DIR`` first and only then listens on ``127.0.0.1:$SAGEMAKER_BIND_TO_PORT``; if loading
fails it writes one ``MODELGATE-FAILURE: <reason>`` line to stderr and exits with status 1.

Modules, from the outside in:

- ``__main__``: command line, thread-count defaults, load-or-fail, serve
- ``settings``: the SageMaker environment variables, read once
- ``server``: binds and runs a front end: ``http1`` (default: asyncio protocol, httptools, uvloop)
  or ``asgi`` (raw ASGI callable on uvicorn); ``routes``: ``/ping``, ``/invocations``, 404 ``{}``, 413
- ``scheduling``: event loop or worker thread for each prediction (``SAGEMAKER_MODEL_SERVER_WORKERS``)
- ``protocol``: ``Invocation`` -> handler -> ``Reply``; ``errors``: status-carrying errors, failure lines
- XGBoost algorithm mode: ``xgb_algorithm`` (status table, content types), ``xgb_model`` (model files,
  ensembles), ``xgb_fastpath`` (C-API dense prediction), ``xgb_outputs`` (answers, selectable output),
  ``payloads`` (CSV, libsvm, RecordIO-protobuf parsing), ``recordio`` (the wire format)
- script mode, both images: ``script_loader`` (find, pip-install, import), ``script_handler``
  (handler functions, context, errors), ``script_defaults`` (each image's default functions)
- ``mediatypes``: Content-Type and Accept parsing
"""
