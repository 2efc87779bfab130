#!/bin/sh
# azd predeploy hook (POSIX sh; predeploy.ps1 does the same steps for Windows).
# azd runs it before deploying the Function App: an invalid flow stops the deployment here, with the checker's
# FILE:LINE:COLUMN message, instead of failing calls in production.
#
# Step 1: choose the Python that runs the flow checker
# Step 2: check every shipped flow, rendering its say: prompts first
# Step 3: upload the rendered say prompts to the prompts container
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

# Step 2: check every shipped flow, rendering its say: prompts first.
# `check --render` renders each say prompt that has no file yet into flows/.rendered/say-<digest>.wav (the digest
# covers text, voice, language and renderer, so an unchanged prompt is not rendered again and keeps its URI) and
# the Function App package carries them like any prompt. SAY_RENDERER picks the renderer: espeak-ng (default) or
# azure-speech (Azure AI Speech, docs/configuration.md, with the deployer's Entra token); the app must run
# with the same SAY_RENDERER, since it names the files.
# With a Speech resource (DEPLOY_SPEECH, so azd exports AZURE_SPEECH_ENDPOINT, _RESOURCE_ID and _REGION from
# main.bicep's outputs), render with Azure AI Speech, as the Function App's SAY_RENDERER says; else espeak-ng.
if [ -n "${AZURE_SPEECH_ENDPOINT:-}" ]; then
    SAY_RENDERER=azure-speech
    export SAY_RENDERER AZURE_SPEECH_ENDPOINT AZURE_SPEECH_RESOURCE_ID AZURE_SPEECH_REGION
else
    SAY_RENDERER=espeak-ng
    export SAY_RENDERER
fi
printf '==> Step 2: say prompts render with %s\n' "$SAY_RENDERER"
set -- flows/*.yaml
if [ ! -e "$1" ]; then
    printf '==> Step 2: no flows in flows/ to check\n'
    exit 0
fi
printf '==> Step 2: checking the flows: %s\n' "$*"
if ! "$python" -m calling.flows check --render "$@"; then
    printf 'predeploy: a flow is invalid (FILE:LINE:COLUMN above); fix it, then deploy again\n' >&2
    exit 1
fi

# Step 3: upload the rendered say prompts to the prompts container.
# postprovision uploads flows/**/*.wav, but it runs before this hook on a first `azd up`; prompts rendered just now
# go up here, under the same keys (.rendered/say-<digest>.wav).
if [ -d flows/.rendered ] && [ -n "${AZURE_STORAGE_ACCOUNT_NAME:-}" ] && [ -n "${PROMPTS_CONTAINER_NAME:-}" ]; then
    printf '==> Step 3: uploading the rendered say prompts to %s/%s\n' "$AZURE_STORAGE_ACCOUNT_NAME" "$PROMPTS_CONTAINER_NAME"
    if ! az storage blob upload-batch --auth-mode login \
        --account-name "$AZURE_STORAGE_ACCOUNT_NAME" --destination "$PROMPTS_CONTAINER_NAME" \
        --source "$ROOT/flows" --pattern '.rendered/*.wav' --overwrite true --only-show-errors --output none; then
        printf 'predeploy: uploading the rendered say prompts failed (Storage Blob Data Contributor on %s?)\n' \
            "$AZURE_STORAGE_ACCOUNT_NAME" >&2
        exit 1
    fi
fi
