# The azd hooks' blob upload, retried (PowerShell; upload.sh beside it is the POSIX sh twin). Not a hook: the hooks
# that upload (preprovision.ps1, postprovision.ps1, predeploy.ps1) dot-source it, relative to their own file:
#     . (Join-Path $PSScriptRoot 'lib/Upload.ps1')
#
# Invoke-UploadBatch -What -Attempts -Pause -Account -Container -Source [-Options]
#   Uploads the folder Source to the container Container of the storage account Account, overwriting, with
#   `az storage blob upload-batch --auth-mode login` (your own Entra identity, which needs a blob data role on the
#   account); each of Options ('--pattern', '*.wav') goes to az after --source. A failed upload is tried again, up to
#   Attempts tries in all, Pause seconds apart: a role assignment made by the same provision can take minutes to
#   apply, so the first upload after a fresh provision commonly fails with 403. What names the upload in the
#   messages ('the prompts'). When the last try fails too, it stops the hook with an error that says so (prefixed
#   with the hook's name): the hook exits with status 1.

function Invoke-UploadBatch {
    param(
        [Parameter(Mandatory = $true)] [string] $What,
        [Parameter(Mandatory = $true)] [int] $Attempts,
        [Parameter(Mandatory = $true)] [int] $Pause,
        [Parameter(Mandatory = $true)] [string] $Account,
        [Parameter(Mandatory = $true)] [string] $Container,
        [Parameter(Mandatory = $true)] [string] $Source,
        [string[]] $Options = @()
    )
    # The hook that called: $MyInvocation describes the caller's script, not this file.
    $hook = [System.IO.Path]::GetFileNameWithoutExtension("$($MyInvocation.PSCommandPath)")
    for ($attempt = 1; ; $attempt++) {
        az storage blob upload-batch --auth-mode login `
            --account-name $Account --destination $Container `
            --source $Source @Options --overwrite true --only-show-errors --output none
        if ($LASTEXITCODE -eq 0) { return }
        if ($attempt -ge $Attempts) {
            Write-Error -ErrorAction Stop "${hook}: uploading $What failed $Attempts times; check that your account has Storage Blob Data Contributor on $Account"
        }
        Write-Warning "uploading $What failed (attempt $attempt of $Attempts; a new role assignment can take a few minutes); retrying in ${Pause}s"
        Start-Sleep -Seconds $Pause
    }
}
