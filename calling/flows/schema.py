"""The JSON Schema of a flow file, generated from the model classes' FieldSpecs.

Editors (the YAML language server, VS Code) use it for completion and inline errors; it is published
as docs/flow.schema.json and a test keeps that file equal to this output. The loader stays the
authority (it also checks node names, reachability and prompt files, which a schema cannot), but
anything the schema rejects the loader rejects too.
"""

from __future__ import annotations

import json
from typing import Any

from calling.flows import model as m
from calling.flows import speech

DIALECT = "https://json-schema.org/draft/2020-12/schema"
_KEY = "^[0-9*#]$"
_DAY = "(mon|tue|wed|thu|fri|sat|sun|monday|tuesday|wednesday|thursday|friday|saturday|sunday)"
_DAY_SPEC = f"^ *{_DAY}( *- *{_DAY})?( *, *{_DAY}( *- *{_DAY})?)* *$"
_TIME_RANGE = r"^\s*\d{1,2}:\d{2}\s*-\s*\d{1,2}:\d{2}\s*$"
_HOLIDAY = r"^(\d{4}-)?\d{2}-\d{2}(\.\.(\d{4}-)?\d{2}-\d{2})?$"
_TARGET = r"^(\+[1-9]\d{1,14}|user:.+|instance:.+)$"


def schema() -> dict[str, Any]:
    defs: dict[str, Any] = {
        "prompt": {"anyOf": [
            {"type": "string", "pattern": r"\.[wW][aA][vV]$",
             "description": "A WAV file (RIFF, PCM, mono, 16-bit, 16 kHz), relative to the flow file."},
            {"$ref": "#/$defs/say"}]},
        "say": {
            "type": "object", "additionalProperties": False, "required": ["say"],
            "description": "A prompt given as text, rendered to a WAV before deployment "
                           "(python -m calling.flows check --render).",
            "properties": {
                "say": {"type": "string", "minLength": 1, "maxLength": speech.MAX_TEXT, "pattern": r"\S",
                        "description": f"The text to speak (at most {speech.MAX_TEXT} characters)."},
                "voice": {"type": "string", "pattern": speech.VOICE.pattern,
                          "description": "A voice: espeak-ng's (`en-us`, `en+f3`) or Azure AI Speech's "
                                         "(`en-US-AvaMultilingualNeural`). Default: the renderer's for the language."},
                "language": {"type": "string", "pattern": speech.LANGUAGE.pattern,
                             "description": f"A BCP-47 language tag (`en-US`, `fr-CA`). Default: "
                                            f"{speech.DEFAULT_LANGUAGE}, or the Azure voice's."}}},
        "target": {"type": "string", "pattern": _TARGET,
                   "description": "`+E164` (quoted), `user:<object id>` or `instance:<object id>`."},
        "key": {"anyOf": [{"type": "string", "pattern": _KEY}, {"type": "integer", "minimum": 0, "maximum": 9}]},
        "time_range": {"type": "string", "pattern": _TIME_RANGE, "description": "`\"HH:MM-HH:MM\"`, quoted."},
        "day_spec": {"type": "string", "pattern": _DAY_SPEC, "description": "`mon`, `mon-fri`, `sat,sun`."},
    }
    for name, cls in m.NODE_TYPES.items():
        defs[name] = _object(cls, defs, node_type=name)
    defs["node"] = {
        "type": "object",
        "description": "A node; `type` decides its other keys.",
        "required": ["type"],
        "properties": {"type": {"enum": list(m.NODE_TYPES)}},
        "allOf": [{"if": {"properties": {"type": {"const": name}}, "required": ["type"]},
                   "then": {"$ref": f"#/$defs/{name}"}} for name in m.NODE_TYPES],
    }
    root = _object(m.Flow, defs)
    return {"$schema": DIALECT, "title": "IVR flow", **root, "$defs": defs}


def schema_text() -> str:
    return json.dumps(schema(), indent=2, ensure_ascii=False) + "\n"


