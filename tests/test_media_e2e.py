"""App-hosted media end to end: the function app, real media workers (mediavm/local.py: MediaWorker, loopback
engine, compliance recording) and the simulator playing Teams and its media service, with the recordings in
Azurite. Each party speaks a tone of their own; every WAV stored is read back and checked as audio."""

from __future__ import annotations

import asyncio
import io
import subprocess
import sys
import uuid
import wave
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from azure.storage.blob.aio import BlobServiceClient

from calling.credentials import storage_credential
from mediavm.engine import FRAME_BYTES
from mediavm.recorder import COMMIT_SECONDS, sweep
from simulator.core import MEDIA_LOSS_TIMEOUT
from simulator.harness import CallHandle, Simulation
from simulator.speech import tone
from tests.azurite import azurite
from tests.test_blob_storage import SETTINGS
from tests.test_recorder_blob import Storage
from tests.tones import dominant, samples_of

ADA, BO, PHONE = "user:ada-id", "user:bo-id", "+14255550100"
TONES = {ADA: 440.0, BO: 880.0, PHONE: 1320.0}
#: (starts, seconds) of what each says, from the moment the call is placed.
SPEECH = {ADA: (0.5, 4.0), BO: (1.0, 3.0), PHONE: (2.0, 2.0)}
POLICY_DEADLINE = 5.0  # Graph: a policy-recording invite must be answered within 5 s


@pytest.fixture(scope="module")
def account() -> Iterator[str]:
    with azurite() as url:
        yield url


@pytest.fixture
def container(account: str) -> str:
    """A fresh container for one test's recordings: its URL."""
    name = f"rec-{uuid.uuid4().hex[:12]}"

    async def create() -> None:
        async with BlobServiceClient(account, credential=storage_credential(account, SETTINGS)) as service:
            await service.create_container(name)

    asyncio.run(create())
    return f"{account}/{name}"


def _stored(url: str) -> dict[str, tuple[bytes, dict[str, str]]]:
    """Every WAV in the container: its bytes and metadata, by name."""
    storage = Storage(None, "blob", container_url=url)  # type: ignore[arg-type]

    async def read() -> dict[str, tuple[bytes, dict[str, str]]]:
        found = {}
        for name in await storage.names():
            data, metadata, _ = await storage.read(name)
            found[name] = (data, metadata)
        return found

    return asyncio.run(read())


def _voiced(data: bytes) -> tuple[float, float | None, float]:
    """A WAV's length (s), the dominant tone of its voiced frames, and how long it is voiced (s)."""
    with wave.open(io.BytesIO(data)) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 16_000)
        pcm = wav.readframes(wav.getnframes())
        length = wav.getnframes() / 16_000
    frames = [pcm[i:i + FRAME_BYTES] for i in range(0, len(pcm), FRAME_BYTES)]
    voiced = [f for f in frames if max(map(abs, samples_of(f)), default=0) > 1000]
    frequency = dominant(b"".join(voiced), list(TONES.values()))[0] if voiced else None
    return length, frequency, len(voiced) * 0.02


def _posts(call: CallHandle, action: str) -> list[tuple[float, dict[str, Any]]]:
    """The bot's POSTs of `action` for the call: when (simulation seconds) and the body."""
    return [(e.at, e.detail.get("request") or {}) for e in call.call.transcript.entries
            if e.direction == "from-bot" and f"[POST {action} " in e.summary]


def _speech() -> dict[str, list[Any]]:
    return {who: [tone(TONES[who], seconds=seconds, at=at)] for who, (at, seconds) in SPEECH.items()}


