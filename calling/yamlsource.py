"""YAML with positions: every value of a loaded document can say which line and column it came from.

Configuration files written by people (routing policies, flows) must fail with `FILE:LINE:COLUMN: field:
message`, never a traceback; PyYAML keeps positions on nodes only, so this loads nodes and records them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

PathKey = tuple[str | int, ...]


@dataclass(frozen=True)
class SourceError(ValueError):
    """One problem in a file, pointing at the line and column of the field at fault."""

    file: str
    line: int
    column: int
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}"
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"


class SourceErrors(ValueError):
    """Several problems at once, each a SourceError; str() prints one per line."""

    def __init__(self, errors: list[SourceError]) -> None:
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))


@dataclass
class Document:
    """Plain Python data from YAML, plus where each value sits in the file."""

    file: str
    data: Any
    positions: dict[PathKey, tuple[int, int]]

    def where(self, path: PathKey) -> tuple[int, int]:
        """Line and column (1-based) of the value at `path`, or of its nearest ancestor."""
        for cut in range(len(path), -1, -1):
            if path[:cut] in self.positions:
                return self.positions[path[:cut]]
        return (1, 1)

    def error(self, path: PathKey, message: str) -> SourceError:
        line, column = self.where(path)
        return SourceError(self.file, line, column, format_path(path), message)


def format_path(path: PathKey) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def load_file(path: str | Path, *, scalar_keys: bool = False) -> Document:
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SourceErrors([SourceError(file, 1, 1, "", f"cannot read: {exc}")]) from None
    return load_text(text, file, scalar_keys=scalar_keys)


def load_text(text: str, file: str = "<string>", *, scalar_keys: bool = False) -> Document:
    """`scalar_keys`: a plain key that YAML reads as a number or bool (`1:`, `01:`) keeps its source text.

    Menu keys are digits, and `1: sales` is what people write; without this it is an error.
    """
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        raise SourceErrors([SourceError(file, line, column, "", f"YAML syntax: {exc.problem}")]) from None
    except yaml.YAMLError as exc:  # a control character (ReaderError) has an offset, not a mark
        offset = getattr(exc, "position", 0) or 0
        line = text.count("\n", 0, offset) + 1
        column = offset - (text.rfind("\n", 0, offset) + 1) + 1
        raise SourceErrors([SourceError(file, line, column, "", f"YAML syntax: {exc}".splitlines()[0])]) from None
    positions: dict[PathKey, tuple[int, int]] = {}
    scalars = yaml.SafeLoader("")  # one constructor per document, for scalar values (ints, bools, dates)
    data = _convert(node, (), positions, file, scalars, scalar_keys) if node is not None else None
    return Document(file, data, positions)


def _where(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _convert(node: yaml.Node, path: PathKey, positions: dict[PathKey, tuple[int, int]], file: str,
             scalars: yaml.SafeLoader, scalar_keys: bool = False) -> Any:
    """Nodes to plain data. A mapping entry's position is its key's (where a reader looks for the field)."""
    positions[path] = _where(node)
    if isinstance(node, yaml.MappingNode):
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = scalars.construct_object(key_node)
            if scalar_keys and isinstance(key, int | float) and isinstance(key_node, yaml.ScalarNode):
                key = key_node.value
            if not isinstance(key, str):
                raise SourceErrors([SourceError(file, *_where(key_node), "", f"keys must be strings, got {key!r}")])
            if key in result:
                raise SourceErrors([SourceError(file, *_where(key_node), format_path((*path, key)), "duplicate key")])
            result[key] = _convert(value_node, (*path, key), positions, file, scalars, scalar_keys)
            positions[(*path, key)] = _where(key_node)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_convert(item, (*path, i), positions, file, scalars, scalar_keys)
                for i, item in enumerate(node.value)]
    try:
        return scalars.construct_object(node)
    except (ValueError, yaml.YAMLError) as exc:  # a plain scalar YAML reads as an impossible date: 2026-13-01
        raise SourceErrors([SourceError(file, *_where(node), format_path(path),
                                        f"cannot read {node.value!r}: {exc} (quote it to make it a string)")]) from None
