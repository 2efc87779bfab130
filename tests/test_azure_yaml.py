"""azure.yaml: valid against azd's JSON Schema (vendored in infra/schemas/, so CI on a clean clone needs nothing
beside the repository), and pointing at what exists: the Functions project, infra/main.bicep, the hook scripts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT201909

ROOT = Path(__file__).resolve().parent.parent
AZURE_YAML = ROOT / "azure.yaml"
SCHEMA = ROOT / "infra" / "schemas" / "azure.yaml.schema.json"


def project() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(AZURE_YAML.read_text())
    return document


def _extension_schema(uri: str) -> Resource:
    """The schema $refs azd extensions' own schemas (azure.ai.* hosts) by URL; those hosts are not used here and
    nothing is fetched: such a reference accepts anything."""
    assert uri.startswith("https://raw.githubusercontent.com/Azure/azure-dev/main/cli/azd/extensions/"), uri
    return Resource.from_contents({}, default_specification=DRAFT201909)


def validator() -> jsonschema.protocols.Validator:
    schema = json.loads(SCHEMA.read_text())
    assert schema["$schema"] == "https://json-schema.org/draft/2019-09/schema"
    return jsonschema.Draft201909Validator(schema, registry=Registry(retrieve=_extension_schema))


def test_azure_yaml_is_valid_against_the_azd_schema() -> None:
    errors = sorted(validator().iter_errors(project()), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors)


@pytest.mark.parametrize("broken", [
    {"hooks": {"postprovision": {"posix": {"shell": "bash", "run": "x.sh"}}}},  # shell is sh or pwsh
    {"services": {"api": {"project": "."}}},  # host is required
    {"name": "Not A Valid Name"},
])
def test_the_schema_refuses_broken_variants(broken: dict[str, Any]) -> None:
    """The validator has teeth: variants azd would refuse fail."""
    assert list(validator().iter_errors({**project(), **broken}))


def test_the_service_is_this_python_functions_project() -> None:
    services = project()["services"]
    assert list(services) == ["api"], "infra/modules/functionapp.bicep tags the app azd-service-name: api"
    api = services["api"]
    assert (api["host"], api["language"], api["project"]) == ("function", "python", ".")
    assert (ROOT / api["project"] / "function_app.py").is_file()
    assert (ROOT / api["project"] / "host.json").is_file()
    assert (ROOT / api["project"] / "requirements.txt").is_file()
    assert "'azd-service-name': serviceName" in (ROOT / "infra" / "modules" / "functionapp.bicep").read_text()
    assert "serviceName: 'api'" in (ROOT / "infra" / "main.bicep").read_text()


def test_infra_points_at_the_bicep() -> None:
    infra = project()["infra"]
    assert infra.get("provider", "bicep") == "bicep"
    main = ROOT / infra["path"] / f"{infra.get('module', 'main')}.bicep"
    assert main.is_file()
    assert (main.parent / f"{main.stem}.parameters.json").is_file()


@pytest.mark.parametrize("hook", ["postprovision", "predeploy"])
def test_hooks_have_posix_and_windows_scripts_that_exist(hook: str) -> None:
    entry = project()["hooks"][hook]
    assert entry["posix"] == {"shell": "sh", "run": f"infra/hooks/{hook}.sh"}
    assert entry["windows"] == {"shell": "pwsh", "run": f"infra/hooks/{hook}.ps1"}
    for variant in ("posix", "windows"):
        assert (ROOT / entry[variant]["run"]).is_file(), entry[variant]["run"]


def test_vendored_schema_is_azds_v1_schema() -> None:
    schema = json.loads(SCHEMA.read_text())
    assert schema["$id"] == "https://raw.githubusercontent.com/Azure/azure-dev/main/schemas/v1.0/azure.yaml.json"
    assert "Azure/azure-dev" in (ROOT / "infra" / "README.md").read_text(), "infra/README.md names the schema's source"