def test_a_recorded_call_leaves_one_wav_per_participant_holding_only_their_voice(container: str) -> None:
    with Simulation(media_workers=1, settings={"RECORDINGS_CONTAINER_URL": container}) as sim:
        worker = sim.workers[0]
        call = sim.policy_call(ADA, [BO, PHONE], speech=_speech())
        placed = sim.clock.elapsed()
        call.expect_media()
        status = call.expect_recording_status("recording")
        call.wait(12)
        call.hang_up()
        call.wait(2)

        [(answered_at, answer)] = _posts(call, "answer")
        assert answered_at - placed <= POLICY_DEADLINE
        assert answer["callbackUri"] == f"{worker.url}/api/calls"  # the worker answered, not the webhook
        assert answer["mediaConfig"]["@odata.type"] == "#microsoft.graph.appHostedMediaConfig"
        assert answer["mediaConfig"]["blob"] and answer["participantCapacity"] == 10
        assert _posts(call, "reject") == []
        media = call.media
        assert media is not None and media.started_at is not None
        assert media.started_at <= status.at <= media.started_at + 1  # recording is said when audio flows
        assert call.violations == []
        participants = call.source_ids
        ids = {target: next(p.id for p in call.call.participants.values() if p.source_id == source)
               for target, source in participants.items() if target in TONES}
        assert worker.worker.health()["taken"] == 1

    stored = _stored(container)
    assert len(stored) == 3, sorted(stored)
    by_identity = {metadata["identity_id"]: (name, data, metadata) for name, (data, metadata) in stored.items()}
    assert set(by_identity) == {"ada-id", "bo-id", PHONE}
    for target, frequency in TONES.items():
        name, data, metadata = by_identity[target.removeprefix("user:")]
        starts, seconds = SPEECH[target]
        length, heard, voiced = _voiced(data)
        assert heard == frequency, f"{name} holds {heard} Hz, not {target}'s {frequency} Hz"
        assert voiced == pytest.approx(seconds, abs=0.04), f"{name}: {voiced} s of speech, not {seconds}"
        assert metadata["status"] == "complete"
        assert metadata["call_id"] == call.id and metadata["tenant_id"] == sim.tenant_id
        assert metadata["subject_id"] == "ada-id" and metadata["participant_id"] == ids[target]
        assert metadata["source_id"] == str(participants[target])
        assert float(metadata["duration"]) == pytest.approx(length, abs=0.02)
        assert float(metadata["offset"]) == pytest.approx(starts - (media.started_at - placed), abs=0.03)
        assert name.startswith(f"compliance/ada-id/2026-03-03/{call.id}/")
        # a file starts with its speaker's first word and runs to the call's end
        assert float(metadata["offset"]) + length == pytest.approx(12.5 - media.started_at + placed, abs=0.15)


def test_a_joiner_accepted_mid_call_is_recorded_into_the_same_call(container: str) -> None:
    with Simulation(media_workers=1, settings={"RECORDINGS_CONTAINER_URL": container}) as sim:
        call = sim.policy_call(ADA, [PHONE], speech={ADA: [tone(440, seconds=2, at=0.5)]})
        call.expect_recording_status("recording")
        response = call.participant_joining(BO, speech=[tone(880, seconds=2, at=1)])
        assert response["body"] == {"@odata.type": "#microsoft.graph.acceptJoinResponse"}
        call.wait(5)
        call.hang_up()
        call.wait(2)
    stored = _stored(container)
    heard = {metadata["identity_id"]: _voiced(data)[1] for data, metadata in stored.values()}
    assert heard == {"ada-id": 440.0, "bo-id": 880.0}  # the phone never spoke: no file


def test_without_a_worker_a_recording_invite_is_rejected_busy_inside_its_deadline() -> None:
    with Simulation(settings={"MEDIA_HANDOFF_TRANSPORT": "inprocess"}) as sim:
        call = sim.policy_call(ADA, [BO])
        call.expect_ended(within=POLICY_DEADLINE)
        [(at, body)] = _posts(call, "reject")
        assert body == {"reason": "busy"} and at < POLICY_DEADLINE - 0.5
        assert _posts(call, "answer") == []


def test_a_full_worker_leaves_the_next_invite_to_be_rejected_in_time(container: str) -> None:
    with Simulation(media_workers=1, worker_settings={"MEDIA_WORKER_CAPACITY": "1"},
                    settings={"RECORDINGS_CONTAINER_URL": container}) as sim:
        first = sim.policy_call(ADA, [BO], speech={BO: [tone(880, seconds=3, at=0.5)]})
        first.expect_recording_status("recording")
        second = sim.policy_call("user:cy-id", [PHONE])
        second.expect_ended(within=POLICY_DEADLINE)
        assert [body for _, body in _posts(second, "reject")] == [{"reason": "busy"}]
        assert _posts(second, "answer") == []
        assert first.state == "established"  # the call it holds goes on
        first.wait(4)
        first.hang_up()
        first.wait(1)
        health = sim.workers[0].worker.health()
        assert (health["capacity"], health["taken"], health["live"]) == (1, 1, 0)
    assert {m["identity_id"] for _, m in _stored(container).values()} == {"bo-id"}


def test_an_expired_hand_off_is_dropped_by_the_worker_that_finds_it_late(tmp_path: Path) -> None:
    with Simulation(settings={"MEDIA_HANDOFF_TRANSPORT": "inprocess"}) as sim:
        call = sim.policy_call(ADA, [BO])
        call.expect_ended(within=POLICY_DEADLINE)
        assert [body for _, body in _posts(call, "reject")] == [{"reason": "busy"}]
        sim.wait(1)
        late = sim.start_worker()  # a worker comes up with the hand-off still queued
        sim.wait(2)
        assert late.worker.health()["dropped"] == 1 and late.worker.health()["taken"] == 0
        assert _posts(call, "answer") == []  # it did not answer a call Graph has given up on


