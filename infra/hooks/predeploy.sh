#!/bin/sh
# azd predeploy hook (POSIX sh; predeploy.ps1 does the same steps for Windows).
# azd runs it before deploying the Function App: an invalid flow stops the deployment here, with the checker's
# FILE:LINE:COLUMN message, instead of failing calls in production.
#
# Step 1: choose the Python that runs the flow checker
# Step 2: check every shipped flow
set -eu

ROOT=$(CDPATH='' cd -- "$(dirname -- "$0")/../.." && pwd)
cd "$ROOT"

# Step 1: choose the Python that runs the flow checker.
# The checker (python -m calling.flows) imports the app's package and its pinned dependencies. PYTHON, when set,
# is used as it is. Otherwise the repo's .venv, which every `python3 dev.py` command sets up: dev.setup() makes
# or updates it (pinned, from pyproject.toml and requirements.txt) and does nothing when it is up to date, so a
# deploy from a fresh clone works and later deploys cost nothing.
if [ -n "${PYTHON:-}" ]; then
    python=$PYTHON
else
    printf '==> Step 1: setting up .venv for the flow checker (python3 dev.py setup, only when needed)\n'
    python3 -c 'import dev; dev.setup()'
    python="$ROOT/.venv/bin/python"
fi

# Step 2: check every shipped flow.
set -- flows/*.yaml
if [ ! -e "$1" ]; then
    printf '==> Step 2: no flows in flows/ to check\n'
    exit 0
fi
printf '==> Step 2: checking the flows: %s\n' "$*"
if ! "$python" -m calling.flows check "$@"; then
    printf 'predeploy: a flow is invalid (FILE:LINE:COLUMN above); fix it, then deploy again\n' >&2
    exit 1
fi
