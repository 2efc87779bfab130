"""The compliance recorder's behaviour where the storage misbehaves and the media is irregular, on an
in-memory sink with Block Blob's semantics (tests/memory_sink.py); Azurite and the folder sink are in
tests/test_recorder_blob.py. Also the roster (MSI -> who), blob names, ASCII metadata and the WAV header."""

from __future__ import annotations

import asyncio
import io
import subprocess
import sys
import wave
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest

from calling.notifications import parse_participant
from mediavm.engine import FRAME_BYTES, AudioFrame
from mediavm.recorder import CallRecorder, call_folder, path_segment
from mediavm.roster import Speaker, audio_sources, parse_source_id
from mediavm.sinks import ascii_value
from mediavm.wavstream import FlushPolicy, wav_header
from tests.memory_sink import MemorySink
from tests.tones import dominant, tone_frame

ROOT = Path(__file__).resolve().parent.parent
TENANT = "22222222-2222-4222-8222-222222222222"
FAST = FlushPolicy(retry_delays=(0.0,), attempt_timeout=0.5)
TONE = [tone_frame(440.0, n) for n in range(50)]
SILENCE = bytes(FRAME_BYTES)


def member(pid: str, source: Any, name: str = "Someone", kind: str = "user") -> dict[str, Any]:
    return {"id": pid, "info": {"identity": {kind: {"id": f"id-{pid}", "displayName": name}}},
            "mediaStreams": [{"mediaType": "audio", "sourceId": source}]}


def frame(source: int, slot: int, pcm: bytes | None = None) -> AudioFrame:
    return AudioFrame(source, slot * 200_000, TONE[slot % 50] if pcm is None else pcm)


def frames_of(content: bytes) -> list[bytes]:
    with wave.open(io.BytesIO(content)) as reader:
        pcm = reader.readframes(reader.getnframes())
    return [pcm[i:i + FRAME_BYTES] for i in range(0, len(pcm), FRAME_BYTES)]


async def feed(recorder: CallRecorder, ticks: range, make: Any) -> None:
    for slot in ticks:
        recorder.feed(make(slot))
        await asyncio.sleep(0)


# -- storage failures --------------------------------------------------------------------------------------


async def test_a_storage_hiccup_is_retried_and_loses_nothing() -> None:
    failures = iter([True, True])  # the first two attempts of block 1 fail

    def fault(op: str, name: str, index: int) -> None:
        if op == "stage" and index == 1 and next(failures, False):
            raise ConnectionError("connection reset")

    sink = MemorySink(fault)
    recorder = CallRecorder(sink, call_id="c-1", tenant_id=TENANT, commit_seconds=1.0, policy=FAST)
    await feed(recorder, range(150), lambda s: [frame(4, s)])
    await recorder.close()
    report = recorder.report()
    assert report.status == "complete" and not report.failed and recorder.failure is None
    assert report.retries == 2 and report.frames_lost == 0
    [blob] = sink.blobs.values()
    assert frames_of(blob.content) == [TONE[s % 50] for s in range(150)]
    assert blob.metadata["status"] == "complete"


