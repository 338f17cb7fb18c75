#!/usr/bin/env bash
# Install modelgate with its test tools into .venv, then lint, type-check and run every test.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/pip install --quiet --upgrade pip
.venv/bin/pip install --quiet -e '.[test]'
.venv/bin/ruff check src tests
.venv/bin/mypy
.venv/bin/pytest -q "$@"
