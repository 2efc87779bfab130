"""The Function App's app settings (infra/modules/functionapp.bicep) against the settings the code reads
(calling/config.py Settings.from_env): a setting added to the code without the Bicep, or set by the Bicep
without the code reading it, fails here unless it is listed below with its reason.

Both sides are derived, not listed: the code's names from the string literals passed to text()/number()/
guid()/url() inside from_env (ast), the Bicep's from the object keys of the variables its appsettings
resource unions (pycep, in .venv-infra; see tests/test_infra_bicep.py).
"""

from __future__ import annotations

import ast
import json
from typing import Any

import pytest

from calling import config
from tests.test_infra_bicep import INFRA, MODULES, ROOT, bicep, body, resources_of_type

FUNCTION_APP = MODULES / "functionapp.bicep"
CONFIG = ROOT / "calling" / "config.py"
READERS = {"text", "number", "guid", "url"}

#: Read by the code, deliberately not set in Azure: each with why.
CODE_ONLY = {
    "CALLING_OPENID_CONFIG_URL": "the default is the real calling platform's OpenID metadata; only the "
                                 "simulator and tests point it elsewhere",
    "GRAPH_BASE_URL": "the default is Graph v1.0; overriding it is for a local Graph stand-in (the simulator)",
    "BOT_CERTIFICATE_PATH": "development credential; in Azure the Function identity signs a federated assertion "
                            "(GRAPH_CREDENTIAL=managed_identity), so no certificate exists",
    "BOT_CLIENT_SECRET": "development credential; no secret exists in Azure (federated credential instead)",
    "RECORDINGS_DIR": "local folder for recordings when running without Blob Storage; Azure sets "
                      "RECORDINGS_CONTAINER_URL, which takes precedence",
    "PROMPTS_BASE_URL": "not used when PROMPTS_CONTAINER_URL is set, which the Bicep does (prompts come from the "
                        "private container through a user-delegation SAS)",
    "WEBHOOK_MAX_BODY_BYTES": "the 4 MiB default fits Graph's notification batches; a knob for operators, not "
                              "something the deployment decides",
    "GRAPH_RETRY_BUDGET_SECONDS": "the 10 s default suits Graph's retry advice; answer, reject and redirect use "
                                  "the call's own deadline anyway",
    "MEDIA_FALLBACK_FLOW": "optional: the flow that answers, service-hosted, a non-recording hand-off no media "
                           "worker took in time; the deployment sets none, so such calls are rejected busy",
    "IDEMPOTENCY_KEY_TTL_HOURS": "the 24 h default is the common contract for Idempotency-Key (Stripe's); a "
                                 "knob for operators, and the lifecycle rule in storage.bicep outlives any "
                                 "accepted value",
}

#: Set by the Bicep for the platform, not read by calling/config.py: each with who reads it.
PLATFORM = {
    "AzureWebJobsStorage__accountName": "Functions host storage (keys, leases, Flex deployment), identity-based: "
                                        "the account",
    "AzureWebJobsStorage__credential": "Functions host storage: authenticate with a managed identity",
    "AzureWebJobsStorage__clientId": "Functions host storage: which user-assigned identity",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "the Functions host and the azure-monitor-opentelemetry exporter "
                                                 "sign in to Application Insights (local auth is off)",
    "DURABLE_TASK_SCHEDULER_CONNECTION_STRING": "the Durable extension's connection to the Task Scheduler "
                                                "(managed identity, no key), named by the connectionStringName "
                                                "override",
    "TASKHUB_NAME": "the task hub, as the Durable Task Scheduler tooling expects it beside the connection string",
    "AzureFunctionsJobHost__extensions__durableTask__hubName": "host.json override: the task hub name",
    "AzureFunctionsJobHost__extensions__durableTask__storageProvider__type":
        "host.json override: the Durable Task Scheduler provider (azureManaged)",
    "AzureFunctionsJobHost__extensions__durableTask__storageProvider__connectionStringName":
        "host.json override: the setting holding the DTS connection",
    "AzureFunctionsJobHost__extensions__durableTask__storageProvider__maxQueuePollingInterval":
        "host.json override for the Azure Storage backend: poll idle queues at least every second, not every 30 s",
}


