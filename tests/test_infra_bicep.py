"""The Bicep in infra/, checked offline: every file parses (pycep-parser), checkov finds nothing, every checkov
skip says why, and the properties the deployment depends on hold (no shared keys, calling enabled, always-ready
instances, regular-priority media VMs, the media ports of the Graph requirements, the outputs the hooks read).

pycep-parser and checkov live in .venv-infra (checkov pins packages the app also uses); `python3 dev.py test`
creates it. These tests run them in a subprocess and fail, rather than skip, when it is missing.
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
INFRA = ROOT / "infra"
MODULES = INFRA / "modules"
INFRA_VENV = ROOT / ".venv-infra"
INFRA_BIN = INFRA_VENV / ("Scripts" if os.name == "nt" else "bin")
INFRA_PYTHON = INFRA_BIN / ("python.exe" if os.name == "nt" else "python")
CHECKOV = INFRA_BIN / ("checkov.cmd" if os.name == "nt" else "checkov")
BICEP_FILES = sorted(INFRA.rglob("*.bicep"))
SKIP_COMMENT = re.compile(r"checkov:skip=([A-Z0-9_]+)(?::(.*))?$")

# Runs in .venv-infra: parses each file named on the command line, prints {path: {"json"|"error": ...}}.
# pycep-parser 0.5.1 (what checkov 3.3.30 pins) predates `extension` declarations (the Microsoft Graph
# extension in infra/entra/app.bicep); such a line is blanked so the rest of the file is still checked.
_PARSE_SCRIPT = """
import json, sys
from pathlib import Path
from pycep import BicepParser
parser = BicepParser()
out = {}
for name in sys.argv[1:]:
    lines = Path(name).read_text(encoding="utf-8").splitlines()
    text = "\\n".join("" if line.startswith("extension ") else line for line in lines) + "\\n"
    try:
        out[name] = {"json": parser.parse(text=text)}
    except Exception as exc:
        out[name] = {"error": f"{type(exc).__name__}: {exc}"}
print(json.dumps(out, default=str))
"""


def require_infra_venv() -> None:
    if not INFRA_PYTHON.exists() or not CHECKOV.exists():
        pytest.fail(f"{INFRA_VENV.name}/ with checkov and pycep-parser is missing: run `python3 dev.py test` "
                    f"(it installs infra/requirements-check.txt into {INFRA_VENV.name}/)")


@functools.lru_cache(maxsize=1)
def _parse_all() -> dict[str, dict[str, Any]]:
    require_infra_venv()
    result = subprocess.run([str(INFRA_PYTHON), "-c", _PARSE_SCRIPT, *map(str, BICEP_FILES)],
                            capture_output=True, text=True, check=False, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    parsed: dict[str, dict[str, Any]] = json.loads(result.stdout)
    return parsed


def bicep(path: Path) -> dict[str, Any]:
    """pycep's JSON for one file (parameters, variables, resources, modules, outputs)."""
    entry = _parse_all()[str(path)]
    assert "json" in entry, (
        f"{path.relative_to(ROOT)} does not parse with pycep-parser 0.5.1 (what checkov pins): {entry.get('error')}\n"
        "It lacks some newer Bicep syntax, e.g. a `for` loop on a nested child resource: declare such a resource "
        "at top level with `parent:` (or the full type and a 'parent/child' name).")
    document: dict[str, Any] = entry["json"]
    return document


def body(entry: dict[str, Any]) -> dict[str, Any]:
    """A resource's or module's properties, under its `if (...)` condition or `for` loop if it has one."""
    config: dict[str, Any] = entry["config"]
    while "config" in config and ("condition" in config or "loop_type" in config):
        config = config["config"]
    return config


def parsed_files() -> list[Path]:
    """The files that parse (test_bicep_file_parses reports the others)."""
    return [path for path in BICEP_FILES if "json" in _parse_all()[str(path)]]


