"""The simulator plays the Teams media service for app-hosted calls: policy-recorded calls streamed to a bot's
loopback media session (mediavm/loopback.py) over mediavm/wire.py.

The bot here is a stand-in written in the test: an aiohttp webhook (no authentication), the loopback media
engine, and the project's CallControl against the simulator's Graph. Teams invites it directly (`webhook=`),
so the function app takes no part. Each test checks what the stand-in's media session received (ticks, each
speaker's frames by media source id, a tone's frequency, timestamps), what the roster said, and what the
simulator did with the bot's joining responses, recording statuses, a dead worker and a bad blob.
"""

from __future__ import annotations

import asyncio
import itertools
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from calling.credentials import LocalTokenCredential
from calling.graph import AppHostedMedia, CallControl
from calling.graphclient import build_graph_client
from mediavm import wire
from mediavm.engine import FRAME_BYTES, AudioFrame
from mediavm.loopback import LoopbackEngine, LoopbackSession
from simulator import speech
from simulator.calls import SimCall
from simulator.core import MEDIA_LOSS_TIMEOUT, MEDIA_SETUP_FAILED_AFTER, RECORDING_STATUS_WITHIN
from simulator.harness import CallHandle, Simulation
from simulator.media_link import MediaLink
from simulator.scenario import parse_scenario, perform
from simulator.speech import tone
from tests.simworld import schema_problems, status_casing

ALICE = "user:alice-id"  # the Teams user under the recording policy
PHONE = "+14255550100"
BOB = "user:bob-id"
CAROL = "user:carol-id"
UNITS = 10_000_000  # the media library's timestamps: 100 ns per unit
TICK = 200_000  # 20 ms


@dataclass
class StandIn:
    """The bot's media worker, played by the test: answers with a loopback media session and keeps every tick."""

    sim: Simulation
    engine: LoopbackEngine = field(default_factory=LoopbackEngine)
    url: str = ""
    control: CallControl | None = None
    notifications: list[dict[str, Any]] = field(default_factory=list)
    bodies: list[dict[str, Any]] = field(default_factory=list)
    sessions: dict[str, LoopbackSession] = field(default_factory=dict)
    ticks: dict[str, list[list[AudioFrame]]] = field(default_factory=dict)
    answered: dict[str, float] = field(default_factory=dict)
    #: The participantJoiningResponse the stand-in gives a joining notification.
    joining: Callable[[dict[str, Any]], dict[str, Any]] = lambda _: {
        "@odata.type": "#microsoft.graph.acceptJoinResponse"}
    _runner: web.AppRunner | None = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def start(self) -> None:
        async def receive(request: web.Request) -> web.Response:
            body = await request.json()
            self.bodies.append(body)
            for item in body["value"]:
                self.notifications.append(item)
                data = item.get("resourceData")
                if isinstance(data, dict) and data.get("@odata.type") == (
                        "#microsoft.graph.participantJoiningNotification"):
                    return web.json_response(self.joining(data))
            return web.Response(status=202)

        app = web.Application()
        app.router.add_post("/api/calls", receive)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}/api/calls"
        await self.engine.start()
        client = build_graph_client(self.sim.env["GRAPH_BASE_URL"], LocalTokenCredential(), retry_budget_seconds=5)
        self.control = CallControl(client, callback_uri=self.url, tenant_id=self.sim.tenant_id,
                                   app_id=self.sim.app_id)

    async def stop(self) -> None:
        await self.engine.stop()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()

    def answer(self, call_id: str, *, capacity: int | None = None, blob: str | None = None,
               send_audio: bool = False) -> LoopbackSession:
        async def run() -> LoopbackSession:
            session = await self.engine.create_session(call_id, send_audio=send_audio)
            self.sessions[call_id] = session
            received = self.ticks.setdefault(call_id, [])

            async def consume() -> None:
                async for tick in session.frames():
                    received.append(tick)

            self._tasks.append(asyncio.get_running_loop().create_task(consume()))
            assert self.control is not None
            self.answered[call_id] = self.sim.clock.elapsed()
            await self.control.answer(call_id, media=AppHostedMedia(blob or session.configuration()),
                                      callback_uri=self.url, participant_capacity=capacity)
            return session

        return self.sim._run(run())

    def run(self, make: Callable[[CallControl], Any]) -> Any:
        async def run() -> Any:
            assert self.control is not None
            return await make(self.control)

        return self.sim._run(run())

    def incoming(self) -> list[dict[str, Any]]:
        return [n["resourceData"] for n in self.notifications if n["changeType"] == "created"
                and _kind(n) == "#microsoft.graph.call"]

    def rosters(self, call_id: str) -> list[list[dict[str, Any]]]:
        return [n["resourceData"] for n in self.notifications
                if n["resourceUrl"] == f"/communications/calls/{call_id}/participants"]

    def frames(self, call_id: str, source_id: int) -> list[AudioFrame]:
        return [f for tick in self.ticks.get(call_id, []) for f in tick if f.source_id == source_id]


