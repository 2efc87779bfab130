"""A WAV file streamed to storage in blocks, with bounded memory, valid at every commit.

The writer side is synchronous and cheap (it runs on the event loop, 20 ms at a time): frames are copied
into one preallocated block buffer; a full buffer is copied out and handed to a background task, which
stages it (`BlockTarget.stage`) and the buffer is reused. A commit hands over what is buffered, then a
fresh 44-byte header carrying the current sizes, and the block list (`BlockTarget.commit`): in Blob Storage,
Put Block of the header block and Put Block List of [header, data 0 .. n-1] with the blob's metadata, so
every committed state of the blob is a whole WAV file and a crash loses at most what came after the last
commit. Memory per stream is the block buffer plus what waits for the storage (at most
`FlushPolicy.max_pending_bytes`; beyond it the stream fails rather than grow).

A storage operation that fails is retried `FlushPolicy.attempts` times with the policy's delays and a
timeout per attempt; when it still fails the stream stops (its blob keeps its last commit, marked partial
when the storage lets us) and says so: `failure`, `lost_frames`, and the `on_failure` callback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from mediavm.engine import FRAME_BYTES, SAMPLE_RATE

log = logging.getLogger("mediavm.wavstream")

HEADER_BYTES = 44
CHANNELS = 1
SAMPLE_BYTES = 2
#: RIFF sizes are 32-bit: about 37 hours of 16 kHz mono 16-bit audio.
MAX_DATA_BYTES = (0xFFFFFFFF - (HEADER_BYTES - 8)) // FRAME_BYTES * FRAME_BYTES
#: Block Blob's limit on committed blocks (the header is one of them).
MAX_BLOCKS = 50_000 - 1
_ZEROS = bytes(64 * FRAME_BYTES)


def wav_header(data_bytes: int) -> bytes:
    """The canonical 44-byte PCM header (RIFF, fmt, data) for `data_bytes` of 16 kHz mono 16-bit audio."""
    return struct.pack("<4sI4s4sIHHIIHH4sI", b"RIFF", HEADER_BYTES - 8 + data_bytes, b"WAVE", b"fmt ", 16, 1,
                       CHANNELS, SAMPLE_RATE, SAMPLE_RATE * CHANNELS * SAMPLE_BYTES, CHANNELS * SAMPLE_BYTES,
                       SAMPLE_BYTES * 8, b"data", data_bytes)


class BlockTarget(Protocol):
    """One stored file as a list of blocks (a block blob, or a file on disk)."""

    name: str  # where it is, as the sink names it (the blob name)

    async def stage(self, index: int, offset: int, data: bytes) -> None:
        """Store data block `index`, which starts `offset` bytes into the audio (after the header).
        Idempotent: a retry stores the same block again."""

    async def commit(self, blocks: int, header: bytes, metadata: Mapping[str, str]) -> None:
        """Make the file `header` + data blocks 0 .. blocks-1, with `metadata`, in one step."""

    async def mark(self, metadata: Mapping[str, str]) -> None:
        """Replace the committed file's metadata only (nothing happens if nothing was committed)."""


@dataclass(frozen=True)
class FlushPolicy:
    """How a stream buffers and how hard it tries the storage."""

    block_bytes: int = 320_000  # 10 s of audio per staged block at most (a multiple of FRAME_BYTES)
    max_pending_bytes: int = 4 * 1024 * 1024  # handed over but not yet stored: about 2 min of audio
    attempts: int = 4  # per storage operation
    retry_delays: tuple[float, ...] = (0.5, 1.0, 2.0)  # before the 2nd, 3rd, 4th attempt (the last repeats)
    attempt_timeout: float = 10.0  # seconds, per attempt

    def __post_init__(self) -> None:
        if self.block_bytes < FRAME_BYTES or self.block_bytes % FRAME_BYTES:
            raise ValueError(f"block_bytes must be a positive multiple of {FRAME_BYTES}")
        if self.attempts < 1 or self.max_pending_bytes < self.block_bytes:
            raise ValueError("attempts must be at least 1 and max_pending_bytes at least one block")

    def delay(self, attempt: int) -> float:
        """The wait before attempt `attempt` + 1 (attempt counts from 1)."""
        if not self.retry_delays:
            return 0.0
        return self.retry_delays[min(attempt - 1, len(self.retry_delays) - 1)]


