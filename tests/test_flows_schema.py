"""The flow JSON Schema: generated from the models, published in docs/, and it agrees with the loader."""

from __future__ import annotations

import copy
import datetime
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from calling.flows import model as m
from calling.flows.schema import schema, schema_text
from calling.yamlsource import load_file

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = sorted((ROOT / "flows").glob("*.yaml"))
VALIDATOR = jsonschema.Draft202012Validator(schema())


def as_editor_sees_it(path: Path) -> Any:
    """YAML as JSON: editors read dates as strings, and menu keys as strings."""
    def plain(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, list):
            return [plain(v) for v in value]
        return value.isoformat() if isinstance(value, datetime.date) else value
    return plain(load_file(path, scalar_keys=True).data)


def test_the_published_schema_is_the_generated_one() -> None:
    assert (ROOT / "docs" / "flow.schema.json").read_text(encoding="utf-8") == schema_text(), (
        "regenerate it: python -m calling.flows schema > docs/flow.schema.json")


def test_the_schema_is_valid_json_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(schema())


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_the_schema_accepts_every_sample_flow(path: Path) -> None:
    errors = [e.message for e in VALIDATOR.iter_errors(as_editor_sees_it(path))]
    assert errors == []


def test_every_node_type_and_field_is_in_the_schema() -> None:
    defs = schema()["$defs"]
    for name, cls in m.NODE_TYPES.items():
        properties = defs[name]["properties"]
        assert set(properties) == {"type"} | {s.key for s in m.specs(cls)}
        assert defs[name]["additionalProperties"] is False
    menu = defs["menu"]
    assert menu["required"] == ["type", "prompt", "options", "on_max_retries"]
    assert menu["properties"]["retries"] == {"description": menu["properties"]["retries"]["description"],
                                             "type": "integer", "minimum": 0, "maximum": 9, "default": 2}
    assert "else" in defs["condition"]["properties"]


@pytest.mark.parametrize(("change", "message"), [
    (lambda f: f["nodes"]["confirm"].update(retriez=3), "'retriez' was unexpected"),
    (lambda f: f["nodes"]["message"].update(type="plya"), "'plya' is not one of"),
    (lambda f: f["nodes"]["confirm"].update(retries=12), "12 is greater than the maximum of 9"),
    (lambda f: f["nodes"]["message"].update(prompt="a.mp3"), "'a.mp3' is not valid under any of the given schemas"),
    (lambda f: f["nodes"]["confirm"]["options"].update(x="message"), "'x' does not match"),
    (lambda f: f["nodes"]["confirmed"].pop("next"), "'next' is a required property"),
    (lambda f: f.update(version=2), "1 was expected"),
])
def test_the_schema_rejects_what_the_loader_rejects(change: Any, message: str) -> None:
    flow = copy.deepcopy(as_editor_sees_it(ROOT / "flows" / "reminder.yaml"))
    change(flow)
    errors = [e.message for e in VALIDATOR.iter_errors(flow)]
    assert any(message in e for e in errors), errors


def test_the_schema_is_stable_json() -> None:
    text = schema_text()
    assert json.loads(text) == schema() and text.endswith("}\n")