async def test_a_flush_that_keeps_failing_stops_the_file_at_its_last_commit_marks_it_partial_and_says_so() -> None:
    broken = False

    def fault(op: str, name: str, index: int) -> None:
        if broken and op in ("stage", "commit"):
            raise OSError("the storage is gone")

    told: list[tuple[str, str]] = []
    sink = MemorySink(fault)
    recorder = CallRecorder(sink, call_id="c-2", tenant_id=TENANT, commit_seconds=1.0, policy=FAST,
                            on_failure=lambda name, why: told.append((name, why)))
    await feed(recorder, range(100), lambda s: [frame(4, s)])  # two commits: 100 frames stored
    await recorder.drain()
    broken = True
    await feed(recorder, range(100, 130), lambda s: [frame(4, s)])
    assert recorder.failure is None  # nothing handed to the storage yet since it broke
    await feed(recorder, range(130, 160), lambda s: [frame(4, s)])  # the commit at 150 fails
    await recorder.drain()
    assert recorder.failure is not None and "failed 4 times" in recorder.failure
    await feed(recorder, range(160, 170), lambda s: [frame(4, s)])  # refused, and counted
    await recorder.close()
    report = recorder.report()
    assert report.status == "partial" and report.failed
    assert report.frames_lost == 70  # frames 100-169: everything after the last commit, exactly
    [track] = report.tracks
    assert track.committed_frames == 100 and track.status == "partial" and track.retries == 3
    assert told == [(track.name, track.failure)]
    [blob] = sink.blobs.values()
    assert frames_of(blob.content) == [TONE[s % 50] for s in range(100)]  # the last commit, whole
    assert blob.metadata["status"] == "partial" and "failed 4 times" in unquote(blob.metadata["reason"])
    assert blob.metadata["frames"] == "100"


async def test_a_storage_that_stops_answering_cannot_make_the_recorder_hold_the_call_in_memory() -> None:
    sink = MemorySink()
    sink.hang = asyncio.Event()  # every storage operation waits forever
    policy = FlushPolicy(block_bytes=64 * FRAME_BYTES, max_pending_bytes=256 * FRAME_BYTES, attempts=1,
                         attempt_timeout=3600)
    recorder = CallRecorder(sink, call_id="c-3", tenant_id=TENANT, policy=policy)
    for slot in range(5000):  # 100 s of audio
        recorder.feed([frame(4, slot)])
        assert recorder.report().pending_bytes <= policy.max_pending_bytes + policy.block_bytes
    report = recorder.report()
    assert report.failed and "fell behind" in (recorder.failure or "")
    assert report.frames_lost == 5000  # none of it was committed
    await recorder.abandon()


async def test_a_hung_storage_attempt_times_out_and_counts_as_a_failure() -> None:
    sink = MemorySink()
    sink.hang = asyncio.Event()
    recorder = CallRecorder(sink, call_id="c-4", tenant_id=TENANT,
                            policy=FlushPolicy(attempts=2, retry_delays=(0.0,), attempt_timeout=0.05))
    recorder.feed([frame(4, 0)])
    await recorder.close()
    assert recorder.report().status == "partial" and "timed out" in (recorder.failure or "")
    assert len([c for c in sink.calls if c[0] == "open"]) == 2


# -- the timeline ------------------------------------------------------------------------------------------


async def test_ticks_the_engine_dropped_become_silence_so_the_timeline_holds() -> None:
    sink = MemorySink()
    recorder = CallRecorder(sink, call_id="c-5", tenant_id=TENANT)
    for slot in [*range(10), *range(35, 45)]:  # slots 10-34 never arrive (the engine's queue dropped them)
        recorder.feed([frame(4, slot)])
    await recorder.close()
    [blob] = sink.blobs.values()
    frames = frames_of(blob.content)
    assert len(frames) == 45 and recorder.report().gap_frames == 25
    assert frames[:10] == TONE[:10] and frames[10:35] == [SILENCE] * 25 and frames[35:] == TONE[35:45]


async def test_a_timestamp_jump_of_over_a_minute_is_a_clock_change_not_a_gap() -> None:
    sink = MemorySink()
    recorder = CallRecorder(sink, call_id="c-6", tenant_id=TENANT)
    for slot in range(10):
        recorder.feed([AudioFrame(4, 10**12 * (slot >= 5) + slot * 200_000, TONE[slot])])
    await recorder.close()
    assert len(frames_of(next(iter(sink.blobs.values())).content)) == 10 and recorder.report().gap_frames == 0


async def test_timestamps_can_be_ignored() -> None:
    sink = MemorySink()
    recorder = CallRecorder(sink, call_id="c-7", tenant_id=TENANT, follow_timestamps=False)
    for slot in [0, 1, 30]:
        recorder.feed([frame(4, slot)])
    await recorder.close()
    assert len(frames_of(next(iter(sink.blobs.values())).content)) == 3