def resources_of_type(document: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    """name -> properties of every resource of the type in the document."""
    return {name: body(res) for name, res in document.get("resources", {}).items() if res.get("type") == resource_type}


def modules(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: body(module) for name, module in document.get("modules", {}).items()}


def one_resource(path: Path, resource_type: str) -> dict[str, Any]:
    found = resources_of_type(bicep(path), resource_type)
    assert len(found) == 1, f"{path.name}: expected one {resource_type}, found {sorted(found)}"
    config: dict[str, Any] = next(iter(found.values()))
    return config


def param_default(path: Path, name: str) -> Any:
    params = bicep(path).get("parameters", {})
    assert name in params, f"{path.name} has no parameter {name}"
    return params[name].get("default")


def extension_files() -> list[Path]:
    """Files declaring a Bicep extension: checkov's pinned parser cannot read them (see _PARSE_SCRIPT)."""
    return [p for p in BICEP_FILES if any(line.startswith("extension ") for line in p.read_text().splitlines())]


# --- parse ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", BICEP_FILES, ids=[str(p.relative_to(INFRA)) for p in BICEP_FILES])
def test_bicep_file_parses(path: Path) -> None:
    assert bicep(path)


def test_the_expected_modules_exist() -> None:
    names = {p.name for p in MODULES.glob("*.bicep")}
    assert {"functionapp.bicep", "storage.bicep", "monitoring.bicep", "workbook.bicep", "alerts.bicep",
            "durable.bicep", "servicebus.bicep", "keyvault.bicep", "bot.bicep", "mediavm.bicep",
            "identity.bicep"} <= names
    used = {Path(str(m["detail"]["path"])).name for m in bicep(INFRA / "main.bicep")["modules"].values()}
    assert names <= used, f"modules main.bicep does not use: {sorted(names - used)}"


# --- checkov ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def checkov_report() -> dict[str, Any]:
    require_infra_venv()
    skip_paths = [arg for path in extension_files()
                  for arg in ("--skip-path", re.escape(str(path.relative_to(ROOT)).replace(os.sep, "/")))]
    result = subprocess.run(
        [str(CHECKOV), "--directory", "infra", "--framework", "bicep", "--output", "json",
         "--skip-download", *skip_paths],
        capture_output=True, text=True, check=False, cwd=ROOT, timeout=600,
    )
    assert result.stdout.strip(), f"checkov printed nothing (exit {result.returncode}): {result.stderr[-2000:]}"
    report = json.loads(result.stdout)
    report = report[0] if isinstance(report, list) else report
    assert report.get("check_type") == "bicep", report
    return dict(report)


def test_checkov_finds_no_failed_check(checkov_report: dict[str, Any]) -> None:
    summary = checkov_report["summary"]
    failed = [f"{c['check_id']} {c['resource']} ({c['file_path']}): {c['check_name']}"
              for c in checkov_report["results"]["failed_checks"]]
    assert failed == [], "checkov failed checks:\n" + "\n".join(failed)
    assert summary["parsing_errors"] == 0, checkov_report["results"].get("parsing_errors")
    assert summary["passed"] > 20 and summary["resource_count"] > 50, summary


def inline_skips() -> list[tuple[Path, int, str, str]]:
    """(file, line, check id, reason) of every `checkov:skip=` comment under infra/."""
    found = []
    for path in BICEP_FILES:
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            match = SKIP_COMMENT.search(line)
            if match:
                found.append((path, number, match.group(1), (match.group(2) or "").strip()))
    return found


def test_every_checkov_skip_is_inline_with_a_reason() -> None:
    skips = inline_skips()
    assert skips, "no inline skips found: did the comment syntax change?"
    for path, number, check, reason in skips:
        where = f"{path.relative_to(ROOT)}:{number} {check}"
        assert line_is_comment(path, number), f"{where}: a skip must be a // comment"
        assert len(reason) >= 40, f"{where}: give the reason for skipping (got {reason!r})"


def line_is_comment(path: Path, number: int) -> bool:
    return path.read_text().splitlines()[number - 1].lstrip().startswith("//")


def test_every_inline_skip_matches_a_check_checkov_ran(checkov_report: dict[str, Any]) -> None:
    """A skip that matches nothing is stale (the resource changed, or the comment sits outside its block)."""
    used = {(Path(c["file_path"]).name, c["check_id"]) for c in checkov_report["results"]["skipped_checks"]}
    for path, number, check, _ in inline_skips():
        assert (path.name, check) in used, f"{path.relative_to(ROOT)}:{number}: {check} skips nothing"
    for c in checkov_report["results"]["skipped_checks"]:
        assert c["check_result"].get("suppress_comment", "No comment provided") != "No comment provided", c


# --- storage, identity, secrets ---------------------------------------------------------------------------

def test_storage_is_identity_only_private_and_tls12() -> None:
    props = one_resource(MODULES / "storage.bicep", "Microsoft.Storage/storageAccounts")["properties"]
    assert props["allowSharedKeyAccess"] is False
    assert props["allowBlobPublicAccess"] is False
    assert props["minimumTlsVersion"] == "TLS1_2"
    assert props["supportsHttpsTrafficOnly"] is True
    assert props["defaultToOAuthAuthentication"] is True


def test_storage_containers_and_recording_retention() -> None:
    doc = bicep(MODULES / "storage.bicep")
    containers = resources_of_type(doc, "Microsoft.Storage/storageAccounts/blobServices/containers")
    assert all(c["properties"]["publicAccess"] == "None" for c in containers.values())
    names = {c["name"] for c in containers.values()}
    assert {"promptsContainerName", "recordingsContainerName", "complianceRecordingsContainerName",
            "deploymentContainerName", "mediaArtifactsContainerName", "idempotencyContainerName"} <= names
    assert param_default(MODULES / "storage.bicep", "promptsContainerName") == "prompts"
    assert param_default(MODULES / "storage.bicep", "recordingsContainerName") == "recordings"
    assert param_default(MODULES / "storage.bicep", "idempotencyContainerName") == "idempotency"
    policy = one_resource(MODULES / "storage.bicep", "Microsoft.Storage/storageAccounts/managementPolicies")
    rules = {r["name"]: r for r in policy["properties"]["policy"]["rules"]}
    assert set(rules) == {"delete-recordings", "delete-compliance-recordings", "delete-idempotency-keys"}
    rule = rules["delete-recordings"]
    assert rule["definition"]["filters"]["prefixMatch"] == ["${recordingsContainerName}/"]
    delete = rule["definition"]["actions"]["baseBlob"]["delete"]
    assert delete["daysAfterModificationGreaterThan"] == "recordingRetentionDays"
    assert isinstance(param_default(INFRA / "main.bicep", "recordingRetentionDays"), int)


def accessor(value: Any) -> str:
    """A pycep property access (`storage.outputs.name`) as dotted text; a plain name as itself."""
    if isinstance(value, dict) and value.get("operator", {}).get("type") == "property_accessor":
        operands = value["operator"]["operands"]
        return f"{accessor(operands['operand_1'])}.{accessor(operands['operand_2'])}"
    return str(value)


def rule_prefixes(rule: dict[str, Any]) -> list[str]:
    """A lifecycle rule's prefixMatch with the storage module's container-name parameters at their defaults."""
    def resolve(match: re.Match[str]) -> str:
        default = param_default(MODULES / "storage.bicep", match.group(1))
        assert isinstance(default, str), f"${{{match.group(1)}}} has no string default"
        return default
    return [re.sub(r"\$\{(\w+)\}", resolve, prefix) for prefix in rule["definition"]["filters"]["prefixMatch"]]


def test_compliance_recordings_have_their_own_container_and_retention() -> None:
    """Compliance recordings (the media VMs') are kept for years, voicemails for days: separate containers, each
    with its own lifecycle rule, and no rule reaching the other's container."""
    path = MODULES / "storage.bicep"
    doc = bicep(path)
    container = doc["resources"]["complianceRecordingsContainer"]
    assert container["type"] == "Microsoft.Storage/storageAccounts/blobServices/containers"
    assert body(container)["name"] == "complianceRecordingsContainerName"
    assert body(container)["properties"]["publicAccess"] == "None"
    name = param_default(path, "complianceRecordingsContainerName")
    assert name == "compliance-recordings" and name != param_default(path, "recordingsContainerName")
    output = doc["outputs"]["complianceRecordingsContainerName"]["value"]
    assert accessor(output) == "complianceRecordingsContainer.name"

    policy = one_resource(path, "Microsoft.Storage/storageAccounts/managementPolicies")
    rules = {r["name"]: r for r in policy["properties"]["policy"]["rules"]}
    rule = rules["delete-compliance-recordings"]
    assert rule["enabled"] is True and rule["type"] == "Lifecycle"
    assert rule["definition"]["filters"]["prefixMatch"] == ["${complianceRecordingsContainerName}/"]
    assert rule["definition"]["filters"]["blobTypes"] == ["blockBlob"]
    delete = rule["definition"]["actions"]["baseBlob"]["delete"]
    assert delete == {"daysAfterModificationGreaterThan": "complianceRetentionDays"}

    # A prefix is matched against `<container>/<blob>`: only the compliance rule may match that container's
    # blobs (a voicemail rule with a bare `recordings` prefix, or one on the account, would delete them early).
    compliance_blob = f"{name}/compliance/user/2026-01-01/call/participant.wav"
    for other, other_rule in rules.items():
        matches = [prefix for prefix in rule_prefixes(other_rule) if compliance_blob.startswith(prefix)]
        assert bool(matches) == (other == "delete-compliance-recordings"), f"{other} covers {name}: {matches}"
    voicemail = f"{param_default(path, 'recordingsContainerName')}/alice/2026-01-01/call-1.wav"
    assert [p for p in rule_prefixes(rule) if voicemail.startswith(p)] == []
    assert rules["delete-recordings"]["definition"]["actions"]["baseBlob"]["delete"] == {
        "daysAfterModificationGreaterThan": "recordingRetentionDays"}


def decorator(path: Path, param: str, kind: str) -> Any:
    found = [d["argument"] for d in bicep(path)["parameters"][param].get("decorators", []) if d["type"] == kind]
    return found[0] if found else None


def test_compliance_retention_is_seven_years_by_default_and_reaches_the_storage_module() -> None:
    main = INFRA / "main.bicep"
    assert param_default(main, "complianceRetentionDays") == 2557  # 7 years (MiFID II's longest period)
    for path in (main, MODULES / "storage.bicep"):
        assert decorator(path, "complianceRetentionDays", "min_value") == 1, path.name
        assert decorator(path, "complianceRetentionDays", "max_value") == 36500, path.name
    assert param_default(MODULES / "storage.bicep", "complianceRetentionDays") is None, "main.bicep must pass it"
    passed = modules(bicep(main))["storage"]["params"]
    assert passed["complianceRetentionDays"] == "complianceRetentionDays"
    assert passed["recordingRetentionDays"] == "recordingRetentionDays"
    file = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert file["complianceRetentionDays"]["value"] == "${COMPLIANCE_RETENTION_DAYS=2557}"
    voicemail_days = param_default(main, "recordingRetentionDays")
    assert file["recordingRetentionDays"]["value"] == f"${{RECORDING_RETENTION_DAYS={voicemail_days}}}"
    outputs = bicep(main)["outputs"]
    assert accessor(outputs["COMPLIANCE_RECORDINGS_CONTAINER_NAME"]["value"]) == \
        "storage.outputs.complianceRecordingsContainerName"
    assert accessor(outputs["RECORDINGS_CONTAINER_NAME"]["value"]) == "storage.outputs.recordingsContainerName"
    docs = (ROOT / "docs" / "deployment.md").read_text()
    assert "| `COMPLIANCE_RETENTION_DAYS` | `2557`" in docs and "| `RECORDING_RETENTION_DAYS` | `30` |" in docs


def test_media_vms_write_compliance_recordings_to_their_own_container() -> None:
    """The worker writes to whatever RECORDINGS_CONTAINER_URL its VM gets: serviceConfig.recordingsContainerUrl.
    The voicemails' container stays the Function App's RECORDINGS_CONTAINER_URL."""
    main = bicep(INFRA / "main.bicep")
    config = modules(main)["mediaVm"]["params"]["serviceConfig"]
    assert config["recordingsContainerUrl"] == \
        "${storage.outputs.blobEndpoint}${storage.outputs.complianceRecordingsContainerName}"
    app = modules(main)["functionApp"]["params"]
    assert accessor(app["recordingsContainerName"]) == "storage.outputs.recordingsContainerName"
    assert "complianceRecordingsContainerName" not in json.dumps(app)


def role_assignments_of(path: Path, principal: str) -> dict[str, tuple[str, str]]:
    """name -> (scope, role definition id) of the file's role assignments to `principal`."""
    doc = bicep(path)
    roles = doc.get("variables", {}).get("roles", {}).get("value", {})
    found = {}
    for name, config in resources_of_type(doc, "Microsoft.Authorization/roleAssignments").items():
        if config["properties"]["principalId"] != principal:
            continue
        role = config["properties"]["roleDefinitionId"]["function"]["parameters"]["resource_name_1"]
        role_text = accessor(role)
        found[name] = (str(config.get("scope")), roles.get(role_text.removeprefix("roles."), role_text))
    return found


def test_the_media_identity_writes_only_the_compliance_recordings_container() -> None:
    """Least privilege: Blob Data Contributor on the compliance container (write, and list for its sweep),
    Blob Data Reader on its setup artifacts; nothing on the voicemails or the account."""
    path = MODULES / "storage.bicep"
    contributor, reader = "ba92f5b4-2d11-453d-a403-e96b0029c9fe", "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1"
    media = role_assignments_of(path, "mediaPrincipalId")
    assert sorted(media.values()) == sorted([("complianceRecordingsContainer", contributor),
                                             ("mediaArtifactsContainer", reader)]), media
    [writer] = [name for name, (scope, _) in media.items() if scope == "complianceRecordingsContainer"]
    guid_args = json.dumps(bicep(path)["resources"][writer]["config"]["name"])
    assert "complianceRecordingsContainer" in guid_args and "mediaPrincipalId" in guid_args
    # The Function App's account-wide Blob Data Owner (host storage) is its only blob role: nothing was added
    # for the compliance container, which the app never reads.
    function = role_assignments_of(path, "functionPrincipalId")
    assert {scope for scope, _ in function.values()} == {"account"}, function


def test_idempotency_key_records_outlive_the_longest_key_lifetime() -> None:
    """The lifecycle rule must not delete a key's record while the app still honours the key."""
    from calling.config import MAX_IDEMPOTENCY_KEY_TTL_HOURS

    policy = one_resource(MODULES / "storage.bicep", "Microsoft.Storage/storageAccounts/managementPolicies")
    [rule] = [r for r in policy["properties"]["policy"]["rules"] if r["name"] == "delete-idempotency-keys"]
    assert rule["definition"]["filters"]["prefixMatch"] == ["${idempotencyContainerName}/"]
    days = rule["definition"]["actions"]["baseBlob"]["delete"]["daysAfterModificationGreaterThan"]
    assert isinstance(days, int) and days * 24 > MAX_IDEMPOTENCY_KEY_TTL_HOURS
    params = body(bicep(INFRA / "main.bicep")["modules"]["functionApp"])["params"]
    assert "idempotencyContainerName" in json.dumps(params["idempotencyContainerName"])


SECRETISH = re.compile(r"AccountKey=|SharedAccessKey=|SharedAccessSignature=|DefaultEndpointsProtocol=|"
                       r"listKeys\(|listConnectionStrings\(|InstrumentationKey=|\bsig=[A-Za-z0-9%]", re.IGNORECASE)


def test_no_keys_or_connection_strings_with_keys_anywhere_in_infra() -> None:
    for path in sorted(p for p in INFRA.rglob("*") if p.is_file() and p.suffix in {".bicep", ".json", ".bicepparam"}):
        if path.parent.name == "schemas":
            continue  # azd's own schema, vendored
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            assert not SECRETISH.search(line), f"{path.relative_to(ROOT)}:{number}: {line.strip()}"


def test_secure_parameters_have_no_default_value() -> None:
    for path in parsed_files():
        for name, param in bicep(path).get("parameters", {}).items():
            if any(d.get("type") == "secure" for d in param.get("decorators", [])):
                assert param.get("default") in (None, ""), f"{path.name}: @secure() {name} has a default value"


def test_role_assignments_are_idempotent_and_typed() -> None:
    """guid() names (re-provisioning updates, never duplicates); managed identities are ServicePrincipals."""
    for path in parsed_files():
        for name, config in resources_of_type(bicep(path), "Microsoft.Authorization/roleAssignments").items():
            assert "guid" in json.dumps(config["name"]), f"{path.name} {name}: name is not a guid()"
            principal = str(config["properties"]["principalId"])
            if principal != "deployerPrincipalId":
                assert config["properties"].get("principalType") == "ServicePrincipal", f"{path.name} {name}"


def role_ids(path: Path) -> set[str]:
    doc = bicep(path)
    text = json.dumps(doc)
    return set(re.findall(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", text))


def test_data_plane_roles() -> None:
    assert {"b7e6dc6d-f1e8-4753-8033-0f276bb0955b",  # Storage Blob Data Owner (host storage)
            "974c5e8b-45b9-4653-ba55-5f855dd0fb88",  # Storage Queue Data Contributor (storage backend)
            "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3"} <= role_ids(MODULES / "storage.bicep")
    durable_task_data_contributor = "0ad04412-c4d5-4796-b79c-f76d14c8d402"
    assert durable_task_data_contributor in role_ids(MODULES / "durable.bicep")
    assert {"69a216fc-b8fb-44d8-bc22-1f3c2cd27a39",  # Service Bus Data Sender (function)
            "4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0"} <= role_ids(MODULES / "servicebus.bicep")  # Receiver (VM)
    assert "3913510d-42f4-4e42-8a64-420c390055eb" in role_ids(MODULES / "monitoring.bicep")  # Metrics Publisher
    assert "4633458b-17de-408a-b874-0445c86b69e6" in role_ids(MODULES / "keyvault.bicep")  # Key Vault Secrets User


def test_queue_and_table_roles_only_for_the_storage_backend() -> None:
    doc = bicep(MODULES / "storage.bicep")
    for name in ("functionQueueContributor", "functionTableContributor"):
        condition = json.dumps(doc["resources"][name]["config"].get("condition"))
        assert "durableBackend" in condition and "storage" in condition, name


# --- function app -----------------------------------------------------------------------------------------

def test_function_app_is_flex_consumption_python_with_a_user_assigned_identity() -> None:
    path = MODULES / "functionapp.bicep"
    plan = one_resource(path, "Microsoft.Web/serverfarms")
    assert plan["sku"] == {"tier": "FlexConsumption", "name": "FC1"}
    site = one_resource(path, "Microsoft.Web/sites")
    assert site["identity"]["type"] == "UserAssigned"
    assert site["properties"]["httpsOnly"] is True
    config = site["properties"]["functionAppConfig"]
    assert config["runtime"] == {"name": "python", "version": "pythonVersion"}
    assert param_default(path, "pythonVersion") == "3.11"
    storage = config["deployment"]["storage"]
    assert storage["type"] == "blobContainer"
    assert storage["authentication"]["type"] == "UserAssignedIdentity"


def test_always_ready_instances_for_http_and_durable_default_to_one() -> None:
    site = one_resource(MODULES / "functionapp.bicep", "Microsoft.Web/sites")
    always_ready = site["properties"]["functionAppConfig"]["scaleAndConcurrency"]["alwaysReady"]
    assert {g["name"]: g["instanceCount"] for g in always_ready} == {
        "http": "alwaysReadyHttpInstances", "durable": "alwaysReadyDurableInstances"}
    for path in (MODULES / "functionapp.bicep", INFRA / "main.bicep"):
        assert param_default(path, "alwaysReadyHttpInstances") == 1, path.name
        assert param_default(path, "alwaysReadyDurableInstances") == 1, path.name
    passed = modules(bicep(INFRA / "main.bicep"))["functionApp"]["params"]
    assert passed["alwaysReadyHttpInstances"] == "alwaysReadyHttpInstances"
    assert passed["alwaysReadyDurableInstances"] == "alwaysReadyDurableInstances"


def test_application_insights_takes_entra_auth_only() -> None:
    props = one_resource(MODULES / "monitoring.bicep", "Microsoft.Insights/components")["properties"]
    assert props["DisableLocalAuth"] is True
    assert props["WorkspaceResourceId"]


# --- Durable backend --------------------------------------------------------------------------------------

def test_durable_task_scheduler_is_the_default_backend() -> None:
    assert param_default(INFRA / "main.bicep", "durableBackend") == "dts"
    allowed = next(d["argument"] for d in bicep(INFRA / "main.bicep")["parameters"]["durableBackend"]["decorators"]
                   if d["type"] == "allowed")
    assert sorted(allowed) == ["dts", "storage"]
    module = bicep(INFRA / "main.bicep")["modules"]["durable"]
    assert "durableBackend" in json.dumps(module), "the scheduler is deployed only for the dts backend"
    doc = bicep(MODULES / "durable.bicep")
    assert resources_of_type(doc, "Microsoft.DurableTask/schedulers")
    assert resources_of_type(doc, "Microsoft.DurableTask/schedulers/taskHubs")


# --- Service Bus, Key Vault -------------------------------------------------------------------------------

def test_service_bus_standard_without_keys_and_a_session_queue() -> None:
    path = MODULES / "servicebus.bicep"
    namespace = one_resource(path, "Microsoft.ServiceBus/namespaces")
    assert namespace["sku"]["name"] == "Standard"
    assert namespace["properties"]["disableLocalAuth"] is True
    queue = one_resource(path, "Microsoft.ServiceBus/namespaces/queues")["properties"]
    assert queue["requiresSession"] is True
    assert queue["requiresDuplicateDetection"] is True
    assert queue["deadLetteringOnMessageExpiration"] is True
    assert queue["lockDuration"].startswith("PT")


def test_key_vault_rbac_soft_delete_purge_protection() -> None:
    props = one_resource(MODULES / "keyvault.bicep", "Microsoft.KeyVault/vaults")["properties"]
    assert props["enableRbacAuthorization"] is True
    assert props["enableSoftDelete"] is True
    assert props["enablePurgeProtection"] is True


# --- bot --------------------------------------------------------------------------------------------------

def test_teams_channel_has_calling_enabled_with_the_webhook() -> None:
    path = MODULES / "bot.bicep"
    bot = one_resource(path, "Microsoft.BotService/botServices")
    assert bot["properties"]["msaAppType"] == "SingleTenant"
    assert bot["properties"]["msaAppId"] == "botAppId"
    assert bot["properties"]["msaAppTenantId"] == "botTenantId"
    channel = one_resource(path, "Microsoft.BotService/botServices/channels")
    assert channel["name"] == "MsTeamsChannel"
    teams = channel["properties"]["properties"]
    assert teams["isEnabled"] is True
    assert teams["enableCalling"] is True
    webhook = teams["callingWebhook"]
    webhook = bicep(path)["variables"].get(webhook, {}).get("value", webhook)
    assert str(webhook).startswith("https://") and str(webhook).endswith("/api/calls"), webhook


def test_the_calling_webhook_is_the_route_the_code_serves() -> None:
    from calling.config import CALLBACK_PATH

    assert CALLBACK_PATH == "/api/calls"
    route_prefix = json.loads((ROOT / "host.json").read_text())["extensions"]["http"]["routePrefix"]
    assert f"/{route_prefix}/calls" == CALLBACK_PATH


# --- media VM ---------------------------------------------------------------------------------------------

def vmss() -> dict[str, Any]:
    return one_resource(MODULES / "mediavm.bicep", "Microsoft.Compute/virtualMachineScaleSets")


def test_media_vms_are_regular_priority_never_spot() -> None:
    profile = vmss()["properties"]["virtualMachineProfile"]
    assert profile["priority"] == "Regular"
    assert "Spot" not in json.dumps(vmss())
    assert "evictionPolicy" not in profile


def test_media_scale_in_drains_instead_of_repairing_or_forcing() -> None:
    props = vmss()["properties"]
    assert props["automaticRepairsPolicy"]["enabled"] is False
    assert props["scaleInPolicy"]["forceDeletion"] is False
    assert props["upgradePolicy"]["mode"] == "Manual"
    assert props["overprovision"] is False
    notify = props["virtualMachineProfile"]["scheduledEventsProfile"]["terminateNotificationProfile"]
    assert notify["enable"] is True and notify["notBeforeTimeout"] == "PT15M"


def test_media_vm_is_windows_with_its_identity_certificate_and_setup_extensions() -> None:
    config = vmss()
    assert config["identity"]["type"] == "UserAssigned"
    profile = config["properties"]["virtualMachineProfile"]
    assert profile["storageProfile"]["imageReference"]["publisher"] == "MicrosoftWindowsServer"
    extensions = {e["name"]: e["properties"] for e in profile["extensionProfile"]["extensions"]}
    assert extensions["KeyVaultForWindows"]["type"] == "KeyVaultForWindows"
    kv = extensions["KeyVaultForWindows"]["settings"]
    assert kv["authenticationSettings"]["msiClientId"] == "identityClientId"
    assert kv["secretsManagementSettings"]["observedCertificates"][0]["certificateStoreLocation"] == "LocalMachine"
    setup = extensions["MediaSetup"]
    assert setup["type"] == "CustomScriptExtension"
    assert setup["provisionAfterExtensions"] == ["KeyVaultForWindows"]
    assert setup["protectedSettings"]["managedIdentity"] == {"clientId": "identityClientId"}
    assert param_default(INFRA / "main.bicep", "mediaVmSetupScript") == "mediavm/setup/setup.ps1"


def test_media_vm_is_off_by_default() -> None:
    assert param_default(INFRA / "main.bicep", "deployMediaVm") is False
    assert "deployMediaVm" in json.dumps(bicep(INFRA / "main.bicep")["modules"]["mediaVm"])


def nsg_rules() -> dict[str, dict[str, Any]]:
    nsg = one_resource(MODULES / "mediavm.bicep", "Microsoft.Network/networkSecurityGroups")
    return {rule["name"]: rule["properties"] for rule in nsg["properties"]["securityRules"]}


def test_media_nsg_rules_are_those_of_the_graph_requirements() -> None:
    """graph-calling.md section 7: TCP 8445 and 9441 from AzureCloud, UDP 16384-65535 from Teams media; TCP 8445
    also from the Teams media ranges (Microsoft 365 addresses, not promised inside the AzureCloud tag)."""
    rules = nsg_rules()
    path = MODULES / "mediavm.bicep"
    ports = {"mediaControlPort": param_default(path, "mediaControlPort"),
             "signalingPort": param_default(path, "signalingPort")}
    assert ports == {"mediaControlPort": 8445, "signalingPort": 9441}
    control, signaling, media = rules["MEDIA_CONTROL_PLANE"], rules["CALL_NOTIFICATION"], rules["TEAMS_MEDIA_UDP"]
    assert (control["protocol"], control["sourceAddressPrefix"]) == ("Tcp", "AzureCloud")
    assert "mediaControlPort" in json.dumps(control["destinationPortRange"])
    assert (signaling["protocol"], signaling["sourceAddressPrefix"]) == ("Tcp", "AzureCloud")
    assert "signalingPort" in json.dumps(signaling["destinationPortRange"])
    assert (media["protocol"], media["destinationPortRange"]) == ("Udp", "16384-65535")
    assert "52.112.0.0/14" in param_default(path, "teamsMediaSourcePrefixes")
    assert all(rule["direction"] == "Inbound" and rule["access"] == "Allow" for rule in rules.values())
    teams = rules["MEDIA_CONTROL_PLANE_TEAMS"]
    assert (teams["protocol"], teams["sourceAddressPrefixes"]) == ("Tcp", "teamsMediaSourcePrefixes")
    assert "mediaControlPort" in json.dumps(teams["destinationPortRange"])
    assert len(rules) == 4, "no other inbound rule (no RDP, no SSH)"


def test_media_instances_get_their_own_nat_ports_for_control_and_signaling() -> None:
    lb = one_resource(MODULES / "mediavm.bicep", "Microsoft.Network/loadBalancers")["properties"]
    rules = {r["name"]: r["properties"] for r in lb["inboundNatRules"]}
    backends = {rule["backendPort"] for rule in rules.values()}
    assert backends == {"mediaControlPort", "signalingPort"}
    for rule in rules.values():
        assert rule["protocol"] == "Tcp"
        assert "backendAddressPool" in rule, "a pool-based (per-instance) NAT rule"
        assert "frontendPortRangeStart" in rule and "frontendPortRangeEnd" in rule


# --- monitoring -------------------------------------------------------------------------------------------

def documented_event_names() -> set[str]:
    text = (ROOT / "docs" / "monitoring.md").read_text() + (ROOT / "docs" / "flows.md").read_text()
    return set(re.findall(r"`((?:call|flow)\.[a-z_]+)`", text))


def event_names_in(query: str) -> set[str]:
    return set(re.findall(r'"((?:call|flow)\.[a-z_]+)"', query))


def test_workbook_queries_use_documented_events_and_cover_the_panels() -> None:
    workbook = json.loads((MODULES / "workbook-calls.json").read_text())
    assert workbook["version"] == "Notebook/1.0"
    assert workbook["fallbackResourceIds"] == ["__APPLICATION_INSIGHTS_ID__"]
    queries = {item["name"]: item["content"]["query"] for item in workbook["items"] if item["type"] == 3}
    assert {"calls-per-hour", "answer-latency", "ivr-drop-off", "transfer-outcomes", "queue-waits",
            "action-failures", "result-codes"} <= set(queries)
    assert '"queue"' in queries["queue-waits"] and "waited" in queries["queue-waits"]  # flow.node of queue nodes
    documented = documented_event_names()
    used = set().union(*(event_names_in(q) for q in queries.values()))
    assert {"call.incoming", "call.answered", "flow.ended", "flow.transfer", "call.action_failed",
            "call.terminated"} <= used
    assert used <= documented, f"not in docs/monitoring.md or docs/flows.md: {sorted(used - documented)}"
    assert "__APPLICATION_INSIGHTS_ID__" in (MODULES / "workbook.bicep").read_text()


def test_alert_rules_cover_answer_failures_webhook_errors_and_orchestration_failures() -> None:
    doc = bicep(MODULES / "alerts.bicep")
    rules = {r["name"]: r for r in doc["variables"]["rules"]["value"]}
    assert {"answer-failures", "webhook-5xx", "orchestration-failures"} <= set(rules)
    used = set().union(*(event_names_in(r["query"]) for r in rules.values()))
    assert used <= documented_event_names()
    assert '"calls"' in rules["webhook-5xx"]["query"] and ">= 500" in rules["webhook-5xx"]["query"]
    assert resources_of_type(doc, "Microsoft.Insights/scheduledQueryRules")


# --- outputs and parameters -------------------------------------------------------------------------------

HOOK_OUTPUTS = {
    "AZURE_RESOURCE_GROUP", "AZURE_FUNCTION_APP_NAME", "AZURE_FUNCTION_HOST", "BOT_WEBHOOK_URL",
    "AZURE_STORAGE_ACCOUNT_NAME", "PROMPTS_CONTAINER_NAME", "RECORDINGS_CONTAINER_NAME", "BOT_APP_ID",
    "BOT_TENANT_ID", "AZURE_KEY_VAULT_NAME", "SERVICEBUS_NAMESPACE", "MEDIA_HANDOFF_QUEUE",
    "APPLICATIONINSIGHTS_NAME", "FUNCTION_IDENTITY_CLIENT_ID", "FUNCTION_IDENTITY_PRINCIPAL_ID",
}


def test_main_outputs_what_azd_and_the_hooks_read() -> None:
    outputs = set(bicep(INFRA / "main.bicep").get("outputs", {}))
    assert outputs >= HOOK_OUTPUTS, f"missing outputs: {sorted(HOOK_OUTPUTS - outputs)}"
    hooks = "".join(p.read_text() for p in (INFRA / "hooks").glob("*") if p.suffix in {".sh", ".ps1"})
    names = r"\b(?:AZURE|BOT|PROMPTS|RECORDINGS|SERVICEBUS|MEDIA|FUNCTION|APPLICATIONINSIGHTS)_[A-Z_]*[A-Z]"
    set_by_azd = {"AZURE_ENV_NAME", "AZURE_LOCATION", "AZURE_SUBSCRIPTION_ID", "AZURE_PRINCIPAL_ID", "AZURE_TENANT_ID"}
    unknown = set(re.findall(names, hooks)) - set_by_azd - outputs
    assert not unknown, f"the hooks read what main.bicep does not output: {sorted(unknown)}"


def test_the_webhook_output_is_the_calling_route() -> None:
    value = bicep(INFRA / "main.bicep")["outputs"]["BOT_WEBHOOK_URL"]["value"]
    assert str(value).startswith("https://") and str(value).endswith("/api/calls"), value


def test_main_is_subscription_scoped_and_creates_its_resource_group() -> None:
    doc = bicep(INFRA / "main.bicep")
    assert doc["globals"]["scope"]["value"] == "subscription"
    assert resources_of_type(doc, "Microsoft.Resources/resourceGroups")
    assert all(m.get("scope") == "rg" for m in modules(doc).values())


def test_parameters_file_maps_azd_variables_onto_main_parameters() -> None:
    file = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    params = bicep(INFRA / "main.bicep")["parameters"]
    assert set(file) <= set(params), f"not parameters of main.bicep: {sorted(set(file) - set(params))}"
    required = {name for name, p in params.items() if p.get("default") is None}
    assert required <= set(file), f"required parameters without a value: {sorted(required - set(file))}"
    assert file["environmentName"]["value"] == "${AZURE_ENV_NAME}"
    assert file["location"]["value"] == "${AZURE_LOCATION}"
    assert file["principalId"]["value"] == "${AZURE_PRINCIPAL_ID}"
    for name, entry in file.items():
        assert re.fullmatch(r"\$\{[A-Z][A-Z0-9_]*(=[^}]*)?\}", entry["value"]), f"{name}: {entry['value']!r}"
