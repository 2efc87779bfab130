"""The compliance recorder against real storage: Azurite (Block Blob staging, block lists, metadata) and the
folder sink. What is stored is read back and checked as audio: one WAV per participant, each holding that
participant's tone where they spoke and silence where they did not, on the call's timeline."""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
import tracemalloc
import uuid
import wave
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from azure.storage.blob.aio import BlobServiceClient, ContainerClient

from calling.credentials import storage_credential
from calling.identities import teams_user
from mediavm.engine import FRAME_BYTES, AudioFrame
from mediavm.recorder import CallRecorder, sweep
from mediavm.sinks import BlobSink, FolderSink, RecordingSink, recording_sink
from tests import recorder_child
from tests.azurite import azurite
from tests.test_blob_storage import SETTINGS
from tests.tones import dominant, tone_frame

ROOT = Path(__file__).resolve().parent.parent
TENANT = "22222222-2222-4222-8222-222222222222"
SUBJECT = teams_user("33333333-3333-4333-8333-333333333333", display_name="Ada Recorded", tenant_id=TENANT)
T0 = datetime(2026, 3, 3, 18, 0, 5, tzinfo=UTC)
TONES = (440.0, 880.0, 1320.0)
SILENCE = bytes(FRAME_BYTES)


def participant(pid: str, user: str, name: str, source: int | str, *, kind: str = "user") -> dict[str, Any]:
    return {"@odata.type": "#microsoft.graph.participant", "id": pid,
            "info": {"identity": {kind: {"@odata.type": "#microsoft.graph.identity", "id": user,
                                         "displayName": name, "tenantId": TENANT}}},
            "mediaStreams": [{"mediaType": "video", "sourceId": "900", "direction": "sendReceive"},
                             {"mediaType": "audio", "sourceId": str(source), "direction": "sendReceive",
                              "serverMuted": False}],
            "isMuted": False, "isInLobby": False}


@dataclass(frozen=True)
class Voice:
    source_id: int
    participant_id: str
    user_id: str
    name: str
    frequency: float
    spans: tuple[tuple[int, int], ...]  # slots [start, end) in which they speak

    def speaks(self, slot: int) -> bool:
        return any(a <= slot < b for a, b in self.spans)


VOICES = (
    Voice(11, "p-ada", "44444444-0000-4000-8000-000000000001", "Ada", 440.0, ((0, 200), (400, 600))),
    Voice(22, "p-bo", "44444444-0000-4000-8000-000000000002", "Bo", 880.0, ((100, 300), (650, 750))),
    Voice(33, "p-cy", "44444444-0000-4000-8000-000000000003", "Cy", 1320.0, ((300, 450),)),
)
CALL_TICKS = 750  # 15 s: one commit mid-call (10 s), then the end


def meeting_tick(slot: int) -> list[AudioFrame]:
    # Overlapping speakers (Ada and Bo at 100-199), a tick of nobody (600-649), a late joiner (Cy at 300).
    return [AudioFrame(v.source_id, slot * 200_000, tone_frame(v.frequency, slot)) for v in VOICES if v.speaks(slot)]


class Storage:
    """One sink kind with a way to read back what it stored."""

    def __init__(self, sink: RecordingSink, kind: str, *, container_url: str | None = None,
                 folder: Path | None = None) -> None:
        self.sink, self.kind, self.container_url, self.folder = sink, kind, container_url, folder

    async def names(self, prefix: str = "") -> list[str]:
        if self.folder is not None:
            found = (p.relative_to(self.folder).as_posix() for p in self.folder.glob("**/*.wav"))
            return sorted(name for name in found if name.startswith(prefix))
        async with self._container() as container:
            return sorted([b.name async for b in container.list_blobs(name_starts_with=prefix)])

    async def read(self, name: str) -> tuple[bytes, dict[str, str], str | None]:
        """The stored bytes, metadata and content type."""
        if self.folder is not None:
            path = self.folder / name
            return path.read_bytes(), json.loads(path.with_suffix(".json").read_text()), "audio/wav"
        async with self._container() as container:
            blob = container.get_blob_client(name)
            props = await blob.get_blob_properties()
            data = await (await blob.download_blob()).readall()
            return data, dict(props.metadata), props.content_settings.content_type

    async def head(self, name: str) -> tuple[bytes, int, dict[str, str]]:
        """The first 44 bytes, the size and the metadata, without reading the whole file."""
        if self.folder is not None:
            path = self.folder / name
            with path.open("rb") as file:
                return file.read(44), path.stat().st_size, json.loads(path.with_suffix(".json").read_text())
        async with self._container() as container:
            blob = container.get_blob_client(name)
            props = await blob.get_blob_properties()
            first = await (await blob.download_blob(offset=0, length=44)).readall()
            return first, props.size, dict(props.metadata)

    def _container(self) -> ContainerClient:
        assert self.container_url is not None
        return ContainerClient.from_container_url(self.container_url,
                                                  credential=storage_credential(self.container_url, SETTINGS))


