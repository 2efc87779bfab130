"""The compliance recorder: a call's unmixed audio as one WAV per participant, streamed to storage.

The worker hands it what the media engine gives it (mediavm/engine.py): `feed(tick)` with each 20 ms tick's
unmixed frames, and `participants(roster)` whenever Graph sends the roster, which maps media source ids
(MSIs) to people (mediavm/roster.py). Both are synchronous and cheap: they run on the event loop; storage
happens in background tasks (mediavm/wavstream.py) that the recorder only hands blocks to.

The timeline. Tick n of the call (counted from the first tick fed, the call's start) is slot n, 20 ms long.
A participant's file starts at the slot of their first frame (`offset` in its metadata says where that is
in the call) and has one frame per slot from there: their audio where they spoke, silence where they did
not, so a sample's place in any file, plus the file's offset, is its time in the call. Files do not start
at the call's start: a late joiner of a long meeting would otherwise get hours of stored silence. When
frames carry the library's timestamps (100 ns ticks), a tick that arrives further ahead in time than the
ticks counted (the engine dropped ticks for a slow consumer) moves the timeline on by the ticks missed, so
every file gets silence for them rather than being shortened (`gap_frames` counts them; a jump of over a
minute is taken for a clock change, not a gap).

Every `commit_seconds` of the call (10 s by default) each file is padded with silence up to now and
committed: its stored state is then a valid WAV of the call so far, with metadata saying `recording`.
`close()` commits the end `complete`; `close(complete=False, reason=...)` `partial`, with the reason the
worker gives (media stopped, shutting down). A file whose storage failed (after bounded retries) stays at
its last commit, `partial`; `failure`, `on_failure` and `report()` say what was lost. A new file is
committed at its first frame, so it exists (for the startup sweep too) from then on. A participant who
leaves the roster has their file closed `complete` then; should that MSI speak again, it gets a new file
(`-2`). Names:
`compliance/<recorded user, or tenant>/<YYYY-MM-DD>/<call id>/<participant id, or source-<MSI>>.wav`,
each part checked and replaced by a hash when it is anything but a plain id. See docs/media.md.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from mediavm.engine import FRAME_BYTES, FRAME_MS, SAMPLE_RATE, TICKS_PER_MS, AudioFrame
from mediavm.roster import Speaker, audio_sources, participant_ids
from mediavm.sinks import STALE_AFTER, RecordingSink, ascii_value
from mediavm.wavstream import FlushPolicy, WavStream

if TYPE_CHECKING:
    from calling.events import ParticipantState
    from calling.identities import Party

log = logging.getLogger("mediavm.recorder")

PREFIX = "compliance"
COMMIT_SECONDS = 10.0
FRAME_TICKS = FRAME_MS * TICKS_PER_MS  # a frame in the library's 100 ns ticks
MAX_GAP_FRAMES = 60_000 // FRAME_MS  # a timestamp further ahead than a minute is a clock change, not lost ticks
_BEHIND_FRAMES = 50  # timestamps this far behind the ticks counted: the engine's clock restarted; re-anchor
NAME_LIMIT = 200  # characters of a display name kept in metadata (Entra allows 256)
FORMAT = f"audio/wav; pcm_s16le; {SAMPLE_RATE} Hz; mono"
_PLAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")

Status = Literal["recording", "complete", "partial"]


def path_segment(value: str | None, fallback: str = "unknown") -> str:
    """`value` as one segment of a blob name: itself when it is a plain id (a GUID, letters, digits, `._-`,
    at most 64), else `h-` and a hash of it, so no client text (a phone number, `..`, a slash) reaches a
    path. None or empty: `fallback`."""
    if not value:
        return fallback
    if _PLAIN.fullmatch(value):
        return value
    return "h-" + hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def call_folder(call_id: str, tenant_id: str, subject_id: str | None, started: datetime) -> str:
    """`compliance/<owner>/<date>/<call>/`: the owner is the recorded user, or the tenant without one."""
    owner = path_segment(subject_id) if subject_id else path_segment(tenant_id, "unknown-tenant")
    return f"{PREFIX}/{owner}/{started.astimezone(UTC).date().isoformat()}/{path_segment(call_id)}/"


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


class _Track:
    """One participant's file in the making."""

    __slots__ = ("first_slot", "next_slot", "silent", "source_id", "speaker", "status", "stream")

    def __init__(self, stream: WavStream, source_id: int, speaker: Speaker | None, slot: int) -> None:
        self.stream = stream
        self.source_id = source_id
        self.speaker = speaker
        self.first_slot = slot
        self.next_slot = slot  # the slot the file's next frame stands for
        self.silent = 0  # frames of silence written into it
        self.status: Status = "recording"


