"""The media VM's setup (mediavm/setup/) checked where there is neither PowerShell nor Windows nor Azure.

What a PowerShell-less machine can check, and does here:
- setup.ps1 and the hooks' .ps1 parse with tree-sitter's PowerShell grammar without an ERROR or MISSING node, and
  the C# service wrapper with tree-sitter's C# grammar (the parsers are shown to refuse broken code too);
- every required step is a function that is defined, called, and listed in the script's help; every command the
  script runs is one of its functions or a known cmdlet/program, and every parameter it passes to one of its own
  functions is declared by that function (a typo in either fails here, not on the VM);
- Windows PowerShell 5.1 is what the Custom Script Extension runs: strict mode, 'Stop', a transcript, ASCII only,
  no PowerShell 7-only syntax;
- no secret-looking literal in any file the VM gets or the hooks use;
- setup.ps1 and infra/modules/mediavm.bicep agree: the userData keys it reads are exactly those the Bicep writes,
  its firewall and netsh ports are the ones the NSG and the NAT rules use, the NIC and IP configuration names of
  the port-mapping query, the API version, the custom role, the certificate extension, the App Insights reader;
- every environment variable it gives the worker is a setting the worker reads (mediavm/, calling/config.py) or one
  a library reads (listed below with who reads it), and the worker accepts the set;
- the hooks build and upload every file setup.ps1 downloads (the real stage.py and preprovision.sh, against a fake
  az), with the hashes the manifest gives, and the .ps1 hook does the same steps;
- requirements-worker.txt pins what requirements.txt pins, holds no Functions-only package, and is closed under
  the worker's dependencies with Windows' markers;
- vmtool.py turns a PFX into PEM files the worker's TLS loads, and reads a local /health.

What it cannot check: that Windows PowerShell runs the script (cmdlet behaviour, Add-Type, netsh, sc.exe, IMDS,
ARM and Storage answers), that the download URLs and pinned versions exist on python.org's NuGet package, the .NET
release metadata and nuget.org, and that Microsoft's media library loads: those are checked on the first deployment
(docs/media-vm.md, "After the first deployment").
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import tree_sitter
import tree_sitter_c_sharp
import tree_sitter_powershell
import yaml
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.test_infra_bicep import INFRA, MODULES, bicep, body, one_resource, param_default

ROOT = Path(__file__).resolve().parent.parent
SETUP = ROOT / "mediavm" / "setup"
SCRIPT = SETUP / "setup.ps1"
SERVICE = SETUP / "MediaWorkerService.cs"
VMTOOL = SETUP / "vmtool.py"
STAGE = SETUP / "stage.py"
REQUIREMENTS = SETUP / "requirements-worker.txt"
HOOKS = ROOT / "infra" / "hooks"
MEDIAVM_BICEP = MODULES / "mediavm.bicep"
MAIN_BICEP = INFRA / "main.bicep"
DOC = ROOT / "docs" / "media-vm.md"
SH = shutil.which("sh") or "/bin/sh"

POWERSHELL = tree_sitter.Language(tree_sitter_powershell.language())
CSHARP = tree_sitter.Language(tree_sitter_c_sharp.language())

#: The steps the issue asks for, each a function of setup.ps1 (the order is the script's).
REQUIRED_STEPS = (
    "Start-SetupLog", "Read-InstanceConfig", "Get-InstanceMetadata", "Save-Artifacts", "Install-VcRedist",
    "Install-MediaFoundation", "Install-Python", "Install-Worker", "Install-DotNetRuntime", "Install-MediaLibrary",
    "Get-InstanceNatPorts", "Get-ApplicationInsightsConnectionString", "Install-WorkerService", "Set-FolderAccess",
    "Find-MediaCertificate", "Grant-PrivateKeyAccess", "Export-WorkerTlsFiles", "Set-SslCertBinding",
    "Set-FirewallRules",
    "Write-WorkerEnvironment", "Register-CertificateRefresh", "Start-WorkerService", "Test-WorkerHealth",
)

#: Cmdlets and programs the script may run (Windows PowerShell 5.1 with the modules of Windows Server 2022:
#: Microsoft.PowerShell.*, NetSecurity, ScheduledTasks, PKI, Microsoft.PowerShell.Archive).
KNOWN_COMMANDS = {
    "Add-Type", "ConvertFrom-Json", "ConvertTo-Json", "ConvertTo-SecureString", "Copy-Item", "Expand-Archive",
    "Export-PfxCertificate", "ForEach-Object", "Get-ChildItem", "Get-Content", "Get-Date", "Get-FileHash", "Get-Item",
    "Get-ItemProperty", "Get-NetFirewallRule", "Get-Service", "Invoke-RestMethod", "Invoke-WebRequest", "Join-Path",
    "Move-Item", "New-EventLog", "New-Item", "New-NetFirewallRule", "New-Object", "New-ScheduledTaskAction",
    "New-ScheduledTaskPrincipal", "New-ScheduledTaskSettingsSet", "New-ScheduledTaskTrigger", "New-Service",
    "New-TimeSpan", "Out-Null", "Pop-Location", "Push-Location", "Register-ScheduledTask", "Remove-Item",
    "Select-Object", "Set-Content", "Set-ItemProperty", "Set-NetFirewallRule", "Set-StrictMode", "Sort-Object",
    "Split-Path", "Start-Service", "Start-Sleep", "Start-Transcript", "Stop-Service", "Stop-Transcript",
    "Test-Path", "Where-Object", "Write-Error", "Write-EventLog", "Write-Host", "Write-Warning",
    "Get-WindowsFeature", "Install-WindowsFeature", "Get-ScheduledTask", "Unregister-ScheduledTask", "Get-Command",
}
#: Parameters every function has ([CmdletBinding()] or not, PowerShell accepts these).
COMMON_PARAMETERS = {"erroraction", "warningaction", "verbose", "debug", "informationaction", "outvariable"}

#: Variables setup.ps1 sets for the worker that no module of this repository reads: who reads each.
LIBRARY_SETTINGS = {
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "the azure-monitor-opentelemetry exporter: it signs in to "
                                                 "Application Insights with the media identity (local auth is off)",
    "DOTNET_ROOT": "clr_loader (pythonnet): where coreclr is (mediavm/windows/interop.py passes no dotnet_root)",
    "PYTHONUNBUFFERED": "CPython: the worker's log lines reach the service wrapper's log file as they are written",
    "PYTHONUTF8": "CPython: UTF-8 for files and pipes on Windows, whatever the system code page",
}
#: Where each library reads its variable (checked against the installed package's source).
LIBRARY_SOURCES = {
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": ("azure.monitor.opentelemetry.exporter", "_constants.py"),
    "DOTNET_ROOT": ("clr_loader", "util/find.py"),
}

#: A plausible value for each variable the worker gets, as setup.ps1 would write it on an instance.
SAMPLE_ENVIRONMENT = {
    "MEDIA_ENGINE": "windows",
    "MEDIA_WORKER_PUBLIC_URL": "https://media-abc123.westeurope.cloudapp.azure.com:7000",
    "MEDIA_WORKER_LISTEN": "0.0.0.0:9441",
    "MEDIA_WORKER_TLS_CERT_FILE": r"C:\MediaWorker\tls\worker-cert.pem",
    "MEDIA_WORKER_TLS_KEY_FILE": r"C:\MediaWorker\tls\worker-key.pem",
    "MEDIA_HANDOFF_TRANSPORT": "servicebus",
    "SERVICEBUS_NAMESPACE": "sb-abc123.servicebus.windows.net",
    "MEDIA_HANDOFF_QUEUE": "media-handoff",
    "RECORDINGS_CONTAINER_URL": "https://stabc123.blob.core.windows.net/compliance-recordings",
    "BOT_APP_ID": "1b2c3d4e-0000-4000-8000-00000000abcd",
    "BOT_TENANT_ID": "72f988bf-0000-4000-8000-000000000000",
    "BOT_ALLOWED_TENANTS": "72f988bf-0000-4000-8000-000000000000",
    "BOT_PUBLIC_URL": "https://func-abc123.azurewebsites.net",
    "BOT_MANAGED_IDENTITY_CLIENT_ID": "0f0e0d0c-0000-4000-8000-000000000001",
    "APPLICATIONINSIGHTS_CONNECTION_STRING": "IngestionEndpoint=https://westeurope-5.in.applicationinsights.azure.com/",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "ClientId=0f0e0d0c-0000-4000-8000-000000000001;Authorization=AAD",
    "MEDIA_CERTIFICATE_THUMBPRINT": "0123456789ABCDEF0123456789ABCDEF01234567",
    "MEDIA_INSTANCE_INTERNAL_PORT": "8445",
    "MEDIA_INSTANCE_PUBLIC_PORT": "8445",
    "MEDIA_INSTANCE_PUBLIC_IP": "20.50.1.2",
    "MEDIA_SERVICE_FQDN": "media-abc123.westeurope.cloudapp.azure.com",
    "MEDIA_LIBRARY_DIR": r"C:\MediaWorker\media-library\1.33.0.258-preview-0123456789ab",
    "MEDIA_DOTNET_RUNTIME": "coreclr",
    "MEDIA_DOTNET_VERSION": "8.0",
    "DOTNET_ROOT": r"C:\MediaWorker\dotnet",
    "PYTHONUNBUFFERED": "1",
    "PYTHONUTF8": "1",
}


# --- parsing ---------------------------------------------------------------------------------------------------

def parse(language: tree_sitter.Language, source: bytes) -> tree_sitter.Tree:
    return tree_sitter.Parser(language).parse(source)


def problems(language: tree_sitter.Language, source: bytes) -> list[str]:
    """Every ERROR or MISSING node, as 'line:column: text'."""
    found: list[str] = []

    def walk(node: tree_sitter.Node) -> None:
        if node.type == "ERROR" or node.is_missing:
            text = (node.text or b"").decode(errors="replace")[:80]
            found.append(f"{node.start_point[0] + 1}:{node.start_point[1] + 1}: {node.type} {text!r}")
        for child in node.children:
            walk(child)

    walk(parse(language, source).root_node)
    return found


def nodes(node: tree_sitter.Node, kind: str) -> Iterator[tree_sitter.Node]:
    if node.type == kind:
        yield node
    for child in node.children:
        yield from nodes(child, kind)


def text(node: tree_sitter.Node | None) -> str:
    return (node.text or b"").decode() if node is not None else ""


@functools.cache
def script() -> str:
    return SCRIPT.read_text(encoding="utf-8")


@functools.cache
def script_tree() -> tree_sitter.Tree:
    return parse(POWERSHELL, script().encode())


@functools.cache
def functions() -> dict[str, tree_sitter.Node]:
    """name -> function_statement node."""
    found = {}
    for node in nodes(script_tree().root_node, "function_statement"):
        name = next(c for c in node.children if c.type == "function_name")
        found[text(name)] = node
    return found


def declared_parameters(function: tree_sitter.Node) -> set[str]:
    block = next(nodes(function, "param_block"), None)
    if block is None:
        return set()
    return {text(param).lstrip("$").lower() for sp in nodes(block, "script_parameter")
            for param in sp.children if param.type == "variable"}


def function_body(name: str) -> str:
    return text(functions()[name])


def commands(root: tree_sitter.Node) -> Iterator[tuple[str, list[str]]]:
    """(command name, the -Parameters it is given) of every command under `root`."""
    for node in nodes(root, "command"):
        name = text(node.child_by_field_name("command_name"))
        elements = node.child_by_field_name("command_elements")
        params = [text(p).lstrip("-").rstrip(":").lower() for p in elements.children
                  if p.type == "command_parameter"] if elements else []
        yield name, params


@pytest.mark.parametrize("path", [SCRIPT, *sorted(HOOKS.rglob("*.ps1"))], ids=lambda p: p.name)
def test_powershell_parses_without_errors(path: Path) -> None:
    found = problems(POWERSHELL, path.read_bytes())
    assert not found, f"{path.name} does not parse:\n" + "\n".join(found)


@pytest.mark.parametrize("broken", [
    "function Step {\n    if ($x) { Write-Host 'a'\n}\n",           # an unclosed brace
    "$message = 'unterminated\n",                                 # an unterminated string
    "$here = @'\nno end of the here-string\n",                    # an unterminated here-string
    "foreach ($a in $b) Write-Host $a\n",                         # a loop without its block
    "$x = @{ A = 1; B = }\n",                                     # a hashtable entry without a value
])
def test_the_powershell_parser_refuses_broken_code(broken: str) -> None:
    assert problems(POWERSHELL, broken.encode()), broken


def test_the_service_wrapper_parses_as_csharp_5() -> None:
    source = SERVICE.read_text(encoding="utf-8")
    found = problems(CSHARP, source.encode())
    assert not found, "MediaWorkerService.cs does not parse:\n" + "\n".join(found)
    assert problems(CSHARP, b"class A { void B() { if (x) { } }")  # the parser has teeth
    # Windows PowerShell's Add-Type compiles with the .NET Framework's C# 5 compiler.
    code = re.sub(r"//[^\n]*", "", source)
    for newer in ('$"', "?.", "nameof(", "=> ", "??="):
        assert newer not in code, f"MediaWorkerService.cs uses {newer!r}, which C# 5 (Add-Type) does not know"
    assert "class WorkerService : ServiceBase" in source and "ServiceBase.Run(" in source


def test_the_script_and_the_service_wrapper_agree() -> None:
    source = SERVICE.read_text(encoding="utf-8")
    assert re.search(r'public const string Name = "MediaWorker";', source)
    assert "$ServiceName = 'MediaWorker'" in script()
    # ImagePath: the wrapper, then the 4 arguments it takes.
    image = re.search(r"\$imagePath = '([^']+)' -f", script())
    assert image, "Install-WorkerService builds no ImagePath"
    assert len(re.findall(r"\{\d\}", image.group(1))) - 1 == int(re.search(r"args\.Length != (\d)", source).group(1))
    assert "-OutputType ConsoleApplication" in script() and "'System.ServiceProcess'" in script()
    assert '"-m mediavm"' in source


# --- the steps -------------------------------------------------------------------------------------------------

def test_every_required_step_is_a_function_that_runs() -> None:
    defined = functions()
    missing = [step for step in REQUIRED_STEPS if step not in defined]
    assert not missing, f"setup.ps1 defines no {missing}"
    called = {name for name, _ in commands(script_tree().root_node)}
    assert not [s for s in REQUIRED_STEPS if s not in called], "a required step is never called"
    setup = functions()["Invoke-Setup"]
    in_setup = [name for name, _ in commands(setup)]
    for step in REQUIRED_STEPS:
        if step not in ("Start-SetupLog",):  # the log starts before Invoke-Setup
            assert step in in_setup or any(step in function_body(f) for f in in_setup if f in defined), step
    help_text = script().split("#>")[0]
    for step in REQUIRED_STEPS:
        assert re.search(rf"^\s+{re.escape(step)}\s", help_text, re.MULTILINE), f"the help does not list {step}"


def test_the_main_run_calls_the_steps_in_order() -> None:
    setup = [name for name, _ in commands(functions()["Invoke-Setup"]) if name in REQUIRED_STEPS]
    order = [s for s in REQUIRED_STEPS if s in setup]
    assert [s for s in setup if s in order] == order, setup


def test_every_command_is_a_function_or_known_and_every_parameter_is_declared() -> None:
    defined = functions()
    unknown, undeclared = set(), set()
    for name, params in commands(script_tree().root_node):
        if re.fullmatch(r"[\d.]+", name) or name.endswith(".exe") or name.startswith("$"):
            continue  # a range the grammar reads as a command, a program, `& $file`
        if name in defined:
            declared = declared_parameters(defined[name]) | COMMON_PARAMETERS
            undeclared |= {f"{name} -{p}" for p in params if p not in declared}
        elif name not in KNOWN_COMMANDS:
            unknown.add(name)
    assert not unknown, f"setup.ps1 runs commands that are neither its functions nor known: {sorted(unknown)}"
    assert not undeclared, f"parameters the function does not declare: {sorted(undeclared)}"


def test_programs_are_run_through_invoke_native() -> None:
    """Every program's exit code is checked: Invoke-Native throws on one it does not allow."""
    for match in re.finditer(r"Invoke-Native -File '([^']+)'", script()):
        assert match.group(1).endswith(".exe"), match.group(0)
    bare = re.findall(r"^\s*&\s*(?:sc|netsh|icacls)(?:\.exe)?\b", script(), re.MULTILINE)
    assert not bare, f"programs run without an exit code check: {bare}"
    assert "if ($AllowedExitCodes -notcontains $code)" in function_body("Invoke-Native")


