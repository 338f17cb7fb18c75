#!/usr/bin/env bash
# Install modelgate into .venv and start it on 127.0.0.1:8080 with the churn-demo endpoint. Flags given to
# this script go to `modelgate serve` (--port, --host, --data-dir, --allow-remote); the CLI is then
# .venv/bin/modelgate (or `modelgate` after `source .venv/bin/activate`).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/pip install --quiet --upgrade pip
.venv/bin/pip install --quiet -e .
exec .venv/bin/modelgate serve --demo "$@"