@dataclass
class _Stage:
    index: int
    offset: int
    data: bytes


@dataclass
class _Commit:
    blocks: int
    data_bytes: int
    metadata: Mapping[str, str]
    final: bool


@dataclass
class StreamStats:
    """What happened to one stream's bytes; updated as the background task goes."""

    staged_bytes: int = 0  # data bytes the storage has accepted (staged)
    committed_bytes: int = 0  # data bytes in the last commit: what survives a crash
    commits: int = 0
    retries: int = 0  # storage attempts that failed and were tried again
    skipped_commits: int = 0  # commits overtaken by a later one while the storage was behind
    lost_frames: int = 0  # frames refused after the stream failed (and those it held when it failed)
    failure: str | None = None
    committed_metadata: Mapping[str, str] = field(default_factory=dict)


class WavStream:
    """One WAV file written frame by frame (synchronously) and stored in blocks (in the background).

    `open_target` is awaited once, by the background task, before the first block: it picks the final
    name (a sink may change it when the first choice is taken), so the writer never waits for storage.
    """

    def __init__(self, name: str, open_target: Callable[[], Awaitable[BlockTarget]], *,
                 policy: FlushPolicy | None = None, on_failure: Callable[[WavStream], None] | None = None) -> None:
        self.policy = policy or FlushPolicy()
        self.name = name
        self.stats = StreamStats()
        self._open_target = open_target
        self._target: BlockTarget | None = None
        self._on_failure = on_failure
        self._buf = bytearray(self.policy.block_bytes)
        self._cap = self.policy.block_bytes
        self._pos = 0
        self._handed = 0  # data bytes handed to the background task (the next block's offset)
        self._blocks = 0  # data blocks handed over
        self._ops: deque[_Stage | _Commit] = deque()
        self._queued_commits = 0
        self._pending = 0  # bytes of queued stage operations
        self._task: asyncio.Task[None] | None = None
        self.final = False  # the last commit is handed over: nothing more may be written

    # -- the writer side: synchronous, no I/O ------------------------------------------------------------

    @property
    def data_bytes(self) -> int:
        """Audio bytes written so far (stored, queued or buffered)."""
        return self._handed + self._pos

    @property
    def frames(self) -> int:
        return self.data_bytes // FRAME_BYTES

    @property
    def failure(self) -> str | None:
        return self.stats.failure

    @property
    def pending_bytes(self) -> int:
        """Bytes held in memory for this stream: the buffer's content and what waits for the storage."""
        return self._pending + self._pos

    def frame(self, pcm: bytes) -> None:
        """Append one 20 ms frame (exactly FRAME_BYTES)."""
        if self.stats.failure is not None or self.final:
            self.stats.lost_frames += 1
            return
        pos = self._pos
        end = pos + FRAME_BYTES
        self._buf[pos:end] = pcm  # the caller guarantees the length: a longer pcm would grow the buffer
        self._pos = end
        if end == self._cap:
            self._cut()

    def silence(self, frames: int) -> None:
        """Append `frames` frames of silence."""
        if frames <= 0:
            return
        if self.stats.failure is not None or self.final:
            self.stats.lost_frames += frames
            return
        left = frames * FRAME_BYTES
        zeros = memoryview(_ZEROS)
        while left and self.stats.failure is None:
            take = min(left, self._cap - self._pos, len(_ZEROS))
            self._buf[self._pos:self._pos + take] = zeros[:take]
            self._pos += take
            left -= take
            if self._pos == self._cap:
                self._cut()
        if left:
            self.stats.lost_frames += left // FRAME_BYTES

    def commit(self, metadata: Mapping[str, str], *, final: bool = False) -> None:
        """Hand over what is buffered and a commit with `metadata` (the state as of now). `final`: the last."""
        if self.stats.failure is not None or self.final:
            return
        if self._pos:
            self._cut()
            if self.stats.failure is not None:
                return
        self.final = final
        self._ops.append(_Commit(self._blocks, self._handed, dict(metadata), final))
        self._queued_commits += 1
        self._kick()

    def _cut(self) -> None:
        size = self._pos
        if self._handed + size > MAX_DATA_BYTES or self._blocks >= MAX_BLOCKS:
            self._fail("the recording reached the largest WAV file (4 GiB) or blob (50,000 blocks)")
            return
        if self._pending + size > self.policy.max_pending_bytes:
            self._fail(f"the storage fell behind by more than {self.policy.max_pending_bytes} bytes")
            return
        with memoryview(self._buf) as view:
            data = bytes(view[:size])
        self._ops.append(_Stage(self._blocks, self._handed, data))
        self._blocks += 1
        self._handed += size
        self._pending += size
        self._pos = 0
        self._kick()

    def _kick(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"wavstream {self.name}")

    # -- the storage side: the background task -----------------------------------------------------------

    async def drain(self) -> None:
        """Wait until everything handed over so far is stored (or the stream has failed)."""
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)

    async def abandon(self) -> None:
        """Stop at once, storing nothing more (the worker is going down hard; the sweep will mark it)."""
        self.final = True
        self._ops.clear()
        self._pending = 0
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        try:
            while self._ops and self.stats.failure is None:
                op = self._ops[0]
                if isinstance(op, _Commit) and not op.final and self._queued_commits > 1:
                    self.stats.skipped_commits += 1  # a later commit in the queue covers everything this one does
                elif not await self._attempt(op):
                    return
                self._ops.popleft()
                if isinstance(op, _Stage):
                    self._pending -= len(op.data)
                else:
                    self._queued_commits -= 1
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug, not the storage: stop and say so rather than lose it silently
            log.exception("recording %s: the background flush failed", self.name)
            self._fail(f"the flush failed unexpectedly: {type(exc).__name__}: {exc}")

    async def _attempt(self, op: _Stage | _Commit) -> bool:
        policy = self.policy
        error: BaseException | None = None
        for attempt in range(1, policy.attempts + 1):
            if attempt > 1:
                self.stats.retries += 1
                await asyncio.sleep(policy.delay(attempt - 1))
            try:
                await asyncio.wait_for(self._do(op), policy.attempt_timeout)
                return True
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # storage errors of every kind: HTTP, transport, OS, timeout
                error = exc
                log.warning("recording %s: %s failed (attempt %d of %d): %s", self.name,
                            "commit" if isinstance(op, _Commit) else f"block {op.index}", attempt, policy.attempts,
                            _describe(exc))
        what = "commit" if isinstance(op, _Commit) else f"staging block {op.index}"
        self._fail(f"{what} failed {policy.attempts} times: {_describe(error)}")
        await self._mark_partial()
        return False

    async def _do(self, op: _Stage | _Commit) -> None:
        if self._target is None:
            self._target = await self._open_target()
            self.name = self._target.name
        if isinstance(op, _Stage):
            await self._target.stage(op.index, op.offset, op.data)
            self.stats.staged_bytes += len(op.data)
        else:
            await self._target.commit(op.blocks, wav_header(op.data_bytes), op.metadata)
            self.stats.committed_bytes = op.data_bytes
            self.stats.committed_metadata = op.metadata
            self.stats.commits += 1

    async def _mark_partial(self) -> None:
        """Best effort: the committed blob says partial and why (the startup sweep catches it otherwise)."""
        committed = self.stats.committed_metadata
        if self._target is None or not committed:
            return
        metadata = {**committed, "status": "partial", "reason": _ascii(self.stats.failure or "flush failed")}
        try:
            await asyncio.wait_for(self._target.mark(metadata), self.policy.attempt_timeout)
            self.stats.committed_metadata = metadata
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("recording %s: marking it partial failed too: %s", self.name, _describe(exc))

    def _fail(self, reason: str) -> None:
        """Stop: everything after the last commit is lost (and counted), and nothing more is taken."""
        if self.stats.failure is not None:
            return
        lost = (self.data_bytes - self.stats.committed_bytes) // FRAME_BYTES
        self.stats.failure = reason
        self.stats.lost_frames += lost
        self._ops.clear()
        self._queued_commits = 0
        self._pending = 0
        self._pos = 0
        log.error("recording %s stopped: %s (%d frames after the last commit not stored)", self.name, reason, lost)
        if self._on_failure is not None:
            self._on_failure(self)


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return "unknown error"
    if isinstance(exc, TimeoutError):
        return "timed out"
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


def _ascii(text: str) -> str:
    return text.encode("ascii", "replace").decode("ascii")