@dataclass(frozen=True)
class TrackReport:
    name: str
    source_id: int
    participant_id: str | None
    status: Status
    offset_s: float  # where the file starts in the call
    frames: int  # in the file: speech and silence
    speech_frames: int
    committed_frames: int  # what a crash now would leave
    staged_bytes: int
    committed_bytes: int
    commits: int
    retries: int
    lost_frames: int
    pending_bytes: int
    failure: str | None


@dataclass(frozen=True)
class RecorderReport:
    """What the worker needs for updateRecordingStatus and telemetry."""

    call_id: str
    status: Status  # recording (open), complete, or partial (some file lost audio or was closed partial)
    ticks: int  # slots of the call so far
    frames_received: int
    frames_lost: int  # not stored (after a storage failure), counted exactly
    late_frames: int  # frames for a slot their file had passed (a second frame of one MSI in one tick)
    gap_frames: int  # slots the engine dropped (seen in its timestamps), filled with silence
    bytes_written: int  # audio bytes handed to the files (speech and silence)
    bytes_committed: int  # in the last commit of every file
    pending_bytes: int  # in memory now: buffers and blocks the storage has not taken yet
    commits: int
    retries: int
    failures: tuple[str, ...]  # "<name>: <reason>", one per file that failed
    tracks: tuple[TrackReport, ...]

    @property
    def failed(self) -> bool:
        """Some audio was lost: the worker should tell Graph (updateRecordingStatus failed) and log it."""
        return bool(self.failures)

    def as_json(self) -> dict[str, Any]:
        document = asdict(self)
        document["failed"] = self.failed
        return document