#: Set by the Bicep for the app, read outside calling/config.py: each with where.
READ_ELSEWHERE = {
    "SAY_RENDERER": "calling/flows/speech.py renderer_name(): the renderer is part of the rendered say prompts' "
                    "file names, so the app names them as the predeploy hook rendered them",
}


def code_settings() -> set[str]:
    """The names Settings.from_env reads: first arguments of its text/number/guid/url helpers."""
    tree = ast.parse(CONFIG.read_text())
    from_env = next(node for node in ast.walk(tree)
                    if isinstance(node, ast.FunctionDef) and node.name == "from_env")
    names = set()
    for node in ast.walk(from_env):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in READERS
                and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            names.add(node.args[0].value)
    return names


def strings_in(node: Any) -> set[str]:
    if isinstance(node, str):
        return {node}
    if isinstance(node, dict):
        return set().union(*(strings_in(v) for v in node.values())) if node else set()
    if isinstance(node, list):
        return set().union(*(strings_in(v) for v in node)) if node else set()
    return set()


def setting_groups() -> dict[str, dict[str, Any]]:
    """variable name -> its object, for every variable the appsettings resource's properties expression names."""
    document = bicep(FUNCTION_APP)
    configs = [c for c in resources_of_type(document, "Microsoft.Web/sites/config").values()
               if c["name"] == "appsettings"]
    assert len(configs) == 1, "functionapp.bicep: expected one appsettings config resource"
    variables = document.get("variables", {})
    referenced = strings_in(configs[0]["properties"]) & set(variables)
    groups = {name: variables[name]["value"] for name in sorted(referenced)}
    assert groups and all(isinstance(value, dict) for value in groups.values()), groups
    return groups


def bicep_settings() -> dict[str, Any]:
    settings: dict[str, Any] = {}
    for group in setting_groups().values():
        overlap = set(settings) & set(group)
        assert not overlap, f"set twice: {sorted(overlap)}"
        settings.update(group)
    return settings


def test_the_code_reads_settings() -> None:
    names = code_settings()
    assert {"BOT_APP_ID", "BOT_PUBLIC_URL", "GRAPH_CREDENTIAL", "RECORDINGS_CONTAINER_URL",
            "PROMPTS_CONTAINER_URL"} <= names, names


def test_the_bicep_sets_settings_in_groups() -> None:
    assert {"platformSettings", "botSettings", "dtsSettings", "storageBackendSettings"} <= set(setting_groups())


def test_every_setting_the_code_reads_is_set_by_the_bicep_or_excepted() -> None:
    missing = code_settings() - set(bicep_settings()) - set(CODE_ONLY)
    assert not missing, (f"calling/config.py reads {sorted(missing)} but infra/modules/functionapp.bicep does not "
                         "set it: add it to the app settings, or to CODE_ONLY here with the reason")


def test_every_setting_the_bicep_sets_is_read_by_the_code_or_a_platform_setting() -> None:
    unread = set(bicep_settings()) - code_settings() - set(PLATFORM) - set(READ_ELSEWHERE)
    assert not unread, (f"functionapp.bicep sets {sorted(unread)}, which calling/config.py does not read: "
                        "remove it, or list it in PLATFORM here with what reads it")


