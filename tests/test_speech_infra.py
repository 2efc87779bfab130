"""Azure AI Speech for say prompts (infra/modules/speech.bicep): deployed only with deploySpeech, Entra auth only,
the deployer holds Cognitive Services Speech User, and the Function App's SAY_RENDERER follows deploySpeech, so
the app names the rendered prompts as the predeploy hook rendered them (calling/flows/speech.py)."""

from __future__ import annotations

import json

from calling.flows import speech
from tests.test_infra_bicep import INFRA, MODULES, bicep, body, one_resource, param_default
from tests.test_infra_settings import bicep_settings

SPEECH = MODULES / "speech.bicep"
MAIN = INFRA / "main.bicep"
#: Cognitive Services Speech User (built-in role).
SPEECH_USER = "f2dc8367-1007-4938-bd23-fe263f013447"


def test_the_speech_module_is_wired_only_with_deploy_speech() -> None:
    assert param_default(MAIN, "deploySpeech") is False
    module = bicep(MAIN)["modules"]["speech"]
    assert module["config"]["condition"] == "deploySpeech"
    assert module["detail"]["path"] == "modules/speech.bicep"
    assert body(module)["params"]["deployerPrincipalId"] == "principalId"


def test_the_speech_account_is_entra_only_with_a_custom_subdomain() -> None:
    account = one_resource(SPEECH, "Microsoft.CognitiveServices/accounts")
    assert account["kind"] == "SpeechServices"
    assert account["properties"]["disableLocalAuth"] is True
    assert account["properties"]["customSubDomainName"] == "customSubDomainName"
    assert account["properties"]["publicNetworkAccess"] == "Enabled"
    assert param_default(SPEECH, "skuName") == "S0"
    subdomain = json.dumps(body(bicep(MAIN)["modules"]["speech"])["params"]["customSubDomainName"])
    assert "resourceToken" in subdomain, subdomain  # unique per subscription, environment and region


def test_the_deployer_is_speech_user_on_the_account() -> None:
    assignments = bicep(SPEECH)["resources"]
    roles = {name: r for name, r in assignments.items() if r["type"] == "Microsoft.Authorization/roleAssignments"}
    assert list(roles) == ["deployerSpeechUser"]
    config = body(roles["deployerSpeechUser"])
    assert config["properties"]["principalId"] == "deployerPrincipalId"
    assert config["scope"] == "account"
    assert bicep(SPEECH)["variables"]["roles"]["value"]["speechUser"] == SPEECH_USER
    role = json.dumps(config["properties"]["roleDefinitionId"])
    assert '"operand_1": "roles", "operand_2": "speechUser"' in role and "roleDefinitions" in role, role


def test_main_outputs_the_speech_endpoint_resource_id_and_region_empty_without_speech() -> None:
    outputs = bicep(MAIN)["outputs"]
    for name, source in (("AZURE_SPEECH_ENDPOINT", "endpoint"), ("AZURE_SPEECH_RESOURCE_ID", "id"),
                         ("AZURE_SPEECH_REGION", "location")):
        operands = outputs[name]["value"]["operator"]["operands"]
        assert operands["condition"] == "deploySpeech" and operands["false_value"] == "", (name, operands)
        true_value = json.dumps(operands["true_value"])
        assert '"speech"' in true_value and f'"operand_2": "{source}"' in true_value, (name, true_value)
    endpoint = json.dumps(bicep(SPEECH)["outputs"]["endpoint"]["value"])
    assert '"operand_1": "account"' in endpoint and '"operand_1": "properties", "operand_2": "endpoint"' in endpoint


def test_the_parameters_file_maps_deploy_speech() -> None:
    file = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert file["deploySpeech"]["value"] == "${DEPLOY_SPEECH=false}"


def test_the_function_apps_say_renderer_follows_deploy_speech() -> None:
    assert bicep_settings()["SAY_RENDERER"] == "sayRenderer"
    assert param_default(MODULES / "functionapp.bicep", "sayRenderer") == speech.ESPEAK
    params = body(bicep(MAIN)["modules"]["functionApp"])["params"]
    assert params["sayRenderer"]["operator"] == {
        "type": "conditional",
        "operands": {"condition": "deploySpeech", "true_value": speech.AZURE, "false_value": speech.ESPEAK}}


def test_the_predeploy_hooks_render_with_azure_speech_when_the_endpoint_is_set() -> None:
    sh = (INFRA / "hooks" / "predeploy.sh").read_text()
    assert 'if [ -n "${AZURE_SPEECH_ENDPOINT:-}" ]; then\n    SAY_RENDERER=azure-speech' in sh
    assert "SAY_RENDERER=espeak-ng" in sh and "export SAY_RENDERER AZURE_SPEECH_ENDPOINT" in sh
    ps1 = (INFRA / "hooks" / "predeploy.ps1").read_text()
    assert ("if ($env:AZURE_SPEECH_ENDPOINT) { $env:SAY_RENDERER = 'azure-speech' } "
            "else { $env:SAY_RENDERER = 'espeak-ng' }") in ps1
    assert sh.index("SAY_RENDERER=azure-speech") < sh.index('-m calling.flows check --render')
    assert ps1.index("$env:SAY_RENDERER = 'azure-speech'") < ps1.index("-m calling.flows check --render")
