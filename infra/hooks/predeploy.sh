#!/bin/sh
# azd predeploy hook (POSIX sh; predeploy.ps1 does the same steps for Windows).
# azd runs it before deploying the Function App: an invalid flow stops the deployment here, with the checker's
# FILE:LINE:COLUMN message, instead of failing calls in production.
#
# Step 1: choose the Python that runs the flow checker
# Step 2: check every shipped flow, rendering its say: prompts first
# Step 3: upload the rendered say prompts to the prompts container
#
# Needs: az for step 3 (logged in; `--auth-mode login` uploads with your own Entra identity, which needs a blob data
# role on the storage account). Tuning, as in postprovision: PROMPT_UPLOAD_ATTEMPTS (default 6) and
# PROMPT_UPLOAD_RETRY_SECONDS (default 20): a role assignment made by the same provision can take minutes to apply.
set -eu

ROOT=$(CDPATH='' cd -- "$(dirname -- "$0")/../.." && pwd)
# upload_batch: the retried blob upload, shared with the other hooks (found next to this file, before the cd).
# shellcheck source=lib/upload.sh
. "$(dirname -- "$0")/lib/upload.sh"
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
    upload_batch 'the rendered say prompts' "${PROMPT_UPLOAD_ATTEMPTS:-6}" "${PROMPT_UPLOAD_RETRY_SECONDS:-20}" \
        "$AZURE_STORAGE_ACCOUNT_NAME" "$PROMPTS_CONTAINER_NAME" "$ROOT/flows" --pattern '.rendered/*.wav'
fi
