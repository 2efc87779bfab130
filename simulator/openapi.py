"""Validate Graph calls API request bodies against the official v1.0 OpenAPI description.

The schema (schemas/graph-v1.0-communications.openapi.json, from microsoftgraph/msgraph-metadata) is
OpenAPI 3.0; this converts it for a JSON Schema validator and adds what Graph enforces but a plain
validator would not:
- `nullable: true` becomes a `null` type; references resolve against the document.
- `@odata.type` picks the subtype: an object naming a type is also validated against that type.
- Graph refuses an unknown action parameter (a misspelt `callbackURI` is a 400), so the top level of
  an action body allows only the declared parameters.
- Open types allow dynamic properties (Graph's own examples put `tenantId` on an identity), but a
  property that differs from a declared one only by case is an error: it is a misspelling.
- In a request body, any other type is closed: Graph refuses a property it does not declare (a misspelt
  `urii` in a mediaInfo is a 400). The schema marks an OData open type with `additionalProperties` (on
  the type or on a base type it derives from); an object type that declares no properties stays open.
  Annotations (`@odata.type`, `@odata.etag`, `uri@odata.mediaContentType`: any key with an `@`) are
  always allowed. An object is checked as the type its `@odata.type` names; without one, as the type
  its place declares (an action parameter, a property, a list's items) or any type deriving from it.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SCHEMA_PATH = Path(__file__).parent / "schemas" / "graph-v1.0-communications.openapi.json"
_URI = "urn:graph-v1.0-communications"
_SCHEMA_PREFIX = "#/components/schemas/"


@dataclass(frozen=True)
class BodyError:
    """One problem: where in the body (JSON pointer-ish path) and what."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path or '(body)'}: {self.message}"


def _convert(node: Any) -> Any:
    """OpenAPI 3.0 -> JSON Schema 2020-12: nullable to null type, refs qualified, open types opened."""
    if isinstance(node, list):
        return [_convert(n) for n in node]
    if not isinstance(node, dict):
        return node
    dropped = ("nullable", "discriminator", "x-ms-docs-operation-type")
    out = {k: _convert(v) for k, v in node.items() if k not in dropped}
    if node.get("nullable"):
        kind = out.get("type")
        if isinstance(kind, str):
            out["type"] = [kind, "null"]
        elif "enum" in out:
            out["enum"] = [*out["enum"], None]
    if isinstance(out.get("$ref"), str) and out["$ref"].startswith("#/"):
        out["$ref"] = _URI + out["$ref"]
    if out.get("additionalProperties") == {"type": "object"}:
        out["additionalProperties"] = True  # OData open type: dynamic properties of any JSON type
    return out


@cache
def _raw_document() -> dict[str, Any]:
    raw: dict[str, Any] = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return raw


@cache
def _document() -> dict[str, Any]:
    converted: dict[str, Any] = _convert(_raw_document())
    return converted


@cache
def _registry() -> Registry[Any]:
    resource: Resource[Any] = Resource.from_contents(_document(), default_specification=DRAFT202012)
    registry: Registry[Any] = Registry().with_resource(_URI, resource)
    return registry


def _validator(schema: Mapping[str, Any]) -> Draft202012Validator:
    return Draft202012Validator(schema, registry=_registry())


@cache
def _is_open(name: str) -> bool:
    """An OData open type (it or a base type has `additionalProperties`), or an object declaring nothing."""
    schemas = _document()["components"]["schemas"]
    node = schemas.get(name, {})
    for part in node.get("allOf", [node]):
        if "$ref" in part:
            if _is_open(part["$ref"].split(_SCHEMA_PREFIX, 1)[-1]):
                return True
        elif part.get("additionalProperties"):
            return True
    return not _schema_props(name)


def _is_object_type(name: str) -> bool:
    node = _document()["components"]["schemas"].get(name, {})
    return any(part.get("type") == "object" or "properties" in part or "$ref" in part
               for part in node.get("allOf", [node]))


def _subtypes(name: str) -> list[str]:
    """Every type deriving from `name` (the schema's discriminator mapping lists them all)."""
    node = _raw_document()["components"]["schemas"].get(name, {})
    mapping = node.get("discriminator", {}).get("mapping", {})
    return [t.lstrip("#") for t in mapping if t.lstrip("#") != name]


@cache
def _shape(type_name: str, named: bool) -> tuple[dict[str, Any], bool]:
    """The properties an object of this type may have, and whether any other property is refused.

    An object that names no @odata.type may be any type deriving from its declared one (Graph's answer
    example leaves it off the preFetchMedia items): it may have what any of them declares, and it is
    closed only when all of them are.
    """
    candidates = [type_name] if named else [type_name, *_subtypes(type_name)]
    props: dict[str, Any] = {}
    for candidate in candidates:
        props.update(_schema_props(candidate))
    closed = all(_is_object_type(c) and not _is_open(c) for c in candidates)
    return props, closed


def _schema_props(name: str) -> dict[str, Any]:
    """Declared properties of a schema, following allOf to its base types."""
    schemas = _document()["components"]["schemas"]
    node = schemas.get(name, {})
    props: dict[str, Any] = {}
    for part in node.get("allOf", [node]):
        if "$ref" in part:
            props.update(_schema_props(part["$ref"].split(_SCHEMA_PREFIX, 1)[-1]))
        props.update(part.get("properties", {}))
    return props