def test_windows_powershell_5_1_strict_and_logged() -> None:
    source = script()
    assert "Set-StrictMode -Version Latest" in source
    assert "$ErrorActionPreference = 'Stop'" in source
    assert "Start-Transcript -Path $log -Append" in source and "Stop-Transcript" in source
    assert source.isascii(), "Windows PowerShell 5.1 reads a BOM-less script as ANSI: keep it ASCII"
    code = re.sub(r"(?m)#.*$", "", source.split("#>", 1)[1])
    for newer in ("&&", "||", " ?? ", "?.", "-SkipCertificateCheck", "ForEach-Object -Parallel", "-NoProxy",
                  "Invoke-Expression", "iex "):
        assert newer not in code, f"{newer!r}: not in Windows PowerShell 5.1, or not wanted"
    mandatory = [p for p in nodes(next(nodes(script_tree().root_node, "param_block")), "attribute")
                 if "Mandatory" in text(p)]
    assert not mandatory, "the Custom Script Extension passes no arguments"
    assert re.search(r"^\s+exit 1$", source, re.MULTILINE) and re.search(r"^exit 0$", source, re.MULTILINE)


def test_idempotent_steps_check_before_they_change() -> None:
    """The shapes of idempotency the script relies on, where a rerun would otherwise fail or duplicate."""
    bind = function_body("Set-SslCertBinding")
    assert bind.index("'show', 'sslcert'") < bind.index("'delete', 'sslcert'") < bind.index("'add', 'sslcert'")
    assert "clientcertnegotiation=enable" in bind and "certhash=$Thumbprint" in bind
    firewall = function_body("Set-FirewallRules")
    assert "Get-NetFirewallRule -Name" in firewall and "Set-NetFirewallRule" in firewall
    assert "New-NetFirewallRule" in firewall
    service = function_body("Install-WorkerService")
    assert "Get-Service -Name $ServiceName -ErrorAction SilentlyContinue" in service
    assert "'failure', $ServiceName, 'reset=', '86400', 'actions=', 'restart/5000" in service
    assert "'failureflag', $ServiceName, '1'" in service
    assert "-NewDisplayName $rule.DisplayName" in firewall, "Set-NetFirewallRule renames with -NewDisplayName"
    assert "New-NetFirewallRule -Name $rule.Name -DisplayName $rule.DisplayName" in firewall
    settings = re.search(r"\$settings = @\{([^}]*)\}", firewall)
    assert settings and "DisplayName" not in settings.group(1), "-DisplayName is another parameter set of Set-"
    for step, marker in (("Install-Worker", "installed.txt"), ("Install-MediaLibrary", "installed.txt"),
                         ("Install-DotNetRuntime", "installed.txt"), ("Export-WorkerTlsFiles", "thumbprint.txt"),
                         ("Install-VcRedist", "VC\\Runtimes\\x64")):
        assert marker in function_body(step), f"{step} does not check {marker} before it installs"
    assert "Register-ScheduledTask" in function_body("Register-CertificateRefresh")
    assert "-Force" in function_body("Register-CertificateRefresh")