def _object(cls: type[Any], defs: dict[str, Any], *, node_type: str = "") -> dict[str, Any]:
    properties: dict[str, Any] = {}
    required: list[str] = []
    if node_type:
        properties["type"] = {"const": node_type}
        required.append("type")
    for s in m.specs(cls):
        properties[s.key] = _field(s, defs)
        if s.required:
            required.append(s.key)
    out: dict[str, Any] = {"type": "object", "description": _doc(cls), "additionalProperties": False,
                           "properties": properties}
    if required:
        out["required"] = required
    return out


def _field(s: m.Spec, defs: dict[str, Any]) -> dict[str, Any]:
    out = _kind(s.spec.kind, defs)
    if s.spec.nullable:
        out = {"anyOf": [out, {"type": "null"}]}
    description = s.spec.doc
    if s.spec.default_doc:
        description += f" Default: {s.spec.default_doc}."
    out = {"description": description, **out}
    if not s.required and not s.spec.default_doc and s.default is not None and s.default != "":
        out["default"] = list(s.default) if isinstance(s.default, tuple) else s.default
    return out


def _kind(kind: m.Kind, defs: dict[str, Any]) -> dict[str, Any]:
    if isinstance(kind, m.Text):
        return {"type": "string"}
    if isinstance(kind, m.Integer):
        return {"type": "integer", "minimum": kind.minimum, "maximum": kind.maximum}
    if isinstance(kind, m.Boolean):
        return {"type": "boolean"}
    if isinstance(kind, m.Choice):
        return {"enum": list(kind.values)}
    if isinstance(kind, m.Version):
        return {"const": m.VERSION}
    if isinstance(kind, m.NodeRef):
        return {"type": "string", "minLength": 1}
    if isinstance(kind, m.Prompt):
        return _one_or_list("prompt", 1, m.MAX_PROMPTS) if kind.many else {"$ref": "#/$defs/prompt"}
    if isinstance(kind, m.Target):
        if not kind.many:
            return {"$ref": "#/$defs/target"}
        return {"type": "array", "items": {"$ref": "#/$defs/target"}, "minItems": 1, "maxItems": kind.max_items}
    if isinstance(kind, m.Keys):
        return _one_or_list("key", 1, None) if kind.many else {"$ref": "#/$defs/key"}
    if isinstance(kind, m.Options):
        return {"type": "object", "minProperties": 1,
                "propertyNames": {"pattern": f"^[0-9*#]{{1,{m.MAX_DIGITS}}}$"},
                "additionalProperties": {"type": "string", "minLength": 1}}
    if isinstance(kind, m.TimeZone):
        return {"type": "string", "minLength": 1, "examples": ["Europe/London", "America/New_York", "UTC"]}
    if isinstance(kind, m.Weekly):
        return {"type": "object", "minProperties": 1, "propertyNames": {"$ref": "#/$defs/day_spec"},
                "additionalProperties": _one_or_list("time_range", 1, None)}
    if isinstance(kind, m.Holidays):
        return {"type": "array", "items": {"type": "string", "pattern": _HOLIDAY}}
    if isinstance(kind, m.TimeRanges):
        return _one_or_list("time_range", 1, None)
    if isinstance(kind, m.Days):
        return _one_or_list("day_spec", 1, None)
    if isinstance(kind, m.Globs):
        item = {"type": "string", "minLength": 1}
        return {"anyOf": [item, {"type": "array", "items": item, "minItems": 1}]}
    if isinstance(kind, m.FlowPath):
        return {"type": "string", "pattern": r"\.ya?ml$"}
    if isinstance(kind, m.Object):
        return _object(kind.cls, defs)
    if isinstance(kind, m.Items):
        return {"type": "array", "items": _object(kind.cls, defs), "minItems": kind.min_items}
    return {"type": "object", "minProperties": 1, "additionalProperties": {"$ref": "#/$defs/node"}}


def _one_or_list(name: str, min_items: int, max_items: int | None) -> dict[str, Any]:
    ref = {"$ref": f"#/$defs/{name}"}
    array: dict[str, Any] = {"type": "array", "items": ref, "minItems": min_items}
    if max_items is not None:
        array["maxItems"] = max_items
    return {"anyOf": [ref, array]}


def _doc(cls: type[Any]) -> str:
    return " ".join((cls.__doc__ or cls.__name__).split())
