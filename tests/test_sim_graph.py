"""The simulator as Graph: driven by the project's real CallControl, observed by a bot webhook that checks
every notification's token with the real authenticator. No function app here: that is test_sim_e2e."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from calling.auth import NotificationAuthenticator
from calling.errors import GraphError
from calling.graph import ServiceHostedMedia
from calling.identities import application_instance, phone, teams_user
from simulator.core import Meeting
from simulator.faults import GraphFault, NotificationFault
from tests import graph_examples
from tests.graph_examples import example
from tests.simworld import APP, INSTANCE, NUMBER, TENANT, World, open_world


@pytest.fixture
async def world() -> AsyncIterator[World]:
    async with open_world() as opened:
        yield opened


async def _answered(world: World, caller: str = "+14255550100") -> Any:
    call = world.sim.dial(source=caller, to=NUMBER)
    await world.until(lambda: len(world.bot.received) >= 1)
    await world.control.answer(call.id, media=ServiceHostedMedia())
    await world.until(lambda: call.state == "established")
    return call


async def test_incoming_call_is_signed_and_shaped_like_graph(world: World) -> None:
    call = world.sim.dial(source="+14255550100", to=NUMBER)
    await world.until(lambda: len(world.bot.received) == 1)
    assert world.bot.refused == []
    (event,) = world.bot.events()
    assert type(event).__name__ == "IncomingCall"
    assert event.call_id == call.id
    assert event.source.kind == "phone" and event.source.id == "+14255550100"
    assert event.targets[0].kind == "applicationInstance" and event.targets[0].id == INSTANCE
    notification = world.bot.received[0]["value"][0]
    assert notification["resource"] == f"/app/calls/{call.id}"
    assert notification["resourceUrl"] == f"/communications/calls/{call.id}"


async def test_answer_establishes_with_audio_then_prompt_plays_for_its_wav_length(world: World) -> None:
    call = await _answered(world)
    assert world.bot.states() == ["incoming", "establishing", "established"]
    established = world.bot.last()
    assert established["mediaState"]["audio"] == "active"
    start = world.clock.elapsed()
    op = await world.control.play_prompt(call.id, [world.prompt("welcome"), world.prompt("menu")],
                                         client_context="step-1")
    assert op.status == "running"
    await world.until(lambda: any(e.__class__.__name__ == "OperationCompleted" for e in world.bot.events()))
    assert world.clock.elapsed() - start == pytest.approx(6.0)
    done = next(e for e in world.bot.events() if e.__class__.__name__ == "OperationCompleted")
    assert done.operation_id == op.id and done.client_context == "step-1" and done.status == "completed"
    assert [h.name for h in call.heard] == ["welcome", "menu"]
    assert all(h.outcome == "completed" for h in call.heard)


async def test_cancel_media_cancels_running_and_queued_prompts_with_8508(world: World) -> None:
    call = await _answered(world)
    await world.control.play_prompt(call.id, [world.prompt("menu")], client_context="a")
    await world.control.play_prompt(call.id, [world.prompt("welcome")], client_context="b")
    await world.until(lambda: bool(call.heard))
    await world.control.cancel_media_processing(call.id)
    await world.until(lambda: len([e for e in world.bot.events() if e.__class__.__name__ == "OperationCompleted"]) == 2)
    ops = [e for e in world.bot.events() if e.__class__.__name__ == "OperationCompleted"]
    assert {o.client_context for o in ops} == {"a", "b"}
    assert all(o.status == "failed" and o.result_info.code == 400 and o.result_info.subcode == 8508 for o in ops)


async def test_tones_reach_the_bot_only_after_subscribe(world: World) -> None:
    call = await _answered(world)
    world.sim.press(call, "1")
    await world.until(lambda: call.tones_received == ["1"])
    assert not [e for e in world.bot.events() if e.__class__.__name__ == "ToneReceived"]
    await world.control.subscribe_to_tone(call.id)
    world.sim.press(call, "2#")
    await world.until(lambda: len([e for e in world.bot.events() if e.__class__.__name__ == "ToneReceived"]) == 2)
    tones = [e for e in world.bot.events() if e.__class__.__name__ == "ToneReceived"]
    assert [(t.key, t.sequence_id) for t in tones] == [("2", 1), ("#", 2)]


async def test_record_response_serves_the_recording_behind_its_token(world: World) -> None:
    call = await _answered(world)
    world.sim.speak(call, 4.0)
    op = await world.control.record_response(call.id, max_record_duration=30, max_silence_timeout=2,
                                             initial_silence_timeout=5, play_beep=True, client_context="vm")
    await world.until(lambda: any(e.__class__.__name__ == "OperationCompleted" for e in world.bot.events()))
    done = next(e for e in world.bot.events() if e.__class__.__name__ == "OperationCompleted")
    assert done.operation_id == op.id and done.status == "completed"
    raw = done.raw["resourceData"]
    assert raw["completionReason"] == "maxSilenceTimeout"
    audio = await world.control.download_recording(raw["recordingLocation"], raw["recordingAccessToken"])
    assert audio[:4] == b"RIFF"
    assert call.recordings[0].seconds == pytest.approx(6.0)
    with pytest.raises(GraphError):
        await world.control.download_recording(raw["recordingLocation"], "wrong-token")


async def test_blind_transfer_success_ends_with_7015(world: World) -> None:
    call = await _answered(world)
    await world.control.transfer(call.id, phone("+14255550111"))
    await world.until(lambda: call.ended)
    assert world.bot.states()[-3:] == ["transferring", "transferAccepted", "terminated"]
    result = world.bot.last()["resultInfo"]
    assert (result["code"], result["subcode"]) == (0, 7015)
    assert call.legs[0].outcome == "answered" and call.legs[0].connected_to == "+14255550111"


@pytest.mark.parametrize(("outcome", "after"), [("decline", 2.0), ("no_answer", 30.0), ("fail", 1.0)])
async def test_blind_transfer_failure_returns_to_established_with_500_7000(world: World, outcome: str,
                                                                           after: float) -> None:
    world.sim.directory.set("+14255550111", outcome, after)  # type: ignore[arg-type]
    call = await _answered(world)
    start = world.clock.elapsed()
    await world.control.transfer(call.id, phone("+14255550111"))
    await world.until(lambda: call.legs and call.legs[0].outcome != "ringing")
    await world.until(lambda: world.bot.states()[-1] == "established" and len(world.bot.states()) > 4)
    assert world.clock.elapsed() - start == pytest.approx(after)
    update = world.bot.last()
    assert (update["resultInfo"]["code"], update["resultInfo"]["subcode"]) == (500, 7000)
    assert not call.ended


async def test_keepalive_is_required_within_45_minutes(world: World) -> None:
    call = await _answered(world)
    await world.clock.pass_time(40 * 60)
    assert not call.ended
    await world.control.keep_alive(call.id)
    await world.until(lambda: call.ended, within=46 * 60)
    result = call.result_info or {}
    assert (result["code"], result["subcode"]) == (408, 8537)
    with pytest.raises(GraphError) as info:
        await world.control.keep_alive(call.id)
    assert info.value.status == 404


async def test_unknown_action_parameter_is_refused_like_graph(world: World) -> None:
    call = await _answered(world)
    import httpx

    async with httpx.AsyncClient() as http:
        response = await http.post(f"{world.sim.url}/v1.0/communications/calls/{call.id}/answer",
                                   json={"callbackURI": "https://x", "acceptedModalities": ["audio"],
                                         "mediaConfig": {"@odata.type": "#microsoft.graph.serviceHostedMediaConfig"}},
                                   headers={"Authorization": "Bearer local"})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "BadRequest" and "callbackURI" in error["message"]
    assert set(error["innerError"]) >= {"date", "request-id", "client-request-id"}


async def test_an_unknown_property_inside_a_body_is_refused_like_graph(world: World) -> None:
    """The playPrompt example from Graph's docs with mediaInfo's `uri` misspelt: the same 400 shape as an
    unknown action parameter, and nothing is played."""
    call = await _answered(world)
    body = example(graph_examples.PLAY_PROMPT_REQUEST)
    body["prompts"][0]["mediaInfo"]["urii"] = body["prompts"][0]["mediaInfo"].pop("uri")
    import httpx

    async with httpx.AsyncClient() as http:
        response = await http.post(f"{world.sim.url}/v1.0/communications/calls/{call.id}/playPrompt", json=body,
                                   headers={"Authorization": "Bearer local"})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "BadRequest"
    assert "unknown property 'urii' of microsoft.graph.mediaInfo" in error["message"]
    assert set(error["innerError"]) >= {"date", "request-id", "client-request-id"}
    assert call.current_media is None and call.heard == []


async def test_outbound_pstn_needs_an_application_instance(world: World) -> None:
    with pytest.raises(GraphError) as info:
        await world.control.create_call([phone("+14255550111")])
    assert info.value.status == 400
    info_ = await world.control.call_phone(phone("+14255550111"),
                                           from_instance=application_instance(INSTANCE, tenant_id=TENANT))
    call = world.sim.calls[info_.id]
    await world.until(lambda: call.state == "established")
    assert call.remote == "+14255550111" and call.direction == "outgoing"


async def test_invite_adds_the_participant_to_the_roster(world: World) -> None:
    call = await _answered(world)
    op = await world.control.invite(call.id, [phone("+14255550122")])
    await world.until(lambda: any(e.__class__.__name__ == "OperationCompleted" for e in world.bot.events()))
    rosters = [e for e in world.bot.events() if e.__class__.__name__ == "ParticipantsUpdated"]
    assert rosters and any(p.party.id == "+14255550122" for p in rosters[-1].participants)
    done = next(e for e in world.bot.events() if e.__class__.__name__ == "OperationCompleted")
    assert done.operation_id == op.id and done.status == "completed"


async def test_join_meeting_brings_its_roster(world: World) -> None:
    thread = "19:meeting_abc@thread.v2"
    world.sim.meetings[thread] = Meeting(thread, "user:organizer-1", ["user:attendee-1"])
    url = ("https://teams.microsoft.com/l/meetup-join/19%3ameeting_abc%40thread.v2/0?context="
           f"%7b%22Tid%22%3a%22{TENANT}%22%2c%22Oid%22%3a%22organizer-1%22%7d")
    info = await world.control.join_meeting(url)
    call = world.sim.calls[info.id]
    await world.until(lambda: call.state == "established")
    assert {p.identity.get("user", {}).get("id") for p in call.participants.values()} >= {"organizer-1", "attendee-1"}


async def test_graph_faults_429_then_success_is_retried_by_the_bot(world: World) -> None:
    world.sim.faults.graph.append(GraphFault("answer", 429, retry_after=0.1))
    call = world.sim.dial(source="+14255550100", to=NUMBER)
    await world.until(lambda: len(world.bot.received) >= 1)
    await world.control.answer(call.id, media=ServiceHostedMedia())
    await world.until(lambda: call.state == "established")
    assert any("fault: answer answered 429" in e.summary for e in call.transcript.entries)


@pytest.mark.parametrize("kind", ["duplicate", "drop", "delay", "reorder"])
async def test_notification_faults(world: World, kind: str) -> None:
    world.sim.faults.notifications.append(NotificationFault("establishing", kind, seconds=3))  # type: ignore[arg-type]
    call = await _answered(world)
    await world.clock.pass_time(10)
    states = world.bot.states()
    expected = {"duplicate": ["incoming", "establishing", "establishing", "established"],
                "drop": ["incoming", "established"],
                "delay": ["incoming", "established", "establishing"],
                "reorder": ["incoming", "established", "establishing"]}[kind]
    assert states == expected
    assert call.state == "established"


async def test_forged_notifications_are_not_what_the_simulator_sends(world: World) -> None:
    """Sanity for the e2e forged-token test: the bot's authenticator accepts the simulator's own key only."""
    from simulator.signing import Signer

    forged = Signer().token(aud=APP, tid=TENANT)
    assert world.bot.keys is not None
    authenticator = NotificationAuthenticator(app_id=APP, allowed_tenants=[TENANT], keys=world.bot.keys)
    with pytest.raises(Exception, match=r"signature|key"):
        await authenticator.authenticate(f"Bearer {forged}")
    genuine = world.sim.signer.token(aud=APP, tid=TENANT)
    assert (await authenticator.authenticate(f"Bearer {genuine}")).tenant_id == TENANT


async def test_teams_user_transfer_target_and_p2p_hang_up(world: World) -> None:
    call = await _answered(world, caller="user:caller-1")
    world.sim.hang_up(call)
    await world.until(lambda: call.ended)
    result = world.bot.last()["resultInfo"]
    assert (result["code"], result["subcode"]) == (200, 4521)
    assert teams_user("x").kind == "user"
