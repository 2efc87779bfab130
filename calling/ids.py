"""Graph ids, checked before one reaches a URL path, a Durable instance id or a log line.

Graph's call, operation and participant ids are GUIDs (`491f0b00-ffff-4bc9-a43e-b226498ec22a`). A
notification or request naming anything else (a space, `%00`, a path separator, a lone surrogate, an
emoji) is refused where it enters, so it never becomes a Graph request, an orchestration, or a
UnicodeEncodeError deep in an HTTP client. The pattern is a little wider than a GUID (ASCII letters,
digits and `-_.:`) so the simulator's and tests' readable ids pass.
"""

from __future__ import annotations

import re

GRAPH_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")  # at most 64: a GUID is 36; a Durable instance id


def is_graph_id(value: object) -> bool:
    return isinstance(value, str) and GRAPH_ID.fullmatch(value) is not None


def check_graph_id(value: str, what: str = "call id") -> str:
    """`value` when it is a Graph id; ValueError naming `what` otherwise (shown escaped, at most 130 chars)."""
    if not is_graph_id(value):
        raise ValueError(f"not a valid {what}: {str(value)[:130]!r}")
    return value
