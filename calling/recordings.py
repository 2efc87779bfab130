"""Where voicemails go: Blob Storage in Azure (Azurite locally), or a folder for quick local runs.

Graph keeps a recordResponse's audio only briefly, so the session downloads it at once
(calling/actions.py) and hands it here with its facts: caller, called number, time, duration,
mailbox, flow and node. In Blob Storage the facts are the blob's metadata, so the portal's Storage
browser and a lifecycle policy (infra: retention in days) work on them without another database.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger("calling.recordings")


class RecordingStore(Protocol):
    async def save(self, name: str, audio: bytes, metadata: Mapping[str, str]) -> str:
        """Store a recording under `name`; returns where it went (a path or a blob URL)."""


@dataclass(frozen=True)
class FolderStore:
    """Recordings as files beside a JSON of their facts: local development and tests (RECORDINGS_DIR)."""

    folder: Path

    async def save(self, name: str, audio: bytes, metadata: Mapping[str, str]) -> str:
        path = self.folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(audio)
        path.with_suffix(".json").write_text(json.dumps(dict(metadata), indent=2), encoding="utf-8")
        return str(path)


class BlobStore:
    """Recordings in a Blob container (RECORDINGS_CONTAINER_URL), written with the app's own identity.

    A retried activity writes the same name again (names are derived from the call and the step), so
    uploads overwrite: at most one blob per recording, never a duplicate.
    """

    def __init__(self, container_url: str, credential: Any) -> None:
        self.container_url = container_url.rstrip("/")
        self._credential = credential

    async def save(self, name: str, audio: bytes, metadata: Mapping[str, str]) -> str:
        from azure.storage.blob import ContentSettings
        from azure.storage.blob.aio import ContainerClient

        # A client per recording: voicemails are rare, and no connection pool outlives its event loop.
        async with ContainerClient.from_container_url(self.container_url, credential=self._credential) as client:
            blob = client.get_blob_client(name)
            await blob.upload_blob(audio, overwrite=True, metadata=blob_metadata(metadata),
                                   content_settings=ContentSettings(content_type="audio/wav"))
            return str(blob.url)


def blob_metadata(facts: Mapping[str, str]) -> dict[str, str]:
    """Blob metadata takes ASCII names that are C# identifiers and ASCII values: keep what fits, say so."""
    out: dict[str, str] = {}
    for key, value in facts.items():
        name = "".join(ch if ch.isascii() and (ch.isalnum() or ch == "_") else "_" for ch in key)
        if not name or name[0].isdigit():
            name = f"_{name}"
        text = str(value)
        if not text.isascii():
            text = text.encode("ascii", "backslashreplace").decode("ascii")
        out[name] = text
    return out
