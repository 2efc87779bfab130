# azd preprovision hook (PowerShell; preprovision.sh does the same steps for Linux and macOS).
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
$ErrorActionPreference = 'Stop'
Set-StrictMode -Version Latest

$Root = (Resolve-Path (Join-Path $PSScriptRoot '../..')).Path
# Invoke-UploadBatch: the retried blob upload, shared with the other hooks (found next to this file).
. (Join-Path $PSScriptRoot 'lib/Upload.ps1')
Set-Location $Root

function Say([string] $Message) { Write-Host "==> $Message" }
function Fail([string] $Message) { Write-Error "preprovision: $Message" }
function Get-Setting([string] $Name) { [Environment]::GetEnvironmentVariable($Name) }

# Step 1: check whether the media VM is deployed and its storage exists.
$deploy = "$(Get-Setting 'DEPLOY_MEDIA_VM')".ToLowerInvariant()
if ($deploy -ne 'true') {
    Say 'Step 1: DEPLOY_MEDIA_VM is not true: no media VM, nothing to prepare'
    exit 0
}
foreach ($name in 'AZURE_STORAGE_ACCOUNT_NAME', 'MEDIA_ARTIFACTS_CONTAINER_NAME', 'AZURE_KEY_VAULT_NAME') {
    if (-not (Get-Setting $name)) {
        Fail "DEPLOY_MEDIA_VM=true, but $name is not set: the storage account and Key Vault come from a first provision. Run azd provision with DEPLOY_MEDIA_VM=false first, put the media certificate into the Key Vault, then set DEPLOY_MEDIA_VM=true (docs/media-vm.md)."
    }
}
if (-not (Get-Setting 'BOT_APP_ID')) {
    Fail "DEPLOY_MEDIA_VM=true, but BOT_APP_ID is not set: the media worker answers calls as the bot's app. Register it first (docs/deployment.md, step 2)."
}
$account = $env:AZURE_STORAGE_ACCOUNT_NAME
$container = $env:MEDIA_ARTIFACTS_CONTAINER_NAME
$vault = $env:AZURE_KEY_VAULT_NAME
$certificate = if ($env:MEDIA_CERTIFICATE_NAME) { $env:MEDIA_CERTIFICATE_NAME } else { 'media-tls' }
Say "Step 1: the media VM is deployed: preparing $account/$container and $vault"

# Step 2: check the media certificate is in the Key Vault.
Say "Step 2: checking the certificate $certificate in the Key Vault $vault"
az keyvault certificate show --vault-name $vault --name $certificate --query id --output tsv --only-show-errors | Out-Null
if ($LASTEXITCODE -ne 0) {
    Fail "the certificate $certificate is not in the Key Vault $vault (or you cannot read it). The scale set installs it at its first boot and waits for it. Import a PFX for the media service's public name: az keyvault certificate import --vault-name $vault --name $certificate --file media.pfx --password <its password> (docs/media-vm.md)"
}

# Step 3: build the media VM artifacts (the worker wheel, the setup files, their manifest).
if ($env:PYTHON) {
    $python = $env:PYTHON
}
else {
    Say 'Step 3: setting up .venv for the build (python3 dev.py setup, only when needed)'
    $bootstrap = $null
    foreach ($candidate in 'python', 'python3') {
        if (Get-Command $candidate -ErrorAction SilentlyContinue) { $bootstrap = $candidate; break }
    }
    if (-not $bootstrap) { Fail 'Python 3.11 or newer is not on PATH (set PYTHON to its path)' }
    & $bootstrap -c 'import dev; dev.setup()'
    if ($LASTEXITCODE -ne 0) { Fail 'setting up .venv failed (above)' }
    $python = Join-Path $Root '.venv/Scripts/python.exe'
    if (-not (Test-Path $python)) { $python = Join-Path $Root '.venv/bin/python' }
}
$stage = Join-Path ([System.IO.Path]::GetTempPath()) ('media-artifacts.' + [guid]::NewGuid().ToString('N'))
New-Item -ItemType Directory -Path $stage | Out-Null
try {
    Say "Step 3: building the media VM artifacts into $stage"
    & $python (Join-Path $Root 'mediavm/setup/stage.py') --out $stage
    if ($LASTEXITCODE -ne 0) { Fail 'building the media VM artifacts failed (above)' }

# Step 4: upload the media VM artifacts to the media-artifacts container.
    Say "Step 4: uploading the media VM artifacts to $account/$container"
    $attempts = if ($env:ARTIFACT_UPLOAD_ATTEMPTS) { [int] $env:ARTIFACT_UPLOAD_ATTEMPTS } else { 6 }
    $pause = if ($env:ARTIFACT_UPLOAD_RETRY_SECONDS) { [int] $env:ARTIFACT_UPLOAD_RETRY_SECONDS } else { 20 }
    Invoke-UploadBatch -What 'the media VM artifacts' -Attempts $attempts -Pause $pause `
        -Account $account -Container $container -Source $stage
}
finally {
    Remove-Item -Recurse -Force $stage -ErrorAction SilentlyContinue
}
Say 'the media VM artifacts are in place; new instances (and reimaged ones) install them'

exit 0
