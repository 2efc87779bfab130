#!/bin/sh
# azd postprovision hook (POSIX sh; postprovision.ps1 does the same steps for Windows).
# azd runs it after `azd provision` / `azd up` with infra/main.bicep's outputs in the environment.
#
# Step 1: upload the flows' prompts to the prompts container
# Step 2: build the Teams app package
# Step 3: print the calling webhook URL
# Step 4: check the Graph permissions granted to the bot (a warning, never a failure)
#
# Needs: az (logged in; `--auth-mode login` uploads with your own Entra identity, which needs a blob data role on
# the storage account) and python3 (PYTHON overrides it). Tuning: PROMPT_UPLOAD_ATTEMPTS (default 6) and
# PROMPT_UPLOAD_RETRY_SECONDS (default 20): a role assignment made by the same provision can take minutes to apply.
set -eu

ROOT=$(CDPATH='' cd -- "$(dirname -- "$0")/../.." && pwd)
# upload_batch: the retried blob upload, shared with the other hooks (found next to this file, before the cd).
# shellcheck source=lib/upload.sh
. "$(dirname -- "$0")/lib/upload.sh"
cd "$ROOT"
PYTHON=${PYTHON:-python3}
# The one list of Graph permissions the bot needs: also read by infra/entra/app.bicep and docs/entra-portal.md.
PERMISSIONS_FILE="$ROOT/infra/graph-permissions.json"

say() { printf '==> %s\n' "$*"; }
warn() { printf 'WARNING: %s\n' "$*" >&2; }
fail() { printf 'postprovision: %s\n' "$*" >&2; exit 1; }

require() {
    for name in "$@"; do
        eval "value=\${$name:-}"
        [ -n "$value" ] || fail "$name is not set: it is an output of infra/main.bicep (run azd provision)"
    done
}

# Step 1: upload the flows' prompts to the prompts container.
# A prompt's blob name is its path relative to flows/ (flows/prompts/welcome.wav -> prompts/welcome.wav): the key
# calling/flows/prompts.py appends to the prompts base URL, so the blobs are where the app asks for them.
require AZURE_STORAGE_ACCOUNT_NAME PROMPTS_CONTAINER_NAME
say "Step 1: uploading the prompts (flows/**/*.wav) to $AZURE_STORAGE_ACCOUNT_NAME/$PROMPTS_CONTAINER_NAME"
upload_batch 'the prompts' "${PROMPT_UPLOAD_ATTEMPTS:-6}" "${PROMPT_UPLOAD_RETRY_SECONDS:-20}" \
    "$AZURE_STORAGE_ACCOUNT_NAME" "$PROMPTS_CONTAINER_NAME" "$ROOT/flows" --pattern '*.wav'

# Step 2: build the Teams app package.
if [ -n "${BOT_APP_ID:-}" ]; then
    require AZURE_FUNCTION_HOST
    say "Step 2: building the Teams app package"
    package=$("$PYTHON" "$ROOT/appPackage/build.py" --bot-app-id "$BOT_APP_ID" --host "$AZURE_FUNCTION_HOST" \
        --out "$ROOT/appPackage/build/${AZURE_ENV_NAME:-default}") || fail "building the Teams app package failed (above)"
    say "Teams app package: $package"
    echo "    Upload it in the Teams admin center (Teams apps > Manage apps > Upload new app)."
else
    warn "Step 2 skipped: BOT_APP_ID is not set, so there is no Teams app package yet. Register the bot's Entra app (infra/entra/app.bicep or docs/entra-portal.md), then: azd env set BOT_APP_ID <app id> && azd provision"
fi

# Step 3: print the calling webhook URL.
require BOT_WEBHOOK_URL
say "Step 3: calling webhook: $BOT_WEBHOOK_URL"
echo "    The Azure Bot's Microsoft Teams channel (Calling tab) must use it as its webhook for calling."

# Step 4: check the Graph permissions granted to the bot (a warning, never a failure).
say "Step 4: checking the Microsoft Graph permissions granted to the bot's app"
if [ -z "${BOT_APP_ID:-}" ]; then
    warn "Step 4 skipped: BOT_APP_ID is not set"
    exit 0
fi
url="https://graph.microsoft.com/v1.0/servicePrincipals(appId='$BOT_APP_ID')/appRoleAssignments"
if ! granted=$(az rest --method get --url "$url" --only-show-errors --output json); then
    warn "could not read the permissions granted to app $BOT_APP_ID (above). Check them in the Entra admin center: App registrations > the bot > API permissions."
    exit 0
fi
# Prints "NAME: WHAT IT IS FOR" for each permission in the list that is not granted; nothing when all are.
if ! missing=$(printf '%s' "$granted" | "$PYTHON" -c '
import json, sys
required = json.load(open(sys.argv[1], encoding="utf-8"))["appRoles"]
granted = {a.get("appRoleId", "").lower() for a in json.load(sys.stdin).get("value", [])}
for role in required:
    if role["id"].lower() not in granted:
        print(role["value"] + ": " + role["for"])
' "$PERMISSIONS_FILE"); then
    warn "could not compare the granted permissions with $PERMISSIONS_FILE (above)"
    exit 0
fi
if [ -z "$missing" ]; then
    say "every Graph permission in infra/graph-permissions.json is granted to app $BOT_APP_ID"
else
    warn "the bot's app $BOT_APP_ID lacks these Microsoft Graph application permissions (admin consent):"
    printf '%s\n' "$missing" | sed 's/^/    /' >&2
    warn "grant them as a tenant admin: deploy infra/entra/app.bicep, or follow docs/entra-portal.md (API permissions > Grant admin consent). Calls fail with 403 until they are granted."
fi
