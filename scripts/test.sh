#!/usr/bin/env bash
# The one command that runs the test suite, here and in CI:
#
#     bash scripts/test.sh [PYTEST-ARGS...]
#
# Creates .venv if it is missing, installs provstore with its test extras into it, makes sure
# the PostgreSQL and MariaDB test servers are up (scripts/start-test-databases.sh) and, in CI,
# the Galera cluster (scripts/start-galera.sh), then runs pytest with the given arguments.
# Works from any directory; exits with pytest's exit code.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [[ ! -x .venv/bin/python ]]; then
    echo "test.sh: creating .venv"
    "${PYTHON:-python3}" -m venv .venv
fi

echo "test.sh: installing provstore[test] into .venv"
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test,docs]'

bash scripts/start-test-databases.sh

# tests/test_galera.py needs a three-node MariaDB Galera cluster (~0.5 GiB, ~35 s to start):
# started in CI, where those tests are required, and when PROVSTORE_TEST_GALERA=1; elsewhere
# they skip unless one is already running.
if [[ ${CI:-} == true || ${PROVSTORE_TEST_GALERA:-} == 1 ]]; then
    bash scripts/start-galera.sh
fi

# Graphviz `dot` checks the lineage DOT output (tests/test_graph.py). Best effort: never fatal.
if ! command -v dot >/dev/null && command -v apt-get >/dev/null && [[ $(id -u) -eq 0 ]]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq graphviz >/dev/null 2>&1 \
        || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq graphviz >/dev/null 2>&1; } \
        || echo "test.sh: could not install graphviz; the DOT tests will skip (or fail when CI=true)"
fi

# Debian's Chromium runs the browser test (tests/test_web_browser.py) through Playwright, which
# never downloads a browser of its own. Missing without root: the test skips (fails when CI=true).
if [[ ! -x /usr/bin/chromium ]] && command -v apt-get >/dev/null && [[ $(id -u) -eq 0 ]]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq chromium >/dev/null 2>&1 \
        || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq chromium >/dev/null 2>&1; } \
        || echo "test.sh: could not install chromium; the browser test will skip (or fail when CI=true)"
fi

exec .venv/bin/python -m pytest "$@"
