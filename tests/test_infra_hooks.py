"""The azd hooks: POSIX sh and PowerShell variants that do the same steps, one shared Graph permission list,
one shared retried upload (infra/hooks/lib/) for the three hooks that upload, predeploy run for real on good and
broken flows, postprovision and predeploy's upload run against a fake `az`."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import tree_sitter
import tree_sitter_powershell

ROOT = Path(__file__).resolve().parent.parent
HOOKS = ROOT / "infra" / "hooks"
PERMISSIONS_FILE = ROOT / "infra" / "graph-permissions.json"
ENTRA_BICEP = ROOT / "infra" / "entra" / "app.bicep"
PORTAL_DOC = ROOT / "docs" / "entra-portal.md"
HOOK_NAMES = ("postprovision", "predeploy")
#: The hooks that upload blobs, each through the shared helper in infra/hooks/lib/, and what each uploads (the
#: helper's WHAT, in its messages).
UPLOADS = {"preprovision": "the media VM artifacts", "postprovision": "the prompts",
           "predeploy": "the rendered say prompts"}
UPLOAD_SH = HOOKS / "lib" / "upload.sh"
UPLOAD_PS1 = HOOKS / "lib" / "Upload.ps1"
#: How each variant sources the helper: relative to the hook's own file, so any working directory works.
SOURCES_HELPER = {"sh": '. "$(dirname -- "$0")/lib/upload.sh"', "ps1": ". (Join-Path $PSScriptRoot 'lib/Upload.ps1')"}
#: How each variant passes a --pattern to az through the helper.
PATTERN = {"sh": "--pattern '{}'", "ps1": "'--pattern', '{}'"}
#: The az command line the helper runs, before and after the caller's folder and options.
UPLOAD_COMMAND = ("az storage blob upload-batch --auth-mode login", "--overwrite true --only-show-errors --output none")
POWERSHELL = tree_sitter.Language(tree_sitter_powershell.language())
GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
BOT_APP_ID = "1b2c3d4e-0000-4000-8000-00000000abcd"
SH = shutil.which("sh") or "/bin/sh"


def permissions() -> list[dict[str, str]]:
    roles: list[dict[str, str]] = json.loads(PERMISSIONS_FILE.read_text())["appRoles"]
    return roles


# --- the scripts: syntax, and the same steps in both variants ---------------------------------------------

@pytest.mark.parametrize("hook", HOOK_NAMES)
def test_sh_hooks_parse_as_posix_sh(hook: str) -> None:
    script = HOOKS / f"{hook}.sh"
    shells = [path for path in map(shutil.which, ("sh", "dash")) if path]
    assert shells, "no sh on PATH"
    for shell in shells:
        result = subprocess.run([shell, "-n", str(script)], capture_output=True, text=True, check=False)
        assert result.returncode == 0, f"{shell} -n {script.name}: {result.stderr}"


def test_the_upload_helper_parses_as_posix_sh() -> None:
    shells = [path for path in map(shutil.which, ("sh", "dash")) if path]
    assert shells, "no sh on PATH"
    for shell in shells:
        result = subprocess.run([shell, "-n", str(UPLOAD_SH)], capture_output=True, text=True, check=False)
        assert result.returncode == 0, f"{shell} -n {UPLOAD_SH.name}: {result.stderr}"


@pytest.mark.parametrize("script", [*(f"{hook}.sh" for hook in HOOK_NAMES), "lib/upload.sh"])
def test_sh_hooks_pass_shellcheck(script: str) -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (Debian: apt-get install shellcheck)")
    # infra/hooks/.shellcheckrc has it follow the sourced lib/upload.sh.
    result = subprocess.run([shellcheck, "--shell=sh", str(HOOKS / script)],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def steps(path: Path) -> list[str]:
    """The `# Step N: what` lines: the header lists them and each step's code starts with its own."""
    return re.findall(r"^#\s*(Step \d+: .+?)\.?$", path.read_text(), re.MULTILINE)


@pytest.mark.parametrize("hook", HOOK_NAMES)
def test_sh_and_ps1_variants_do_the_same_steps(hook: str) -> None:
    sh, ps1 = steps(HOOKS / f"{hook}.sh"), steps(HOOKS / f"{hook}.ps1")
    assert sh, f"{hook}.sh names no steps"
    assert sh == ps1
    # Each step is listed in the header and then opens its code: every step appears exactly twice.
    assert all(sh.count(step) == 2 for step in sh), sh


