# azd postprovision hook (PowerShell; postprovision.sh does the same steps for Linux and macOS).
# azd runs it after `azd provision` / `azd up` with infra/main.bicep's outputs in the environment.
#
# Step 1: upload the flows' prompts to the prompts container
# Step 2: build the Teams app package
# Step 3: print the calling webhook URL
# Step 4: check the Graph permissions granted to the bot (a warning, never a failure)
#
# Needs: az (logged in; `--auth-mode login` uploads with your own Entra identity, which needs a blob data role on
# the storage account) and Python (PYTHON overrides it). Tuning: PROMPT_UPLOAD_ATTEMPTS (default 6) and
# PROMPT_UPLOAD_RETRY_SECONDS (default 20): a role assignment made by the same provision can take minutes to apply.
$ErrorActionPreference = 'Stop'
Set-StrictMode -Version Latest

$Root = (Resolve-Path (Join-Path $PSScriptRoot '../..')).Path
# Invoke-UploadBatch: the retried blob upload, shared with the other hooks (found next to this file).
. (Join-Path $PSScriptRoot 'lib/Upload.ps1')
Set-Location $Root
# The one list of Graph permissions the bot needs: also read by infra/entra/app.bicep and docs/entra-portal.md.
$PermissionsFile = Join-Path $Root 'infra/graph-permissions.json'

function Say([string] $Message) { Write-Host "==> $Message" }
function Warn([string] $Message) { Write-Warning $Message }
function Fail([string] $Message) { Write-Error "postprovision: $Message" }
function Get-Setting([string] $Name) { [Environment]::GetEnvironmentVariable($Name) }
function Require([string[]] $Names) {
    foreach ($name in $Names) {
        if (-not (Get-Setting $name)) { Fail "$name is not set: it is an output of infra/main.bicep (run azd provision)" }
    }
}
function Get-Python {
    if ($env:PYTHON) { return $env:PYTHON }
    foreach ($candidate in 'python', 'python3') {
        if (Get-Command $candidate -ErrorAction SilentlyContinue) { return $candidate }
    }
    Fail 'Python 3 is not on PATH (set PYTHON to its path)'
}

# Step 1: upload the flows' prompts to the prompts container.
# A prompt's blob name is its path relative to flows/ (flows/prompts/welcome.wav -> prompts/welcome.wav): the key
# calling/flows/prompts.py appends to the prompts base URL, so the blobs are where the app asks for them.
Require 'AZURE_STORAGE_ACCOUNT_NAME', 'PROMPTS_CONTAINER_NAME'
$account = $env:AZURE_STORAGE_ACCOUNT_NAME
$container = $env:PROMPTS_CONTAINER_NAME
Say "Step 1: uploading the prompts (flows/**/*.wav) to $account/$container"
$attempts = if ($env:PROMPT_UPLOAD_ATTEMPTS) { [int] $env:PROMPT_UPLOAD_ATTEMPTS } else { 6 }
$pause = if ($env:PROMPT_UPLOAD_RETRY_SECONDS) { [int] $env:PROMPT_UPLOAD_RETRY_SECONDS } else { 20 }
Invoke-UploadBatch -What 'the prompts' -Attempts $attempts -Pause $pause `
    -Account $account -Container $container -Source (Join-Path $Root 'flows') -Options '--pattern', '*.wav'

# Step 2: build the Teams app package.
$botAppId = Get-Setting 'BOT_APP_ID'
if ($botAppId) {
    Require 'AZURE_FUNCTION_HOST'
    $python = Get-Python
    Say 'Step 2: building the Teams app package'
    $envName = if ($env:AZURE_ENV_NAME) { $env:AZURE_ENV_NAME } else { 'default' }
    $out = Join-Path $Root "appPackage/build/$envName"
    $package = & $python (Join-Path $Root 'appPackage/build.py') --bot-app-id $botAppId --host $env:AZURE_FUNCTION_HOST --out $out
    if ($LASTEXITCODE -ne 0) { Fail 'building the Teams app package failed (above)' }
    Say "Teams app package: $package"
    Write-Host '    Upload it in the Teams admin center (Teams apps > Manage apps > Upload new app).'
}
else {
    Warn 'Step 2 skipped: BOT_APP_ID is not set, so there is no Teams app package yet. Register the bot''s Entra app (infra/entra/app.bicep or docs/entra-portal.md), then: azd env set BOT_APP_ID <app id>; azd provision'
}

# Step 3: print the calling webhook URL.
Require 'BOT_WEBHOOK_URL'
Say "Step 3: calling webhook: $env:BOT_WEBHOOK_URL"
Write-Host '    The Azure Bot''s Microsoft Teams channel (Calling tab) must use it as its webhook for calling.'

# Step 4: check the Graph permissions granted to the bot (a warning, never a failure).
Say 'Step 4: checking the Microsoft Graph permissions granted to the bot''s app'
if (-not $botAppId) {
    Warn 'Step 4 skipped: BOT_APP_ID is not set'
    exit 0
}
$url = "https://graph.microsoft.com/v1.0/servicePrincipals(appId='$botAppId')/appRoleAssignments"
$granted = az rest --method get --url $url --only-show-errors --output json
if ($LASTEXITCODE -ne 0) {
    Warn "could not read the permissions granted to app $botAppId (above). Check them in the Entra admin center: App registrations > the bot > API permissions."
    exit 0
}
try {
    $required = (Get-Content -Raw -Encoding utf8 $PermissionsFile | ConvertFrom-Json).appRoles
    $grantedIds = @((($granted | Out-String) | ConvertFrom-Json).value | ForEach-Object { "$($_.appRoleId)".ToLower() })
}
catch {
    Warn "could not compare the granted permissions with ${PermissionsFile}: $_"
    exit 0
}
$missing = @($required | Where-Object { $grantedIds -notcontains $_.id.ToLower() })
if ($missing.Count -eq 0) {
    Say "every Graph permission in infra/graph-permissions.json is granted to app $botAppId"
}
else {
    Warn "the bot's app $botAppId lacks these Microsoft Graph application permissions (admin consent):"
    foreach ($role in $missing) { Write-Warning "    $($role.value): $($role.for)" }
    Warn 'grant them as a tenant admin: deploy infra/entra/app.bicep, or follow docs/entra-portal.md (API permissions > Grant admin consent). Calls fail with 403 until they are granted.'
}

exit 0
