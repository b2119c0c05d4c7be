#!/usr/bin/env bash
# Install provstore into .venv and run the example pipeline on the default SQLite store.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e .
exec .venv/bin/python scripts/example_pipeline.py "$@"