def test_an_app_hosted_call_with_no_application_falls_back_to_the_configured_flow(tmp_path: Path) -> None:
    policy = tmp_path / "routing.yaml"
    policy.write_text("rules:\n  - name: media\n    match: {caller: {phone: '+1425*'}}\n    action: handoff\n"
                      "default: {action: answer, flow: main-menu}\n")
    with Simulation(media_workers=1, settings={"ROUTING_POLICY_PATH": str(policy),
                                               "MEDIA_FALLBACK_FLOW": "main-menu"}) as sim:
        call = sim.dial(from_phone=PHONE)
        call.expect_answered(within=10)
        [(at, answer)] = _posts(call, "answer")
        assert answer["mediaConfig"]["@odata.type"] == "#microsoft.graph.serviceHostedMediaConfig"
        assert answer["callbackUri"] == f"{sim.bot.url}/api/calls"
        assert at < 15  # Graph's answer window for an ordinary call
        assert sim.workers[0].worker.health()["unsupported"] == 1  # the worker runs only compliance recording
        call.hang_up()


def test_a_killed_worker_keeps_its_recording_to_the_last_block_and_new_calls_go_to_the_other(
        container: str) -> None:
    with Simulation(media_workers=2, settings={"RECORDINGS_CONTAINER_URL": container}) as sim:
        doomed = sim.policy_call(ADA, [BO], speech={BO: [tone(880, seconds=60, at=0.5)]})
        doomed.expect_recording_status("recording")
        doomed.wait(15)  # a commit at 10 s of the call; the next would come at 20 s
        killed = sim.worker_of(doomed)
        survivor = next(w for w in sim.workers if w is not killed)
        assert killed is not None
        assert [c.id for c in sim.kill_worker(killed)] == [doomed.id]

        later = sim.policy_call("user:cy-id", [PHONE], speech={PHONE: [tone(1320, seconds=2, at=0.5)]})
        later.expect_recording_status("recording")
        assert later.call.callback_uri == f"{survivor.url}/api/calls"
        doomed.expect_ended(code=410, subcode=301005, within=MEDIA_LOSS_TIMEOUT + 1)
        assert doomed.people_on_the_line  # the people talk on; only the bot's leg ended
        later.wait(3)
        later.hang_up()
        doomed.hang_up()
        later.wait(1)
        assert all(c.ended or c.answered_at is not None for c in sim.simulator.calls.values())  # none ringing

    left = {m["identity_id"]: (name, data, m) for name, (data, m) in _stored(container).items()}
    name, data, metadata = left["bo-id"]
    assert metadata["status"] == "recording"  # nothing finalised it: the worker died
    length, heard, _ = _voiced(data)
    assert heard == 880.0
    # up to its last committed block: the commit 10 s into the call, not the 15 s it had when the worker died
    assert float(metadata["offset"]) + length == pytest.approx(COMMIT_SECONDS, abs=0.03)
    assert left[PHONE][2]["status"] == "complete"

    async def next_sweep() -> list[str]:  # what any worker's sweep (at start, then every 5 min) does
        from mediavm.sinks import BlobSink

        sink = BlobSink(container, storage_credential(container, SETTINGS))
        try:
            return await sweep(sink, now=datetime.now(UTC) + timedelta(minutes=6))
        finally:
            await sink.close()

    assert asyncio.run(next_sweep()) == [name]
    _, swept = _stored(container)[name]
    assert swept["status"] == "partial" and float(swept["duration"]) == pytest.approx(length, abs=0.02)


def test_the_demo_shows_a_compliance_recorded_call_after_the_ivr_call() -> None:
    root = Path(__file__).resolve().parent.parent
    result = subprocess.run([sys.executable, "-m", "simulator", "demo", "--virtual", "--sim-port", "0",
                             "--host-port", "0"], cwd=root, capture_output=True, text=True, timeout=180, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    assert "Demo 1 of 2: Main menu" in out and "Demo 2 of 2: Compliance recording" in out
    assert "bot answers (app-hosted media, participantCapacity 10)" in out
    assert "bot sets its recording status to recording" in out
    assert "The media worker stored 4 recording(s), one per participant who spoke" in out
    assert "Traceback" not in result.stderr