@pytest.fixture(scope="module")
def account() -> Iterator[str]:
    with azurite() as url:
        yield url


@pytest.fixture(params=["blob", "folder"])
async def storage(request: pytest.FixtureRequest, account: str, tmp_path: Path) -> AsyncIterator[Storage]:
    """A fresh container in Azurite (or a fresh folder) per test."""
    if request.param == "folder":
        yield Storage(FolderSink(tmp_path / "recordings"), "folder", folder=tmp_path / "recordings")
        return
    name = f"compliance-{uuid.uuid4().hex[:12]}"
    async with BlobServiceClient(account, credential=storage_credential(account, SETTINGS)) as service:
        await service.create_container(name)
    url = f"{account}/{name}"
    sink = BlobSink(url, storage_credential(url, SETTINGS))
    try:
        yield Storage(sink, "blob", container_url=url)
    finally:
        await sink.close()


def _clock() -> Any:
    moments = iter(T0 + timedelta(milliseconds=n) for n in range(10**9))
    return lambda: next(moments)


@dataclass(frozen=True)
class Wav:
    channels: int
    width: int
    rate: int
    frames: int  # samples, as the header says
    pcm: bytes  # what the header's data chunk holds


def _wav(data: bytes) -> Wav:
    """Parsed with the standard library: a file it reads is a valid WAV."""
    with wave.open(io.BytesIO(data)) as reader:
        return Wav(reader.getnchannels(), reader.getsampwidth(), reader.getframerate(), reader.getnframes(),
                   reader.readframes(reader.getnframes()))


async def test_each_participant_gets_a_wav_of_their_own_voice_on_the_calls_timeline(storage: Storage) -> None:
    recorder = CallRecorder(storage.sink, call_id="meeting-1", tenant_id=TENANT, subject=SUBJECT, clock=_clock())
    recorder.participants([participant(v.participant_id, v.user_id, v.name, v.source_id) for v in VOICES])
    for slot in range(CALL_TICKS):
        recorder.feed(meeting_tick(slot))
        await asyncio.sleep(0)
    mid = recorder.report()
    await recorder.close()
    report = recorder.report()
    assert mid.status == "recording" and report.status == "complete" and not report.failed
    assert report.frames_received == sum(b - a for v in VOICES for a, b in v.spans) and report.frames_lost == 0

    folder = "compliance/33333333-3333-4333-8333-333333333333/2026-03-03/meeting-1/"
    assert await storage.names("compliance/") == sorted(f"{folder}{v.participant_id}.wav" for v in VOICES)
    for voice in VOICES:
        data, metadata, content_type = await storage.read(f"{folder}{voice.participant_id}.wav")
        wav = _wav(data)
        pcm = wav.pcm
        first = voice.spans[0][0]
        assert (wav.channels, wav.width, wav.rate) == (1, 2, 16_000)
        assert wav.frames * 2 == len(pcm) == len(data) - 44  # the header's sizes are the file's
        assert content_type == "audio/wav"
        # The file runs from their first frame to the call's end, one 20 ms frame per tick.
        assert len(pcm) == (CALL_TICKS - first) * FRAME_BYTES
        frames = [pcm[i:i + FRAME_BYTES] for i in range(0, len(pcm), FRAME_BYTES)]
        for slot, frame in enumerate(frames, start=first):
            if voice.speaks(slot):
                assert frame == tone_frame(voice.frequency, slot), (voice.name, slot)
            else:
                assert frame == SILENCE, (voice.name, slot)
        for a, b in voice.spans:  # what they said is their tone, by far
            frequency, margin = dominant(b"".join(frames[a - first:b - first]), TONES)
            assert frequency == voice.frequency and margin > 100, (voice.name, frequency, margin)
        speech = sum(b - a for a, b in voice.spans)
        start = T0 + timedelta(milliseconds=first * 20)
        assert metadata == {
            "call_id": "meeting-1", "tenant_id": TENANT, "subject_id": SUBJECT.id, "subject_kind": "user",
            "subject_name": "Ada Recorded", "participant_id": voice.participant_id, "identity_kind": "user",
            "identity_id": voice.user_id, "identity_tenant_id": TENANT, "display_name": voice.name,
            "source_id": str(voice.source_id), "call_start": "2026-03-03T18:00:05.000+00:00",
            "start": start.isoformat(timespec="milliseconds"),
            "end": (T0 + timedelta(milliseconds=CALL_TICKS * 20)).isoformat(timespec="milliseconds"),
            "offset": f"{first * 0.02:.2f}", "duration": f"{(CALL_TICKS - first) * 0.02:.2f}",
            "frames": str(CALL_TICKS - first), "speech_frames": str(speech), "status": "complete",
            "updated": metadata["updated"], "format": "audio/wav; pcm_s16le; 16000 Hz; mono"}
        assert datetime.fromisoformat(metadata["updated"]) >= T0