# --- no secrets ------------------------------------------------------------------------------------------------

SECRET_PATTERNS = {
    "storage account key": re.compile(r"AccountKey=", re.IGNORECASE),
    "Service Bus key": re.compile(r"SharedAccessKey(Name)?=", re.IGNORECASE),
    "SAS token": re.compile(r"[?&](sig|sv|se)=[^&'\" ]{4,}", re.IGNORECASE),
    "private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "instrumentation key": re.compile(r"InstrumentationKey=[0-9a-f-]{8,}", re.IGNORECASE),
    "password literal": re.compile(r"(?i)(password|passwd|pwd|secret)\w*\s*[=:]\s*['\"][^'\"$<{]{3,}['\"]"),
    "client secret": re.compile(r"(?i)client_secret\s*="),
    "long base64 or hex literal": re.compile(r"['\"][A-Za-z0-9+/=_-]{48,}['\"]"),
    "bearer token literal": re.compile(r"Bearer [A-Za-z0-9._-]{20,}"),
}


def secret_findings(source: str) -> list[str]:
    return [f"{what}: {m.group(0)[:40]!r}" for what, pattern in SECRET_PATTERNS.items()
            for m in pattern.finditer(source)]


@pytest.mark.parametrize("path", [SCRIPT, SERVICE, VMTOOL, STAGE, REQUIREMENTS, *sorted(HOOKS.glob("preprovision.*")),
                                  *sorted((HOOKS / "lib").glob("[uU]pload.*"))], ids=lambda p: p.name)
def test_no_secret_looking_literals(path: Path) -> None:
    found = secret_findings(path.read_text(encoding="utf-8"))
    assert not found, f"{path.name}: {found}"


@pytest.mark.parametrize("secret", [
    "$key = 'AccountKey=abc'", "$url = 'https://x.blob.core.windows.net/c/b?sv=2023-11-03&sig=abcd1234'",
    "-----BEGIN PRIVATE KEY-----", "$password = 'hunter22'", "client_secret = 'x'",
    "$blob = 'QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2'",
])
def test_the_secret_check_finds_secrets(secret: str) -> None:
    assert secret_findings(script() + "\n" + secret + "\n")


# --- setup.ps1 and the Bicep agree -----------------------------------------------------------------------------

def keys_of(value: Any, prefix: str = "") -> set[str]:
    """Dotted keys of a Bicep object literal as pycep gives it (nested objects recurse)."""
    found: set[str] = set()
    for key, item in value.items():
        name = f"{prefix}{key}"
        if isinstance(item, dict) and not ({"operator", "function"} & set(item)):
            found |= keys_of(item, name + ".")
        else:
            found.add(name)
    return found


def user_data_keys() -> set[str]:
    """What mediavm.bicep writes into userData: its own keys and main.bicep's serviceConfig."""
    config = bicep(MEDIAVM_BICEP)["variables"]["instanceConfig"]["value"]["function"]
    assert config["type"] == "union" and config["parameters"]["arg_1"] == "serviceConfig"
    own = keys_of(config["parameters"]["arg_2"])
    module = body(bicep(MAIN_BICEP)["modules"]["mediaVm"])
    return own | keys_of(module["params"]["serviceConfig"])


def script_reads() -> set[str]:
    return set(re.findall(r"Get-Setting \$(?:script:)?Config '([A-Za-z0-9.]+)'", script()))


def test_the_user_data_the_script_reads_is_what_the_bicep_writes() -> None:
    reads, writes = script_reads(), user_data_keys()
    assert reads, "setup.ps1 reads no userData"
    assert reads <= writes, f"setup.ps1 reads userData mediavm.bicep does not write: {sorted(reads - writes)}"
    assert writes <= reads, f"userData setup.ps1 never reads: {sorted(writes - reads)}"
    # The only way it reads userData: no $Config.property that would escape the check above.
    assert not re.search(r"\$(?:script:)?Config\.", script()), "read userData with Get-Setting"
    assert "instance/compute/userData?api-version=2021-01-01&format=text" in script()


def nsg_rules() -> dict[str, dict[str, Any]]:
    nsg = one_resource(MEDIAVM_BICEP, "Microsoft.Network/networkSecurityGroups")
    return {rule["name"]: rule["properties"] for rule in nsg["properties"]["securityRules"]}


