"""Events and commands as JSON objects: `{"type": "<ClassName>", ...fields}`.

Commands become Durable activity inputs and events may be recorded or replayed by a harness, so both
must cross a JSON boundary losslessly: tuples become lists, times ISO 8601 strings, and back.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from datetime import datetime
from functools import cache
from typing import Any, TypeVar

T = TypeVar("T")


def to_json(obj: Any) -> dict[str, Any]:
    """A frozen dataclass (event or command) as a JSON-ready dict."""
    return {"type": type(obj).__name__,
            **{f.name: _out(getattr(obj, f.name)) for f in dataclasses.fields(obj)}}


def from_json(data: Mapping[str, Any], types: Mapping[str, type[T]]) -> T:
    """The dataclass named by data["type"], one of `types`. ValueError for anything else."""
    name = data.get("type") if isinstance(data, Mapping) else None
    cls = types.get(name) if isinstance(name, str) else None
    if cls is None:
        raise ValueError(f"unknown type {name!r}; expected one of {', '.join(types)}")
    hints = _hints(cls)
    known = set(hints)
    unknown = set(data) - known - {"type"}
    if unknown:
        raise ValueError(f"{name}: unknown fields {', '.join(sorted(unknown))}")
    try:
        return cls(**{k: _in(hints[k], v) for k, v in data.items() if k != "type"})
    except TypeError as exc:
        raise ValueError(f"{name}: {exc}") from None


def _hints(cls: Any) -> dict[str, Any]:
    return _field_hints(cls)


@cache
def _field_hints(cls: type[Any]) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _out(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, tuple | list):
        return [_out(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _out(v) for k, v in value.items()}
    return value


def _in(hint: Any, value: Any) -> Any:
    args = typing.get_args(hint)
    if (hint is datetime or datetime in args) and isinstance(value, str):
        return datetime.fromisoformat(value)
    if (typing.get_origin(hint) is tuple or any(typing.get_origin(a) is tuple for a in args)) \
            and isinstance(value, list):
        return tuple(value)
    return value