class CallRecorder:
    """Records one call. `subject` is the recorded user (the compliance policy's subject): with it the files
    go under that user's folder; `on_failure(name, reason)` is called once for each file whose storage fails.
    `feed` and `participants` must be called on the event loop that should run the background flushes."""

    def __init__(self, sink: RecordingSink, *, call_id: str, tenant_id: str, subject: Party | Speaker | None = None,
                 commit_seconds: float = COMMIT_SECONDS, policy: FlushPolicy | None = None,
                 follow_timestamps: bool = True, clock: Callable[[], datetime] | None = None,
                 on_failure: Callable[[str, str], None] | None = None) -> None:
        if commit_seconds <= 0:
            raise ValueError("commit_seconds must be positive")
        self.sink = sink
        self.call_id = call_id
        self.tenant_id = tenant_id
        self.subject = subject
        self.policy = policy or FlushPolicy()
        self._commit_slots = max(1, round(commit_seconds * 1000 / FRAME_MS))
        self._follow = follow_timestamps
        self._clock = clock or (lambda: datetime.now(UTC))
        self._on_failure = on_failure
        self._start: datetime | None = None
        self._folder = ""
        self._slot = 0
        self._commit_at = self._commit_slots
        self._tracks: dict[int, _Track] = {}  # MSI -> its open file
        self._done: list[_Track] = []  # closed files (the participant left, or the call ended)
        self._opened: list[_Track] = []  # files opened in this tick: committed at its end
        self._speakers: dict[int, Speaker] = {}  # MSI -> who, from the roster
        self._names: set[str] = set()
        self._anchor: tuple[int, int] | None = None  # (timestamp, slot) the timeline follows
        self._frames = 0
        self._late = 0
        self._gap_frames = 0
        self._clock_jumps = 0
        self._closed = False
        self._status: Status = "recording"
        self._reason: str | None = None
        self._fed_after_close = 0
        self._failure: str | None = None

    # -- what the worker calls, on the loop, every 20 ms and on roster changes ---------------------------

    def feed(self, tick: list[AudioFrame]) -> None:
        """One 20 ms tick: the unmixed frame of each active speaker (empty: nobody spoke)."""
        if self._closed:
            self._fed_after_close += 1
            return
        slot = self._slot
        if self._start is None:
            self._begin()
        if tick:
            if self._follow:
                slot = self._follow_timestamp(tick[0].timestamp, slot)
            tracks = self._tracks
            for frame in tick:
                track = tracks.get(frame.source_id)
                if track is None:
                    track = self._open(frame.source_id, slot)
                    self._opened.append(track)
                gap = slot - track.next_slot
                if gap:
                    if gap < 0:
                        self._late += 1
                        continue
                    track.stream.silence(gap)
                    track.silent += gap
                pcm = frame.pcm
                track.stream.frame(pcm if len(pcm) == FRAME_BYTES else pcm[:FRAME_BYTES].ljust(FRAME_BYTES, b"\0"))
                track.next_slot = slot + 1
            self._frames += len(tick)
        slot += 1
        self._slot = slot
        if self._opened:  # a new file is committed at once: it exists (for the sweep too) from its first frame
            for track in self._opened:
                if self._tracks.get(track.source_id) is track:
                    self._commit(track, "recording")
            self._opened.clear()
        if slot >= self._commit_at:
            self._commit_at = slot + self._commit_slots
            for track in self._tracks.values():
                self._commit(track, "recording")

    def participants(self, roster: Iterable[Mapping[str, Any] | ParticipantState], *, whole: bool = True) -> None:
        """The call's roster (Graph participant objects, or the core's ParticipantState). A frame from an MSI
        the roster does not name yet is recorded under its MSI and gets its identity here. `whole`: this is the
        whole roster (Graph's default), so a participant missing from it has left and their file is closed."""
        roster = list(roster)
        for source_id, who in audio_sources(roster).items():
            self._speakers[source_id] = who
            track = self._tracks.get(source_id)
            if track is None:
                continue
            if track.speaker is not None and track.speaker.participant_id != who.participant_id:
                log.warning("call %s: source %d now names participant %s, not %s: a new file begins", self.call_id,
                            source_id, who.participant_id, track.speaker.participant_id)
                self._finish(track, "complete", None)
            else:
                track.speaker = who  # an unmapped MSI is mapped, or a display name changed: the next commit says so
        if whole and not self._closed:
            present = participant_ids(roster)
            for track in list(self._tracks.values()):
                pid = track.speaker.participant_id if track.speaker is not None else None
                if pid is not None and pid not in present:
                    self._finish(track, "complete", None)

    @property
    def failure(self) -> str | None:
        """Why audio is being lost, once a file's storage has failed ("<name>: <reason>"); None until then."""
        return self._failure

    async def close(self, *, complete: bool = True, reason: str | None = None) -> None:
        """End the recording: commit every file's end and wait for the storage (`report()` then says how it
        went). `complete`: the call ended normally; otherwise the files end `partial`, with `reason` (the
        media stopped, the worker is shutting down)."""
        if not self._closed:
            self._closed = True
            status: Status = "complete" if complete else "partial"
            if not complete and not reason:
                reason = "the recording stopped before the call ended"
            self._status, self._reason = status, reason
            for track in list(self._tracks.values()):
                self._finish(track, status, reason)
        await self.drain()

    async def drain(self) -> None:
        """Wait until every block and commit handed over so far is stored (or has failed)."""
        await asyncio.gather(*(track.stream.drain() for track in [*self._tracks.values(), *self._done]))

    async def abandon(self) -> None:
        """Stop without storing anything more (a hard stop): the files keep their last commit, `recording`,
        until the next startup sweep marks them partial."""
        self._closed = True
        self._status, self._reason = "partial", "abandoned"
        await asyncio.gather(*(track.stream.abandon() for track in [*self._tracks.values(), *self._done]))

    def report(self) -> RecorderReport:
        tracks = [*self._done, *self._tracks.values()]
        reports = tuple(self._track_report(track) for track in tracks)
        failures = tuple(f"{t.name}: {t.failure}" for t in reports if t.failure)
        if not self._closed:
            status: Status = "recording"
        elif failures or self._status == "partial" or any(t.status == "partial" for t in reports):
            status = "partial"
        else:
            status = "complete"
        return RecorderReport(
            call_id=self.call_id, status=status, ticks=self._slot, frames_received=self._frames,
            frames_lost=sum(t.lost_frames for t in reports), late_frames=self._late, gap_frames=self._gap_frames,
            bytes_written=sum(t.frames for t in reports) * FRAME_BYTES,
            bytes_committed=sum(t.committed_bytes for t in reports),
            pending_bytes=sum(t.pending_bytes for t in reports), commits=sum(t.commits for t in reports),
            retries=sum(t.retries for t in reports), failures=failures, tracks=reports)

    @property
    def folder(self) -> str:
        """Where this call's files go (known once the first tick is fed)."""
        return self._folder

    # -- inside ------------------------------------------------------------------------------------------

    def _begin(self) -> None:
        self._start = self._clock()
        subject_id = self.subject.id if self.subject is not None else None
        self._folder = call_folder(self.call_id, self.tenant_id, subject_id, self._start)

    def _follow_timestamp(self, timestamp: int, slot: int) -> int:
        """The slot this tick stands for, by its timestamp: later than counted when the engine dropped ticks."""
        anchor = self._anchor
        if anchor is None:
            self._anchor = (timestamp, slot)
            return slot
        expected = anchor[1] + (timestamp - anchor[0] + FRAME_TICKS // 2) // FRAME_TICKS
        if expected > slot:
            if expected - slot > MAX_GAP_FRAMES:
                self._clock_jumps += 1
                self._anchor = (timestamp, slot)
                return slot
            self._gap_frames += expected - slot
            return expected
        if expected < slot - _BEHIND_FRAMES:
            self._anchor = (timestamp, slot)
        return slot

    def _open(self, source_id: int, slot: int) -> _Track:
        who = self._speakers.get(source_id)
        base = path_segment(who.participant_id) if who is not None and who.participant_id else f"source-{source_id}"
        name, n = f"{self._folder}{base}.wav", 1
        while name in self._names:
            n += 1
            name = f"{self._folder}{base}-{n}.wav"
        self._names.add(name)
        target = name
        stream = WavStream(name, lambda: self.sink.open(target), policy=self.policy, on_failure=self._stream_failed)
        track = _Track(stream, source_id, who, slot)
        self._tracks[source_id] = track
        return track

    def _pad(self, track: _Track) -> None:
        gap = self._slot - track.next_slot
        if gap > 0:
            track.stream.silence(gap)
            track.silent += gap
            track.next_slot = self._slot

    def _commit(self, track: _Track, status: Status, reason: str | None = None, *, final: bool = False) -> None:
        self._pad(track)
        track.stream.commit(self._metadata(track, status, reason), final=final)

    def _finish(self, track: _Track, status: Status, reason: str | None) -> None:
        if self._tracks.get(track.source_id) is track:
            del self._tracks[track.source_id]
        track.status = "partial" if track.stream.failure else status
        self._commit(track, track.status, reason, final=True)
        self._done.append(track)

    def _stream_failed(self, stream: WavStream) -> None:
        for track in [*self._tracks.values(), *self._done]:
            if track.stream is stream:
                track.status = "partial"
        reason = stream.failure or "failed"
        if self._failure is None:
            self._failure = f"{stream.name}: {reason}"
        if self._on_failure is not None:
            self._on_failure(stream.name, reason)

    def _metadata(self, track: _Track, status: Status, reason: str | None) -> dict[str, str]:
        assert self._start is not None
        frames = track.stream.frames
        start = self._start + timedelta(milliseconds=track.first_slot * FRAME_MS)
        who, subject = track.speaker, self.subject
        facts: dict[str, str | None] = {
            "call_id": self.call_id,
            "tenant_id": self.tenant_id,
            "subject_id": subject.id if subject else None,
            "subject_kind": subject.kind if subject else None,
            "subject_name": subject.display_name if subject else None,
            "participant_id": who.participant_id if who else None,
            "identity_kind": who.kind if who else None,
            "identity_id": who.id if who else None,
            "identity_tenant_id": who.tenant_id if who else None,
            "display_name": who.display_name if who else None,
            "source_id": str(track.source_id),
            "call_start": _iso(self._start),
            "start": _iso(start),
            "end": _iso(start + timedelta(milliseconds=frames * FRAME_MS)),
            "offset": f"{track.first_slot * FRAME_MS / 1000:.2f}",
            "duration": f"{frames * FRAME_MS / 1000:.2f}",
            "frames": str(frames),
            "speech_frames": str(frames - track.silent),
            "status": status,
            "reason": reason,
            "updated": _iso(self._clock()),
            "format": FORMAT,
        }
        return {key: ascii_value(value, NAME_LIMIT if key.endswith("name") else 256)
                for key, value in facts.items() if value}

    def _track_report(self, track: _Track) -> TrackReport:
        stats, stream = track.stream.stats, track.stream
        return TrackReport(
            name=stream.name, source_id=track.source_id,
            participant_id=track.speaker.participant_id if track.speaker else None,
            status="partial" if stats.failure else track.status, offset_s=track.first_slot * FRAME_MS / 1000,
            frames=stream.frames, speech_frames=stream.frames - track.silent,
            committed_frames=stats.committed_bytes // FRAME_BYTES, staged_bytes=stats.staged_bytes,
            committed_bytes=stats.committed_bytes, commits=stats.commits, retries=stats.retries,
            lost_frames=stats.lost_frames, pending_bytes=stream.pending_bytes, failure=stats.failure)


async def sweep(sink: RecordingSink, stale_after: timedelta = STALE_AFTER, now: datetime | None = None) -> list[str]:
    """Compliance recordings a stopped worker left `recording`, unchanged for `stale_after`, become `partial`
    (at the worker's startup, then every `stale_after`: `keep_sweeping`)."""
    return await sink.sweep(f"{PREFIX}/", stale_after, now)


async def keep_sweeping(sink: RecordingSink, every: timedelta = STALE_AFTER,
                        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
    """Sweep every `every` while the worker runs: recordings of a worker that died and never came back are
    marked partial by the workers still up, not only by its own next start. Runs until cancelled."""
    while True:
        await sleep(every.total_seconds())
        try:
            await sweep(sink)
        except Exception:  # storage unreachable for a while: the next sweep tries again
            log.exception("sweep of %s failed", sink.where)