def ps_string(name: str) -> str:
    found = re.search(rf"^\${name} = '([^']*)'$", script(), re.MULTILINE)
    assert found, f"setup.ps1 sets no ${name}"
    return found.group(1)


def test_the_firewall_and_netsh_ports_are_the_nsg_and_nat_ports() -> None:
    rules = nsg_rules()
    # The UDP range is written in both: the same.
    assert ps_string("MediaUdpPorts") == rules["TEAMS_MEDIA_UDP"]["destinationPortRange"]
    assert rules["TEAMS_MEDIA_UDP"]["protocol"] == "Udp"
    # TCP: the NSG rules, the NAT rules' backend ports and the userData ports are the same two parameters...
    def converted(rule: dict[str, Any]) -> str:
        return str(rule["destinationPortRange"]["function"]["parameters"]["value_to_convert"])
    assert converted(rules["MEDIA_CONTROL_PLANE"]) == "mediaControlPort"
    assert converted(rules["CALL_NOTIFICATION"]) == "signalingPort"
    lb = one_resource(MEDIAVM_BICEP, "Microsoft.Network/loadBalancers")["properties"]
    assert {r["name"]: r["properties"]["backendPort"] for r in lb["inboundNatRules"]} == {
        "mediaControlRuleName": "mediaControlPort", "signalingRuleName": "signalingPort"}
    loadbalancer = bicep(MEDIAVM_BICEP)["variables"]["instanceConfig"]["value"]["function"]["parameters"]["arg_2"][
        "loadBalancer"]
    assert (loadbalancer["mediaControlRule"], loadbalancer["signalingRule"]) == ("mediaControlRuleName",
                                                                                 "signalingRuleName")
    args = bicep(MEDIAVM_BICEP)["variables"]["instanceConfig"]["value"]["function"]["parameters"]["arg_2"]
    assert (args["mediaControlPort"], args["signalingPort"]) == ("mediaControlPort", "signalingPort")
    # ...and the script takes its TCP ports from those userData keys, never a number of its own.
    setup = function_body("Invoke-Setup")
    assert "$mediaControlPort = [int] (Get-Setting $script:Config 'mediaControlPort')" in setup
    assert "$signalingPort = [int] (Get-Setting $script:Config 'signalingPort')" in setup
    assert "Set-SslCertBinding -Port $mediaControlPort" in setup
    assert "Set-FirewallRules -MediaControlPort $mediaControlPort -SignalingPort $signalingPort" in setup
    for port in (param_default(MEDIAVM_BICEP, "mediaControlPort"), param_default(MEDIAVM_BICEP, "signalingPort")):
        assert str(port) not in script(), f"setup.ps1 hard-codes port {port}: take it from userData"
    firewall = function_body("Set-FirewallRules")
    assert "LocalPort = $rule.Port" in firewall
    assert {"\"$MediaControlPort\"", "\"$SignalingPort\"", "$MediaUdpPorts"} <= set(re.findall(
        r"Port = (\"\$\w+\"|\$\w+) }", firewall))


def test_the_port_mapping_query_matches_the_load_balancer_and_its_role() -> None:
    profile = one_resource(MEDIAVM_BICEP, "Microsoft.Compute/virtualMachineScaleSets")["properties"][
        "virtualMachineProfile"]
    nic = profile["networkProfile"]["networkInterfaceConfigurations"][0]
    assert ps_string("NicName") == nic["name"]
    assert ps_string("IpConfigName") == nic["properties"]["ipConfigurations"][0]["name"]
    lb = bicep(MEDIAVM_BICEP)["resources"]["lb"]
    assert ps_string("NetworkApiVersion") == lb["api_version"]
    role = body(bicep(MEDIAVM_BICEP)["resources"]["natPortReader"])["properties"]["permissions"][0]["actions"]
    assert "Microsoft.Network/loadBalancers/backendAddressPools/queryInboundNatRulePortMapping/action" in role
    query = function_body("Get-InstanceNatPorts")
    assert "backendAddressPools/{1}/queryInboundNatRulePortMapping" in query
    assert "ipConfiguration = @{ id = $ipConfiguration }" in query


def role_actions() -> list[str]:
    actions: list[str] = body(bicep(MEDIAVM_BICEP)["resources"]["natPortReader"])["properties"]["permissions"][0][
        "actions"]
    return actions


def test_the_port_mapping_query_can_be_followed_to_its_result() -> None:
    """queryInboundNatRulePortMapping is a long-running POST: its Location is
    /subscriptions/{sub}/providers/Microsoft.Network/locations/{region}/operationResults/{id}, outside the load
    balancer, and "Track asynchronous Azure operations" asks for permission at the resource group to follow it."""
    actions = role_actions()
    for action in ("Microsoft.Network/locations/operationResults/read", "Microsoft.Network/locations/operations/read"):
        assert action in actions, f"the custom role cannot follow the query's Location: {action}"
    assignment = body(bicep(MEDIAVM_BICEP)["resources"]["natPortReaderAssignment"])
    assert "scope" not in assignment, "assign the role on the resource group, not on the load balancer"
    name = assignment["name"]["function"]
    assert name["type"] == "guid" and name["parameters"]["base_string"]["function"]["type"] == "resource_group"
    role = body(bicep(MEDIAVM_BICEP)["resources"]["natPortReader"])["properties"]
    assert [scope["function"]["type"] for scope in role["assignableScopes"]] == ["resource_group"]
    # The poll follows the Location, and a refused request shows ARM's error body (AuthorizationFailed) in the log.
    arm = function_body("Invoke-Arm")
    assert "Get-Header -Response $response -Name 'Location'" in arm
    assert "Invoke-WebRequest" not in arm and arm.count("Invoke-ArmRequest -Request") == 2
    request = function_body("Invoke-ArmRequest")
    assert "catch [System.Net.WebException]" in request and "Read-ErrorBody -Exception $_.Exception" in request
    assert "$body" in request.split("throw", 1)[1]
    assert "GetResponseStream()" in function_body("Read-ErrorBody")
    doc = DOC.read_text(encoding="utf-8")
    for needle in ("Microsoft.Network/locations/operationResults/read", "Microsoft.Network/locations/operations/read",
                   "AuthorizationFailed", "RoleDefinitionDoesNotExist"):
        assert needle in doc, f"docs/media-vm.md does not name {needle}"