@pytest.fixture
def world() -> Iterator[tuple[Simulation, StandIn]]:
    with Simulation() as sim:
        standin = StandIn(sim)
        sim._run(standin.start())
        try:
            yield sim, standin
        finally:
            sim._run(standin.stop())
        # every notification the stand-in got is Graph-shaped (apart from the known operationStatus casing)
        assert [p for body in standin.bodies for p in schema_problems(body) if not status_casing(p)] == []


def _recorded(sim: Simulation, standin: StandIn, others: list[str], *, capacity: int | None = 3,
              speech_plan: dict[str, list[speech.Say]] | None = None, answer: bool = True) -> CallHandle:
    call = sim.policy_call(ALICE, others, speech=speech_plan, webhook=standin.url)
    sim.wait(0.01)  # Teams posts the invite
    assert [c["id"] for c in standin.incoming()][-1] == call.id
    if answer:
        standin.answer(call.id, capacity=capacity)
    return call


def _kind(notification: dict[str, Any]) -> str:
    data = notification["resourceData"]
    return str(data.get("@odata.type")) if isinstance(data, dict) else "a collection"


def _ticks_over(link: MediaLink, start: float, end: float) -> int:
    """How many ticks of `link` overlap [start, end): each carries a frame of a party speaking then."""
    first, last = speech.samples(start), speech.samples(end)
    return sum(1 for k in range(link.ticks)
               if speech.samples(link.tick_time(k)) < last and speech.samples(link.tick_time(k)) + 320 > first)


def _frequency(frames: list[AudioFrame]) -> float:
    pcm = b"".join(f.pcm for f in frames)
    values = struct.unpack(f"<{len(pcm) // 2}h", pcm)
    crossings = sum(1 for a, b in itertools.pairwise(values) if (a < 0) != (b < 0))
    return crossings / 2 / (len(values) / speech.SAMPLE_RATE)


def _span(frames: list[AudioFrame]) -> tuple[float, float]:
    """First and last tick start of these frames, in simulation seconds."""
    return frames[0].timestamp / UNITS, frames[-1].timestamp / UNITS


def _summaries(call: CallHandle | SimCall) -> list[str]:
    sim_call = call.call if isinstance(call, CallHandle) else call
    return [e.summary for e in sim_call.transcript.entries]


# -- what the bot's media session receives -------------------------------------------------------------------


