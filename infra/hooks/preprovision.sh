#!/bin/sh
# azd preprovision hook (POSIX sh; preprovision.ps1 does the same steps for Windows).
# azd runs it before `azd provision` / `azd up` deploys infra/main.bicep, with the environment's values (the outputs
# of the last provision among them). It acts only with the media VM (DEPLOY_MEDIA_VM=true): the scale set's setup
# script runs during the provision itself, so the certificate must already be in the Key Vault and what the script
# downloads already in the media-artifacts container (docs/media-vm.md).
#
# Step 1: check whether the media VM is deployed and its storage exists
# Step 2: check the media certificate is in the Key Vault
# Step 3: build the media VM artifacts (the worker wheel, the setup files, their manifest)
# Step 4: upload the media VM artifacts to the media-artifacts container
#
# Needs: az (logged in; `--auth-mode login` uploads with your own Entra identity, which main.bicep gives Storage Blob
# Data Contributor through AZURE_PRINCIPAL_ID) and Python 3.11+ (PYTHON overrides it; otherwise the repo's .venv,
# set up by `python3 dev.py setup` when needed). Tuning: ARTIFACT_UPLOAD_ATTEMPTS (default 6) and
# ARTIFACT_UPLOAD_RETRY_SECONDS (default 20).
set -eu

ROOT=$(CDPATH='' cd -- "$(dirname -- "$0")/../.." && pwd)
# upload_batch: the retried blob upload, shared with the other hooks (found next to this file, before the cd).
# shellcheck source=lib/upload.sh
. "$(dirname -- "$0")/lib/upload.sh"
cd "$ROOT"

say() { printf '==> %s\n' "$*"; }
fail() { printf 'preprovision: %s\n' "$*" >&2; exit 1; }

# Step 1: check whether the media VM is deployed and its storage exists.
deploy=$(printf '%s' "${DEPLOY_MEDIA_VM:-false}" | tr '[:upper:]' '[:lower:]')
if [ "$deploy" != "true" ]; then
    say "Step 1: DEPLOY_MEDIA_VM is not true: no media VM, nothing to prepare"
    exit 0
fi
for name in AZURE_STORAGE_ACCOUNT_NAME MEDIA_ARTIFACTS_CONTAINER_NAME AZURE_KEY_VAULT_NAME; do
    eval "value=\${$name:-}"
    [ -n "$value" ] || fail "DEPLOY_MEDIA_VM=true, but $name is not set: the storage account and Key Vault come from a first provision. Run azd provision with DEPLOY_MEDIA_VM=false first, put the media certificate into the Key Vault, then set DEPLOY_MEDIA_VM=true (docs/media-vm.md)."
done
[ -n "${BOT_APP_ID:-}" ] || fail "DEPLOY_MEDIA_VM=true, but BOT_APP_ID is not set: the media worker answers calls as the bot's app. Register it first (docs/deployment.md, step 2)."
certificate=${MEDIA_CERTIFICATE_NAME:-media-tls}
say "Step 1: the media VM is deployed: preparing $AZURE_STORAGE_ACCOUNT_NAME/$MEDIA_ARTIFACTS_CONTAINER_NAME and $AZURE_KEY_VAULT_NAME"

# Step 2: check the media certificate is in the Key Vault.
say "Step 2: checking the certificate $certificate in the Key Vault $AZURE_KEY_VAULT_NAME"
if ! az keyvault certificate show --vault-name "$AZURE_KEY_VAULT_NAME" --name "$certificate" \
    --query id --output tsv --only-show-errors >/dev/null; then
    fail "the certificate $certificate is not in the Key Vault $AZURE_KEY_VAULT_NAME (or you cannot read it). The scale set installs it at its first boot and waits for it. Import a PFX for the media service's public name: az keyvault certificate import --vault-name $AZURE_KEY_VAULT_NAME --name $certificate --file media.pfx --password <its password> (docs/media-vm.md)"
fi

# Step 3: build the media VM artifacts (the worker wheel, the setup files, their manifest).
if [ -n "${PYTHON:-}" ]; then
    python=$PYTHON
else
    say "Step 3: setting up .venv for the build (python3 dev.py setup, only when needed)"
    python3 -c 'import dev; dev.setup()'
    python="$ROOT/.venv/bin/python"
fi
stage=$(mktemp -d "${TMPDIR:-/tmp}/media-artifacts.XXXXXX")
trap 'rm -rf "$stage"' EXIT
say "Step 3: building the media VM artifacts into $stage"
"$python" "$ROOT/mediavm/setup/stage.py" --out "$stage" || fail "building the media VM artifacts failed (above)"

# Step 4: upload the media VM artifacts to the media-artifacts container.
say "Step 4: uploading the media VM artifacts to $AZURE_STORAGE_ACCOUNT_NAME/$MEDIA_ARTIFACTS_CONTAINER_NAME"
upload_batch 'the media VM artifacts' "${ARTIFACT_UPLOAD_ATTEMPTS:-6}" "${ARTIFACT_UPLOAD_RETRY_SECONDS:-20}" \
    "$AZURE_STORAGE_ACCOUNT_NAME" "$MEDIA_ARTIFACTS_CONTAINER_NAME" "$stage"
say "the media VM artifacts are in place; new instances (and reimaged ones) install them"