def test_instances_have_their_own_public_ip_and_advertise_it() -> None:
    """Microsoft's requirements for application-hosted media bots: every instance directly reachable through an
    instance-level public IP (the load balancer forwards TCP NAT ports only, no UDP media)."""
    assert param_default(MEDIAVM_BICEP, "instancePublicIp") is True
    assert param_default(MAIN_BICEP, "mediaVmInstancePublicIp") is True
    parameters = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert parameters["mediaVmInstancePublicIp"]["value"] == "${MEDIA_VM_INSTANCE_PUBLIC_IP=true}"
    # The public IP configuration's name is the one the script reads the address by.
    assert bicep(MEDIAVM_BICEP)["variables"]["instancePublicIpName"]["value"] == ps_string("InstancePublicIpName")
    ipconfig = one_resource(MEDIAVM_BICEP, "Microsoft.Compute/virtualMachineScaleSets")["properties"][
        "virtualMachineProfile"]["networkProfile"]["networkInterfaceConfigurations"][0]["properties"][
        "ipConfigurations"][0]["properties"]
    conditional = ipconfig["publicIPAddressConfiguration"]["operator"]["operands"]
    assert conditional["condition"] == "instancePublicIp"
    assert conditional["true_value"]["name"] == "instancePublicIpName"
    config = bicep(MEDIAVM_BICEP)["variables"]["instanceConfig"]["value"]["function"]["parameters"]["arg_2"]
    assert (config["instancePublicIp"], config["instancePublicIpName"]) == ("instancePublicIp", "instancePublicIpName")
    # The scale set public IP API (PublicIPAddresses_GetVirtualMachineScaleSetPublicIPAddress): under the
    # instance's Microsoft.Compute id, api-version 2018-10-01, and the role may read it.
    assert ps_string("ScaleSetPublicIpApiVersion") == "2018-10-01"
    assert ("Microsoft.Compute/virtualMachineScaleSets/virtualMachines/networkInterfaces/ipConfigurations/"
            "publicIPAddresses/read") in role_actions()
    address = function_body("Get-InstancePublicAddress")
    assert ("'{0}/networkInterfaces/{1}/ipConfigurations/{2}/publicIPAddresses/{3}?api-version={4}' -f "
            "$script:Compute.resourceId, $NicName, $IpConfigName, $pipName, $ScaleSetPublicIpApiVersion") in address
    assert "Invoke-Arm -Method Get -Path $path" in address and "'ipAddress'" in address
    # The media control plane is reached at ServiceFqdn:InstancePublicPort, and ServiceFqdn is the load balancer's
    # name: with an instance IP too the port is the instance's NAT port (Microsoft's VMSS samples: 6000-6500 -> 8445).
    assert "IpAddress = $address; MediaControlPort = $Ports.MediaControl" in address
    assert "internalPort" not in address
    # Without one: the load balancer's address and NAT port, as before.
    assert ("IpAddress = (Get-Setting $script:Config 'publicIpAddress'); MediaControlPort = $Ports.MediaControl"
            in address)
    setup = function_body("Invoke-Setup")
    assert "$address = Get-InstancePublicAddress -Ports $ports" in setup and "-Address $address" in setup
    doc = DOC.read_text(encoding="utf-8")
    assert "| `MEDIA_VM_INSTANCE_PUBLIC_IP` | `true` |" in doc and "ILPIP" in doc


def test_the_media_control_port_admits_the_teams_media_ranges() -> None:
    """The Teams media ranges are Microsoft 365's, which the AzureCloud service tag does not promise to hold."""
    rules = nsg_rules()
    teams = rules["MEDIA_CONTROL_PLANE_TEAMS"]
    assert (teams["protocol"], teams["sourceAddressPrefixes"]) == ("Tcp", "teamsMediaSourcePrefixes")
    assert teams["destinationPortRange"] == rules["MEDIA_CONTROL_PLANE"]["destinationPortRange"]
    assert "`MEDIA_CONTROL_PLANE_TEAMS`" in DOC.read_text(encoding="utf-8")


def test_nuget_dependencies_resolve_to_the_highest_lower_bound_then_install_once() -> None:
    """NuGet's "Cousin dependencies": per package id, the highest lower bound of the graph (not the first seen);
    the pinned packages as pinned. Pass 1 resolves from the .nuspec files, pass 2 copies each package once."""
    resolve = function_body("Resolve-NuGetPackages")
    assert "Compare-NuGetVersion -Left $lowerBound -Right $resolved[$dependencyKey].Version) -gt 0" in resolve
    assert "if ($pins.ContainsKey($dependencyKey)) { continue }" in resolve
    assert "$queue.Enqueue($dependencyKey)" in resolve, "a package whose version rises is walked again"
    assert "Add-NuGetPackage" not in resolve and "Read-NuGetNuspec" in resolve
    assert "/$lowerId.nuspec" in function_body("Read-NuGetNuspec")
    add = function_body("Add-NuGetPackage")
    assert "Add-NuGetPackage" not in add.split("{", 1)[1], "pass 2 copies one package: no recursion"
    assert "Get-NuGetDependencies" not in add and "$Seen" not in add
    install = function_body("Install-MediaLibrary")
    assert install.index("Resolve-NuGetPackages -Pinned $MediaLibraryPackages") < install.index("Add-NuGetPackage")
    key = function_body("Get-NuGetVersionKey")
    assert "[version] ($parts -join '.')" in key and "while ($parts.Count -lt 4)" in key
    compare = function_body("Compare-NuGetVersion")
    assert "$a.Numeric.CompareTo($b.Numeric)" in compare


def test_the_media_library_folder_is_named_by_everything_it_holds() -> None:
    """Bumping only Calls.Media must not delete the folder the running worker loaded its DLLs from."""
    install = function_body("Install-MediaLibrary")
    assert ("$dir = Join-Path $Paths.MediaLibrary ('{0}-{1}' -f $MediaLibraryVersion, (Get-ShortHash -Text $wanted))"
            in install)
    assert install.index("$wanted = ") < install.index("$dir = ")
    removal = install.index("Remove-Item -LiteralPath $dir")
    assert "Stop-WorkerForUpdate" in install[:removal], "stop the worker before deleting a library folder"
    assert "ComputeHash" in function_body("Get-ShortHash")


def test_native_commands_outside_invoke_native_are_wrapped_like_it() -> None:
    """Under 'Stop' and a transcript, Windows PowerShell turns a program's stderr line into a terminating error."""
    for name, function in functions().items():
        source = text(function)
        for line in source.splitlines():
            if re.search(r"&\s*\$(?!Action\b)\w+", line) and not line.strip().startswith("#"):
                assert "2>&1" in line, f"{name}: {line.strip()}"
                before = source[:source.index(line)]
                assert "$ErrorActionPreference = 'Continue'" in before, f"{name} runs a program under 'Stop'"
                after = source[source.index(line):]
                assert "$ErrorActionPreference = $previous" in after and "$LASTEXITCODE" in after, name
    export = function_body("Export-WorkerTlsFiles")
    assert "if ($code -ne 0) { throw" in export


def test_the_certificate_extension_and_the_telemetry_reader_are_in_the_bicep() -> None:
    profile = one_resource(MEDIAVM_BICEP, "Microsoft.Compute/virtualMachineScaleSets")["properties"][
        "virtualMachineProfile"]
    extensions = {e["name"]: e["properties"] for e in profile["extensionProfile"]["extensions"]}
    observed = extensions["KeyVaultForWindows"]["settings"]["secretsManagementSettings"]["observedCertificates"][0]
    assert observed["keyExportable"] is True, "Export-WorkerTlsFiles exports the key once as the worker's PEM"
    assert (observed["certificateStoreName"], observed["certificateStoreLocation"]) == ("MY", "LocalMachine")
    assert "Cert:\\LocalMachine\\My" in function_body("Find-MediaCertificate")
    command = extensions["MediaSetup"]["protectedSettings"]["commandToExecute"]
    assert "powershell.exe -NoProfile -ExecutionPolicy Bypass -File" in command
    resources = bicep(MEDIAVM_BICEP)["resources"]
    assert resources["appInsights"]["existing"] is True
    reader = body(resources["appInsightsReader"])
    assert reader["scope"] == "appInsights"
    assert body(resources["vmss"]).get("dependsOn") and "appInsightsReader" in json.dumps(body(resources["vmss"]))
    assert "Microsoft.Insights/components/{2}?api-version={3}" in function_body(
        "Get-ApplicationInsightsConnectionString")
    assert param_default(MAIN_BICEP, "mediaVmSetupScript") == "mediavm/setup/setup.ps1"


# --- the worker's environment ----------------------------------------------------------------------------------

def worker_environment_names() -> list[str]:
    environment = function_body("Get-WorkerEnvironment").split("[ordered]@{", 1)[1]
    return re.findall(r"^\s+([A-Z][A-Z0-9_]+)\s+=", environment, re.MULTILINE)


@functools.cache
def settings_the_code_reads() -> set[str]:
    """Every ALL_CAPS_WITH_UNDERSCORE string literal in calling/config.py and mediavm/ (its settings' names)."""
    sources = [ROOT / "calling" / "config.py", *[p for p in (ROOT / "mediavm").rglob("*.py") if "setup" not in p.parts]]
    return {name for path in sources
            for name in re.findall(r"[\"']([A-Z][A-Z0-9]*_[A-Z0-9_]*[A-Z0-9])[\"']", path.read_text(encoding="utf-8"))}


