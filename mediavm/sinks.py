"""Where recordings are streamed: block blobs in a container (Azure, Azurite locally), or a folder.

Both keep the same shape: a WAV per name whose committed state is always a whole file, with its facts as
ASCII metadata (blob metadata; a `.json` beside the file in a folder), and a startup `sweep` that marks
recordings still `recording` but not written for a while as `partial` (their worker died mid-call).

Blob access is by identity (calling/credentials.py `storage_credential`: the VM's managed identity, Azurite's
published development key on loopback), as for voicemails (calling/recordings.py). Retries are ours
(mediavm/wavstream.py FlushPolicy): the SDK's own retry policy is turned off, so a failing storage is seen,
counted and bounded, not waited out for a minute inside one call.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import os
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote

from mediavm.wavstream import HEADER_BYTES, BlockTarget, wav_header

if TYPE_CHECKING:
    from calling.config import Settings

log = logging.getLogger("mediavm.sinks")

#: A recording not written for this long while it says `recording` has lost its worker.
STALE_AFTER = timedelta(minutes=5)
_BLOCK_ID_DIGITS = 9  # block ids are "h" or "d" and 9 digits: the same length for every block of a blob
_HEADER_BLOCK = "h" + "0" * _BLOCK_ID_DIGITS
_SAFE = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != "%")  # printable ASCII but the escape itself


def ascii_value(text: str, limit: int | None = None) -> str:
    """A metadata value that is printable ASCII: other characters (and `%`, and spaces at either end,
    which HTTP would drop) become percent-encoded UTF-8, so `urllib.parse.unquote` gives the text back.
    `limit` cuts the text (not its encoding) to that many characters first."""
    if limit is not None:
        text = text[:limit]
    out = quote(text, safe=_SAFE, errors="replace")
    stripped = out.strip(" ")
    if stripped != out:
        lead = len(out) - len(out.lstrip(" "))
        trail = len(out) - len(out.rstrip(" "))
        out = "%20" * lead + stripped + "%20" * trail
    return out


def swept(metadata: Mapping[str, str], since: datetime, now: datetime) -> dict[str, str]:
    """A stale recording's metadata: partial, and why."""
    return {**metadata, "status": "partial",
            "reason": f"the worker stopped writing at {since.isoformat(timespec='seconds')} (found by the sweep "
                      f"at {now.isoformat(timespec='seconds')})",
            "updated": now.isoformat(timespec="seconds")}


class RecordingSink(Protocol):
    """Where a recorder's WAV streams go."""

    where: str  # the container URL or folder, for logs

    async def open(self, name: str) -> BlockTarget:
        """A new recording named `name`, or `<stem>-2.wav`, `-3`, ... when that name is already taken."""

    async def sweep(self, prefix: str, stale_after: timedelta = STALE_AFTER,
                    now: datetime | None = None) -> list[str]:
        """Mark recordings under `prefix` still `recording` and unchanged for `stale_after` as `partial`;
        the names marked."""

    async def close(self) -> None: ...


def recording_sink(settings: Settings) -> RecordingSink | None:
    """The sink the settings name, as for voicemails: RECORDINGS_CONTAINER_URL (Blob Storage with the
    identity's credential; Azurite on loopback), else RECORDINGS_DIR (a folder), else None (nowhere)."""
    if settings.recordings_container_url:
        from calling.credentials import storage_credential

        url = settings.recordings_container_url
        return BlobSink(url, storage_credential(url, settings), close_credential=True)
    if settings.recordings_dir:
        return FolderSink(settings.recordings_dir)
    return None


def _variant(name: str, n: int) -> str:
    stem, dot, ext = name.rpartition(".")
    return f"{stem}-{n}.{ext}" if dot and "/" not in ext else f"{name}-{n}"


MAX_VARIANTS = 100


class BlobSink:
    """Block blobs in one container, written with an identity (never a key)."""

    def __init__(self, container_url: str, credential: Any, *, connection_timeout: float = 5.0,
                 read_timeout: float = 10.0, close_credential: bool = False) -> None:
        self.where = container_url.rstrip("/")
        self._credential = credential
        self._close_credential = close_credential  # the sink was given the credential to own
        self._connection_timeout = connection_timeout
        self._read_timeout = read_timeout
        self._client: Any = None

    def _container(self) -> Any:
        # One client (one connection pool) for every recording of this worker, made on the loop that uses it.
        if self._client is None:
            from azure.storage.blob.aio import ContainerClient

            self._client = ContainerClient.from_container_url(self.where, credential=self._credential,
                                                              retry_total=0,
                                                              connection_timeout=self._connection_timeout,
                                                              read_timeout=self._read_timeout)
        return self._client

    async def open(self, name: str) -> BlockTarget:
        container = self._container()
        for n in range(1, MAX_VARIANTS + 1):
            candidate = name if n == 1 else _variant(name, n)
            blob = container.get_blob_client(candidate)
            if not await blob.exists():
                return _Blob(candidate, blob)
        raise RuntimeError(f"{MAX_VARIANTS} recordings named like {name} exist already")

    async def sweep(self, prefix: str, stale_after: timedelta = STALE_AFTER,
                    now: datetime | None = None) -> list[str]:
        from azure.core import MatchConditions
        from azure.core.exceptions import HttpResponseError

        now = now or datetime.now(UTC)
        container = self._container()
        marked = []
        async for item in container.list_blobs(name_starts_with=prefix, include=["metadata"]):
            metadata = dict(item.metadata or {})
            changed: datetime = item.last_modified
            if metadata.get("status") != "recording" or now - changed < stale_after:
                continue
            try:  # only if nobody wrote it since we listed it: a live recorder's commit wins
                await container.get_blob_client(item.name).set_blob_metadata(
                    swept(metadata, changed, now), etag=item.etag, match_condition=MatchConditions.IfNotModified)
            except HttpResponseError as exc:
                log.warning("sweep: %s changed or could not be marked partial: %s", item.name, exc.reason)
                continue
            marked.append(item.name)
        if marked:
            log.warning("sweep: %d recording(s) left by a stopped worker marked partial", len(marked))
        return marked

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
        close = getattr(self._credential, "close", None)
        if self._close_credential and close is not None and inspect.iscoroutinefunction(close):
            await close()