async def test_a_second_frame_of_one_source_in_a_tick_is_dropped_and_counted_and_a_bad_length_is_fixed() -> None:
    sink = MemorySink()
    recorder = CallRecorder(sink, call_id="c-8", tenant_id=TENANT)
    recorder.feed([frame(4, 0), frame(4, 0, b"\x01" * FRAME_BYTES)])
    recorder.feed([frame(4, 1, b"\x02" * 10)])  # short: padded with silence
    recorder.feed([frame(4, 2, b"\x03" * (FRAME_BYTES + 8))])  # long: cut
    await recorder.close()
    assert recorder.report().late_frames == 1
    assert frames_of(next(iter(sink.blobs.values())).content) == [
        TONE[0], b"\x02" * 10 + bytes(FRAME_BYTES - 10), b"\x03" * FRAME_BYTES]


async def test_each_commit_is_a_valid_wav_of_the_call_so_far_with_silence_up_to_now() -> None:
    sink = MemorySink()
    recorder = CallRecorder(sink, call_id="c-9", tenant_id=TENANT, commit_seconds=1.0)
    recorder.feed([])
    recorder.feed([frame(4, 1)])
    await recorder.drain()  # a new file is committed at its first frame: it exists from then on
    [blob] = sink.blobs.values()
    assert frames_of(blob.content) == [TONE[1]] and blob.metadata["offset"] == "0.02"
    await feed(recorder, range(2, 10), lambda s: [frame(4, s)])
    await feed(recorder, range(10, 50), lambda s: [])  # quiet: the commit at slot 50 pads to now
    await recorder.drain()
    assert frames_of(blob.content) == TONE[1:10] + [SILENCE] * 40
    assert blob.metadata["status"] == "recording" and blob.metadata["duration"] == "0.98"
    assert blob.metadata["speech_frames"] == "9"
    assert [c[0] for c in sink.calls] == ["open", "stage", "commit", "stage", "commit"]
    await recorder.close()


async def test_a_participant_who_leaves_has_their_file_closed_and_a_return_starts_another() -> None:
    sink = MemorySink()
    recorder = CallRecorder(sink, call_id="c-10", tenant_id=TENANT)
    recorder.participants([member("p-a", "1"), member("p-b", "2")])
    await feed(recorder, range(20), lambda s: [frame(1, s), frame(2, s)])
    recorder.participants([member("p-b", "2")])  # p-a left
    await feed(recorder, range(20, 40), lambda s: [frame(2, s)])
    recorder.participants([member("p-a", "1"), member("p-b", "2")])  # back, with the same MSI
    await feed(recorder, range(40, 50), lambda s: [frame(1, s), frame(2, s)])
    await recorder.close()
    folder = recorder.folder
    assert sorted(sink.blobs) == [f"{folder}p-a-2.wav", f"{folder}p-a.wav", f"{folder}p-b.wav"]
    first, again, b = (sink.blobs[f"{folder}{n}.wav"] for n in ("p-a", "p-a-2", "p-b"))
    # p-a's first file ends when the roster said they had left (slot 20), complete; the second starts at 40.
    assert frames_of(first.content) == TONE[:20] and first.metadata["status"] == "complete"
    left = datetime.fromisoformat(first.metadata["end"]) - datetime.fromisoformat(first.metadata["call_start"])
    assert left == timedelta(milliseconds=400)
    assert again.metadata["offset"] == "0.80" and frames_of(again.content) == TONE[40:50]
    assert frames_of(b.content) == TONE[:50] and b.metadata["status"] == "complete"