def test_every_variable_the_worker_gets_is_a_setting_it_reads() -> None:
    names = worker_environment_names()
    assert len(names) == len(set(names)), "a variable is set twice"
    unknown = set(names) - settings_the_code_reads() - set(LIBRARY_SETTINGS)
    assert not unknown, f"setup.ps1 sets variables nothing reads: {sorted(unknown)}"
    # The library-read ones are read where this test says.
    for name, (package, relative) in LIBRARY_SOURCES.items():
        spec = importlib.util.find_spec(package)
        assert spec and spec.submodule_search_locations, f"{package} is not installed (python3 dev.py test)"
        source = Path(next(iter(spec.submodule_search_locations))) / relative
        assert name in source.read_text(encoding="utf-8"), f"{package} no longer reads {name}"
    assert set(LIBRARY_SETTINGS) <= set(names), "LIBRARY_SETTINGS lists a variable the script no longer sets"


def test_the_worker_accepts_the_environment_the_script_writes() -> None:
    from mediavm.config import WorkerSettings

    assert set(worker_environment_names()) == set(SAMPLE_ENVIRONMENT), "update SAMPLE_ENVIRONMENT with the script"
    settings = WorkerSettings.from_env(SAMPLE_ENVIRONMENT)
    assert settings.engine == "windows"
    assert settings.public_url == SAMPLE_ENVIRONMENT["MEDIA_WORKER_PUBLIC_URL"]
    assert settings.app.handoff_transport == "servicebus"
    assert settings.app.managed_identity_client_id == SAMPLE_ENVIRONMENT["BOT_MANAGED_IDENTITY_CLIENT_ID"]
    windows = getattr(settings, "windows", None)
    if windows is not None:  # the Windows engine's own settings, as mediavm/config.py reads them
        assert windows.certificate_thumbprint == SAMPLE_ENVIRONMENT["MEDIA_CERTIFICATE_THUMBPRINT"]
        assert windows.public_port == 8445 and windows.internal_port == 8445
        assert windows.library_dir == SAMPLE_ENVIRONMENT["MEDIA_LIBRARY_DIR"]
    # What the script derives each one from (the required ones from userData or the instance's own lookups).
    environment = function_body("Get-WorkerEnvironment")
    for name, source in (("MEDIA_WORKER_PUBLIC_URL", "$Ports.Signaling"), ("MEDIA_INSTANCE_PUBLIC_PORT",
                         "$Address.MediaControlPort"), ("MEDIA_INSTANCE_PUBLIC_IP", "$Address.IpAddress"),
                         ("MEDIA_WORKER_LISTEN", "'signalingPort'"),
                         ("MEDIA_INSTANCE_INTERNAL_PORT", "'mediaControlPort'"), ("SERVICEBUS_NAMESPACE",
                         "'serviceBusNamespace'"), ("BOT_PUBLIC_URL", "'botPublicUrl'")):
        line = next(line for line in environment.splitlines() if line.strip().startswith(name + " "))
        assert source in line, f"{name} should come from {source}: {line.strip()}"


# --- the hooks upload what setup.ps1 downloads -----------------------------------------------------------------

@pytest.fixture(scope="module")
def staged(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("stage")
    result = subprocess.run([sys.executable, str(STAGE), "--out", str(out)], capture_output=True, text=True,
                            cwd=ROOT, timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert not (ROOT / "build").exists() or (ROOT / "build").stat().st_mtime < out.stat().st_mtime
    return out


def manifest(out: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((out / "mediavm" / "setup" / "manifest.json").read_text())
    return data


def test_stage_writes_every_file_setup_downloads_with_its_hash(staged: Path) -> None:
    data = manifest(staged)
    assert data["version"] == 1
    roles = re.search(r"^\$ArtifactRoles = @\(([^)]*)\)$", script(), re.MULTILINE)
    assert roles
    assert set(re.findall(r"'(\w+)'", roles.group(1))) == set(data["files"])
    used = set(re.findall(r"\$(?:artifacts|Artifacts)\['(\w+)'\]", script()))
    assert used <= set(data["files"]), used
    assert ps_string("ManifestBlob") == "mediavm/setup/manifest.json"
    for role, entry in data["files"].items():
        path = staged / entry["blob"]
        assert path.is_file(), f"{role}: {entry['blob']} is not staged"
        assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"]
        assert path.stat().st_size == entry["bytes"]
    # The Custom Script Extension's own download: the setup script, at the path main.bicep gives it.
    assert (staged / param_default(MAIN_BICEP, "mediaVmSetupScript")).read_bytes() == SCRIPT.read_bytes()
    assert data["files"]["tool"]["blob"] == "mediavm/setup/vmtool.py"
    refresh = function_body("Invoke-CertificateRefresh")
    assert "'mediavm\\setup\\vmtool.py'" in refresh  # the refresh task finds the tool where Save-Artifacts put it


def test_the_wheel_holds_the_worker_and_what_the_script_imports(staged: Path) -> None:
    wheel = staged / manifest(staged)["files"]["wheel"]["blob"]
    assert re.fullmatch(r"teams_calling-[\w.]+-py3-none-any\.whl", wheel.name)
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"mediavm/__main__.py", "mediavm/server.py", "mediavm/worker.py", "calling/config.py",
            "calling/servicebus.py"} <= names
    assert not [n for n in names if n.startswith("mediavm/setup/")], "the setup files are not the worker's"
    smoke = re.search(r"'-c', 'import ([^']+)'\) \| Out-Null", function_body("Install-Worker"))
    assert smoke
    for module in (m.strip() for m in smoke.group(1).split(",")):
        if module.split(".")[0] in ("mediavm", "calling"):
            assert module.replace(".", "/") + ".py" in names, module


HOOK_ENV = ("DEPLOY_MEDIA_VM", "BOT_APP_ID", "AZURE_STORAGE_ACCOUNT_NAME", "MEDIA_ARTIFACTS_CONTAINER_NAME",
            "AZURE_KEY_VAULT_NAME",
            "MEDIA_CERTIFICATE_NAME", "PYTHON", "FAKE_AZ_LOG", "FAKE_AZ_FAIL", "ARTIFACT_UPLOAD_ATTEMPTS",
            "ARTIFACT_UPLOAD_RETRY_SECONDS")

FAKE_AZ = f"""#!{sys.executable}
import json, os, sys
args = sys.argv[1:]
entry = {{"args": args}}
if args[:3] == ["storage", "blob", "upload-batch"]:
    source = args[args.index("--source") + 1]
    entry["files"] = sorted(os.path.relpath(os.path.join(d, f), source).replace(os.sep, "/")
                            for d, _, fs in os.walk(source) for f in fs)
with open(os.environ["FAKE_AZ_LOG"], "a") as log:
    log.write(json.dumps(entry) + "\\n")
if os.environ.get("FAKE_AZ_FAIL") and args[:1] == [os.environ["FAKE_AZ_FAIL"]]:
    sys.exit(1)
"""


@pytest.fixture
def fake_az(tmp_path: Path) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "az").write_text(FAKE_AZ)
    (bin_dir / "az").chmod(0o755)
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "FAKE_AZ_LOG": str(tmp_path / "az.log"),
            "PYTHON": sys.executable}


def media_outputs(**overrides: str) -> dict[str, str]:
    values = {"DEPLOY_MEDIA_VM": "true", "BOT_APP_ID": "1b2c3d4e-0000-4000-8000-00000000abcd",
              "AZURE_STORAGE_ACCOUNT_NAME": "stabc123",
              "MEDIA_ARTIFACTS_CONTAINER_NAME": "media-artifacts", "AZURE_KEY_VAULT_NAME": "kv-abc123",
              "MEDIA_CERTIFICATE_NAME": "media-tls"}
    values.update(overrides)
    return values


