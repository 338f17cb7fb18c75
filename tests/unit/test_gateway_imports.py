"""What the gateway must not import once built: each of these cost it resident memory for code it does not
run (bench/RESULTS.md, "Memory"). One subprocess builds the server and lists what it imported."""

from __future__ import annotations

import subprocess
import sys

import pytest

_CODE = (
    "import sys, tempfile\n"
    "from modelgate.settings import Settings\n"
    "import modelgate.server\n"
    "with tempfile.TemporaryDirectory() as tmp:\n"
    "    modelgate.server.build(Settings(data_dir=tmp, port=0))\n"
    "    print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))\n"
)

FORBIDDEN = {
    "botocore": "botocore's service models: api/shape_model.py reads our generated cut (3.3 MB)",
    "boto3": "s3:// model data is fetched by a child process (about 20 MB)",
    "uvicorn": "api/serve_http.py and api/asgi_cycle.py serve HTTP; only the containers may use uvicorn (2.6 MB)",
    "click": "uvicorn's command line, pulled by its package",
    "pydantic_settings": "settings.py reads MODELGATE_* itself (1.2 MB)",
}


@pytest.fixture(scope="module")
def imported() -> set[str]:
    out = subprocess.run([sys.executable, "-c", _CODE], capture_output=True, text=True, check=True, timeout=60)
    return set(out.stdout.splitlines()[-1].split())


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_the_gateway_does_not_import(package: str, imported: set[str]) -> None:
    assert "modelgate" in imported and "sqlalchemy" in imported  # the listing is real
    assert package not in imported, FORBIDDEN[package]