async def test_close_partial_says_why() -> None:
    sink = MemorySink()
    recorder = CallRecorder(sink, call_id="c-11", tenant_id=TENANT)
    recorder.feed([frame(4, 0)])
    await recorder.close(complete=False, reason="the media connection was lost")
    assert recorder.report().status == "partial" and not recorder.report().failed
    [blob] = sink.blobs.values()
    assert blob.metadata["status"] == "partial" and unquote(blob.metadata["reason"]) == "the media connection was lost"
    recorder.feed([frame(4, 1)])  # after close: ignored, nothing breaks
    assert recorder.report().frames_received == 1


async def test_a_name_already_taken_in_storage_gets_a_suffix() -> None:
    sink = MemorySink()
    for _ in range(2):  # the same call recorded twice (a worker restarted and was invited again)
        recorder = CallRecorder(sink, call_id="c-12", tenant_id=TENANT)
        recorder.feed([frame(4, 0)])
        await recorder.close()
    assert sorted(name.rsplit("/", 1)[1] for name in sink.blobs) == ["source-4-2.wav", "source-4.wav"]


# -- the roster, names, metadata, the header ---------------------------------------------------------------


def test_the_roster_maps_audio_source_ids_to_who_speaks() -> None:
    roster = [
        {"id": "p-1", "info": {"identity": {"user": {"id": "u-1", "displayName": "Ada", "tenantId": TENANT}}},
         "mediaStreams": [{"mediaType": "video", "sourceId": "9"}, {"mediaType": "audio", "sourceId": "1"}]},
        {"id": "p-2", "info": {"identity": {"phone": {"id": "+14255550100"}}},
         "mediaStreams": [{"mediaType": "Audio", "sourceId": 2}]},
        {"id": "p-3", "info": {"identity": {"guest": {"id": "g-3", "displayName": "Guest"}}},
         "mediaStreams": [{"mediaType": "audio", "sourceId": "not a number"}]},
        {"id": "p-4", "mediaStreams": None},
    ]
    assert audio_sources(roster) == {
        1: Speaker("p-1", "user", "u-1", "Ada", TENANT), 2: Speaker("p-2", "phone", "+14255550100", None, None)}
    assert audio_sources([parse_participant(roster[0])]) == {1: Speaker("p-1", "user", "u-1", "Ada", TENANT)}
    assert [parse_source_id(v) for v in ("7", " 8 ", 9, -1, "1e3", True, None, 2**32, "٣")] == \
        [7, 8, 9, None, None, None, None, None, None]


def test_blob_names_take_plain_ids_and_hash_anything_else() -> None:
    guid = "491f0b00-ffff-4bc9-a43e-b226498ec22a"
    assert path_segment(guid) == guid
    for unsafe in ("+14255550100", "../..", "a/b", "x" * 65, "Zoë", ".hidden", "a b"):
        segment = path_segment(unsafe)
        assert segment.startswith("h-") and len(segment) == 34 and segment == path_segment(unsafe), unsafe
    assert path_segment(None) == "unknown"
    moment = datetime(2026, 3, 3, 23, 59, tzinfo=UTC)
    assert call_folder("c-1", TENANT, guid, moment) == f"compliance/{guid}/2026-03-03/c-1/"
    assert call_folder("c/1", TENANT, None, moment) == f"compliance/{TENANT}/2026-03-03/{path_segment('c/1')}/"


def test_metadata_values_are_printable_ascii_and_reversible() -> None:
    for text in ("Zoë", "100%", " lead", "trail ", "tab\there", "李雷", "😀", "plain name", "a\nb"):
        value = ascii_value(text)
        assert value.isascii() and value.isprintable() and value == value.strip(), (text, value)
        assert unquote(value) == text
    assert ascii_value("Ada Lovelace") == "Ada Lovelace"  # readable when nothing needs escaping
    assert ascii_value("x" * 300, limit=200) == "x" * 200
    assert ascii_value("\ud800").isascii()  # a lone surrogate (JSON allows it) does not break the upload