@pytest.mark.parametrize("hook", HOOK_NAMES)
def test_scripts_stop_on_errors(hook: str) -> None:
    assert re.search(r"^set -eu$", (HOOKS / f"{hook}.sh").read_text(), re.MULTILINE)
    ps1 = (HOOKS / f"{hook}.ps1").read_text()
    assert "$ErrorActionPreference = 'Stop'" in ps1
    assert ps1.count("{") == ps1.count("}") and ps1.count("(") == ps1.count(")")
    helper = UPLOAD_PS1.read_text()
    assert helper.count("{") == helper.count("}") and helper.count("(") == helper.count(")")


# --- one retried upload for the three hooks that upload ------------------------------------------------------

@pytest.mark.parametrize("suffix", ["sh", "ps1"])
@pytest.mark.parametrize("hook", sorted(UPLOADS))
def test_uploading_hooks_use_the_shared_helper(hook: str, suffix: str) -> None:
    text = (HOOKS / f"{hook}.{suffix}").read_text()
    assert "upload-batch" not in text, f"{hook}.{suffix} uploads by itself: use the helper in infra/hooks/lib/"
    assert text.count(SOURCES_HELPER[suffix]) == 1, f"{hook}.{suffix} does not source its helper"
    call = {"sh": f"upload_batch '{UPLOADS[hook]}'", "ps1": f"Invoke-UploadBatch -What '{UPLOADS[hook]}'"}[suffix]
    assert text.count(call) == 1, f"{hook}.{suffix} lacks {call!r}"
    if suffix == "sh":  # before the hook's `cd "$ROOT"`: a relative $0 is relative to where azd started it
        assert text.index(SOURCES_HELPER["sh"]) < text.index('cd "$ROOT"')
        assert "# shellcheck source=lib/upload.sh" in text