def test_the_exception_lists_are_current_and_explained() -> None:
    code, bicep_set = code_settings(), set(bicep_settings())
    assert set(CODE_ONLY) <= code, f"CODE_ONLY names settings the code does not read: {sorted(set(CODE_ONLY) - code)}"
    assert not set(CODE_ONLY) & bicep_set, f"CODE_ONLY but set: {sorted(set(CODE_ONLY) & bicep_set)}"
    stale = set(PLATFORM) - bicep_set
    assert not stale, f"PLATFORM names settings the Bicep does not set: {sorted(stale)}"
    assert not set(PLATFORM) & code
    assert set(READ_ELSEWHERE) <= bicep_set and not set(READ_ELSEWHERE) & code
    for name, reason in {**CODE_ONLY, **PLATFORM, **READ_ELSEWHERE}.items():
        assert len(reason) > 20, f"{name}: say why"


def test_the_bicep_values_pass_the_codes_validation(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings.from_env accepts what Azure gets: literals as written, expressions replaced by sample values."""
    params = bicep(FUNCTION_APP).get("parameters", {})
    samples = {
        "BOT_APP_ID": "11111111-2222-3333-4444-555555555555",
        "BOT_TENANT_ID": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
        "BOT_MANAGED_IDENTITY_CLIENT_ID": "99999999-8888-7777-6666-555555555555",
        "BOT_PUBLIC_URL": "https://func-abc.azurewebsites.net",
        "PROMPTS_CONTAINER_URL": "https://stabc.blob.core.windows.net/prompts",
        "RECORDINGS_CONTAINER_URL": "https://stabc.blob.core.windows.net/recordings",
        "IDEMPOTENCY_CONTAINER_URL": "https://stabc.blob.core.windows.net/idempotency",
        "SERVICEBUS_NAMESPACE": "sb-abc.servicebus.windows.net",
        "APPLICATIONINSIGHTS_CONNECTION_STRING": "InstrumentationKey=00000000-0000-0000-0000-000000000000",
    }
    env: dict[str, str] = {}
    for name, value in bicep_settings().items():
        if name in PLATFORM or name in READ_ELSEWHERE:
            continue  # not read by Settings.from_env
        if name in samples:
            env[name] = samples[name]
        elif isinstance(value, str) and value in params:  # a parameter: its default
            default = params[value].get("default")
            env[name] = default if isinstance(default, str) else ""
        elif isinstance(value, str) and "${" not in value:  # a literal
            env[name] = value
        else:
            pytest.fail(f"{name} = {value!r}: an expression; add a sample value for it in this test")
    monkeypatch.chdir(ROOT)  # FLOWS_DIR is relative to the app root, as on the Functions host
    settings = config.Settings.from_env(env)
    assert settings.graph_credential == "managed_identity"
    assert settings.handoff_transport in config._HANDOFF_KINDS
    assert settings.callback_uri == "https://func-abc.azurewebsites.net/api/calls"


def test_graph_uses_the_federated_managed_identity_and_no_secret() -> None:
    settings = bicep_settings()
    assert settings["GRAPH_CREDENTIAL"] == "managed_identity"
    assert settings["BOT_MANAGED_IDENTITY_CLIENT_ID"] == "identityClientId"
    assert settings["AzureWebJobsStorage__clientId"] == "identityClientId"
    assert settings["AzureWebJobsStorage__credential"] == "managedidentity"
    assert settings["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"] == "ClientId=${identityClientId};Authorization=AAD"
    assert not {"BOT_CLIENT_SECRET", "BOT_CERTIFICATE_PATH", "AzureWebJobsStorage"} & set(settings)


def test_the_handoff_settings_come_from_the_service_bus_module() -> None:
    """The app sends to the namespace and queue servicebus.bicep creates (fully qualified: the SDK wants the
    host, not the name), and only when media VMs are deployed to take the hand-offs."""
    settings = bicep_settings()
    assert settings["MEDIA_HANDOFF_TRANSPORT"] == "handoffTransport"
    assert settings["SERVICEBUS_NAMESPACE"] == "serviceBusNamespace"
    assert settings["MEDIA_HANDOFF_QUEUE"] == "handoffQueue"
    params = bicep(FUNCTION_APP)["parameters"]
    assert params["handoffTransport"]["default"] == "none"
    allowed = next(d["argument"] for d in params["handoffTransport"]["decorators"] if d["type"] == "allowed")
    assert set(allowed) <= set(config._HANDOFF_KINDS) - {"inprocess"}
    module = body(bicep(INFRA / "main.bicep")["modules"]["functionApp"])["params"]
    assert "fullyQualifiedNamespace" in json.dumps(module["serviceBusNamespace"])
    assert "queueName" in json.dumps(module["handoffQueue"])
    assert module["handoffTransport"]["operator"] == {
        "type": "conditional",
        "operands": {"condition": "deployMediaVm", "true_value": "servicebus", "false_value": "none"}}


def test_container_urls_point_at_the_storage_containers() -> None:
    settings = bicep_settings()
    assert settings["PROMPTS_CONTAINER_URL"] == "${storageBlobEndpoint}${promptsContainerName}"
    assert settings["RECORDINGS_CONTAINER_URL"] == "${storageBlobEndpoint}${recordingsContainerName}"
    assert settings["IDEMPOTENCY_CONTAINER_URL"] == "${storageBlobEndpoint}${idempotencyContainerName}"
    assert settings["BOT_PUBLIC_URL"].startswith("https://${")


# --- Durable backend tuning: host.json names no provider; the Bicep picks one per durableBackend -----------

def test_per_backend_durable_settings() -> None:
    groups = setting_groups()
    dts, storage = groups["dtsSettings"], groups["storageBackendSettings"]
    prefix = "AzureFunctionsJobHost__extensions__durableTask__storageProvider__"
    assert dts[prefix + "type"] == "azureManaged"
    assert dts[prefix + "connectionStringName"] == "DURABLE_TASK_SCHEDULER_CONNECTION_STRING"
    assert "DURABLE_TASK_SCHEDULER_CONNECTION_STRING" in dts
    assert "Authentication=ManagedIdentity" in dts["DURABLE_TASK_SCHEDULER_CONNECTION_STRING"]
    assert storage[prefix + "maxQueuePollingInterval"] == "00:00:01"
    properties = json.dumps(next(c for c in resources_of_type(bicep(FUNCTION_APP), "Microsoft.Web/sites/config")
                                 .values())["properties"])
    assert "durableBackend" in properties and "dtsSettings" in properties and "storageBackendSettings" in properties


def test_host_json_leaves_the_provider_to_the_app_settings_and_keeps_the_route_prefix() -> None:
    host = json.loads((ROOT / "host.json").read_text())
    assert host["version"] == "2.0"
    assert host["extensions"]["http"]["routePrefix"] == "api"
    durable = host["extensions"].get("durableTask", {})
    assert "storageProvider" not in durable and "hubName" not in durable, (
        "host.json must not pin a Durable provider: infra/modules/functionapp.bicep sets it per durableBackend "
        "(a pinned azureManaged would also break `func start` with Azurite)")
    assert host["extensionBundle"]["id"] == "Microsoft.Azure.Functions.ExtensionBundle"


def test_flex_consumption_settings_are_not_set() -> None:
    """Flex takes the runtime from functionAppConfig; these legacy settings are refused or ignored there."""
    legacy = {"FUNCTIONS_WORKER_RUNTIME", "FUNCTIONS_EXTENSION_VERSION", "WEBSITE_RUN_FROM_PACKAGE",
              "WEBSITE_CONTENTSHARE", "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING", "SCM_DO_BUILD_DURING_DEPLOYMENT",
              "ENABLE_ORYX_BUILD"}
    assert not legacy & set(bicep_settings())


def test_the_main_template_passes_the_function_identity() -> None:
    params = body(bicep(INFRA / "main.bicep")["modules"]["functionApp"])["params"]
    assert "functionClientId" in json.dumps(params["identityClientId"])
    assert "functionIdentityId" in json.dumps(params["identityId"])