def test_each_speaker_arrives_as_its_own_frames_tagged_with_its_source_id_at_50_ticks_a_second(
        world: tuple[Simulation, StandIn]) -> None:
    sim, standin = world
    call = _recorded(sim, standin, [PHONE], speech_plan={ALICE: [tone(440, at=1, seconds=2)],
                                                         PHONE: [tone(1000, at=2, seconds=2)]})
    link = call.expect_media()
    started = call.call.conversation.started_at if call.call.conversation else 0.0
    assert link.started_at == pytest.approx(standin.answered[call.id] + 0.4)  # establishing, established
    call.wait(5)
    ids = call.source_ids
    assert len(set(ids.values())) == 3 and all(isinstance(i, int) and i > 0 for i in ids.values())
    # the roster the bot got carries the same ids, as Graph gives them: strings, for mediaType audio
    latest = standin.rosters(call.id)[-1]
    roster = {p["info"]["identity"].get("user", p["info"]["identity"].get("phone", {})).get("id"):
              [s["sourceId"] for s in p["mediaStreams"] if s["mediaType"] == "audio"] for p in latest}
    assert roster["alice-id"] == [str(ids[ALICE])] and roster[PHONE] == [str(ids[PHONE])]
    ticks = standin.ticks[call.id]
    stamps = [f.timestamp for tick in ticks for f in tick]
    assert len(ticks) == link.ticks >= 5 / 0.02 - 5  # every 20 ms of simulated time, sent in 100 ms batches
    alice, phone = standin.frames(call.id, ids[ALICE]), standin.frames(call.id, ids[PHONE])
    # 2 s each, in 640-byte frames: 100, or 101 when the ticks (every 20 ms from the media's start) straddle
    # the speech's edges, the straddling frames part silence
    assert len(alice) == _ticks_over(link, started + 1, started + 3) in (100, 101)
    assert len(phone) == _ticks_over(link, started + 2, started + 4) in (100, 101)
    assert all(len(f.pcm) == FRAME_BYTES for f in alice + phone)
    assert _span(alice)[0] == pytest.approx(started + 1, abs=0.02) and _span(alice)[1] < started + 3
    assert _span(phone)[0] == pytest.approx(started + 2, abs=0.02) and _span(phone)[1] < started + 4
    assert all(f.timestamp == round(link.tick_time(0) * UNITS) + TICK * k
               for k, tick in enumerate(ticks) for f in tick)
    assert all(b - a == TICK for a, b in itertools.pairwise(sorted(set(stamps))))
    assert _frequency(alice) == pytest.approx(440, rel=0.01)
    assert _frequency(phone) == pytest.approx(1000, rel=0.01)
    both = [tick for tick in ticks if len(tick) == 2]
    assert len(both) == _ticks_over(link, started + 2, started + 3) and {f.source_id for f in both[0]} == {
        ids[ALICE], ids[PHONE]}
    assert sum(1 for tick in ticks if not tick) > 0  # silence is a tick with no speakers
    said = f"{ALICE} says a 440 Hz tone for 2 s (media source {ids[ALICE]})"
    assert said in _summaries(call)


