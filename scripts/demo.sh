#!/usr/bin/env bash
# Install provstore into .venv, then track the example pipeline and verify its product:
#
#     bash scripts/demo.sh [--python PYTHON]
#
# The demo keeps to a scratch directory of its own: its store (PROVSTORE_URL), provstore's
# cache (PROVSTORE_CACHE_DIR) and the pipeline's files. The directory is removed when the
# script ends, however it ends, so your default store (~/.local/share/provstore) and cache are
# not touched. --python PYTHON runs the demo with that interpreter, which must already have
# provstore installed, and installs nothing. Exits with the exit code of `provstore verify`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

python=""
case "${1:-}" in
    "") ;;
    --python) python="${2:?--python needs an interpreter}" ;;
    *) echo "usage: bash scripts/demo.sh [--python PYTHON]" >&2; exit 2 ;;
esac

if [[ -z "$python" ]]; then
    [[ -x .venv/bin/python ]] || python3 -m venv .venv
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e .
    python=.venv/bin/python
fi

scratch="$(mktemp -d "${TMPDIR:-/tmp}/provstore-demo.XXXXXX")"
finish() {
    rm -rf "$scratch"
    echo "demo: removed its scratch store and files ($scratch)"
    if [[ "$python" == .venv/bin/python ]]; then
        echo "demo: provstore is installed in .venv; put it on PATH with: source .venv/bin/activate"
    fi
}
trap finish EXIT
export PROVSTORE_URL="sqlite:///$scratch/demo.db"
export PROVSTORE_CACHE_DIR="$scratch/cache"

"$python" scripts/example_pipeline.py "$scratch/work"