class _Blob:
    def __init__(self, name: str, client: Any) -> None:
        self.name = name
        self._client = client
        self.url = str(client.url)

    async def stage(self, index: int, offset: int, data: bytes) -> None:
        await self._client.stage_block(_block_id(index), data, length=len(data))

    async def commit(self, blocks: int, header: bytes, metadata: Mapping[str, str]) -> None:
        from azure.storage.blob import ContentSettings

        # The header block is staged again with the current sizes; the list names the newest of each id.
        await self._client.stage_block(_HEADER_BLOCK, header, length=len(header))
        await self._client.commit_block_list([_HEADER_BLOCK, *(_block_id(i) for i in range(blocks))],
                                             metadata=dict(metadata),
                                             content_settings=ContentSettings(content_type="audio/wav"))

    async def mark(self, metadata: Mapping[str, str]) -> None:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            await self._client.set_blob_metadata(dict(metadata))
        except ResourceNotFoundError:
            return


def _block_id(index: int) -> str:
    return f"d{index:0{_BLOCK_ID_DIGITS}d}"


class FolderSink:
    """Recordings as files under a folder, each beside a `.json` of its metadata: local development.

    A block is written at its place in the file; a commit rewrites the header, flushes the file to disk
    and then replaces the `.json` (atomically), so the file up to the header's size is always a whole WAV.
    File I/O runs in a thread, never on the event loop.
    """

    def __init__(self, folder: Path | str) -> None:
        self.folder = Path(folder)
        self.where = str(self.folder)

    def _path(self, name: str) -> Path:
        path = (self.folder / name).resolve()
        if not path.is_relative_to(self.folder.resolve()):
            raise ValueError(f"recording name outside the folder: {name!r}")
        return path

    async def open(self, name: str) -> BlockTarget:
        def claim() -> _File:
            for n in range(1, MAX_VARIANTS + 1):
                candidate = name if n == 1 else _variant(name, n)
                path = self._path(candidate)
                path.parent.mkdir(parents=True, exist_ok=True)
                try:
                    with path.open("xb") as file:  # exclusive: the name is ours from here on
                        file.write(wav_header(0))  # a valid, empty WAV until the first commit
                except FileExistsError:
                    continue
                return _File(candidate, path)
            raise RuntimeError(f"{MAX_VARIANTS} recordings named like {name} exist already")

        return await asyncio.to_thread(claim)

    async def sweep(self, prefix: str, stale_after: timedelta = STALE_AFTER,
                    now: datetime | None = None) -> list[str]:
        def scan() -> list[str]:
            moment = now or datetime.now(UTC)
            marked = []
            for facts in sorted(self.folder.glob("**/*.json")):
                name = facts.relative_to(self.folder).with_suffix(".wav").as_posix()
                if not name.startswith(prefix):
                    continue
                try:
                    metadata = json.loads(facts.read_text(encoding="utf-8"))
                except (OSError, ValueError):
                    continue
                changed = datetime.fromtimestamp(facts.stat().st_mtime, UTC)
                if not isinstance(metadata, dict) or metadata.get("status") != "recording" \
                        or moment - changed < stale_after:
                    continue
                _write_json(facts, swept(metadata, changed, moment))
                marked.append(name)
            return marked

        return await asyncio.to_thread(scan)

    async def close(self) -> None:
        return None


class _File:
    def __init__(self, name: str, path: Path) -> None:
        self.name = name
        self.path = path

    async def stage(self, index: int, offset: int, data: bytes) -> None:
        await asyncio.to_thread(self._write, HEADER_BYTES + offset, data, sync=False)

    async def commit(self, blocks: int, header: bytes, metadata: Mapping[str, str]) -> None:
        def commit() -> None:
            self._write(0, header, sync=True)
            _write_json(self.path.with_suffix(".json"), metadata)

        await asyncio.to_thread(commit)

    async def mark(self, metadata: Mapping[str, str]) -> None:
        facts = self.path.with_suffix(".json")
        if facts.exists():
            await asyncio.to_thread(_write_json, facts, metadata)

    def _write(self, at: int, data: bytes, *, sync: bool) -> None:
        with self.path.open("r+b") as file:
            file.seek(at)
            file.write(data)
            if sync:
                file.flush()
                os.fsync(file.fileno())


def _write_json(path: Path, metadata: Mapping[str, str]) -> None:
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(dict(metadata), indent=2, sort_keys=True), encoding="utf-8")
    os.replace(temporary, path)
