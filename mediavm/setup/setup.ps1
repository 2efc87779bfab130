<#
.SYNOPSIS
    Sets up one media VM instance: the media worker (python -m mediavm) as a Windows service, with everything
    the Windows media engine needs.

.DESCRIPTION
    The scale set's Custom Script Extension (infra/modules/mediavm.bicep, "MediaSetup") downloads this file from
    the media-artifacts container with the instance's managed identity and runs it as SYSTEM with Windows
    PowerShell 5.1, after the Key Vault extension has put the media certificate into LocalMachine\My. It takes no
    arguments: its configuration is the instance's userData (JSON written by mediavm.bicep), its ports come from
    the load balancer's port-mapping query. docs/media-vm.md describes every step and what to check.

    Steps (each a function below; tests/test_setup_script.py checks they exist and run):
      Start-SetupLog                 transcript in C:\MediaWorker\logs, event log sources
      Read-InstanceConfig            userData from the instance metadata service (base64 JSON)
      Get-InstanceMetadata           this instance's resource id, subscription, resource group, cloud
      Save-Artifacts                 manifest.json, the worker wheel, its pinned requirements, the service wrapper
                                     and vmtool.py from the media-artifacts container (managed identity), SHA-256
                                     checked against the manifest
      Install-VcRedist               the Visual C++ 2015-2022 runtime (the media library's native code needs it)
      Install-MediaFoundation        the Server-Media-Foundation feature (the same; a restart may follow the script)
      Install-Python                 CPython from python.org's NuGet package 'python', pinned
      Install-Worker                 a venv with the pinned requirements (wheels only, --no-deps) and the wheel
      Install-DotNetRuntime          the .NET and ASP.NET Core runtimes of one release, pinned, SHA-512 checked
      Install-MediaLibrary           Microsoft.Skype.Bots.Media, Microsoft.Graph.Communications.Calls.Media and
                                     their dependencies from nuget.org into MEDIA_LIBRARY_DIR
      Get-InstanceNatPorts           this instance's public ports (media control, signaling) from the load balancer
      Get-InstancePublicAddress      this instance's own public IP (ILPIP) from the scale set, or the load balancer's
      Get-ApplicationInsightsConnectionString   the component's connection string (ARM, with the identity)
      Install-WorkerService          the service wrapper compiled here, the service (virtual account
                                     NT SERVICE\MediaWorker, delayed start, restart on failure)
      Set-FolderAccess               ACLs: the install read-only for the service, its logs writable
      Find-MediaCertificate          the certificate for the service FQDN in LocalMachine\My: its thumbprint
      Grant-PrivateKeyAccess         the service account may read that certificate's private key (media library)
      Export-WorkerTlsFiles          PEM chain and key for the worker's HTTPS endpoint, readable by the service only
      Set-SslCertBinding             netsh http sslcert on the media control port, clientcertnegotiation=enable
      Set-FirewallRules              Windows Firewall: media control (TCP), signaling (TCP), media (UDP range)
      Write-WorkerEnvironment        the worker's settings as the service's environment (registry)
      Register-CertificateRefresh    an hourly task that rebinds a renewed certificate while the worker is idle
      Start-WorkerService            start, or restart when anything it runs changed (after the VM's restart when
                                     a feature asked for one: a task restarts it two minutes after the script)
      Test-WorkerHealth              GET /health on the signaling port (a warning, never a failure)

    Safe to run again (reimage, a new model, by hand): every step checks before it changes anything, replaces
    what it owns (delete-then-add) and the service is restarted only when something it runs changed. Nothing
    secret is in this file, in userData or in the service's environment: every Azure call signs in with the
    instance's managed identity.

.PARAMETER RefreshCertificate
    Only look for a renewed certificate (the hourly task): when the newest certificate for the service FQDN is
    not the one in use and the worker holds no call, export it, rebind it and restart the service.
#>
[CmdletBinding()]
param(
    [switch] $RefreshCertificate
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
[Net.ServicePointManager]::SecurityProtocol = [Net.ServicePointManager]::SecurityProtocol -bor [Net.SecurityProtocolType]::Tls12

# --- Pinned versions (docs/media-vm.md says why each) ------------------------------------------------------
# CPython from python.org's NuGet package 'python' (a plain zip of the official build: no installer, no registry,
# one folder per version, so a rerun or an upgrade never touches a running interpreter).
$PythonVersion = '3.13.8'
# The .NET runtime the media engine loads through pythonnet (coreclr): .NET 8, x64, with the ASP.NET Core runtime
# of the same release (the media library runs an HTTP endpoint inside: mediavm/windows/interop.py runtime_config).
$DotNetVersion = '8.0.34'
# Microsoft's real-time media library (Microsoft supports only the newest version or one under three months old),
# and the Graph Communications media package the engine takes AudioSendBuffer from (sending audio only).
$MediaLibraryPackage = 'Microsoft.Skype.Bots.Media'
$MediaLibraryVersion = '1.33.0.258-preview'
$MediaLibraryPackages = @(
    @{ Id = $MediaLibraryPackage; Version = $MediaLibraryVersion },
    @{ Id = 'Microsoft.Graph.Communications.Calls.Media'; Version = '1.2.0.17950' }
)
# Microsoft's permanent link to the current Visual C++ 2015-2022 redistributable (x64).
$VcRedistUrl = 'https://aka.ms/vs/17/release/vc_redist.x64.exe'
$NuGetFlatContainer = 'https://api.nuget.org/v3-flatcontainer'
$DotNetReleaseMetadata = 'https://builds.dotnet.microsoft.com/dotnet/release-metadata'
# Target frameworks taken from NuGet packages, best first (the runtime is .NET 8).
$FrameworkPreference = @('net8.0', 'net7.0', 'net6.0', 'net5.0', 'netcoreapp3.1', 'netstandard2.1', 'netstandard2.0')

# --- Names shared with infra/modules/mediavm.bicep (tests/test_setup_script.py checks they agree) ---------------
$NicName = 'nic'
$IpConfigName = 'ipconfig'
# The scale set's public IP configuration (instancePublicIpName): each instance's own public IP (ILPIP).
$InstancePublicIpName = 'instance'
# The scale set public IP API (Network's PublicIPAddresses_GetVirtualMachineScaleSetPublicIPAddress, on the
# Microsoft.Compute path) takes only this version.
$ScaleSetPublicIpApiVersion = '2018-10-01'
# The TEAMS_MEDIA_UDP network security rule's destination ports: the media library's UDP range.
$MediaUdpPorts = '16384-65535'
$NetworkApiVersion = '2024-05-01'
$InsightsApiVersion = '2020-02-02'
$StorageApiVersion = '2023-11-03'
$StorageResource = 'https://storage.azure.com/'
# The manifest's file roles, as mediavm/setup/stage.py writes them.
$ArtifactRoles = @('requirements', 'service', 'tool', 'wheel')
$ManifestBlob = 'mediavm/setup/manifest.json'

# --- This VM's layout ------------------------------------------------------------------------------------------
$ServiceName = 'MediaWorker'
$ServiceAccount = "NT SERVICE\$ServiceName"
$SetupEventSource = 'MediaWorkerSetup'
$RefreshTaskName = 'MediaWorker certificate refresh'
$RestartTaskName = 'MediaWorker restart after setup'
# The application id netsh records with the certificate binding (this project's own, fixed).
$HttpSysAppId = '{6f1b2c0e-8a4d-4c7e-9b1f-3d5a7c9e2f41}'
# How long a service stop waits for the worker after Ctrl+C before ending it.
$StopTimeoutSeconds = 60
$Root = Join-Path $env:SystemDrive 'MediaWorker'
$Paths = @{
    Logs         = Join-Path $Root 'logs'
    Artifacts    = Join-Path $Root 'artifacts'
    Downloads    = Join-Path $Root 'downloads'
    Python       = Join-Path $Root 'python'
    Venv         = Join-Path $Root 'venv'
    DotNet       = Join-Path $Root 'dotnet'
    MediaLibrary = Join-Path $Root 'media-library'
    Bin          = Join-Path $Root 'bin'
    Tls          = Join-Path $Root 'tls'
    App          = Join-Path $Root 'app'
    Setup        = Join-Path $Root 'setup'
}

$script:Config = $null
$script:Compute = $null
$script:ArmEndpoint = 'https://management.azure.com'
$script:Tokens = @{}
# Set by a step that changed something the running worker uses: the service is restarted at the end.
$script:Changed = $false
# Set when a Windows feature needs a restart: the VM restarts after this script, and the service starts then.
$script:RestartNeeded = $false

# --- Helpers ---------------------------------------------------------------------------------------------------

function Write-Step {
    param([Parameter(Mandatory)] [string] $Message)
    Write-Host ('==> {0:u} {1}' -f (Get-Date).ToUniversalTime(), $Message)
}

function Write-SetupEvent {
    param([Parameter(Mandatory)] [string] $Message, [string] $EntryType = 'Information', [int] $EventId = 1)
    try {
        Write-EventLog -LogName Application -Source $SetupEventSource -EntryType $EntryType -EventId $EventId -Message $Message
    }
    catch {
        Write-Warning "could not write to the event log: $($_.Exception.Message)"
    }
}

function Get-Property {
    # A property of a JSON object, or $null when it has none (strict mode refuses missing properties).
    param($Object, [Parameter(Mandatory)] [string] $Name)
    if ($null -eq $Object) { return $null }
    $property = $Object.PSObject.Properties[$Name]
    if ($null -eq $property) { return $null }
    return $property.Value
}

function Get-Setting {
    # A userData value by its dotted path ('loadBalancer.id'): every key infra/modules/mediavm.bicep writes.
    param([Parameter(Mandatory)] $Config, [Parameter(Mandatory)] [string] $Name, [switch] $Optional)
    $value = $Config
    foreach ($part in $Name.Split('.')) {
        $value = Get-Property $value $part
    }
    if (-not $Optional -and ($null -eq $value -or "$value" -eq '')) {
        throw "userData has no value for '$Name' (infra/modules/mediavm.bicep writes it; is this instance on an older scale set model?)"
    }
    if ($null -eq $value) { return '' }
    return $value
}

function Invoke-WithRetry {
    param(
        [Parameter(Mandatory)] [scriptblock] $Action,
        [Parameter(Mandatory)] [string] $What,
        [int] $Attempts = 8,
        [int] $DelaySeconds = 5
    )
    for ($retryAttempt = 1; ; $retryAttempt++) {
        try {
            return & $Action
        }
        catch {
            if ($retryAttempt -ge $Attempts) {
                throw "$What failed $Attempts times; the last error: $($_.Exception.Message)"
            }
            Write-Warning "$What failed (attempt $retryAttempt of $Attempts): $($_.Exception.Message); again in $DelaySeconds s"
            Start-Sleep -Seconds $DelaySeconds
            $DelaySeconds = [Math]::Min($DelaySeconds * 2, 60)
        }
    }
}

function Invoke-Native {
    # Runs a program, shows its output, and throws on an exit code not in AllowedExitCodes.
    param(
        [Parameter(Mandatory)] [string] $File,
        [string[]] $Arguments = @(),
        [int[]] $AllowedExitCodes = @(0)
    )
    if ($null -eq (Get-Command -Name $File -ErrorAction SilentlyContinue)) { throw "$File is not there to run" }
    $previous = $ErrorActionPreference
    # Windows PowerShell turns a program's standard error into errors: with 'Stop' the first line would throw.
    $ErrorActionPreference = 'Continue'
    try {
        $output = @(& $File @Arguments 2>&1 | ForEach-Object { "$_" })
    }
    finally {
        $ErrorActionPreference = $previous
    }
    $code = $LASTEXITCODE
    foreach ($line in $output) { Write-Host "    $line" }
    if ($AllowedExitCodes -notcontains $code) {
        $shown = $Arguments -join ' '
        throw "$File $shown failed with exit code $code"
    }
    return [pscustomobject]@{ ExitCode = $code; Output = ($output -join [Environment]::NewLine) }
}

function Invoke-Imds {
    param([Parameter(Mandatory)] [string] $PathAndQuery)
    Invoke-WithRetry -What "the instance metadata service ($PathAndQuery)" -Action {
        Invoke-RestMethod -Uri "http://169.254.169.254/metadata/$PathAndQuery" -Headers @{ Metadata = 'true' } -UseBasicParsing -TimeoutSec 30
    }
}

function Get-AccessToken {
    # A token of the instance's user-assigned identity (userData identityClientId) from the metadata service.
    param([Parameter(Mandatory)] [string] $Resource)
    if (-not $script:Tokens.ContainsKey($Resource)) {
        $clientId = Get-Setting $script:Config 'identityClientId'
        $query = 'identity/oauth2/token?api-version=2018-02-01&resource={0}&client_id={1}' -f [uri]::EscapeDataString($Resource), $clientId
        $script:Tokens[$Resource] = (Invoke-Imds $query).access_token
    }
    return $script:Tokens[$Resource]
}

function Get-Header {
    # A response header, or '' (Windows PowerShell's header dictionary throws on a missing key).
    param([Parameter(Mandatory)] $Response, [Parameter(Mandatory)] [string] $Name)
    foreach ($header in @($Response.Headers.Keys)) {
        if ($header -eq $Name) { return "$($Response.Headers[$header])" }
    }
    return ''
}

function Read-ErrorBody {
    # The body of a failed HTTP response (ARM's {"error": {"code": "AuthorizationFailed", ...}}), or ''.
    param($Exception)
    $response = $null
    if ($null -ne $Exception.PSObject.Properties['Response']) { $response = $Exception.Response }
    if ($null -eq $response) { return '' }
    try {
        $stream = $response.GetResponseStream()
        if ($null -eq $stream) { return '' }
        if ($stream.CanSeek) { $stream.Position = 0 }
        $reader = New-Object System.IO.StreamReader($stream)
        try { return $reader.ReadToEnd().Trim() } finally { $reader.Dispose() }
    }
    catch {
        return ''
    }
}

function Invoke-ArmRequest {
    # Invoke-WebRequest, with ARM's error body in the message of a failure (Windows PowerShell's WebException
    # says only "(403) Forbidden"; the body names AuthorizationFailed and the action that is missing).
    param([Parameter(Mandatory)] [hashtable] $Request)
    try {
        return Invoke-WebRequest @Request
    }
    catch [System.Net.WebException] {
        $body = Read-ErrorBody -Exception $_.Exception
        $uri = "$($Request.Uri)".Split('?')[0]
        throw "$($Request.Method) $uri failed: $($_.Exception.Message) $body"
    }
}

function Invoke-Arm {
    # An Azure Resource Manager request with the identity; follows a 202's Location until the result is there.
    param([Parameter(Mandatory)] [string] $Method, [Parameter(Mandatory)] [string] $Path, $Body = $null)
    $headers = @{ Authorization = 'Bearer ' + (Get-AccessToken ($script:ArmEndpoint + '/')) }
    $request = @{ Uri = $script:ArmEndpoint + $Path; Method = $Method; Headers = $headers; UseBasicParsing = $true; TimeoutSec = 60 }
    if ($null -ne $Body) {
        $request.Body = ConvertTo-Json -InputObject $Body -Depth 10 -Compress
        $request.ContentType = 'application/json'
    }
    $response = Invoke-ArmRequest -Request $request
    for ($poll = 0; $response.StatusCode -eq 202; $poll++) {
        if ($poll -ge 60) { throw "$Method $Path is still running after 60 polls" }
        $location = Get-Header -Response $response -Name 'Location'
        if (-not $location) { throw "$Method $Path answered 202 without a Location" }
        $wait = 2
        $retryAfter = Get-Header -Response $response -Name 'Retry-After'
        if ($retryAfter) { $wait = [Math]::Min([int] $retryAfter, 30) }
        Start-Sleep -Seconds $wait
        $response = Invoke-ArmRequest -Request @{ Uri = $location; Method = 'Get'; Headers = $headers; UseBasicParsing = $true; TimeoutSec = 60 }
    }
    if (-not $response.Content) { return $null }
    return ConvertFrom-Json -InputObject $response.Content
}

function Save-Url {
    # A public download into the downloads folder (kept: a rerun downloads nothing again).
    param([Parameter(Mandatory)] [string] $Url, [Parameter(Mandatory)] [string] $Name)
    $path = Join-Path $Paths.Downloads $Name
    if (Test-Path -LiteralPath $path) { return $path }
    $partial = "$path.partial"
    Invoke-WithRetry -What "downloading $Url" -Action {
        Invoke-WebRequest -Uri $Url -OutFile $partial -UseBasicParsing -TimeoutSec 900
    } | Out-Null
    Move-Item -LiteralPath $partial -Destination $path -Force
    return $path
}

function Expand-Download {
    # Expand-Archive for a download; a download it cannot read is deleted, so that a rerun fetches it again.
    param([Parameter(Mandatory)] [string] $Path, [Parameter(Mandatory)] [string] $Destination, [switch] $Force)
    try {
        Expand-Archive -LiteralPath $Path -DestinationPath $Destination -Force:$Force
    }
    catch {
        Remove-Item -LiteralPath $Path -Force -ErrorAction SilentlyContinue
        throw "could not extract $Path (deleted: the next run downloads it again): $($_.Exception.Message)"
    }
}

function Save-Blob {
    # A blob of the media-artifacts container, with the identity (Storage Blob Data Reader on the container).
    param([Parameter(Mandatory)] [string] $Url, [Parameter(Mandatory)] [string] $Path)
    New-Item -ItemType Directory -Force -Path (Split-Path -Parent $Path) | Out-Null
    Invoke-WithRetry -What "downloading $Url" -Action {
        $headers = @{ Authorization = 'Bearer ' + (Get-AccessToken $StorageResource); 'x-ms-version' = $StorageApiVersion }
        Invoke-WebRequest -Uri $Url -Headers $headers -OutFile $Path -UseBasicParsing -TimeoutSec 600
    } | Out-Null
}

function Test-Sha256 {
    param([Parameter(Mandatory)] [string] $Path, [Parameter(Mandatory)] [string] $Expected)
    if (-not (Test-Path -LiteralPath $Path)) { return $false }
    return ((Get-FileHash -LiteralPath $Path -Algorithm SHA256).Hash -eq $Expected)
}

function Read-Marker {
    param([Parameter(Mandatory)] [string] $Path)
    if (-not (Test-Path -LiteralPath $Path)) { return '' }
    return (Get-Content -LiteralPath $Path -Raw).Trim()
}

function Stop-WorkerForUpdate {
    # Files the running worker uses are about to change: stop it first (Windows locks files in use).
    $service = Get-Service -Name $ServiceName -ErrorAction SilentlyContinue
    if ($null -ne $service -and $service.Status -ne 'Stopped') {
        Write-Step "stopping $ServiceName to update what it runs"
        Stop-Service -Name $ServiceName -Force
    }
    $script:Changed = $true
}

# --- Steps -----------------------------------------------------------------------------------------------------

function Start-SetupLog {
    param([Parameter(Mandatory)] [string] $Name)
    foreach ($path in $Paths.Values) { New-Item -ItemType Directory -Force -Path $path | Out-Null }
    $log = Join-Path $Paths.Logs $Name
    if ((Test-Path -LiteralPath $log) -and (Get-Item -LiteralPath $log).Length -gt (5 * 1024 * 1024)) {
        Move-Item -LiteralPath $log -Destination "$log.1" -Force
    }
    Start-Transcript -Path $log -Append | Out-Null
    foreach ($source in @($SetupEventSource, $ServiceName)) {
        if (-not [System.Diagnostics.EventLog]::SourceExists($source)) {
            New-EventLog -LogName Application -Source $source
        }
    }
    Write-Step "media VM setup ($Name), Windows PowerShell $($PSVersionTable.PSVersion)"
}

function Read-InstanceConfig {
    $encoded = Invoke-Imds 'instance/compute/userData?api-version=2021-01-01&format=text'
    if (-not $encoded) { throw 'this instance has no userData (infra/modules/mediavm.bicep sets it on the scale set model)' }
    $json = [Text.Encoding]::UTF8.GetString([Convert]::FromBase64String("$encoded".Trim()))
    return ConvertFrom-Json -InputObject $json
}

function Get-InstanceMetadata {
    $compute = Invoke-Imds 'instance/compute?api-version=2021-02-01'
    switch ("$(Get-Property $compute 'azEnvironment')") {
        'AzureUSGovernmentCloud' { $script:ArmEndpoint = 'https://management.usgovcloudapi.net' }
        'AzureChinaCloud' { $script:ArmEndpoint = 'https://management.chinacloudapi.cn' }
        default { $script:ArmEndpoint = 'https://management.azure.com' }
    }
    Write-Step "instance $($compute.name) ($($compute.resourceId)), size $($compute.vmSize)"
    return $compute
}

function Save-Artifacts {
    # Returns role -> local path. Files already there with the manifest's hash are not downloaded again.
    $base = (Get-Setting $script:Config 'mediaArtifactsContainerUrl').TrimEnd('/')
    $manifestPath = Join-Path $Paths.Artifacts 'manifest.json'
    Save-Blob -Url "$base/$ManifestBlob" -Path $manifestPath
    $manifest = Get-Content -LiteralPath $manifestPath -Raw | ConvertFrom-Json
    if ((Get-Property $manifest 'version') -ne 1) { throw "$ManifestBlob is not a version 1 manifest (mediavm/setup/stage.py writes it)" }
    $artifacts = @{}
    foreach ($role in $ArtifactRoles) {
        $entry = Get-Property (Get-Property $manifest 'files') $role
        if ($null -eq $entry) { throw "$ManifestBlob lists no '$role' (run the azd hooks again: azd provision)" }
        $path = Join-Path $Paths.Artifacts ($entry.blob -replace '/', '\')
        if (-not (Test-Sha256 -Path $path -Expected $entry.sha256)) {
            Write-Step "downloading $($entry.blob)"
            Save-Blob -Url "$base/$($entry.blob)" -Path $path
            if (-not (Test-Sha256 -Path $path -Expected $entry.sha256)) {
                throw "$($entry.blob) does not have the SHA-256 $ManifestBlob gives (a partial upload? run azd provision again)"
            }
        }
        $artifacts[$role] = $path
    }
    return $artifacts
}

function Install-VcRedist {
    $key = Get-ItemProperty -Path 'HKLM:\SOFTWARE\Microsoft\VisualStudio\14.0\VC\Runtimes\x64' -ErrorAction SilentlyContinue
    if ($null -ne $key -and (Get-Property $key 'Installed') -eq 1) {
        Write-Step "Visual C++ runtime $(Get-Property $key 'Version') is installed"
        return
    }
    Write-Step 'installing the Visual C++ 2015-2022 runtime (x64)'
    $installer = Save-Url -Url $VcRedistUrl -Name 'vc_redist.x64.exe'
    # 1638: a newer version is installed; 3010: installed, a restart completes it.
    $result = Invoke-Native -File $installer -Arguments @('/install', '/quiet', '/norestart') -AllowedExitCodes @(0, 1638, 3010)
    if ($result.ExitCode -eq 3010) { Write-Warning 'the Visual C++ runtime asks for a restart to complete' }
}

function Install-MediaFoundation {
    # The media library's native stack needs Media Foundation, an optional feature on Windows Server
    # (microsoft-graph-comms-samples issue #784: "Unable to load DLL 'NativeMedia'" without it).
    $feature = Get-WindowsFeature -Name 'Server-Media-Foundation'
    if ($feature.Installed) {
        Write-Step 'Media Foundation is installed'
        return
    }
    Write-Step 'installing the Windows feature Server-Media-Foundation'
    $result = Install-WindowsFeature -Name 'Server-Media-Foundation'
    if (-not $result.Success) { throw "installing Server-Media-Foundation failed ($($result.ExitCode))" }
    if ("$($result.RestartNeeded)" -ne 'No') {
        Write-Step 'Media Foundation asks for a restart: the VM restarts after this script'
        $script:RestartNeeded = $true
    }
}

function Install-Python {
    $dir = Join-Path $Paths.Python $PythonVersion
    $exe = Join-Path $dir 'python.exe'
    if (Test-Path -LiteralPath $exe) {
        $installed = (Invoke-Native -File $exe -Arguments @('-c', 'import sys; print(sys.version.split()[0])')).Output.Trim()
        if ($installed -eq $PythonVersion) {
            Write-Step "Python $PythonVersion is installed"
            return $exe
        }
    }
    Write-Step "installing Python $PythonVersion (nuget.org package 'python')"
    $package = Save-Url -Url "$NuGetFlatContainer/python/$PythonVersion/python.$PythonVersion.nupkg" -Name "python.$PythonVersion.zip"
    $staging = "$dir.partial"
    if (Test-Path -LiteralPath $staging) { Remove-Item -LiteralPath $staging -Recurse -Force }
    Expand-Download -Path $package -Destination $staging
    if (Test-Path -LiteralPath $dir) { Remove-Item -LiteralPath $dir -Recurse -Force }
    Move-Item -LiteralPath (Join-Path $staging 'tools') -Destination $dir
    Remove-Item -LiteralPath $staging -Recurse -Force
    return $exe
}

function Install-Worker {
    param([Parameter(Mandatory)] [string] $Python, [Parameter(Mandatory)] [hashtable] $Artifacts)
    $venvPython = Join-Path $Paths.Venv 'Scripts\python.exe'
    $marker = Join-Path $Paths.Venv 'installed.txt'
    $wanted = 'python {0}; requirements {1}; wheel {2}' -f $PythonVersion,
        (Get-FileHash -LiteralPath $Artifacts['requirements'] -Algorithm SHA256).Hash,
        (Get-FileHash -LiteralPath $Artifacts['wheel'] -Algorithm SHA256).Hash
    if ((Test-Path -LiteralPath $venvPython) -and (Read-Marker $marker) -eq $wanted) {
        Write-Step 'the worker venv is up to date'
        return $venvPython
    }
    Stop-WorkerForUpdate
    Write-Step "creating the worker venv ($($Paths.Venv)) and installing the worker"
    Invoke-Native -File $Python -Arguments @('-m', 'venv', '--clear', $Paths.Venv) | Out-Null
    $pip = @('-m', 'pip', 'install', '--disable-pip-version-check', '--no-input', '--no-deps')
    Invoke-Native -File $venvPython -Arguments ($pip + @('--only-binary=:all:', '--requirement', $Artifacts['requirements'])) | Out-Null
    Invoke-Native -File $venvPython -Arguments ($pip + @('--force-reinstall', $Artifacts['wheel'])) | Out-Null
    # Everything the service imports at start, and the .NET bridge.
    Invoke-Native -File $venvPython -Arguments @('-c', 'import mediavm.__main__, mediavm.server, mediavm.worker, calling.servicebus, clr_loader, pythonnet') | Out-Null
    Set-Content -LiteralPath $marker -Value $wanted -Encoding ASCII
    return $venvPython
}

function Install-DotNetRuntime {
    # A private DOTNET_ROOT (no installer, nothing machine-wide): the zips of one release, SHA-512 checked.
    $marker = Join-Path $Paths.DotNet 'installed.txt'
    if ((Test-Path -LiteralPath (Join-Path $Paths.DotNet 'dotnet.exe')) -and (Read-Marker $marker) -eq $DotNetVersion) {
        Write-Step ".NET runtime $DotNetVersion (with ASP.NET Core) is installed"
        return
    }
    Write-Step "installing the .NET runtime $DotNetVersion and the ASP.NET Core runtime (x64) into $($Paths.DotNet)"
    $channel = ($DotNetVersion.Split('.')[0..1]) -join '.'
    $metadata = Invoke-WithRetry -What "the .NET $channel release metadata" -Action {
        Invoke-RestMethod -Uri "$DotNetReleaseMetadata/$channel/releases.json" -UseBasicParsing -TimeoutSec 60
    }
    $release = $null
    foreach ($candidate in @($metadata.releases)) {
        if ((Get-Property (Get-Property $candidate 'runtime') 'version') -eq $DotNetVersion) { $release = $candidate }
    }
    if ($null -eq $release) { throw ".NET runtime $DotNetVersion is not in the $channel release metadata" }
    $zips = @()
    foreach ($part in @(@{ Key = 'runtime'; File = 'dotnet-runtime-win-x64.zip' }, @{ Key = 'aspnetcore-runtime'; File = 'aspnetcore-runtime-win-x64.zip' })) {
        $files = @(Get-Property (Get-Property $release $part.Key) 'files')
        $file = @($files | Where-Object { $null -ne $_ -and $_.name -eq $part.File }) | Select-Object -First 1
        if ($null -eq $file) { throw "$($part.File) is not in the .NET $DotNetVersion release metadata" }
        $zip = Save-Url -Url $file.url -Name ('{0}-{1}' -f $DotNetVersion, $part.File)
        if ((Get-FileHash -LiteralPath $zip -Algorithm SHA512).Hash -ne $file.hash) {
            Remove-Item -LiteralPath $zip -Force
            throw "$($part.File) does not have the SHA-512 the .NET release metadata gives"
        }
        $zips += $zip
    }
    Stop-WorkerForUpdate
    foreach ($zip in $zips) { Expand-Download -Path $zip -Destination $Paths.DotNet -Force }
    if (-not (Test-Path -LiteralPath (Join-Path $Paths.DotNet "shared\Microsoft.NETCore.App\$DotNetVersion\System.Private.CoreLib.dll"))) {
        throw "the .NET runtime $DotNetVersion is not in $($Paths.DotNet) after extracting it"
    }
    Set-Content -LiteralPath $marker -Value $DotNetVersion -Encoding ASCII
}

function Select-FrameworkFolder {
    # The best target framework folder under a package's lib\ (or runtimes\win\lib\), or $null.
    param([Parameter(Mandatory)] [string] $Folder)
    if (-not (Test-Path -LiteralPath $Folder)) { return $null }
    $found = @{}
    foreach ($item in @(Get-ChildItem -LiteralPath $Folder -Directory)) { $found[$item.Name.ToLowerInvariant()] = $item.FullName }
    foreach ($framework in $FrameworkPreference) {
        if ($found.ContainsKey($framework)) { return $found[$framework] }
    }
    return $null
}

function Get-NuGetDependencies {
    # (id, lowest version) of the dependencies of the best target framework group of a .nuspec.
    param([Parameter(Mandatory)] [xml] $Nuspec)
    $groups = @($Nuspec.SelectNodes("//*[local-name()='dependencies']/*[local-name()='group']"))
    $nodes = @()
    if ($groups.Count -eq 0) {
        $nodes = @($Nuspec.SelectNodes("//*[local-name()='dependencies']/*[local-name()='dependency']"))
    }
    else {
        $byFramework = @{}
        foreach ($group in $groups) { $byFramework[$group.GetAttribute('targetFramework').ToLowerInvariant().TrimStart('.')] = $group }
        foreach ($framework in ($FrameworkPreference + @(''))) {
            if ($byFramework.ContainsKey($framework)) {
                $nodes = @($byFramework[$framework].SelectNodes("*[local-name()='dependency']"))
                break
            }
        }
    }
    foreach ($node in $nodes) {
        # NuGet takes the lowest version a range allows: '[1.2.3, )' and '1.2.3' are both 1.2.3.
        $lowest = $node.GetAttribute('version').Trim('[', '(', ']', ')', ' ').Split(',')[0].Trim()
        if ($lowest) { [pscustomobject]@{ Id = $node.GetAttribute('id'); Version = $lowest } }
    }
}

function ConvertTo-NuGetVersion {
    # NuGet's normalized form, which its download URLs use: '1.0' is 1.0.0, '4.5.0.0' is 4.5.0, no leading zeros.
    param([Parameter(Mandatory)] [string] $Version)
    $core = $Version.Split('+')[0]
    $label = ''
    $dash = $core.IndexOf('-')
    if ($dash -ge 0) {
        $label = $core.Substring($dash)
        $core = $core.Substring(0, $dash)
    }
    $parts = @($core.Split('.') | ForEach-Object { [string] [long] $_ })
    while ($parts.Count -lt 3) { $parts += '0' }
    if ($parts.Count -eq 4 -and $parts[3] -eq '0') { $parts = $parts[0..2] }
    return ($parts -join '.') + $label
}

function Get-NuGetVersionKey {
    # A version as NuGet orders it: the numeric part as a [version] (four parts, missing ones 0), then the label.
    param([Parameter(Mandatory)] [string] $Version)
    $normalized = ConvertTo-NuGetVersion -Version $Version
    $core = $normalized
    $label = ''
    $dash = $normalized.IndexOf('-')
    if ($dash -ge 0) {
        $label = $normalized.Substring($dash + 1).ToLowerInvariant()
        $core = $normalized.Substring(0, $dash)
    }
    $parts = @($core.Split('.'))
    while ($parts.Count -lt 4) { $parts += '0' }
    return [pscustomobject]@{ Numeric = [version] ($parts -join '.'); Label = $label }
}

function Compare-NuGetVersion {
    # -1, 0 or 1: the numeric parts compared as [version] (1.10 is above 1.9), a release above its prereleases.
    param([Parameter(Mandatory)] [string] $Left, [Parameter(Mandatory)] [string] $Right)
    $a = Get-NuGetVersionKey -Version $Left
    $b = Get-NuGetVersionKey -Version $Right
    $numeric = $a.Numeric.CompareTo($b.Numeric)
    if ($numeric -ne 0) { return [Math]::Sign($numeric) }
    if ($a.Label -eq $b.Label) { return 0 }
    if (-not $a.Label) { return 1 }
    if (-not $b.Label) { return -1 }
    return [Math]::Sign([string]::CompareOrdinal($a.Label, $b.Label))
}

function Read-NuGetNuspec {
    # A package's .nuspec from nuget.org's flat container (the manifest alone, without the package).
    param([Parameter(Mandatory)] [string] $Id, [Parameter(Mandatory)] [string] $Version)
    $lowerId = $Id.ToLowerInvariant()
    $lowerVersion = (ConvertTo-NuGetVersion -Version $Version).ToLowerInvariant()
    $path = Save-Url -Url "$NuGetFlatContainer/$lowerId/$lowerVersion/$lowerId.nuspec" -Name "$lowerId.$lowerVersion.nuspec"
    return [xml] (Get-Content -LiteralPath $path -Raw)
}

function Resolve-NuGetPackages {
    # Pass 1 of NuGet's dependency resolution ("Cousin dependencies": per package id, the highest lower bound any
    # package of the graph asks for). The pinned packages are taken as pinned: no dependency's bound replaces
    # them. A package whose version rises is walked again at its new version (its dependencies may differ).
    # Returns lower-case id -> (Id, Version), the one version of each package to install.
    param([Parameter(Mandatory)] [array] $Pinned)
    $resolved = @{}
    $pins = @{}
    $queue = New-Object System.Collections.Queue
    foreach ($package in $Pinned) {
        $key = $package.Id.ToLowerInvariant()
        $pins[$key] = $true
        $resolved[$key] = [pscustomobject]@{ Id = $package.Id; Version = (ConvertTo-NuGetVersion -Version $package.Version) }
        $queue.Enqueue($key)
    }
    $walked = @{}
    while ($queue.Count -gt 0) {
        $key = $queue.Dequeue()
        $entry = $resolved[$key]
        $visit = '{0}/{1}' -f $key, $entry.Version.ToLowerInvariant()
        if ($walked.ContainsKey($visit)) { continue }
        $walked[$visit] = $true
        foreach ($dependency in @(Get-NuGetDependencies -Nuspec (Read-NuGetNuspec -Id $entry.Id -Version $entry.Version))) {
            $dependencyKey = $dependency.Id.ToLowerInvariant()
            if ($pins.ContainsKey($dependencyKey)) { continue }
            $lowerBound = ConvertTo-NuGetVersion -Version $dependency.Version
            if (-not $resolved.ContainsKey($dependencyKey) -or (Compare-NuGetVersion -Left $lowerBound -Right $resolved[$dependencyKey].Version) -gt 0) {
                $resolved[$dependencyKey] = [pscustomobject]@{ Id = $dependency.Id; Version = $lowerBound }
                $queue.Enqueue($dependencyKey)
            }
        }
    }
    return $resolved
}

function Add-NuGetPackage {
    # Pass 2: one resolved package's files (its best target framework, its Windows x64 native code) into one folder.
    param(
        [Parameter(Mandatory)] [string] $Id,
        [Parameter(Mandatory)] [string] $Version,
        [Parameter(Mandatory)] [string] $Into
    )
    $lowerId = $Id.ToLowerInvariant()
    $lowerVersion = (ConvertTo-NuGetVersion -Version $Version).ToLowerInvariant()
    $package = Save-Url -Url "$NuGetFlatContainer/$lowerId/$lowerVersion/$lowerId.$lowerVersion.nupkg" -Name "$lowerId.$lowerVersion.zip"
    $extracted = Join-Path $Paths.Downloads "$lowerId.$lowerVersion"
    if (-not (Test-Path -LiteralPath $extracted)) { Expand-Download -Path $package -Destination $extracted }
    $copied = 0
    $folders = @(
        (Select-FrameworkFolder (Join-Path $extracted 'lib')),
        (Select-FrameworkFolder (Join-Path $extracted 'runtimes\win\lib')),
        (Join-Path $extracted 'runtimes\win-x64\native'),
        (Join-Path $extracted 'src\skype_media_lib')
    )
    foreach ($folder in $folders) {
        if ($folder -and (Test-Path -LiteralPath $folder)) {
            foreach ($item in @(Get-ChildItem -LiteralPath $folder -File -Recurse | Where-Object { $_.Name -ne '_._' })) {
                $relative = $item.FullName.Substring($folder.Length).TrimStart('\')
                $target = Join-Path $Into $relative
                New-Item -ItemType Directory -Force -Path (Split-Path -Parent $target) | Out-Null
                Copy-Item -LiteralPath $item.FullName -Destination $target -Force
                $copied++
            }
        }
    }
    Write-Host "    $Id $Version`: $copied file(s)"
}

function Get-ShortHash {
    # The first 12 hex digits of the SHA-256 of a text: a folder name that changes with what it holds.
    param([Parameter(Mandatory)] [string] $Text)
    $sha = [System.Security.Cryptography.SHA256]::Create()
    try {
        $bytes = $sha.ComputeHash([Text.Encoding]::UTF8.GetBytes($Text))
    }
    finally {
        $sha.Dispose()
    }
    return -join @($bytes[0..5] | ForEach-Object { $_.ToString('x2') })
}

function Install-MediaLibrary {
    # One folder per wanted set (MEDIA_LIBRARY_DIR: the media library version and a hash of every pinned package),
    # so that a change of any pinned package installs beside the folder a running worker holds, never over it.
    $wanted = (@($MediaLibraryPackages | ForEach-Object { '{0} {1}' -f $_.Id, $_.Version })) -join '; '
    $dir = Join-Path $Paths.MediaLibrary ('{0}-{1}' -f $MediaLibraryVersion, (Get-ShortHash -Text $wanted))
    $marker = Join-Path $dir 'installed.txt'
    if ((Read-Marker $marker) -eq $wanted) {
        Write-Step "the media library $wanted is installed in $dir"
        return $dir
    }
    Write-Step "installing the media library $wanted and its dependencies (nuget.org) into $dir"
    $staging = "$dir.partial"
    if (Test-Path -LiteralPath $staging) { Remove-Item -LiteralPath $staging -Recurse -Force }
    New-Item -ItemType Directory -Force -Path $staging | Out-Null
    # Pass 1 resolves every package's one version; pass 2 copies each once.
    $resolved = Resolve-NuGetPackages -Pinned $MediaLibraryPackages
    foreach ($key in @($resolved.Keys | Sort-Object)) {
        Add-NuGetPackage -Id $resolved[$key].Id -Version $resolved[$key].Version -Into $staging
    }
    if (-not (Test-Path -LiteralPath (Join-Path $staging "$MediaLibraryPackage.dll"))) {
        throw "$wanted holds no $MediaLibraryPackage.dll for $($FrameworkPreference -join ', ')"
    }
    if (Test-Path -LiteralPath $dir) {
        # The same set, left without its marker by a run that stopped: stop a worker that may hold it first.
        Stop-WorkerForUpdate
        Remove-Item -LiteralPath $dir -Recurse -Force
    }
    Move-Item -LiteralPath $staging -Destination $dir
    # The library's own machine setup (performance counters), as Microsoft's samples run it at startup.
    $startup = Join-Path $dir 'MediaPlatformStartupScript.bat'
    if (Test-Path -LiteralPath $startup) {
        Push-Location $dir
        try {
            $result = Invoke-Native -File 'cmd.exe' -Arguments @('/c', $startup) -AllowedExitCodes @(0..255)
            if ($result.ExitCode -ne 0) { Write-Warning "MediaPlatformStartupScript.bat exited with $($result.ExitCode)" }
        }
        finally {
            Pop-Location
        }
    }
    Set-Content -LiteralPath $marker -Value $wanted -Encoding ASCII
    $script:Changed = $true
    return $dir
}

function Get-InstanceNatPorts {
    # The load balancer's inbound NAT rules give each instance one frontend port per rule; the custom role
    # "Media NAT port reader" (mediavm.bicep) lets the identity ask which are this instance's.
    $lbId = Get-Setting $script:Config 'loadBalancer.id'
    $pool = Get-Setting $script:Config 'loadBalancer.backendPool'
    $controlRule = Get-Setting $script:Config 'loadBalancer.mediaControlRule'
    $signalingRule = Get-Setting $script:Config 'loadBalancer.signalingRule'
    $ipConfiguration = '{0}/networkInterfaces/{1}/ipConfigurations/{2}' -f $script:Compute.resourceId, $NicName, $IpConfigName
    $path = '{0}/backendAddressPools/{1}/queryInboundNatRulePortMapping?api-version={2}' -f $lbId, $pool, $NetworkApiVersion
    $ports = Invoke-WithRetry -What 'the load balancer port-mapping query' -Attempts 12 -DelaySeconds 10 -Action {
        $mapping = Invoke-Arm -Method Post -Path $path -Body @{ ipConfiguration = @{ id = $ipConfiguration } }
        $found = @{}
        foreach ($rule in @(Get-Property $mapping 'inboundNatRulePortMappings')) {
            if ($null -ne $rule) { $found[$rule.inboundNatRuleName] = [int] $rule.frontendPort }
        }
        if (-not ($found.ContainsKey($controlRule) -and $found.ContainsKey($signalingRule))) {
            throw "the mapping names no port for '$controlRule' and '$signalingRule' (got: $($found.Keys -join ', '))"
        }
        $found
    }
    $result = [pscustomobject]@{ MediaControl = $ports[$controlRule]; Signaling = $ports[$signalingRule] }
    Write-Step "public ports: media control $($result.MediaControl), signaling $($result.Signaling)"
    return $result
}

function Get-InstancePublicAddress {
    # The address the media library advertises (MEDIA_INSTANCE_PUBLIC_IP, InstancePublicIPAddress) and its media
    # control port (MEDIA_INSTANCE_PUBLIC_PORT, InstancePublicPort). The media control plane is reached at
    # ServiceFqdn:InstancePublicPort, and ServiceFqdn is the load balancer's name (the certificate's), so the port
    # is always this instance's media control NAT port on the load balancer, as in Microsoft's VMSS samples
    # (a NAT port range to the media control port). With an instance public IP (the default, which Microsoft requires for UDP media):
    # the instance's own address, read through the scale set's public IP API (the instance metadata service does
    # not show a Standard public IP). Without one: the load balancer's address (UDP media cannot reach the
    # instance then: the load balancer has TCP NAT rules only).
    param([Parameter(Mandatory)] $Ports)
    if ((Get-Setting $script:Config 'instancePublicIp' -Optional) -ne $true) {
        Write-Warning 'no instance public IP (instancePublicIp is false): the media library advertises the load balancer, which forwards no UDP media'
        return [pscustomobject]@{ IpAddress = (Get-Setting $script:Config 'publicIpAddress'); MediaControlPort = $Ports.MediaControl }
    }
    $pipName = Get-Setting $script:Config 'instancePublicIpName'
    $path = '{0}/networkInterfaces/{1}/ipConfigurations/{2}/publicIPAddresses/{3}?api-version={4}' -f $script:Compute.resourceId, $NicName, $IpConfigName, $pipName, $ScaleSetPublicIpApiVersion
    $address = Invoke-WithRetry -What "reading the instance public IP '$pipName'" -Attempts 12 -DelaySeconds 10 -Action {
        $pip = Invoke-Arm -Method Get -Path $path
        $ip = "$(Get-Property (Get-Property $pip 'properties') 'ipAddress')"
        if (-not $ip) { throw "the instance public IP '$pipName' has no address yet" }
        $ip
    }
    Write-Step "instance public IP $address (media control through the load balancer's port $($Ports.MediaControl))"
    return [pscustomobject]@{ IpAddress = $address; MediaControlPort = $Ports.MediaControl }
}

function Get-ApplicationInsightsConnectionString {
    # Not a secret (the component takes Entra-authenticated telemetry only), but kept out of userData: read
    # with the identity (Monitoring Reader on the component). Telemetry is optional: a failure is a warning.
    $name = Get-Setting $script:Config 'applicationInsightsName'
    $path = '/subscriptions/{0}/resourceGroups/{1}/providers/Microsoft.Insights/components/{2}?api-version={3}' -f $script:Compute.subscriptionId, $script:Compute.resourceGroupName, $name, $InsightsApiVersion
    try {
        $component = Invoke-WithRetry -What "reading Application Insights $name" -Attempts 6 -DelaySeconds 10 -Action {
            Invoke-Arm -Method Get -Path $path
        }
        return "$(Get-Property (Get-Property $component 'properties') 'ConnectionString')"
    }
    catch {
        Write-Warning "no telemetry: $($_.Exception.Message)"
        Write-SetupEvent -EntryType Warning -EventId 20 -Message "The media worker runs without telemetry: $($_.Exception.Message)"
        return ''
    }
}

function Install-WorkerService {
    param([Parameter(Mandatory)] [string] $VenvPython, [Parameter(Mandatory)] [string] $ServiceSource)
    $exe = Join-Path $Paths.Bin 'MediaWorkerService.exe'
    $stamp = Join-Path $Paths.Bin 'MediaWorkerService.source-sha256.txt'
    $sourceHash = (Get-FileHash -LiteralPath $ServiceSource -Algorithm SHA256).Hash
    if (-not (Test-Path -LiteralPath $exe) -or (Read-Marker $stamp) -ne $sourceHash) {
        Stop-WorkerForUpdate
        Write-Step 'compiling the service wrapper (MediaWorkerService.cs)'
        $temporary = Join-Path $Paths.Bin 'MediaWorkerService.new.exe'
        if (Test-Path -LiteralPath $temporary) { Remove-Item -LiteralPath $temporary -Force }
        Add-Type -TypeDefinition (Get-Content -LiteralPath $ServiceSource -Raw) -Language CSharp -OutputAssembly $temporary -OutputType ConsoleApplication -ReferencedAssemblies 'System.ServiceProcess'
        Move-Item -LiteralPath $temporary -Destination $exe -Force
        Set-Content -LiteralPath $stamp -Value $sourceHash -Encoding ASCII
    }
    $logFile = Join-Path $Paths.Logs 'worker.log'
    $imagePath = '"{0}" "{1}" "{2}" "{3}" {4}' -f $exe, $VenvPython, $Paths.App, $logFile, $StopTimeoutSeconds
    if ($null -eq (Get-Service -Name $ServiceName -ErrorAction SilentlyContinue)) {
        Write-Step "creating the service $ServiceName"
        New-Service -Name $ServiceName -BinaryPathName $imagePath -DisplayName 'Teams media worker' -StartupType Automatic -Description 'The Teams calling bot media worker (python -m mediavm): app-hosted calls, compliance recording. Set up by mediavm/setup/setup.ps1.' | Out-Null
        $script:Changed = $true
    }
    $key = "HKLM:\SYSTEM\CurrentControlSet\Services\$ServiceName"
    if ((Get-Property (Get-ItemProperty -LiteralPath $key) 'ImagePath') -ne $imagePath) {
        Set-ItemProperty -LiteralPath $key -Name ImagePath -Value $imagePath -Type ExpandString
        $script:Changed = $true
    }
    # A virtual account of its own: no password, no rights beyond what the ACLs below give it.
    Invoke-Native -File 'sc.exe' -Arguments @('sidtype', $ServiceName, 'unrestricted') | Out-Null
    Invoke-Native -File 'sc.exe' -Arguments @('config', $ServiceName, 'start=', 'delayed-auto', 'obj=', $ServiceAccount) | Out-Null
    # Restart on failure: 5 s, 10 s, then every 60 s; the count resets after a day without failure. failureflag 1:
    # also when it stops with an error rather than crashing.
    Invoke-Native -File 'sc.exe' -Arguments @('failure', $ServiceName, 'reset=', '86400', 'actions=', 'restart/5000/restart/10000/restart/60000') | Out-Null
    Invoke-Native -File 'sc.exe' -Arguments @('failureflag', $ServiceName, '1') | Out-Null
}

function Set-FolderAccess {
    # The install is read-only for everyone but SYSTEM and Administrators (a user who could write the venv
    # would run code as the service); the service may write its logs; tls\ is the service's and the admins' only.
    $system = '*S-1-5-18:(OI)(CI)F'
    $admins = '*S-1-5-32-544:(OI)(CI)F'
    Invoke-Native -File 'icacls.exe' -Arguments @($Root, '/inheritance:r', '/grant:r', $system, $admins, '*S-1-5-32-545:(OI)(CI)RX', "$($ServiceAccount):(OI)(CI)RX") | Out-Null
    Invoke-Native -File 'icacls.exe' -Arguments @($Paths.Logs, '/grant:r', "$($ServiceAccount):(OI)(CI)M") | Out-Null
    Invoke-Native -File 'icacls.exe' -Arguments @($Paths.Tls, '/inheritance:r', '/grant:r', $system, $admins, "$($ServiceAccount):(OI)(CI)R") | Out-Null
}

function Test-CertificateName {
    param([Parameter(Mandatory)] $Certificate, [Parameter(Mandatory)] [string] $Fqdn)
    $names = @()
    if ($null -ne $Certificate.PSObject.Properties['DnsNameList']) {
        $names = @($Certificate.DnsNameList | ForEach-Object { $_.Unicode })
    }
    $names += $Certificate.GetNameInfo([System.Security.Cryptography.X509Certificates.X509NameType]::DnsName, $false)
    $parent = $Fqdn.Substring($Fqdn.IndexOf('.') + 1)
    foreach ($name in @($names | Where-Object { $_ })) {
        if ($name -eq $Fqdn) { return $true }
        if ($name.StartsWith('*.') -and $Fqdn.IndexOf('.') -gt 0 -and $name.Substring(2) -eq $parent) { return $true }
    }
    return $false
}

function Find-MediaCertificate {
    # The Key Vault extension (requireInitialSync) installed it before this script runs; its renewals land in
    # the same store. The newest valid certificate with its private key for the FQDN wins.
    param([Parameter(Mandatory)] [string] $Fqdn)
    $vault = Get-Setting $script:Config 'keyVaultName'
    $name = Get-Setting $script:Config 'certificateName'
    $certificate = Invoke-WithRetry -What "finding the certificate for $Fqdn in LocalMachine\My" -Attempts 10 -DelaySeconds 15 -Action {
        $now = Get-Date
        $found = @(Get-ChildItem -Path 'Cert:\LocalMachine\My' | Where-Object {
                $_.HasPrivateKey -and $_.NotBefore -le $now -and $_.NotAfter -gt $now.AddHours(1) -and (Test-CertificateName -Certificate $_ -Fqdn $Fqdn)
            } | Sort-Object -Property NotAfter -Descending)
        if ($found.Count -eq 0) {
            throw "no valid certificate with a private key for $Fqdn in LocalMachine\My (the Key Vault extension installs '$name' from $vault; it must name $Fqdn)"
        }
        $found[0]
    }
    Write-Step "certificate $($certificate.Thumbprint) ($($certificate.Subject), until $($certificate.NotAfter.ToString('u')))"
    return $certificate
}

function Grant-PrivateKeyAccess {
    # The media library opens the certificate by its thumbprint from the store, as the service account.
    param([Parameter(Mandatory)] $Certificate)
    $rsa = [System.Security.Cryptography.X509Certificates.RSACertificateExtensions]::GetRSAPrivateKey($Certificate)
    if ($null -eq $rsa) { throw "certificate $($Certificate.Thumbprint) has no RSA private key" }
    if ($rsa -is [System.Security.Cryptography.RSACng]) {
        $file = Join-Path $env:ProgramData ('Microsoft\Crypto\Keys\' + $rsa.Key.UniqueName)
        if (-not (Test-Path -LiteralPath $file)) { $file = Join-Path $env:ProgramData ('Microsoft\Crypto\RSA\MachineKeys\' + $rsa.Key.UniqueName) }
    }
    else {
        $file = Join-Path $env:ProgramData ('Microsoft\Crypto\RSA\MachineKeys\' + $rsa.CspKeyContainerInfo.UniqueKeyContainerName)
    }
    if (-not (Test-Path -LiteralPath $file)) { throw "the private key file of $($Certificate.Thumbprint) is not where it should be ($file)" }
    Invoke-Native -File 'icacls.exe' -Arguments @($file, '/grant', "$($ServiceAccount):R") | Out-Null
}

function Export-WorkerTlsFiles {
    # The worker's HTTPS endpoint (MEDIA_WORKER_TLS_CERT_FILE / _KEY_FILE) reads PEM files: exported once per
    # certificate through a PFX with a one-time random password that only this process ever holds.
    param([Parameter(Mandatory)] $Certificate, [Parameter(Mandatory)] [string] $VenvPython, [Parameter(Mandatory)] [string] $Tool)
    $files = [pscustomobject]@{ Cert = (Join-Path $Paths.Tls 'worker-cert.pem'); Key = (Join-Path $Paths.Tls 'worker-key.pem') }
    $stamp = Join-Path $Paths.Tls 'thumbprint.txt'
    if ((Test-Path -LiteralPath $files.Cert) -and (Test-Path -LiteralPath $files.Key) -and (Read-Marker $stamp) -eq $Certificate.Thumbprint) {
        return $files
    }
    Write-Step "exporting certificate $($Certificate.Thumbprint) as the worker's PEM files"
    $pfx = Join-Path $Paths.Tls 'export.pfx'
    $bytes = New-Object byte[] 32
    [System.Security.Cryptography.RandomNumberGenerator]::Create().GetBytes($bytes)
    $oneTime = [Convert]::ToBase64String($bytes)
    try {
        try {
            Export-PfxCertificate -Cert $Certificate -FilePath $pfx -ChainOption BuildChain -Password (ConvertTo-SecureString -String $oneTime -AsPlainText -Force) | Out-Null
        }
        catch {
            throw "exporting the certificate failed ($($_.Exception.Message)); the Key Vault extension must install it with keyExportable (infra/modules/mediavm.bicep)"
        }
        # As Invoke-Native runs a program (which cannot pipe the password in): 'Continue' while it runs, so that a
        # line on standard error does not throw under 'Stop' and the transcript, and the exit code checked.
        $previous = $ErrorActionPreference
        $ErrorActionPreference = 'Continue'
        try {
            $output = @($oneTime | & $VenvPython $Tool pem --pfx $pfx --cert $files.Cert --key $files.Key 2>&1 | ForEach-Object { "$_" })
        }
        finally {
            $ErrorActionPreference = $previous
        }
        $code = $LASTEXITCODE
        foreach ($line in $output) { Write-Host "    $line" }
        if ($code -ne 0) { throw "vmtool.py pem failed with exit code $code" }
    }
    finally {
        if (Test-Path -LiteralPath $pfx) { Remove-Item -LiteralPath $pfx -Force }
        $oneTime = $null
    }
    Set-Content -LiteralPath $stamp -Value $Certificate.Thumbprint -Encoding ASCII
    $script:Changed = $true
    return $files
}

function Set-SslCertBinding {
    # HTTP.sys's certificate for the media control port (the media platform's InstanceInternalPort), as
    # Microsoft's samples bind it, with client certificate negotiation. Delete-then-add when it differs.
    param([Parameter(Mandatory)] [int] $Port, [Parameter(Mandatory)] [string] $Thumbprint)
    $ipPort = "ipport=0.0.0.0:$Port"
    $shown = Invoke-Native -File 'netsh.exe' -Arguments @('http', 'show', 'sslcert', $ipPort) -AllowedExitCodes @(0, 1)
    $current = $shown.Output
    if ($shown.ExitCode -eq 0 -and $current -match [regex]::Escape($Thumbprint) -and $current -match [regex]::Escape($HttpSysAppId) -and $current -match 'Negotiate Client Certificate\s*:\s*Enabled') {
        Write-Step "HTTP.sys already binds $Thumbprint on port $Port"
        return
    }
    Write-Step "binding certificate $Thumbprint on port $Port (netsh http sslcert, clientcertnegotiation=enable)"
    Invoke-Native -File 'netsh.exe' -Arguments @('http', 'delete', 'sslcert', $ipPort) -AllowedExitCodes @(0, 1) | Out-Null
    $arguments = @('http', 'add', 'sslcert', $ipPort, "certhash=$Thumbprint", "appid=$HttpSysAppId", 'certstorename=MY', 'clientcertnegotiation=enable')
    Invoke-Native -File 'netsh.exe' -Arguments $arguments | Out-Null
    $script:Changed = $true
}

function Set-FirewallRules {
    # The same ports as the network security group (mediavm.bicep): the NSG decides who may reach them.
    param([Parameter(Mandatory)] [int] $MediaControlPort, [Parameter(Mandatory)] [int] $SignalingPort)
    $rules = @(
        @{ Name = 'MediaWorker-MediaControl'; DisplayName = "Media worker: media control plane (TCP $MediaControlPort)"; Protocol = 'TCP'; Port = "$MediaControlPort" },
        @{ Name = 'MediaWorker-Signaling'; DisplayName = "Media worker: call signaling and notifications (TCP $SignalingPort)"; Protocol = 'TCP'; Port = "$SignalingPort" },
        @{ Name = 'MediaWorker-Media'; DisplayName = "Media worker: real-time media (UDP $MediaUdpPorts)"; Protocol = 'UDP'; Port = $MediaUdpPorts }
    )
    foreach ($rule in $rules) {
        # Set-NetFirewallRule -Name renames with -NewDisplayName (-DisplayName selects rules: another parameter set).
        $settings = @{ Direction = 'Inbound'; Action = 'Allow'; Protocol = $rule.Protocol; LocalPort = $rule.Port; Profile = 'Any'; Enabled = 'True' }
        if ($null -ne (Get-NetFirewallRule -Name $rule.Name -ErrorAction SilentlyContinue)) {
            Set-NetFirewallRule -Name $rule.Name -NewDisplayName $rule.DisplayName @settings
        }
        else {
            New-NetFirewallRule -Name $rule.Name -DisplayName $rule.DisplayName -Group 'Teams media worker' @settings | Out-Null
        }
        Write-Step "firewall: $($rule.DisplayName)"
    }
}

function Get-WorkerEnvironment {
    # The worker's settings (mediavm/config.py, calling/config.py and the media engine's; docs/media-vm.md).
    # Empty values are left out: the worker takes empty as unset.
    param(
        [Parameter(Mandatory)] [string] $ServiceFqdn,
        [Parameter(Mandatory)] $Ports,
        [Parameter(Mandatory)] $Address,
        [Parameter(Mandatory)] $Tls,
        [Parameter(Mandatory)] [string] $Thumbprint,
        [Parameter(Mandatory)] [string] $LibraryDir,
        [string] $ConnectionString = ''
    )
    $clientId = Get-Setting $script:Config 'identityClientId'
    $authentication = ''
    if ($ConnectionString) { $authentication = "ClientId=$clientId;Authorization=AAD" }
    return [ordered]@{
        MEDIA_ENGINE                              = 'windows'
        MEDIA_WORKER_PUBLIC_URL                   = 'https://{0}:{1}' -f $ServiceFqdn, $Ports.Signaling
        MEDIA_WORKER_LISTEN                       = '0.0.0.0:{0}' -f (Get-Setting $script:Config 'signalingPort')
        MEDIA_WORKER_TLS_CERT_FILE                = $Tls.Cert
        MEDIA_WORKER_TLS_KEY_FILE                 = $Tls.Key
        MEDIA_HANDOFF_TRANSPORT                   = 'servicebus'
        SERVICEBUS_NAMESPACE                      = Get-Setting $script:Config 'serviceBusNamespace'
        MEDIA_HANDOFF_QUEUE                       = Get-Setting $script:Config 'handoffQueue'
        RECORDINGS_CONTAINER_URL                  = Get-Setting $script:Config 'recordingsContainerUrl'
        BOT_APP_ID                                = Get-Setting $script:Config 'botAppId'
        BOT_TENANT_ID                             = Get-Setting $script:Config 'botTenantId'
        BOT_ALLOWED_TENANTS                       = Get-Setting $script:Config 'botAllowedTenants' -Optional
        BOT_PUBLIC_URL                            = Get-Setting $script:Config 'botPublicUrl'
        BOT_MANAGED_IDENTITY_CLIENT_ID            = $clientId
        APPLICATIONINSIGHTS_CONNECTION_STRING     = $ConnectionString
        APPLICATIONINSIGHTS_AUTHENTICATION_STRING = $authentication
        MEDIA_CERTIFICATE_THUMBPRINT              = $Thumbprint
        MEDIA_INSTANCE_INTERNAL_PORT              = "$(Get-Setting $script:Config 'mediaControlPort')"
        MEDIA_INSTANCE_PUBLIC_PORT                = "$($Address.MediaControlPort)"
        MEDIA_INSTANCE_PUBLIC_IP                  = $Address.IpAddress
        MEDIA_SERVICE_FQDN                        = $ServiceFqdn
        MEDIA_LIBRARY_DIR                         = $LibraryDir
        MEDIA_DOTNET_RUNTIME                      = 'coreclr'
        MEDIA_DOTNET_VERSION                      = ($DotNetVersion.Split('.')[0..1]) -join '.'
        DOTNET_ROOT                               = $Paths.DotNet
        PYTHONUNBUFFERED                          = '1'
        PYTHONUTF8                                = '1'
    }
}

function Write-WorkerEnvironment {
    # The service's environment: the registry value the Service Control Manager hands the service process.
    param([Parameter(Mandatory)] [System.Collections.Specialized.OrderedDictionary] $Environment)
    $lines = @(foreach ($entry in $Environment.GetEnumerator()) { if ("$($entry.Value)" -ne '') { '{0}={1}' -f $entry.Key, $entry.Value } })
    $key = "HKLM:\SYSTEM\CurrentControlSet\Services\$ServiceName"
    $current = @(Get-Property (Get-ItemProperty -LiteralPath $key) 'Environment')
    if (($current -join "`n") -ceq ($lines -join "`n")) {
        Write-Step "the worker's environment is unchanged ($($lines.Count) settings)"
        return
    }
    Set-ItemProperty -LiteralPath $key -Name Environment -Value ([string[]] $lines) -Type MultiString
    Write-Step "the worker's environment ($($lines.Count) settings):"
    foreach ($line in $lines) { Write-Host "    $line" }
    $script:Changed = $true
}

function Register-CertificateRefresh {
    # Key Vault renewals reach LocalMachine\My on their own (the extension polls hourly); this task moves the
    # worker onto a renewed certificate, rebinding and restarting only while the worker holds no call.
    $copy = Join-Path $Paths.Setup 'setup.ps1'
    if ($PSCommandPath -and ($PSCommandPath -ne $copy)) { Copy-Item -LiteralPath $PSCommandPath -Destination $copy -Force }
    $action = New-ScheduledTaskAction -Execute 'powershell.exe' -Argument ('-NoProfile -ExecutionPolicy Bypass -File "{0}" -RefreshCertificate' -f $copy)
    $trigger = New-ScheduledTaskTrigger -Once -At (Get-Date).Date -RepetitionInterval (New-TimeSpan -Hours 1)
    $principal = New-ScheduledTaskPrincipal -UserId 'NT AUTHORITY\SYSTEM' -LogonType ServiceAccount -RunLevel Highest
    $settings = New-ScheduledTaskSettingsSet -ExecutionTimeLimit (New-TimeSpan -Minutes 30) -MultipleInstances IgnoreNew -StartWhenAvailable
    Register-ScheduledTask -TaskName $RefreshTaskName -Action $action -Trigger $trigger -Principal $principal -Settings $settings -Description 'Moves the media worker onto a renewed media certificate (mediavm/setup/setup.ps1 -RefreshCertificate).' -Force | Out-Null
    Write-Step "scheduled task '$RefreshTaskName' (hourly)"
}

function Request-Restart {
    # The Custom Script Extension must not restart the VM itself (it would never report back): a one-time task
    # restarts it two minutes after this script has ended. The service (delayed automatic start) starts then.
    $action = New-ScheduledTaskAction -Execute 'shutdown.exe' -Argument '/r /t 0 /d p:4:2 /c "mediavm/setup/setup.ps1: Windows feature installed"'
    $trigger = New-ScheduledTaskTrigger -Once -At (Get-Date).AddMinutes(2)
    $principal = New-ScheduledTaskPrincipal -UserId 'NT AUTHORITY\SYSTEM' -LogonType ServiceAccount -RunLevel Highest
    Register-ScheduledTask -TaskName $RestartTaskName -Action $action -Trigger $trigger -Principal $principal -Description 'Restarts the media VM once after its setup installed a Windows feature.' -Force | Out-Null
    Write-SetupEvent -Message 'The media VM restarts in two minutes to complete a Windows feature; the media worker starts after it.'
}

function Start-WorkerService {
    if ($script:RestartNeeded) {
        Request-Restart
        Write-Step "$ServiceName starts after the restart (delayed automatic start)"
        return
    }
    if ($null -ne (Get-ScheduledTask -TaskName $RestartTaskName -ErrorAction SilentlyContinue)) {
        Unregister-ScheduledTask -TaskName $RestartTaskName -Confirm:$false
    }
    $service = Get-Service -Name $ServiceName
    if ($service.Status -eq 'Running' -and -not $script:Changed) {
        Write-Step "$ServiceName is running and nothing it runs changed"
        return
    }
    if ($service.Status -ne 'Stopped') {
        Write-Step "restarting $ServiceName"
        Stop-Service -Name $ServiceName -Force
    }
    else {
        Write-Step "starting $ServiceName"
    }
    Start-Service -Name $ServiceName
}

function Test-WorkerHealth {
    param([Parameter(Mandatory)] [string] $VenvPython, [Parameter(Mandatory)] [string] $Tool)
    if ($script:RestartNeeded) { return }
    $port = "$(Get-Setting $script:Config 'signalingPort')"
    $result = Invoke-Native -File $VenvPython -Arguments @($Tool, 'health', '--port', $port, '--timeout', '90') -AllowedExitCodes @(0, 1)
    if ($result.ExitCode -eq 0) {
        Write-SetupEvent -Message "The media worker answers on port $port`: $($result.Output)"
        return
    }
    $message = "The media worker does not answer on port $port yet: see $(Join-Path $Paths.Logs 'worker.log') and the Application event log (source $ServiceName)."
    Write-Warning $message
    Write-SetupEvent -EntryType Warning -EventId 30 -Message $message
}

# --- The runs --------------------------------------------------------------------------------------------------

function Invoke-Setup {
    $script:Config = Read-InstanceConfig
    $script:Compute = Get-InstanceMetadata
    $serviceFqdn = Get-Setting $script:Config 'serviceFqdn' -Optional
    if (-not $serviceFqdn) { $serviceFqdn = Get-Setting $script:Config 'publicFqdn' }
    $mediaControlPort = [int] (Get-Setting $script:Config 'mediaControlPort')
    $signalingPort = [int] (Get-Setting $script:Config 'signalingPort')

    $artifacts = Save-Artifacts
    Install-VcRedist
    Install-MediaFoundation
    $python = Install-Python
    $venvPython = Install-Worker -Python $python -Artifacts $artifacts
    Install-DotNetRuntime
    $libraryDir = Install-MediaLibrary
    $ports = Get-InstanceNatPorts
    $address = Get-InstancePublicAddress -Ports $ports
    $connectionString = Get-ApplicationInsightsConnectionString

    Install-WorkerService -VenvPython $venvPython -ServiceSource $artifacts['service']
    Set-FolderAccess
    $certificate = Find-MediaCertificate -Fqdn $serviceFqdn
    Grant-PrivateKeyAccess -Certificate $certificate
    $tls = Export-WorkerTlsFiles -Certificate $certificate -VenvPython $venvPython -Tool $artifacts['tool']
    Set-SslCertBinding -Port $mediaControlPort -Thumbprint $certificate.Thumbprint
    Set-FirewallRules -MediaControlPort $mediaControlPort -SignalingPort $signalingPort

    $environment = Get-WorkerEnvironment -ServiceFqdn $serviceFqdn -Ports $ports -Address $address -Tls $tls -Thumbprint $certificate.Thumbprint -LibraryDir $libraryDir -ConnectionString $connectionString
    Write-WorkerEnvironment -Environment $environment
    Register-CertificateRefresh
    Start-WorkerService
    Test-WorkerHealth -VenvPython $venvPython -Tool $artifacts['tool']
    Write-SetupEvent -Message "Media VM setup finished: $ServiceName serves https://$($serviceFqdn):$($ports.Signaling)/api/calls"
}

function Invoke-CertificateRefresh {
    $script:Config = Read-InstanceConfig
    $serviceFqdn = Get-Setting $script:Config 'serviceFqdn' -Optional
    if (-not $serviceFqdn) { $serviceFqdn = Get-Setting $script:Config 'publicFqdn' }
    $certificate = Find-MediaCertificate -Fqdn $serviceFqdn
    if ((Read-Marker (Join-Path $Paths.Tls 'thumbprint.txt')) -eq $certificate.Thumbprint) {
        Write-Step 'the worker uses the newest certificate'
        return
    }
    $venvPython = Join-Path $Paths.Venv 'Scripts\python.exe'
    $tool = Join-Path $Paths.Artifacts 'mediavm\setup\vmtool.py'
    $port = "$(Get-Setting $script:Config 'signalingPort')"
    $health = Invoke-Native -File $venvPython -Arguments @($tool, 'health', '--port', $port, '--timeout', '10') -AllowedExitCodes @(0, 1)
    if ($health.ExitCode -eq 0 -and [int] (Get-Property (ConvertFrom-Json -InputObject $health.Output) 'live') -gt 0) {
        Write-Step "certificate $($certificate.Thumbprint) is new, but the worker holds calls: next hour"
        return
    }
    Grant-PrivateKeyAccess -Certificate $certificate
    $tls = Export-WorkerTlsFiles -Certificate $certificate -VenvPython $venvPython -Tool $tool
    Set-SslCertBinding -Port ([int] (Get-Setting $script:Config 'mediaControlPort')) -Thumbprint $certificate.Thumbprint
    $key = "HKLM:\SYSTEM\CurrentControlSet\Services\$ServiceName"
    $lines = @(Get-Property (Get-ItemProperty -LiteralPath $key) 'Environment' | Where-Object { $_ -notlike 'MEDIA_CERTIFICATE_THUMBPRINT=*' })
    $lines += 'MEDIA_CERTIFICATE_THUMBPRINT={0}' -f $certificate.Thumbprint
    Set-ItemProperty -LiteralPath $key -Name Environment -Value ([string[]] $lines) -Type MultiString
    $script:Changed = $true
    Start-WorkerService
    Write-SetupEvent -Message "The media worker moved to the renewed certificate $($certificate.Thumbprint) (TLS files: $($tls.Cert))."
}

$logName = 'setup.log'
if ($RefreshCertificate) { $logName = 'certificate-refresh.log' }
Start-SetupLog -Name $logName
try {
    if ($RefreshCertificate) { Invoke-CertificateRefresh } else { Invoke-Setup }
    Write-Step 'done'
}
catch {
    $failure = "Media VM setup failed: $($_.Exception.Message)`n$($_.ScriptStackTrace)"
    Write-SetupEvent -EntryType Error -EventId 90 -Message $failure
    Write-Error $failure -ErrorAction Continue
    Stop-Transcript | Out-Null
    exit 1
}
Stop-Transcript | Out-Null
exit 0