@pytest.mark.parametrize("helper", [UPLOAD_SH, UPLOAD_PS1], ids=lambda p: p.name)
def test_the_helpers_run_one_upload_command_and_retry_the_same_way(helper: Path) -> None:
    text = helper.read_text()
    code = [line.strip().rstrip("\\`").strip() for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = " ".join(code)
    assert joined.count("upload-batch") == 1, f"{helper.name} runs more than one upload command"
    command = re.search(re.escape(UPLOAD_COMMAND[0]) + r" (.*?) " + re.escape(UPLOAD_COMMAND[1]), joined)
    assert command, f"{helper.name} does not run {UPLOAD_COMMAND}"
    assert re.search(r"--account-name \S+ --destination \S+ --source \S+ \S*(Options|\$@)", command.group(1))
    for needle in ("failed (attempt ", "; a new role assignment can take a few minutes); retrying in ",
                   " times; check that your account has Storage Blob Data Contributor on "):
        assert needle in text, f"{helper.name} lacks {needle!r}"


def powershell_commands(path: Path, name: str) -> list[list[str]]:
    """The -Parameters of every call of the command `name` in the PowerShell file `path`."""
    def walk(node: tree_sitter.Node) -> Iterator[tree_sitter.Node]:
        yield node
        for child in node.children:
            yield from walk(child)

    tree = tree_sitter.Parser(POWERSHELL).parse(path.read_bytes())
    found = []
    for node in walk(tree.root_node):
        command_name = node.child_by_field_name("command_name") if node.type == "command" else None
        if command_name is not None and (command_name.text or b"").decode() == name:
            elements = node.child_by_field_name("command_elements")
            found.append([(p.text or b"").decode().lstrip("-") for p in (elements.children if elements else [])
                          if p.type == "command_parameter"])
    return found


def test_the_ps1_hooks_call_the_helper_with_its_parameters() -> None:
    """pwsh is not needed for this: the calls name every mandatory parameter the function declares, and no other."""
    helper = UPLOAD_PS1.read_text()
    params = re.search(r"function Invoke-UploadBatch \{\s*param\((.*?)\n    \)", helper, re.DOTALL)
    assert params
    declared = re.findall(r"\$(\w+)(?: = [^,\n]+)?,?$", params.group(1), re.MULTILINE)
    mandatory = set(re.findall(r"Mandatory = \$true\)\] \[[\w\[\]]+\] \$(\w+)", params.group(1)))
    assert mandatory == {"What", "Attempts", "Pause", "Account", "Container", "Source"}
    assert set(declared) == mandatory | {"Options"}
    for hook in UPLOADS:
        calls = powershell_commands(HOOKS / f"{hook}.ps1", "Invoke-UploadBatch")
        assert len(calls) == 1, hook
        assert mandatory <= set(calls[0]) <= set(declared), (hook, calls[0])
    assert not powershell_commands(UPLOAD_PS1, "Fail") and not powershell_commands(UPLOAD_PS1, "Warn")


@pytest.mark.parametrize("suffix", ["sh", "ps1"])
def test_postprovision_variants_run_the_same_commands(suffix: str) -> None:
    text = (HOOKS / f"postprovision.{suffix}").read_text()
    for needle in (PATTERN[suffix].format("*.wav"), "PROMPT_UPLOAD_ATTEMPTS", "PROMPT_UPLOAD_RETRY_SECONDS",
                   "AZURE_STORAGE_ACCOUNT_NAME", "PROMPTS_CONTAINER_NAME", "appPackage/build.py", "BOT_WEBHOOK_URL",
                   "servicePrincipals(appId='", "/appRoleAssignments", "infra/graph-permissions.json",
                   "infra/entra/app.bicep", "docs/entra-portal.md"):
        assert needle in text, f"postprovision.{suffix} lacks {needle!r}"


@pytest.mark.parametrize("suffix", ["sh", "ps1"])
def test_predeploy_variants_run_the_same_commands(suffix: str) -> None:
    text = (HOOKS / f"predeploy.{suffix}").read_text()
    for needle in ("-m calling.flows check --render", "import dev; dev.setup()", "PYTHON", "flows/.rendered",
                   PATTERN[suffix].format(".rendered/*.wav"), "PROMPTS_CONTAINER_NAME", "PROMPT_UPLOAD_ATTEMPTS",
                   "PROMPT_UPLOAD_RETRY_SECONDS"):
        assert needle in text, f"predeploy.{suffix} lacks {needle!r}"


# --- one Graph permission list for the Bicep, both hooks and the portal guide -------------------------------

def test_permission_list_is_well_formed() -> None:
    data = json.loads(PERMISSIONS_FILE.read_text())
    assert data["resourceAppId"] == "00000003-0000-0000-c000-000000000000"  # Microsoft Graph
    roles = data["appRoles"]
    assert roles
    assert len({r["value"] for r in roles}) == len(roles)
    for role in roles:
        assert set(role) == {"value", "id", "for"}, role
        assert GUID.match(role["id"]), role
        assert re.fullmatch(r"[A-Z][A-Za-z]+(\.[A-Za-z]+)+", role["value"]), role
        assert role["for"].strip()
    assert len({r["id"] for r in roles}) == len(roles)


def test_everything_reads_the_one_permission_list() -> None:
    bicep = ENTRA_BICEP.read_text()
    assert "loadJsonContent('../graph-permissions.json')" in bicep
    for suffix in ("sh", "ps1"):
        script = (HOOKS / f"postprovision.{suffix}").read_text()
        assert "infra/graph-permissions.json" in script
        for role in permissions():  # nothing hard-coded next to the list
            assert role["value"] not in script and role["id"] not in script, (suffix, role["value"])
    assert not any(role["id"] in bicep or role["value"] in bicep for role in permissions())
    doc = PORTAL_DOC.read_text()
    for role in permissions():
        assert role["value"] in doc, f"docs/entra-portal.md does not mention {role['value']}"


def test_entra_bicep_has_no_secret_and_trusts_the_function_identity() -> None:
    bicep = ENTRA_BICEP.read_text()
    assert "extension microsoftGraphV1" in bicep
    assert "passwordCredentials" not in bicep and "keyCredentials" not in bicep
    assert "signInAudience: 'AzureADMyOrg'" in bicep
    assert "'api://AzureADTokenExchange'" in bicep
    assert "${environment().authentication.loginEndpoint}${tenantId}/v2.0" in bicep
    assert "param functionIdentityPrincipalId string" in bicep
    assert "output BOT_APP_ID string = app.appId" in bicep
    assert "appId: '00000003" not in bicep  # Graph's app id comes from the permission list too
    config = json.loads("\n".join(line for line in (ENTRA_BICEP.parent / "bicepconfig.json").read_text().splitlines()
                                  if not line.strip().startswith("//")))
    assert re.fullmatch(r"br:mcr\.microsoft\.com/bicep/extensions/microsoftgraph/v1\.0:\d+\.\d+\.\d+",
                        config["extensions"]["microsoftGraphV1"])


# --- predeploy, for real --------------------------------------------------------------------------------

def project_copy(tmp_path: Path, *, flows: bool = True) -> Path:
    """A throwaway project: the hooks, the permission list, the package builder and (copied) flows."""
    root = tmp_path / "project"
    (root / "infra").mkdir(parents=True)
    shutil.copytree(HOOKS, root / "infra" / "hooks")
    shutil.copy(PERMISSIONS_FILE, root / "infra" / "graph-permissions.json")
    shutil.copytree(ROOT / "appPackage", root / "appPackage", ignore=shutil.ignore_patterns("build", "__pycache__"))
    (root / "calling").symlink_to(ROOT / "calling", target_is_directory=True)
    if flows:
        shutil.copytree(ROOT / "flows", root / "flows")
    return root


def run_hook(root: Path, name: str, env: dict[str, str], *,
             cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Runs the hook as `sh PATH` from the project root; from `cwd`, with PATH relative to it (`sh ../x/hook.sh`)."""
    base = {key: value for key, value in os.environ.items() if key not in WATCHED_ENV}
    script = root / "infra" / "hooks" / f"{name}.sh"
    path = str(script) if cwd is None else os.path.relpath(script, cwd)
    return subprocess.run([SH, path], capture_output=True, text=True,
                          env={**base, **env}, cwd=cwd or root, timeout=120, check=False)


BROKEN_FLOW = """\
version: 1
name: broken
nodes:
  start:
    type: play
    prompt: prompts/welcome.wav
    next: nowhere
"""


def test_predeploy_passes_on_the_shipped_flows(tmp_path: Path) -> None:
    root = project_copy(tmp_path)
    result = run_hook(root, "predeploy", {"PYTHON": sys.executable})
    assert result.returncode == 0, result.stdout + result.stderr
    for flow in sorted((ROOT / "flows").glob("*.yaml")):
        assert f"flows/{flow.name}: ok" in result.stdout


def test_predeploy_fails_on_a_broken_flow_with_its_position(tmp_path: Path) -> None:
    root = project_copy(tmp_path)
    (root / "flows" / "broken.yaml").write_text(BROKEN_FLOW)
    result = run_hook(root, "predeploy", {"PYTHON": sys.executable})
    assert result.returncode == 1, result.stdout + result.stderr
    # The checker's own FILE:LINE:COLUMN line, pointing at the bad `next:`.
    assert re.search(r"^flows/broken\.yaml:7:\d+: .*'nowhere'", result.stderr, re.MULTILINE), result.stderr
    assert "predeploy: a flow is invalid" in result.stderr
    assert "flows/main-menu.yaml: ok" in result.stdout  # the others are still checked


# --- postprovision, against a fake az -------------------------------------------------------------------

def test_uploaded_blob_names_are_the_prompt_keys_the_app_requests() -> None:
    """upload-batch --source flows --pattern '*.wav' names each blob by its path under flows/ (az matches the
    pattern with fnmatch against source/pattern, so `*` spans folders); the app asks for base URL + prompt key."""
    from calling.flows.load import load_bundle

    flows = ROOT / "flows"
    uploaded = {path.relative_to(flows).as_posix() for path in flows.rglob("*")
                if path.is_file() and fnmatch.fnmatch(str(path), os.path.join(str(flows), "*.wav"))}
    keys = {key for flow in flows.glob("*.yaml") for key in load_bundle(flow).prompts}
    assert keys, "the shipped flows play no prompts"
    assert keys <= uploaded, keys - uploaded


WATCHED_ENV = ("AZURE_STORAGE_ACCOUNT_NAME", "PROMPTS_CONTAINER_NAME", "BOT_APP_ID", "AZURE_FUNCTION_HOST",
               "BOT_WEBHOOK_URL", "AZURE_ENV_NAME", "PYTHON", "FAKE_AZ_LOG", "FAKE_AZ_REST", "FAKE_AZ_REST_FAILS",
               "FAKE_AZ_UPLOAD_FAILS", "PROMPT_UPLOAD_ATTEMPTS", "PROMPT_UPLOAD_RETRY_SECONDS", "AZURE_SPEECH_ENDPOINT",
               "SAY_RENDERER")

FAKE_AZ = f"""#!{sys.executable}
import json, os, sys
with open(os.environ["FAKE_AZ_LOG"], "a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\\n")
if sys.argv[1:2] == ["storage"] and os.environ.get("FAKE_AZ_UPLOAD_FAILS"):
    # The first FAKE_AZ_UPLOAD_FAILS uploads fail as with a role assignment that has not applied yet.
    with open(os.environ["FAKE_AZ_LOG"]) as log:
        uploads = sum(json.loads(line)[:1] == ["storage"] for line in log)
    if uploads <= int(os.environ["FAKE_AZ_UPLOAD_FAILS"]):
        print("ERROR: This request is not authorized to perform this operation using this permission.",
              file=sys.stderr)
        sys.exit(1)
if sys.argv[1:2] == ["rest"]:
    if os.environ.get("FAKE_AZ_REST_FAILS"):
        print("ERROR: Insufficient privileges to complete the operation.", file=sys.stderr)
        sys.exit(1)
    print(open(os.environ["FAKE_AZ_REST"]).read())
"""


def assignments(*ids: str) -> dict[str, object]:
    return {"value": [{"appRoleId": role_id, "resourceId": "9f1bf4a3-0000-4000-8000-000000000001",
                       "principalType": "ServicePrincipal"} for role_id in ids]}


@pytest.fixture
def fake_az(tmp_path: Path) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    az = bin_dir / "az"
    az.write_text(FAKE_AZ)
    az.chmod(0o755)
    rest = tmp_path / "rest.json"
    rest.write_text(json.dumps(assignments()))
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "FAKE_AZ_LOG": str(tmp_path / "az.log"),
            "FAKE_AZ_REST": str(rest), "PYTHON": sys.executable}


def outputs(**overrides: str) -> dict[str, str]:
    values = {
        "AZURE_ENV_NAME": "dev",
        "AZURE_RESOURCE_GROUP": "rg-dev",
        "AZURE_FUNCTION_APP_NAME": "func-abc123",
        "AZURE_FUNCTION_HOST": "func-abc123.azurewebsites.net",
        "BOT_WEBHOOK_URL": "https://func-abc123.azurewebsites.net/api/calls",
        "AZURE_STORAGE_ACCOUNT_NAME": "stabc123",
        "PROMPTS_CONTAINER_NAME": "prompts",
        "RECORDINGS_CONTAINER_NAME": "recordings",
        "BOT_APP_ID": BOT_APP_ID,
        "BOT_TENANT_ID": "72f988bf-0000-4000-8000-000000000000",
    }
    values.update(overrides)
    return values


def az_calls(env: dict[str, str]) -> list[list[str]]:
    log = Path(env["FAKE_AZ_LOG"])
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def option(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def test_postprovision_uploads_builds_prints_and_warns_about_missing_permissions(
        tmp_path: Path, fake_az: dict[str, str]) -> None:
    root = project_copy(tmp_path)
    granted = permissions()[:1]
    Path(fake_az["FAKE_AZ_REST"]).write_text(json.dumps(assignments(*(r["id"] for r in granted))))
    result = run_hook(root, "postprovision", {**fake_az, **outputs()})
    assert result.returncode == 0, result.stdout + result.stderr

    upload, rest = az_calls(fake_az)
    assert upload[:3] == ["storage", "blob", "upload-batch"]
    assert option(upload, "--auth-mode") == "login"
    assert option(upload, "--account-name") == "stabc123"
    assert option(upload, "--destination") == "prompts"
    assert Path(option(upload, "--source")).resolve() == (root / "flows").resolve()
    assert option(upload, "--pattern") == "*.wav"
    assert option(upload, "--overwrite") == "true"
    assert rest[:3] == ["rest", "--method", "get"]
    assert option(rest, "--url") == (f"https://graph.microsoft.com/v1.0/servicePrincipals(appId='{BOT_APP_ID}')"
                                     "/appRoleAssignments")

    assert "calling webhook: https://func-abc123.azurewebsites.net/api/calls" in result.stdout
    printed = re.search(r"Teams app package: (.+)$", result.stdout, re.MULTILINE)
    assert printed, result.stdout
    package = Path(printed.group(1))
    assert package == root / "appPackage" / "build" / "dev" / "teams-app.zip"
    with zipfile.ZipFile(package) as archive:
        manifest = json.loads(archive.read("manifest.json"))
    assert manifest["bots"][0]["botId"] == BOT_APP_ID
    assert manifest["validDomains"] == ["func-abc123.azurewebsites.net"]

    assert "lacks these Microsoft Graph application permissions" in result.stderr
    for role in permissions():
        assert (f"{role['value']}: " in result.stderr) is (role not in granted), role["value"]
    assert "infra/entra/app.bicep" in result.stderr and "docs/entra-portal.md" in result.stderr


def test_postprovision_says_so_when_every_permission_is_granted(tmp_path: Path, fake_az: dict[str, str]) -> None:
    root = project_copy(tmp_path)
    Path(fake_az["FAKE_AZ_REST"]).write_text(json.dumps(assignments(*(r["id"].upper() for r in permissions()))))
    result = run_hook(root, "postprovision", {**fake_az, **outputs()})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "every Graph permission in infra/graph-permissions.json is granted" in result.stdout
    assert "WARNING" not in result.stderr


def test_postprovision_warns_but_succeeds_when_the_grants_cannot_be_read(
        tmp_path: Path, fake_az: dict[str, str]) -> None:
    root = project_copy(tmp_path)
    result = run_hook(root, "postprovision", {**fake_az, **outputs(), "FAKE_AZ_REST_FAILS": "1"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "could not read the permissions granted to app" in result.stderr


def test_postprovision_without_a_bot_app_uploads_and_explains(tmp_path: Path, fake_az: dict[str, str]) -> None:
    root = project_copy(tmp_path)
    result = run_hook(root, "postprovision", {**fake_az, **outputs(BOT_APP_ID="")})
    assert result.returncode == 0, result.stdout + result.stderr
    assert [call[:3] for call in az_calls(fake_az)] == [["storage", "blob", "upload-batch"]]  # no az rest
    assert "BOT_APP_ID is not set" in result.stderr and "infra/entra/app.bicep" in result.stderr
    assert "calling webhook: https://func-abc123.azurewebsites.net/api/calls" in result.stdout
    assert not (root / "appPackage" / "build").exists()


def test_postprovision_fails_when_the_storage_outputs_are_missing(tmp_path: Path, fake_az: dict[str, str]) -> None:
    root = project_copy(tmp_path)
    result = run_hook(root, "postprovision", {**fake_az, **outputs(AZURE_STORAGE_ACCOUNT_NAME="")})
    assert result.returncode == 1
    assert "AZURE_STORAGE_ACCOUNT_NAME is not set" in result.stderr
    assert az_calls(fake_az) == []


def test_postprovision_retries_a_failed_upload_then_gives_up(tmp_path: Path, fake_az: dict[str, str]) -> None:
    root = project_copy(tmp_path)
    az = Path(fake_az["PATH"].split(os.pathsep)[0]) / "az"
    az.write_text(FAKE_AZ + "if sys.argv[1:2] == ['storage']:\n    sys.exit(1)\n")
    env = {**fake_az, **outputs(), "PROMPT_UPLOAD_ATTEMPTS": "2", "PROMPT_UPLOAD_RETRY_SECONDS": "0"}
    result = run_hook(root, "postprovision", env)
    assert result.returncode == 1
    assert len(az_calls(fake_az)) == 2
    assert "uploading the prompts failed 2 times" in result.stderr


def test_postprovision_retries_a_failed_upload_until_it_succeeds(tmp_path: Path, fake_az: dict[str, str]) -> None:
    root = project_copy(tmp_path)
    env = {**fake_az, **outputs(BOT_APP_ID=""), "FAKE_AZ_UPLOAD_FAILS": "2", "PROMPT_UPLOAD_RETRY_SECONDS": "0"}
    result = run_hook(root, "postprovision", env)
    assert result.returncode == 0, result.stdout + result.stderr
    uploads = az_calls(fake_az)
    assert len(uploads) == 3 and all(call == uploads[0] for call in uploads)  # the same upload, tried again
    for attempt in (1, 2):
        assert f"WARNING: uploading the prompts failed (attempt {attempt} of 6; a new role assignment" in result.stderr
    assert "attempt 3" not in result.stderr


# --- predeploy's upload of the rendered say prompts, against a fake az --------------------------------------

def with_rendered_prompt(root: Path) -> None:
    """A rendered say prompt, as `check --render` leaves it (the shipped flows have no say: prompt)."""
    rendered = root / "flows" / ".rendered"
    rendered.mkdir(exist_ok=True)
    shutil.copy(next((ROOT / "flows").rglob("*.wav")), rendered / ("say-" + "0" * 16 + ".wav"))


def assert_uploads_the_rendered_prompts(args: list[str], root: Path) -> None:
    assert args[:3] == ["storage", "blob", "upload-batch"]
    assert option(args, "--auth-mode") == "login"
    assert (option(args, "--account-name"), option(args, "--destination")) == ("stabc123", "prompts")
    assert Path(option(args, "--source")).resolve() == (root / "flows").resolve()
    assert option(args, "--pattern") == ".rendered/*.wav"
    assert option(args, "--overwrite") == "true"
    assert args[-3:] == ["--only-show-errors", "--output", "none"]


@pytest.mark.parametrize("where", ["project root", "elsewhere"])
def test_predeploy_retries_the_upload_until_it_succeeds(tmp_path: Path, fake_az: dict[str, str], where: str) -> None:
    """The first uploads after a fresh provision fail with 403 while the new role assignment applies. The hook finds
    its helper from its own file, so it runs from the project root (as azd runs it) or anywhere else."""
    root = project_copy(tmp_path)
    with_rendered_prompt(root)
    # Elsewhere two levels down: the hook's relative path (../../project/infra/hooks) means nothing from the root.
    cwd = root if where == "project root" else tmp_path / "elsewhere" / "deeper"
    cwd.mkdir(parents=True, exist_ok=True)
    env = {**fake_az, **outputs(), "FAKE_AZ_UPLOAD_FAILS": "2", "PROMPT_UPLOAD_ATTEMPTS": "3",
           "PROMPT_UPLOAD_RETRY_SECONDS": "0"}
    result = run_hook(root, "predeploy", env, cwd=cwd)
    assert result.returncode == 0, result.stdout + result.stderr
    uploads = az_calls(fake_az)
    assert len(uploads) == 3 and all(call == uploads[0] for call in uploads)
    assert_uploads_the_rendered_prompts(uploads[0], root)
    assert "Step 3: uploading the rendered say prompts to stabc123/prompts" in result.stdout
    for attempt in (1, 2):
        assert (f"WARNING: uploading the rendered say prompts failed (attempt {attempt} of 3; a new role assignment "
                "can take a few minutes); retrying in 0s") in result.stderr


def test_predeploy_gives_up_after_the_last_try(tmp_path: Path, fake_az: dict[str, str]) -> None:
    root = project_copy(tmp_path)
    with_rendered_prompt(root)
    env = {**fake_az, **outputs(), "FAKE_AZ_UPLOAD_FAILS": "1000", "PROMPT_UPLOAD_RETRY_SECONDS": "0"}
    result = run_hook(root, "predeploy", env)
    assert result.returncode == 1, result.stdout + result.stderr
    assert len(az_calls(fake_az)) == 6  # PROMPT_UPLOAD_ATTEMPTS' default
    assert ("predeploy: uploading the rendered say prompts failed 6 times; check that your account has Storage Blob "
            "Data Contributor on stabc123") in result.stderr
    assert result.stderr.count("WARNING: uploading the rendered say prompts failed") == 5


def test_predeploy_uploads_nothing_without_rendered_prompts_or_storage(tmp_path: Path, fake_az: dict[str, str]) -> None:
    root = project_copy(tmp_path)
    result = run_hook(root, "predeploy", {**fake_az, **outputs()})
    assert result.returncode == 0, result.stdout + result.stderr
    with_rendered_prompt(root)
    result = run_hook(root, "predeploy", {**fake_az, **outputs(AZURE_STORAGE_ACCOUNT_NAME="")})
    assert result.returncode == 0, result.stdout + result.stderr
    assert az_calls(fake_az) == []
    assert "Step 3" not in result.stdout


@pytest.mark.parametrize("setting", ["PROMPT_UPLOAD_ATTEMPTS", "PROMPT_UPLOAD_RETRY_SECONDS"])
def test_predeploy_refuses_a_retry_setting_that_is_not_a_number(
        tmp_path: Path, fake_az: dict[str, str], setting: str) -> None:
    root = project_copy(tmp_path)
    with_rendered_prompt(root)
    result = run_hook(root, "predeploy", {**fake_az, **outputs(), setting: "six"})
    assert result.returncode == 1, result.stdout + result.stderr
    assert "predeploy: uploading the rendered say prompts: 'six' is not a whole number" in result.stderr
    assert az_calls(fake_az) == []