def preprovision(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {key: value for key, value in os.environ.items() if key not in HOOK_ENV}
    return subprocess.run([SH, str(HOOKS / "preprovision.sh")], capture_output=True, text=True, env={**base, **env},
                          cwd=ROOT, timeout=300, check=False)


def az_calls(env: dict[str, str]) -> list[dict[str, Any]]:
    log = Path(env["FAKE_AZ_LOG"])
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def option(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def test_preprovision_checks_the_certificate_and_uploads_every_file_setup_downloads(
        fake_az: dict[str, str], staged: Path) -> None:
    result = preprovision({**fake_az, **media_outputs()})
    assert result.returncode == 0, result.stdout + result.stderr
    show, upload = az_calls(fake_az)
    assert show["args"][:3] == ["keyvault", "certificate", "show"]
    assert (option(show["args"], "--vault-name"), option(show["args"], "--name")) == ("kv-abc123", "media-tls")
    args = upload["args"]
    assert args[:3] == ["storage", "blob", "upload-batch"]
    assert option(args, "--auth-mode") == "login"
    assert (option(args, "--account-name"), option(args, "--destination")) == ("stabc123", "media-artifacts")
    assert option(args, "--overwrite") == "true"
    # What the VM downloads: the extension's script, the manifest and every file the manifest lists.
    wanted = {param_default(MAIN_BICEP, "mediaVmSetupScript"), "mediavm/setup/manifest.json",
              *(entry["blob"] for entry in manifest(staged)["files"].values())}
    assert wanted <= set(upload["files"]), wanted - set(upload["files"])
    assert not Path(option(args, "--source")).exists(), "the staging folder is left behind"


@pytest.mark.parametrize("value", ["", "false", "False"])
def test_preprovision_does_nothing_without_the_media_vm(fake_az: dict[str, str], value: str) -> None:
    result = preprovision({**fake_az, **media_outputs(DEPLOY_MEDIA_VM=value)})
    assert result.returncode == 0, result.stdout + result.stderr
    assert az_calls(fake_az) == []
    assert "nothing to prepare" in result.stdout


def test_preprovision_explains_a_first_provision_with_the_media_vm(fake_az: dict[str, str]) -> None:
    result = preprovision({**fake_az, **media_outputs(AZURE_STORAGE_ACCOUNT_NAME="")})
    assert result.returncode == 1
    assert "AZURE_STORAGE_ACCOUNT_NAME is not set" in result.stderr and "DEPLOY_MEDIA_VM=false first" in result.stderr
    assert az_calls(fake_az) == []


def test_preprovision_needs_the_bots_app_id(fake_az: dict[str, str]) -> None:
    result = preprovision({**fake_az, **media_outputs(BOT_APP_ID="")})
    assert result.returncode == 1
    assert "BOT_APP_ID is not set" in result.stderr
    assert az_calls(fake_az) == []


def test_preprovision_stops_when_the_certificate_is_missing(fake_az: dict[str, str]) -> None:
    result = preprovision({**fake_az, **media_outputs(), "FAKE_AZ_FAIL": "keyvault"})
    assert result.returncode == 1
    assert "az keyvault certificate import --vault-name kv-abc123 --name media-tls" in result.stderr
    assert [call["args"][0] for call in az_calls(fake_az)] == ["keyvault"]  # nothing built or uploaded


def test_preprovision_retries_a_failed_upload_then_gives_up(fake_az: dict[str, str]) -> None:
    env = {**fake_az, **media_outputs(), "FAKE_AZ_FAIL": "storage", "ARTIFACT_UPLOAD_ATTEMPTS": "2",
           "ARTIFACT_UPLOAD_RETRY_SECONDS": "0"}
    result = preprovision(env)
    assert result.returncode == 1
    assert [call["args"][0] for call in az_calls(fake_az)] == ["keyvault", "storage", "storage"]
    assert "uploading the media VM artifacts failed 2 times" in result.stderr


def hook_steps(path: Path) -> list[str]:
    return re.findall(r"^#\s*(Step \d+: .+?)\.?$", path.read_text(), re.MULTILINE)


def test_preprovision_sh_and_ps1_do_the_same_steps_and_commands() -> None:
    sh, ps1 = hook_steps(HOOKS / "preprovision.sh"), hook_steps(HOOKS / "preprovision.ps1")
    assert sh and sh == ps1
    assert all(sh.count(step) == 2 for step in sh), sh
    for suffix in ("sh", "ps1"):
        source = (HOOKS / f"preprovision.{suffix}").read_text()
        # The upload is the shared helper's (infra/hooks/lib/; tests/test_infra_hooks.py checks it and its use).
        upload = {"sh": "upload_batch 'the media VM artifacts'",
                  "ps1": "Invoke-UploadBatch -What 'the media VM artifacts'"}
        for needle in ("DEPLOY_MEDIA_VM", "BOT_APP_ID", "az keyvault certificate show", "mediavm/setup/stage.py",
                       "--out", upload[suffix], "MEDIA_ARTIFACTS_CONTAINER_NAME", "ARTIFACT_UPLOAD_ATTEMPTS",
                       "ARTIFACT_UPLOAD_RETRY_SECONDS", "AZURE_KEY_VAULT_NAME", "MEDIA_CERTIFICATE_NAME", "media-tls",
                       "import dev; dev.setup()", "docs/media-vm.md"):
            assert needle in source, f"preprovision.{suffix} lacks {needle!r}"
    for helper in ("upload.sh", "Upload.ps1"):
        source = (HOOKS / "lib" / helper).read_text()
        for needle in ("az storage blob upload-batch --auth-mode login", "--overwrite true"):
            assert needle in source, f"lib/{helper} lacks {needle!r}"
    assert re.search(r"^set -eu$", (HOOKS / "preprovision.sh").read_text(), re.MULTILINE)
    assert "$ErrorActionPreference = 'Stop'" in (HOOKS / "preprovision.ps1").read_text()


def test_preprovision_sh_passes_sh_n_and_shellcheck() -> None:
    result = subprocess.run([SH, "-n", str(HOOKS / "preprovision.sh")], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (Debian: apt-get install shellcheck)")
    result = subprocess.run([shellcheck, "--shell=sh", str(HOOKS / "preprovision.sh")], capture_output=True,
                            text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_azure_yaml_runs_the_preprovision_hook() -> None:
    hooks = yaml.safe_load((ROOT / "azure.yaml").read_text())["hooks"]
    assert hooks["preprovision"] == {"posix": {"shell": "sh", "run": "infra/hooks/preprovision.sh"},
                                     "windows": {"shell": "pwsh", "run": "infra/hooks/preprovision.ps1"}}


# --- the worker's packages on Windows --------------------------------------------------------------------------

#: What the worker imports (calling/ and mediavm/) and the Windows engine's bridge: the roots of the closure.
WORKER_ROOTS = ("aiohttp", "azure-identity", "azure-servicebus", "azure-storage-blob", "azure-monitor-opentelemetry",
                "msgraph-sdk", "httpx", "PyJWT[crypto]", "PyYAML", "tzdata", "sniffio", "pythonnet")
WINDOWS = {"sys_platform": "win32", "platform_system": "Windows", "os_name": "nt", "python_version": "3.13",
           "python_full_version": "3.13.8", "implementation_name": "cpython", "platform_machine": "AMD64",
           "platform_python_implementation": "CPython"}
FUNCTIONS_ONLY = {"azure-functions", "azure-functions-durable", "furl", "orderedmultidict", "werkzeug"}


def pins(path: Path) -> dict[str, str]:
    found = {}
    for raw in path.read_text().splitlines():
        line = raw.split("#")[0].strip()
        if line and ";" not in line:
            name, _, version = line.partition("==")
            assert version, f"{path.name}: {line!r} is not pinned"
            found[canonicalize_name(name)] = version
    return found


def test_worker_requirements_pin_what_requirements_txt_pins() -> None:
    worker, locked = pins(REQUIREMENTS), pins(ROOT / "requirements.txt")
    differ = {name: (version, locked[name]) for name, version in worker.items() if name in locked and
              locked[name] != version}
    assert not differ, f"requirements-worker.txt and requirements.txt disagree: {differ}"
    extra = set(worker) - set(locked)
    assert extra == {"pythonnet", "clr-loader"}, extra
    pyproject = (ROOT / "pyproject.toml").read_text()
    for name in extra:  # the engine's pins (pyproject's windows extra), when it has them
        pinned = re.search(rf'"{re.escape(name)}==([^"]+)"', pyproject)
        if pinned:
            assert pinned.group(1) == worker[name], name
    assert not set(worker) & FUNCTIONS_ONLY


def closure(roots: tuple[str, ...]) -> set[str]:
    seen: set[str] = set()
    todo = [Requirement(root) for root in roots]
    done: set[tuple[str, frozenset[str]]] = set()
    while todo:
        requirement = todo.pop()
        key = (canonicalize_name(requirement.name), frozenset(requirement.extras))
        if key in done:
            continue
        done.add(key)
        seen.add(key[0])
        dist = importlib.metadata.distribution(requirement.name)
        for raw in dist.requires or []:
            dependency = Requirement(raw)
            marker: Marker | None = dependency.marker
            if marker is None or any(marker.evaluate({**WINDOWS, "extra": extra})
                                     for extra in ("", *requirement.extras)):
                todo.append(dependency)
    return seen


def test_worker_requirements_are_closed_under_windows_dependencies() -> None:
    worker = pins(REQUIREMENTS)
    for name in ("pythonnet", "clr-loader"):
        try:
            importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            pytest.fail(f"{name} is not installed here (python3 dev.py test installs .[dev,windows])")
    needed = closure(WORKER_ROOTS)
    assert needed - set(worker) == set(), f"missing from requirements-worker.txt: {sorted(needed - set(worker))}"
    assert set(worker) - needed == set(), f"not needed by the worker: {sorted(set(worker) - needed)}"


def test_the_roots_cover_what_the_worker_imports() -> None:
    imports = set()
    for path in [*(ROOT / "calling").rglob("*.py"), *(ROOT / "mediavm").rglob("*.py")]:
        if "setup" in path.parts:
            continue
        imports |= set(re.findall(r"^\s*(?:from|import) ([a-z_][a-z0-9_]*)", path.read_text(), re.MULTILINE))
    owners = importlib.metadata.packages_distributions()
    roots = {canonicalize_name(Requirement(r).name) for r in WORKER_ROOTS}
    third_party = {canonicalize_name(owners[name][0]) for name in imports if name in owners} - {"teams-calling"}
    covered = closure(WORKER_ROOTS)
    assert third_party <= covered, f"imported but not in the worker's packages: {sorted(third_party - covered)}"
    assert roots <= covered


# --- vmtool.py on the VM ---------------------------------------------------------------------------------------

def certificates(tmp_path: Path) -> tuple[Any, Any, Any, Any]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    def make(name: str, issuer: tuple[Any, Any] | None, ca: bool) -> tuple[Any, Any]:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.now(UTC)
        builder = (x509.CertificateBuilder().subject_name(subject)
                   .issuer_name(issuer[0].subject if issuer else subject).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(minutes=5))
                   .not_valid_after(now + timedelta(days=2))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if not ca:
            builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        return builder.sign(issuer[1] if issuer else key, hashes.SHA256()), key

    root = make("Test Root", None, ca=True)
    intermediate = make("Test Intermediate", root, ca=True)
    leaf = make("localhost", intermediate, ca=False)
    return root, intermediate, leaf, tmp_path


def test_vmtool_turns_the_pfx_into_pem_files_the_worker_loads(tmp_path: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import BestAvailableEncryption, pkcs12

    from mediavm.__main__ import tls_context

    root, intermediate, leaf, _ = certificates(tmp_path)
    one_time = "a-one-time-export-password"
    pfx = tmp_path / "export.pfx"
    pfx.write_bytes(pkcs12.serialize_key_and_certificates(b"media", leaf[1], leaf[0], [intermediate[0], root[0]],
                                                          BestAvailableEncryption(one_time.encode())))
    cert, key = tmp_path / "worker-cert.pem", tmp_path / "worker-key.pem"
    result = subprocess.run([sys.executable, str(VMTOOL), "pem", "--pfx", str(pfx), "--cert", str(cert),
                             "--key", str(key)], input=one_time + "\r\n", capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert one_time not in result.stdout + result.stderr
    chain = x509.load_pem_x509_certificates(cert.read_bytes())
    assert [c.subject for c in chain] == [leaf[0].subject, intermediate[0].subject], "leaf, then intermediates"
    assert b"BEGIN PRIVATE KEY" in key.read_bytes() and b"ENCRYPTED" not in key.read_bytes()
    context = tls_context({"MEDIA_WORKER_TLS_CERT_FILE": str(cert), "MEDIA_WORKER_TLS_KEY_FILE": str(key)})
    assert isinstance(context, ssl.SSLContext)
    wrong = subprocess.run([sys.executable, str(VMTOOL), "pem", "--pfx", str(pfx), "--cert", str(cert), "--key",
                            str(key)], input="not the password\n", capture_output=True, text=True, check=False)
    assert wrong.returncode != 0


def test_vmtool_reads_the_local_health(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization

    _, _, leaf, _ = certificates(tmp_path)
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_bytes(leaf[0].public_bytes(serialization.Encoding.PEM))
    key.write_bytes(leaf[1].private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    body = {"status": "ok", "capacity": 20, "live": 0}

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            payload = json.dumps(body).encode()
            self.send_response(200 if self.path == "/health" else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Health)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        result = subprocess.run([sys.executable, str(VMTOOL), "health", "--port", str(server.server_address[1]),
                                 "--timeout", "10"], capture_output=True, text=True, timeout=30, check=False)
    finally:
        server.shutdown()
        server.server_close()
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == body
    closed = subprocess.run([sys.executable, str(VMTOOL), "health", "--port", "1", "--timeout", "0"],
                            capture_output=True, text=True, timeout=30, check=False)
    assert closed.returncode == 1 and "does not answer" in closed.stderr


def test_the_media_library_versions_are_the_engines() -> None:
    """The packages setup.ps1 installs into MEDIA_LIBRARY_DIR are the ones the Windows engine is written against
    (its MediaLibrary.csproj, when there is one; else the versions its documentation names)."""
    entry = r"@\{ Id = (?:\$MediaLibraryPackage|'([\w.]+)'); Version = (?:\$MediaLibraryVersion|'([^']+)') \}"
    packages = dict(re.findall(entry, script()))
    pinned = {"Microsoft.Skype.Bots.Media": ps_string("MediaLibraryVersion"),
              **{name: version for name, version in packages.items() if name}}
    assert set(pinned) == {"Microsoft.Skype.Bots.Media", "Microsoft.Graph.Communications.Calls.Media"}, pinned
    csproj = ROOT / "mediavm" / "windows" / "MediaLibrary.csproj"
    engine = csproj.read_text(encoding="utf-8") if csproj.exists() else (ROOT / "docs" / "media.md").read_text()
    for name, version in pinned.items():
        assert version in engine, f"{name} {version}: the Windows engine ({csproj.name}) names another version"


# --- the documentation -----------------------------------------------------------------------------------------

def test_the_media_vm_doc_names_what_the_script_and_the_parameters_name() -> None:
    doc = DOC.read_text(encoding="utf-8")
    for name in worker_environment_names():
        assert f"`{name}`" in doc, f"docs/media-vm.md does not name {name}"
    for version in ("PythonVersion", "DotNetVersion", "MediaLibraryVersion"):
        assert ps_string(version) in doc, f"docs/media-vm.md does not give the pinned {version}"
    parameters = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    for name, entry in parameters.items():
        if name.lower().startswith(("mediavm", "deploymediavm")):
            variable = re.match(r"\$\{([A-Z0-9_]+)", entry["value"])
            assert variable and f"`{variable.group(1)}`" in doc, f"docs/media-vm.md does not name {name}'s variable"
    for step in REQUIRED_STEPS:
        assert f"`{step}`" in doc, f"docs/media-vm.md does not describe {step}"
    assert "(media-vm.md)" in (ROOT / "docs" / "media.md").read_text()
    assert "(docs/media-vm.md)" in (ROOT / "README.md").read_text()