def operation_schema(method: str, path: str) -> tuple[dict[str, Any] | None, str]:
    """The request-body schema for a Graph path (`/communications/calls/{id}/answer`), and its template."""
    template = match_path(path)
    if template is None:
        raise KeyError(f"no such path in the Graph calls API: {path}")
    operation = _document()["paths"][template].get(method.lower())
    if operation is None:
        raise KeyError(f"{method.upper()} is not allowed on {template}")
    body = operation.get("requestBody")
    return (body["content"]["application/json"]["schema"] if body else None), template


@cache
def _templates() -> list[tuple[re.Pattern[str], str]]:
    out = []
    for template in _document()["paths"]:
        pattern = re.sub(r"\\\{[^}]+\\\}", r"[^/]+", re.escape(template))
        out.append((re.compile(f"^{pattern}$"), template))
    # literal segments beat parameters: /participants/invite before /participants/{id}
    out.sort(key=lambda item: item[1].count("{"))
    return out


def match_path(path: str) -> str | None:
    clean = path.split("?", 1)[0].rstrip("/")
    for pattern, template in _templates():
        if pattern.match(clean):
            return template
    return None


def validate_request(method: str, path: str, body: Any) -> list[BodyError]:
    """Every problem Graph would refuse in this request body (empty list: valid)."""
    schema, template = operation_schema(method, path)
    if schema is None:
        return [] if body in (None, b"", "", {}) else [BodyError("", f"{template} takes no request body")]
    errors = [BodyError(_where(e.absolute_path), e.message) for e in _validator(schema).iter_errors(body)]
    params: dict[str, Any] | None = None
    if isinstance(body, Mapping) and "$ref" not in schema:
        params = schema.get("properties", {})
        errors += [BodyError(key, f"unknown action parameter {key!r} (Graph refuses it; "
                                  f"expected {', '.join(sorted(params))})")
                   for key in body if key not in params]
    root_type = schema["$ref"].split(_SCHEMA_PREFIX, 1)[-1] if "$ref" in schema else None
    errors += list(_typed_objects(body, "", root_type, params, strict=True))
    return errors


def validate_entity(type_name: str, value: Any) -> list[BodyError]:
    """Check a payload (a notification, a call) against a named schema, e.g. `microsoft.graph.call`.

    Unlike a request body, a payload Graph sends may carry properties its schema leaves out: Graph's own
    examples give a call's `source` participantInfo an `id` (call-answer.md, policy-based recording), which
    the v1.0 schema does not declare. So closed types are not enforced here; misspellings still are.
    """
    schema = {"$ref": f"{_URI}{_SCHEMA_PREFIX}{type_name}"}
    errors = [BodyError(_where(e.absolute_path), e.message) for e in _validator(schema).iter_errors(value)]
    return errors + list(_typed_objects(value, "", type_name))


def _typed_objects(value: Any, path: str, declared_type: str | None,
                   params: Mapping[str, Any] | None = None, *, strict: bool = False) -> Iterator[BodyError]:
    """Validate each object naming an @odata.type against that type; catch case misspellings and, when
    `strict`, properties a closed type does not declare. `declared_type` is what the object's place
    declares (for a list: its items); `params` are an action's parameters, which declare the types of
    the body's top-level values."""
    if isinstance(value, list):
        for i, item in enumerate(value):
            yield from _typed_objects(item, f"{path}/{i}", declared_type, strict=strict)
        return
    if not isinstance(value, Mapping):
        return
    odata = value.get("@odata.type")
    type_name = declared_type
    if isinstance(odata, str):
        type_name = odata.lstrip("#")
        schemas = _document()["components"]["schemas"]
        if type_name not in schemas:
            yield BodyError(path + "/@odata.type", f"unknown type {odata!r}")
            type_name = None
        else:
            for error in _validator({"$ref": f"{_URI}{_SCHEMA_PREFIX}{type_name}"}).iter_errors(value):
                yield BodyError(path + _where(error.absolute_path), f"({odata}) {error.message}")
    declared: Mapping[str, Any] | None = params
    if type_name:
        declared, closed = _shape(type_name, isinstance(odata, str))
        lowered = {k.lower(): k for k in declared}
        expected = ", ".join(sorted(k for k in declared if "@" not in k))
        for key in value:
            if key in declared:
                continue
            if key.lower() in lowered:
                yield BodyError(f"{path}/{key}", f"misspelt property {key!r}: Graph's name is "
                                                 f"{lowered[key.lower()]!r}")
            elif closed and strict and "@" not in key:
                yield BodyError(f"{path}/{key}", f"unknown property {key!r} of {type_name} (not an open type, "
                                                 f"so Graph refuses it; expected {expected})")
    for key, child in value.items():
        child_type = _child_type(declared, key) if declared is not None else None
        yield from _typed_objects(child, f"{path}/{key}", child_type, strict=strict)


def _child_type(declared: Mapping[str, Any], key: str) -> str | None:
    """The named type a declared property holds (for a list, its items' type)."""
    prop = declared.get(key)
    if not isinstance(prop, dict):
        return None
    items = prop.get("items", {})
    candidates = (prop, *prop.get("anyOf", []), items, *(items.get("anyOf", []) if isinstance(items, dict) else ()))
    for candidate in candidates:
        ref = candidate.get("$ref") if isinstance(candidate, dict) else None
        if isinstance(ref, str) and _SCHEMA_PREFIX in ref:
            return ref.split(_SCHEMA_PREFIX, 1)[-1]
    return None


def _where(path: Any) -> str:
    return "".join(f"/{p}" for p in path)


def schema_copy() -> dict[str, Any]:
    """The converted document (a copy), for tools that want to inspect it."""
    return copy.deepcopy(_document())