async def test_a_crashed_worker_leaves_a_valid_wav_up_to_its_last_commit_and_the_sweep_marks_it_partial(
        storage: Storage, tmp_path: Path) -> None:
    where = storage.sink.where
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.recorder_child", storage.kind, where, cwd=ROOT, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert child.stdout is not None and child.stderr is not None
        line = (await asyncio.wait_for(child.stdout.readline(), 60)).decode()
        if not line.startswith("committed "):
            raise AssertionError(f"the child said {line!r}: {(await child.stderr.read()).decode()[-2000:]}")
        committed = int(line.split()[1])
    finally:
        if child.returncode is None:
            child.kill()  # SIGKILL: no close, no flush, no cleanup
        await child.wait()
    [name] = await storage.names(f"compliance/{recorder_child.SUBJECT.id}/")
    assert name.endswith(f"/{recorder_child.CALL_ID}/p-crash.wav")
    data, metadata, _ = await storage.read(name)
    wav = _wav(data)
    frames = wav.frames
    # At least what it had committed when it said so; whatever was committed last, whole and consistent.
    assert frames >= committed > 0 and frames % 320 == 0
    assert metadata["status"] == "recording" and metadata["frames"] == str(frames // 320)
    assert metadata["duration"] == f"{frames / 16_000:.2f}" and metadata["display_name"] == "Crash Test"
    if storage.kind == "blob":  # the header is the blob's own size, not what was staged after it
        assert len(data) == 44 + frames * 2
    frequency, margin = dominant(wav.pcm, TONES)
    assert frequency == 440.0 and margin > 100

    # The startup sweep: a fresh one is left alone (a live worker may own it), a stale one becomes partial.
    assert await sweep(storage.sink, stale_after=timedelta(hours=1)) == []
    assert await sweep(storage.sink, stale_after=timedelta(0)) == [name]
    _, swept, _ = await storage.read(name)
    assert swept["status"] == "partial" and "sweep" in swept["reason"]
    assert {k: v for k, v in swept.items() if k not in ("status", "reason", "updated")} == \
        {k: v for k, v in metadata.items() if k not in ("status", "updated")}
    assert await sweep(storage.sink, stale_after=timedelta(0)) == []  # partial is final: not swept again


async def test_a_completed_recording_is_not_swept(storage: Storage) -> None:
    recorder = CallRecorder(storage.sink, call_id="done-1", tenant_id=TENANT, subject=None)
    for slot in range(60):
        recorder.feed([AudioFrame(9, slot * 200_000, tone_frame(880.0, slot))])
    await recorder.close()
    [name] = await storage.names(f"compliance/{TENANT}/")  # no recorded user: the tenant's folder
    assert name.endswith("/done-1/source-9.wav")
    assert name not in await sweep(storage.sink, stale_after=timedelta(0))
    assert (await storage.read(name))[1]["status"] == "complete"


async def test_an_unmapped_source_is_recorded_and_named_once_the_roster_comes(storage: Storage) -> None:
    recorder = CallRecorder(storage.sink, call_id="late-roster", tenant_id=TENANT, subject=SUBJECT,
                            commit_seconds=1.0)
    for slot in range(100):  # 2 s before the roster names source 77: two commits without an identity
        recorder.feed([AudioFrame(77, slot * 200_000, tone_frame(1320.0, slot))])
        await asyncio.sleep(0)
    await recorder.drain()
    [name] = await storage.names("compliance/")
    assert name.endswith("/late-roster/source-77.wav")
    before = (await storage.read(name))[1]
    assert "participant_id" not in before and before["source_id"] == "77" and before["status"] == "recording"

    recorder.participants([participant("p-late", "u-late", "Late Comer", "77", kind="guest")])
    for slot in range(100, 150):
        recorder.feed([AudioFrame(77, slot * 200_000, tone_frame(1320.0, slot))])
    await recorder.close()
    assert await storage.names("compliance/") == [name]  # the same file: the audio before the roster is in it
    data, metadata, _ = await storage.read(name)
    wav = _wav(data)
    assert wav.frames == 150 * 320 and dominant(wav.pcm, TONES)[0] == 1320.0
    assert (metadata["participant_id"], metadata["identity_kind"], metadata["identity_id"],
            metadata["display_name"], metadata["status"]) == ("p-late", "guest", "u-late", "Late Comer", "complete")


async def test_display_names_and_ids_reach_metadata_as_ascii_and_come_back_whole(storage: Storage) -> None:
    names = {1: "Zoë Ünal-Łukasz 李雷", 2: " 100% sure\ttab ", 3: "😀 emoji"}
    recorder = CallRecorder(storage.sink, call_id="names-1", tenant_id=TENANT,
                            subject=teams_user("s-1", display_name="Søren Ø"))
    recorder.participants([participant(f"p-{n}", f"+4930 {n}" if n == 3 else f"u-{n}", name, n,
                                       kind="phone" if n == 3 else "user") for n, name in names.items()])
    for slot in range(10):
        recorder.feed([AudioFrame(n, slot * 200_000, tone_frame(440.0, slot)) for n in names])
    await recorder.close()
    assert not recorder.report().failed
    stored = await storage.names("compliance/")
    assert len(stored) == 3
    for name in stored:
        _, metadata, _ = await storage.read(name)
        assert all(v.isascii() and v.isprintable() and v == v.strip() for v in metadata.values()), metadata
        source = int(metadata["source_id"])
        assert unquote(metadata["display_name"]) == names[source]
        assert unquote(metadata["subject_name"]) == "Søren Ø"
    phone = next(n for n in stored if "p-3" in n)
    assert unquote((await storage.read(phone))[1]["identity_id"]) == "+4930 3"


async def test_memory_stays_bounded_over_a_30_minute_call_fed_as_fast_as_the_storage_takes_it(
        storage: Storage) -> None:
    frames = 30 * 60 * 50  # 30 minutes: 57.6 MB of audio
    tone = [tone_frame(440.0, n) for n in range(50)]
    recorder = CallRecorder(storage.sink, call_id="long-1", tenant_id=TENANT, subject=SUBJECT)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        for slot in range(frames):
            recorder.feed([AudioFrame(3, slot * 200_000, tone[slot % 50])])
            if slot % 500 == 499:  # every commit (10 s of the call) let the storage catch up
                await recorder.drain()
        await recorder.close()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    audio = frames * FRAME_BYTES
    report = recorder.report()
    assert report.bytes_committed == audio and report.frames_lost == 0 and report.commits >= frames // 500
    assert peak < 4 * 1024 * 1024, f"peak {peak} bytes for {audio} bytes of audio (a 14th of it at most)"
    [name] = await storage.names("compliance/")
    header, size, metadata = await storage.head(name)
    assert size == 44 + audio
    wav = _wav(header)  # the header alone: wave reads the sizes from it
    assert wav.frames == frames * 320 and wav.rate == 16_000
    assert metadata["duration"] == "1800.00" and metadata["status"] == "complete"


def test_the_settings_pick_the_sink_as_for_voicemails(tmp_path: Path) -> None:
    from dataclasses import replace

    assert recording_sink(SETTINGS) is None
    folder = recording_sink(replace(SETTINGS, recordings_dir=str(tmp_path)))
    assert isinstance(folder, FolderSink) and folder.folder == tmp_path
    url = "http://127.0.0.1:10000/devstoreaccount1/recordings"
    blob = recording_sink(replace(SETTINGS, recordings_dir=str(tmp_path), recordings_container_url=url))
    assert isinstance(blob, BlobSink) and blob.where == url
