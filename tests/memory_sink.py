"""A recording sink in memory with Block Blob's semantics (staged blocks, a committed list, metadata), whose
operations can be made to fail or hang: for the recorder's tests of what happens when the storage does."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from mediavm.sinks import STALE_AFTER, swept

#: (operation, blob name, block index or -1) -> raise to make that attempt fail
Fault = Callable[[str, str, int], None]


@dataclass
class Stored:
    content: bytes = b""
    metadata: dict[str, str] = field(default_factory=dict)
    staged: dict[int, bytes] = field(default_factory=dict)
    committed: bool = False
    modified: datetime | None = None


class MemorySink:
    where = "memory"

    def __init__(self, fault: Fault | None = None, clock: Callable[[], datetime] | None = None) -> None:
        self.blobs: dict[str, Stored] = {}
        self.fault = fault
        self.calls: list[tuple[str, str, int]] = []
        self.hang: asyncio.Event | None = None  # set: every operation waits for it
        self._clock = clock or (lambda: datetime.now().astimezone())

    async def _op(self, what: str, name: str, index: int = -1) -> None:
        self.calls.append((what, name, index))
        if self.hang is not None:
            await self.hang.wait()
        if self.fault is not None:
            self.fault(what, name, index)

    async def open(self, name: str) -> _Target:
        await self._op("open", name)
        n, candidate = 1, name
        while candidate in self.blobs and self.blobs[candidate].committed:
            n += 1
            candidate = name.removesuffix(".wav") + f"-{n}.wav"
        self.blobs.setdefault(candidate, Stored())
        return _Target(self, candidate)

    async def sweep(self, prefix: str, stale_after: timedelta = STALE_AFTER,
                    now: datetime | None = None) -> list[str]:
        moment = now or self._clock()
        marked = []
        for name, blob in self.blobs.items():
            if name.startswith(prefix) and blob.metadata.get("status") == "recording" and blob.modified \
                    and moment - blob.modified >= stale_after:
                blob.metadata = swept(blob.metadata, blob.modified, moment)
                marked.append(name)
        return marked

    async def close(self) -> None:
        return None


class _Target:
    def __init__(self, sink: MemorySink, name: str) -> None:
        self.sink = sink
        self.name = name

    @property
    def blob(self) -> Stored:
        return self.sink.blobs[self.name]

    async def stage(self, index: int, offset: int, data: bytes) -> None:
        await self.sink._op("stage", self.name, index)
        self.blob.staged[index] = bytes(data)

    async def commit(self, blocks: int, header: bytes, metadata: Mapping[str, str]) -> None:
        await self.sink._op("commit", self.name, blocks)
        blob = self.blob
        blob.content = header + b"".join(blob.staged[i] for i in range(blocks))
        blob.metadata = dict(metadata)
        blob.committed = True
        blob.modified = self.sink._clock()

    async def mark(self, metadata: Mapping[str, str]) -> None:
        await self.sink._op("mark", self.name)
        if self.blob.committed:
            self.blob.metadata = dict(metadata)