def test_the_wav_header_is_what_the_standard_library_reads() -> None:
    data = wav_header(4 * FRAME_BYTES) + bytes(4 * FRAME_BYTES)
    with wave.open(io.BytesIO(data)) as reader:
        assert (reader.getnchannels(), reader.getsampwidth(), reader.getframerate(), reader.getnframes()) == \
            (1, 2, 16_000, 4 * 320)
    assert len(wav_header(0)) == 44


def test_flush_policy_refuses_blocks_that_split_frames() -> None:
    with pytest.raises(ValueError, match="multiple"):
        FlushPolicy(block_bytes=1000)
    with pytest.raises(ValueError, match="at least"):
        FlushPolicy(attempts=0)


async def test_the_recorders_tones_survive_a_commit_boundary() -> None:
    sink = MemorySink()
    recorder = CallRecorder(sink, call_id="c-13", tenant_id=TENANT,
                            policy=FlushPolicy(block_bytes=7 * FRAME_BYTES))  # blocks cut mid-span
    await feed(recorder, range(100), lambda s: [frame(4, s, tone_frame(880.0, s))])
    await recorder.close()
    [blob] = sink.blobs.values()
    assert len([c for c in sink.calls if c[0] == "stage"]) == 1 + 15  # the first frame's commit, 99 frames
    frequency, margin = dominant(b"".join(frames_of(blob.content)), (440.0, 880.0, 1320.0))
    assert frequency == 880.0 and margin > 100


def test_the_functions_app_does_not_import_the_recorder() -> None:
    code = ("import sys, function_app; bad = sorted(m for m in sys.modules if m.startswith('mediavm')); "
            "print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 0, result.stdout + result.stderr[-2000:]


def test_the_benchmark_measures_the_recorder_beside_its_baseline() -> None:
    from bench import recorder as bench

    result = bench.measure(frames=2000, calls=5, call_seconds=2.0, blob=False)
    assert set(result.recorder) == set(result.concurrent) == {"discard", "folder"}
    for run in [result.baseline, result.mixdown, *result.recorder.values(), *result.concurrent.values()]:
        assert run.frames > 0 and run.cpu_s > 0 and run.frames_per_cpu_s > 0
    assert all(run.lost_frames == run.failures == 0 for run in [*result.recorder.values(),
                                                                 *result.concurrent.values()])
    assert result.concurrent["folder"].frames == 5 * 100
    text = bench.report(result)
    assert "baseline: copy each frame to a file" in text and "goal: at least 10,000 frames/s" in text
    assert result.as_json()["goal_frames_per_s"] == 10_000


async def test_a_running_worker_keeps_sweeping_and_a_failed_sweep_does_not_stop_it(tmp_path: Path) -> None:
    import json
    import os

    from mediavm.recorder import keep_sweeping
    from mediavm.sinks import FolderSink

    sink = FolderSink(tmp_path)
    left = tmp_path / "compliance" / "u" / "2026-03-03" / "c" / "p.wav"
    left.parent.mkdir(parents=True)
    left.write_bytes(wav_header(0))
    facts = left.with_suffix(".json")
    facts.write_text(json.dumps({"status": "recording"}))
    old = (datetime.now(UTC) - timedelta(minutes=6)).timestamp()
    os.utime(facts, (old, old))
    real_sweep = sink.sweep
    rounds: list[str] = []

    async def flaky_sweep(prefix: str, stale_after: timedelta, now: datetime | None = None) -> list[str]:
        rounds.append(prefix)
        if len(rounds) == 1:
            raise OSError("the share is not mounted yet")
        return await real_sweep(prefix, stale_after, now)

    sink.sweep = flaky_sweep  # type: ignore[method-assign]
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) > 2:
            raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await keep_sweeping(sink, sleep=sleep)
    assert sleeps == [300.0, 300.0, 300.0] and rounds == ["compliance/", "compliance/"]
    assert json.loads(facts.read_text())["status"] == "partial"  # the second round marked it
