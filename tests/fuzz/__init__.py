"""Fuzz tests: hypothesis requests from the service models, sent raw to a real server process.

* ``values.py`` valid values from botocore's shapes, ``mutate.py`` the mutations of them, ``world.py`` the
  resources that exist (so that requests name them), ``protocols.py`` the AWS protocols written by hand,
  ``wire.py`` raw HTTP, ``fuzzer.py`` the loop and the judgement, ``run.py`` the settings and final checks;
* one module per front: ``test_sagemaker.py`` (control plane), ``test_cloudwatch.py`` (JSON 1.0,
  rpc-v2-cbor, query), ``test_runtime_ab.py`` (InvokeEndpoint and the A/B routes).

See ``run.py`` for ``MODELGATE_FUZZ_EXAMPLES`` and ``MODELGATE_FUZZ_SEED``.
"""