def test_a_wav_clip_is_sent_sample_for_sample_and_a_speaker_can_be_cut_short(
        world: tuple[Simulation, StandIn]) -> None:
    sim, standin = world
    clip = Path(__file__).resolve().parent.parent / "flows" / "prompts" / "welcome.wav"
    pcm = speech.wav_pcm(clip.read_bytes())
    call = _recorded(sim, standin, [BOB])
    call.expect_media()
    call.say(BOB, speech.wav(clip, at=0.5))
    call.say(ALICE, tone(300, seconds=10))
    call.wait(1.0)
    call.stop_speaking(ALICE)
    call.wait(3)
    ids = call.source_ids
    bob = standin.frames(call.id, ids[BOB])
    assert b"".join(f.pcm for f in bob)[:len(pcm)] == pcm  # the clip, cut into 20 ms frames
    assert len(bob) == -(-len(pcm) // FRAME_BYTES)  # the last frame padded with silence
    assert len(standin.frames(call.id, ids[ALICE])) == 50  # 1 s of 10, then silent
    assert f"{ALICE} falls silent" in _summaries(call)


def test_a_muted_participant_is_not_heard(world: tuple[Simulation, StandIn]) -> None:
    sim, standin = world
    call = _recorded(sim, standin, [BOB], speech_plan={BOB: [tone(500, seconds=4)]})
    call.expect_media()
    call.wait(1)
    bob = next(p for p in call.roster() if p["info"]["identity"].get("user", {}).get("id") == "bob-id")
    standin.run(lambda control: control.mute_participant(call.id, bob["id"]))
    call.wait(2)
    frames = standin.frames(call.id, call.source_ids[BOB])
    assert 45 <= len(frames) <= 55  # about the second before the mute


def test_what_the_bot_sends_is_heard(world: tuple[Simulation, StandIn]) -> None:
    sim, standin = world
    call = sim.policy_call(ALICE, [BOB], webhook=standin.url)
    sim.wait(0.01)
    session = standin.answer(call.id, send_audio=True)
    call.expect_media()
    frame = b"\x11\x22" * (FRAME_BYTES // 2)

    async def send() -> None:
        for _ in range(10):
            await session.send(frame)

    sim._run(send())
    call.wait(0.1)
    link = call.media
    assert link is not None and [f.pcm for f in link.sent] == [frame] * 10
    assert "media: the bot sends audio" in _summaries(call)


def test_a_meeting_the_bot_joins_with_app_hosted_media_streams_its_attendees(
        world: tuple[Simulation, StandIn]) -> None:
    sim, standin = world
    thread = "19:meeting_abc@thread.v2"
    sim.meeting(thread, "user:organizer-id", [BOB, PHONE])
    url = ("https://teams.microsoft.com/l/meetup-join/19%3ameeting_abc%40thread.v2/0?context="
           f"%7b%22Tid%22%3a%22{sim.tenant_id}%22%2c%22Oid%22%3a%22organizer-id%22%7d")

    async def join() -> str:
        session = await standin.engine.create_session("meeting-join")  # made before the call id exists
        received = standin.ticks.setdefault("meeting", [])

        async def consume() -> None:
            async for tick in session.frames():
                received.append(tick)

        standin._tasks.append(asyncio.get_running_loop().create_task(consume()))
        assert standin.control is not None
        info = await standin.control.join_meeting(url, media=AppHostedMedia(session.configuration()))
        return info.id

    call = sim.call(sim._run(join()))
    link = call.expect_media()
    call.say(BOB, tone(520, seconds=1))
    call.wait(2)
    assert call.call.kind == "meeting" and set(call.source_ids) >= {"user:organizer-id", BOB, PHONE}
    bob = [f for tick in standin.ticks["meeting"] for f in tick if f.source_id == call.source_ids[BOB]]
    assert len(bob) == _ticks_over(link, link.started_at or 0, (link.started_at or 0) + 1) in (50, 51)
    assert _frequency(bob) == pytest.approx(520, rel=0.01)
    assert call.violations == []  # not a policy-recording call: no recording status expected


def test_sixty_seconds_of_two_speakers_stream_fast_and_exactly(world: tuple[Simulation, StandIn]) -> None:
    sim, standin = world
    call = _recorded(sim, standin, [PHONE], speech_plan={ALICE: [tone(440, seconds=70)],
                                                         PHONE: [tone(880, seconds=70)]})
    link = call.expect_media()
    began = time.monotonic()
    call.wait(60)
    took = time.monotonic() - began
    assert link.ticks == 3000 and link.frames == 6000 and link.dropped == 0
    assert len(standin.ticks[call.id]) == 3000
    assert took < 15, f"60 s of media took {took:.1f} s of wall time"


# -- the roster and who joins ---------------------------------------------------------------------------------


def test_the_invite_carries_the_policy_context_and_the_roster_lists_everyone(
        world: tuple[Simulation, StandIn]) -> None:
    sim, standin = world
    call = _recorded(sim, standin, [BOB, PHONE], answer=False)
    invite = standin.incoming()[-1]
    assert invite["applicationMetadata"]["botData"]["inviteReasons"] == ["PolicyBasedRecording"]
    assert invite["meetingInfo"]["@odata.type"] == "#microsoft.graph.tokenMeetingInfo"
    context = invite["incomingContext"]
    assert context["observedParticipantId"] == context["sourceParticipantId"] == invite["source"]["id"]
    assert invite["applicationMetadata"]["botData"]["otherSideUser"]["id"] == "bob-id"
    standin.answer(call.id, capacity=2)
    call.expect_media()
    roster = standin.rosters(call.id)[-1]
    assert len(roster) == 4  # the bot, alice, bob, the phone
    observed = next(p for p in roster if p["id"] == context["observedParticipantId"])
    assert observed["info"]["identity"]["user"]["id"] == "alice-id"
    assert sorted(int(p["mediaStreams"][0]["sourceId"]) for p in roster) == sorted(call.source_ids.values())
    assert "bot answers (app-hosted media, participantCapacity 2)" in " ".join(_summaries(call))


def test_an_accepted_joiner_is_added_to_the_roster_and_the_media(world: tuple[Simulation, StandIn]) -> None:
    sim, standin = world
    call = _recorded(sim, standin, [BOB])
    link = call.expect_media()
    call.wait(1)
    joins_at = sim.clock.elapsed()
    response = call.participant_joining(CAROL, speech=[tone(700, at=0.5, seconds=1)])
    assert response == {"status": 200, "body": {"@odata.type": "#microsoft.graph.acceptJoinResponse"}}
    joined = call.call.conversation.parties[CAROL] if call.call.conversation else None
    joining = [n for n in standin.notifications
               if _kind(n) == "#microsoft.graph.participantJoiningNotification"][-1]["resourceData"]["call"]
    assert joined is not None and joining["incomingContext"]["observedParticipantId"] == joined.id
    assert joining["source"]["identity"]["user"]["id"] == "carol-id"
    call.wait(2)
    assert CAROL in call.source_ids
    assert any(p["id"] == joined.id and p["mediaStreams"][0]["sourceId"] == str(call.source_ids[CAROL])
               for p in standin.rosters(call.id)[-1])
    carol = standin.frames(call.id, call.source_ids[CAROL])
    assert len(carol) == _ticks_over(link, joins_at + 0.5, joins_at + 1.5)
    assert _frequency(carol) == pytest.approx(700, rel=0.01)


def test_a_rejected_joiner_is_not_recorded(world: tuple[Simulation, StandIn]) -> None:
    sim, standin = world
    standin.joining = lambda _: {"@odata.type": "#microsoft.graph.rejectJoinResponse", "reason": "busy"}
    call = _recorded(sim, standin, [BOB])
    call.expect_media()
    response = call.participant_joining(CAROL, speech=[tone(700, seconds=1)])
    assert response["body"]["@odata.type"] == "#microsoft.graph.rejectJoinResponse"
    call.wait(2)
    assert CAROL not in call.source_ids
    assert all(len(roster) == 3 for roster in standin.rosters(call.id))
    assert any("the bot rejects user:carol-id (busy)" in s for s in _summaries(call))


def test_invite_new_bot_rings_the_bot_again_for_the_joiner(world: tuple[Simulation, StandIn]) -> None:
    sim, standin = world
    standin.joining = lambda _: {"@odata.type": "#microsoft.graph.inviteNewBotResponse", "inviteUri": standin.url}
    call = _recorded(sim, standin, [BOB])
    link = call.expect_media()
    joins_at = sim.clock.elapsed()
    call.participant_joining(CAROL, speech=[tone(700, at=1, seconds=1)])
    sim.wait(0.01)
    invite = standin.incoming()[-1]
    assert invite["id"] != call.id and invite["source"]["identity"]["user"]["id"] == "carol-id"
    assert invite["applicationMetadata"]["botData"]["inviteReasons"] == ["PolicyBasedRecording"]
    second = sim.call(invite["id"])
    standin.answer(second.id, capacity=1)
    second_link = second.expect_media()
    call.wait(2)
    # the new leg records carol; she is in the people's call now, so both legs hear her, with one source id
    assert second.source_ids[CAROL] == call.source_ids[CAROL]
    says = (joins_at + 1, joins_at + 2)
    assert len(standin.frames(second.id, second.source_ids[CAROL])) == _ticks_over(second_link, *says) > 0
    assert len(standin.frames(call.id, call.source_ids[CAROL])) == _ticks_over(link, *says)
    assert f"{CAROL} joins the call (media source {call.source_ids[CAROL]})" in _summaries(call)


def test_a_full_leg_gets_a_new_incoming_call_instead_of_a_joining_notification(
        world: tuple[Simulation, StandIn]) -> None:
    sim, standin = world
    call = _recorded(sim, standin, [BOB], capacity=1)
    call.expect_media()
    assert call.participant_joining(CAROL) == {}
    sim.wait(0.01)
    assert standin.incoming()[-1]["source"]["identity"]["user"]["id"] == "carol-id"
    assert not [n for n in standin.notifications
                if _kind(n) == "#microsoft.graph.participantJoiningNotification"]


# -- the recording status rule --------------------------------------------------------------------------------


def test_every_recording_status_is_logged_with_its_time(world: tuple[Simulation, StandIn]) -> None:
    sim, standin = world
    call = _recorded(sim, standin, [BOB])
    link = call.expect_media()
    call.wait(1)
    standin.run(lambda control: control.update_recording_status(call.id, "recording"))
    call.wait(2)
    standin.run(lambda control: control.update_recording_status(call.id, "notRecording"))
    standin.run(lambda control: control.update_recording_status(call.id, "failed"))
    assert [c.status for c in call.recording_statuses] == ["recording", "notRecording", "failed"]
    assert link.started_at is not None
    assert call.recording_statuses[0].at == pytest.approx(link.started_at + 1)
    assert call.recording_statuses[1].at == pytest.approx(link.started_at + 3)
    assert call.expect_recording_status("notRecording").at == call.recording_statuses[1].at
    call.wait(RECORDING_STATUS_WITHIN)
    assert call.violations == []
    assert any(s.startswith("bot sets its recording status to recording (1.000 s after its media started)")
               for s in _summaries(call))


def test_a_bot_that_never_sets_its_recording_status_is_a_noted_violation(
        world: tuple[Simulation, StandIn]) -> None:
    sim, standin = world
    call = _recorded(sim, standin, [BOB])
    call.expect_media()
    call.wait(RECORDING_STATUS_WITHIN - 0.1)
    assert call.violations == []
    call.wait(0.2)
    assert len(call.violations) == 1 and "updateRecordingStatus(recording)" in call.violations[0]
    assert sim.violations() == {call.id: call.violations}
    assert any(s.startswith("violation: the bot has had the call's media for 5 s") for s in _summaries(call))
    assert call.state == "established"  # Teams does not end the call for it


# -- losing the bot's media -----------------------------------------------------------------------------------


def test_a_killed_worker_loses_its_leg_after_the_timeout_and_the_people_talk_on(
        world: tuple[Simulation, StandIn]) -> None:
    sim, standin = world
    call = _recorded(sim, standin, [BOB], speech_plan={BOB: [tone(600, seconds=60)]})
    call.expect_media()
    call.wait(2)
    posted = len(standin.notifications)
    killed_at = sim.clock.elapsed()
    assert [c.id for c in call.kill_worker()] == [call.id]
    call.wait(MEDIA_LOSS_TIMEOUT - 1)
    assert call.state == "established"
    result = call.expect_ended(code=410, subcode=301005, within=2)
    assert result["message"] == "Media connectivity failure."
    assert call.call.ended_at == pytest.approx(killed_at + MEDIA_LOSS_TIMEOUT)
    assert len(standin.notifications) == posted  # the dead worker's callback got nothing more
    frames = standin.frames(call.id, call.source_ids[BOB])
    assert len(frames) == pytest.approx(100, abs=5)  # the media ended with the worker
    assert call.people_on_the_line
    summaries = _summaries(call)
    assert any("its media connection drops and its callback stops answering" in s for s in summaries)
    assert any(s.startswith("media lost: the bot's worker died") for s in summaries)
    assert "the people's call goes on without this recording bot" in summaries
    call.hang_up()
    assert not call.people_on_the_line


def test_a_session_closed_mid_call_is_media_loss_unless_the_bot_hangs_up(world: tuple[Simulation, StandIn]) -> None:
    sim, standin = world
    lost = _recorded(sim, standin, [BOB])
    hung_up = _recorded(sim, standin, [PHONE])
    lost.expect_media()
    hung_up.expect_media()
    sim._run(standin.sessions[lost.id].close())  # BYE from the bot; it does not hang up
    sim._run(standin.sessions[hung_up.id].close())
    standin.run(lambda control: control.hang_up(hung_up.id))
    assert hung_up.expect_ended(within=1)["subcode"] == 7000
    lost.wait(1)
    assert lost.state == "established"
    lost.expect_ended(code=410, subcode=301005, within=MEDIA_LOSS_TIMEOUT)
    assert any("the bot said BYE" in s for s in _summaries(lost))


def test_a_blob_that_is_not_loopback_fails_the_call(world: tuple[Simulation, StandIn]) -> None:
    sim, standin = world
    call = _recorded(sim, standin, [BOB], answer=False)
    standin.answer(call.id, blob="<Media Session Configuration Blob>")
    result = call.expect_ended(code=500, subcode=1005, within=5)
    assert "connectivity error with Bot's media" in result["message"]
    assert call.call.answered_at is None  # never established
    states = [n["resourceData"].get("state") for n in standin.notifications
              if n["resourceUrl"] == f"/communications/calls/{call.id}" and n["changeType"] != "created"]
    assert states == ["establishing", "terminated"]
    assert call.call.ended_at == pytest.approx(0.2 + MEDIA_SETUP_FAILED_AFTER, abs=0.05)
    assert any("media failed: the media configuration is not loopback JSON" in s for s in _summaries(call))


@pytest.mark.parametrize("why", ["closed port", "wrong token"])
def test_a_loopback_session_that_cannot_be_reached_fails_the_call(world: tuple[Simulation, StandIn],
                                                                  why: str) -> None:
    sim, standin = world
    call = _recorded(sim, standin, [BOB], answer=False)

    async def blob() -> str:
        if why == "wrong token":
            session = await standin.engine.create_session(call.id)
            data = wire.read_blob(session.configuration())
            return wire.blob(data["host"], data["port"], call.id, "not-the-token")
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()
        return wire.blob("127.0.0.1", port, call.id, "token")

    standin.answer(call.id, blob=sim._run(blob()))
    call.expect_ended(code=500, subcode=1005, within=5)
    assert call.call.answered_at is None


# -- scenarios ----------------------------------------------------------------------------------------------


def test_a_scenarios_policy_call_and_its_speech_steps_drive_the_simulator(world: tuple[Simulation, StandIn]) -> None:
    sim, standin = world
    scenario = parse_scenario(f"""
call:
  from: "{ALICE}"
  policy_recording: true
  with: ["{BOB}"]
  speech:
    "{ALICE}":
      - {{tone: 440, at: 1, seconds: 1}}
steps:
  - expect: media
  - say: {{who: "{BOB}", tone: 660, seconds: 1}}
  - wait: 2
  - stop_speaking: "{ALICE}"
  - join: {{who: "{CAROL}", speech: [{{tone: 770, seconds: 1}}]}}
  - wait: 2
  - expect: {{recording_status: recording, within: 1}}
  - kill_worker
  - expect: {{ended: {{code: 410, subcode: 301005}}, within: 31}}
""")
    assert scenario.call.others == (BOB,) and scenario.speech[ALICE][0].frequency == 440
    call = sim.policy_call(scenario.call.source, scenario.call.others, speech=scenario.speech, webhook=standin.url)
    sim.wait(0.01)
    standin.answer(call.id)
    for step in scenario.steps[:6]:
        perform(call, step)
    standin.run(lambda control: control.update_recording_status(call.id, "recording"))
    for step in scenario.steps[6:]:
        perform(call, step)
    ids = call.source_ids
    assert [len(standin.frames(call.id, ids[who])) in (50, 51) for who in (ALICE, BOB, CAROL)] == [True] * 3


def test_a_scenario_with_a_policy_call_runs_against_the_function_app(tmp_path: Path) -> None:
    from simulator.scenario import run_scenario

    clip = tmp_path / "hello.wav"
    clip.write_bytes((Path(__file__).resolve().parent.parent / "flows" / "prompts" / "goodbye.wav").read_bytes())
    path = tmp_path / "recorded.yaml"
    path.write_text(f"""
name: A recorded call the bot cannot take
call:
  from: "{ALICE}"
  policy_recording: true
  with: ["{PHONE}"]
  speech:
    "{PHONE}": [{{wav: hello.wav, at: 0.5}}]
steps:
  - expect: {{ended: {{code: 486}}, within: 5}}
""")
    from simulator.scenario import load_scenario

    scenario = load_scenario(path)
    assert scenario.speech[PHONE][0].name == "hello.wav"  # the clip is found beside the scenario
    outcome = run_scenario(scenario)
    assert outcome.passed, outcome.message
    assert f"{ALICE} dials instance:" in outcome.transcript and f"with {PHONE}" in outcome.transcript


@pytest.mark.parametrize(("yaml", "field", "message"), [
    ('call: {from: "user:a", with: ["+14255550100"]}', "call.with", "set policy_recording: true"),
    ('call: {from: "+14255550111", policy_recording: true, with: ["+14255550100"]}', "call.from", "Teams user"),
    ('call: {from: "user:a", policy_recording: true, speech: {"user:b": [{tone: 440, seconds: 1}]}}',
     'call.speech.user:b', "not in the call"),
    ('call: {from: "user:a", policy_recording: true, speech: {"user:a": [{tone: 440}]}}',
     "call.speech.user:a[0]", "a tone needs seconds"),
    ('call: {from: "user:a", policy_recording: true, speech: {"user:a": [{tone: 440, wav: x.wav, seconds: 1}]}}',
     "call.speech.user:a[0]", "either a tone"),
    ('call: {from: "user:a", policy_recording: true, speech: {"user:a": [{wav: missing.wav}]}}',
     "call.speech.user:a[0]", "No such file"),
    ('media_workers: 9\ncall: {from: "user:a", policy_recording: true}', "media_workers", "0 to 8"),
    ('media_workers: true\ncall: {from: "user:a", policy_recording: true}', "media_workers", "whole number"),
    ('call: {from: "user:a", policy_recording: true}\nsteps: [{expect: {recording_status: paused}}]',
     "steps[0].expect.recording_status", "expected one of recording, notRecording, failed"),
    ('call: {from: "user:a", policy_recording: true}\nsteps: [{say: {who: "user:a", tone: 20000, seconds: 1}}]',
     "steps[0].say", "frequency must be between"),
])
def test_a_scenarios_media_mistakes_are_reported_where_they_are(yaml: str, field: str, message: str) -> None:
    from calling.yamlsource import SourceErrors

    text = yaml if "steps" in yaml else yaml + "\nsteps: [hang_up]"
    with pytest.raises(SourceErrors) as info:
        parse_scenario(text, "s.yaml")
    assert any(f": {field}: " in line and message in line for line in str(info.value).splitlines()), str(info.value)


# -- speech: what a party's frames hold ------------------------------------------------------------------------


def test_a_frame_holds_exactly_the_samples_the_plan_covers() -> None:
    said = speech.Utterance.place(tone(1000, seconds=0.03, at=0.01), 0.0)  # samples 160 to 640
    assert speech.frame([said], 0)[:320] == bytes(320)  # silence before it starts, mid-frame
    first, second = speech.frame([said], 0), speech.frame([said], 320)
    assert first is not None and second is not None and speech.frame([said], 640) is None
    whole = speech._tone_samples(1000.0, 0, 480)
    assert first[320:] + second == whole  # one continuous tone across frames
    later = speech.Utterance.place(tone(500, seconds=0.01, at=0.02), 0.0)  # samples 320 to 480 win
    mixed = speech.frame([said, later], 320)
    assert mixed is not None and mixed[:320] == speech._tone_samples(500.0, 0, 160) and mixed[320:] == whole[640:]
    assert said.cut(200) is not None and said.cut(200).end == 200 and said.cut(160) is None  # type: ignore[union-attr]


def test_speech_refuses_what_teams_media_could_not_carry(tmp_path: Path) -> None:
    import io
    import wave

    stereo = io.BytesIO()
    with wave.open(stereo, "wb") as out:
        out.setnchannels(2)
        out.setsampwidth(2)
        out.setframerate(16_000)
        out.writeframes(bytes(640))
    with pytest.raises(ValueError, match="mono 16-bit 16 kHz"):
        speech.wav(stereo.getvalue())
    with pytest.raises(ValueError, match="needs `seconds`"):
        speech.Say(0, None, frequency=440)
    with pytest.raises(ValueError):
        tone(440, seconds=0)
