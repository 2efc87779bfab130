"""Payloads the way the Durable extension keeps them: JSON text in history, JSON values on the management API.

The extension parses every incoming body into a JSON token and stores the token re-serialised (Newtonsoft
`Formatting.None`); it reads stored text back with `ParseToJToken`, which falls back to the raw string when
the text is not JSON (failure messages, terminate reasons). Doing the same here keeps the shapes that the
orchestrator and the Durable client see identical to Azure, including the Python client's double encoding
(`raise_event` and `start_new` post a JSON *string* that contains the JSON of the value).
"""

from __future__ import annotations

import json
from typing import Any


class InvalidJson(ValueError):
    """A request body that is not JSON, where the extension answers 400 "Invalid JSON content"."""


def text_of(value: Any) -> str:
    """A JSON value as compact text, as Newtonsoft writes a token with Formatting.None."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def body_to_text(body: str) -> str | None:
    """A request body as stored: None when empty, else its token re-serialised. Raises InvalidJson."""
    if not body.strip():
        return None
    try:
        return text_of(json.loads(body))
    except ValueError as exc:
        raise InvalidJson(str(exc)) from None


def value_of(text: str | None) -> Any:
    """Stored text as the management API returns it (the extension's ParseToJToken)."""
    if text is None:
        return None
    stripped = text.strip()
    if not stripped:
        return ""
    try:
        return json.loads(stripped)
    except ValueError:
        return text
