# azd predeploy hook (PowerShell; predeploy.sh does the same steps for Linux and macOS).
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
$ErrorActionPreference = 'Stop'
Set-StrictMode -Version Latest

$Root = (Resolve-Path (Join-Path $PSScriptRoot '../..')).Path
# Invoke-UploadBatch: the retried blob upload, shared with the other hooks (found next to this file).
. (Join-Path $PSScriptRoot 'lib/Upload.ps1')
Set-Location $Root

# Step 1: choose the Python that runs the flow checker.
# The checker (python -m calling.flows) imports the app's package and its pinned dependencies. PYTHON, when set,
# is used as it is. Otherwise the repo's .venv, which every `python3 dev.py` command sets up: dev.setup() makes
# or updates it (pinned, from pyproject.toml and requirements.txt) and does nothing when it is up to date, so a
# deploy from a fresh clone works and later deploys cost nothing.
if ($env:PYTHON) {
    $python = $env:PYTHON
}
else {
    Write-Host '==> Step 1: setting up .venv for the flow checker (python3 dev.py setup, only when needed)'
    $bootstrap = $null
    foreach ($candidate in 'python', 'python3') {
        if (Get-Command $candidate -ErrorAction SilentlyContinue) { $bootstrap = $candidate; break }
    }
    if (-not $bootstrap) { Write-Error 'predeploy: Python 3.11 or newer is not on PATH (set PYTHON to its path)' }
    & $bootstrap -c 'import dev; dev.setup()'
    if ($LASTEXITCODE -ne 0) { Write-Error 'predeploy: setting up .venv failed (above)' }
    $python = Join-Path $Root '.venv/Scripts/python.exe'
    if (-not (Test-Path $python)) { $python = Join-Path $Root '.venv/bin/python' }
}

# Step 2: check every shipped flow, rendering its say: prompts first.
# See predeploy.sh: SAY_RENDERER picks espeak-ng or azure-speech, and the app must run with the same one.
# With a Speech resource (DEPLOY_SPEECH: azd exports AZURE_SPEECH_ENDPOINT, _RESOURCE_ID and _REGION), azure-speech.
if ($env:AZURE_SPEECH_ENDPOINT) { $env:SAY_RENDERER = 'azure-speech' } else { $env:SAY_RENDERER = 'espeak-ng' }
Write-Host "==> Step 2: say prompts render with $($env:SAY_RENDERER)"
$flows = @(Get-ChildItem -Path (Join-Path $Root 'flows') -Filter '*.yaml' -File | Sort-Object Name |
    ForEach-Object { "flows/$($_.Name)" })
if ($flows.Count -eq 0) {
    Write-Host '==> Step 2: no flows in flows/ to check'
    exit 0
}
Write-Host "==> Step 2: checking the flows: $($flows -join ' ')"
& $python -m calling.flows check --render @flows
if ($LASTEXITCODE -ne 0) {
    [Console]::Error.WriteLine('predeploy: a flow is invalid (FILE:LINE:COLUMN above); fix it, then deploy again')
    exit 1
}

# Step 3: upload the rendered say prompts to the prompts container.
# postprovision runs before this hook on a first `azd up`, so prompts rendered just now go up here, same keys.
if ((Test-Path (Join-Path $Root 'flows/.rendered')) -and $env:AZURE_STORAGE_ACCOUNT_NAME -and $env:PROMPTS_CONTAINER_NAME) {
    Write-Host "==> Step 3: uploading the rendered say prompts to $($env:AZURE_STORAGE_ACCOUNT_NAME)/$($env:PROMPTS_CONTAINER_NAME)"
    $attempts = if ($env:PROMPT_UPLOAD_ATTEMPTS) { [int] $env:PROMPT_UPLOAD_ATTEMPTS } else { 6 }
    $pause = if ($env:PROMPT_UPLOAD_RETRY_SECONDS) { [int] $env:PROMPT_UPLOAD_RETRY_SECONDS } else { 20 }
    Invoke-UploadBatch -What 'the rendered say prompts' -Attempts $attempts -Pause $pause `
        -Account $env:AZURE_STORAGE_ACCOUNT_NAME -Container $env:PROMPTS_CONTAINER_NAME `
        -Source (Join-Path $Root 'flows') -Options '--pattern', '.rendered/*.wav'
}

exit 0
