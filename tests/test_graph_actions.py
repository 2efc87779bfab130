"""Every call action: the HTTP request msgraph-sdk sends (method, path, exact body), checked against the
official Graph v1.0 OpenAPI schema, and refused before any request when arguments are out of range."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from calling import identities as ids
from calling.graph import AppHostedMedia, CallControl, Prompt, ServiceHostedMedia, prompt_resource_id
from calling.identities import MeetingId
from simulator.openapi import validate_request
from tests import graph_examples
from tests.graph_examples import example
from tests.stubs import APP_ID, TENANT_ID, LoopbackServer

CB = "https://bot.example.com/api/calls"
WAV = "https://prompts.example.com/welcome.wav"
RID = prompt_resource_id(WAV)
USER = {"@odata.type": "#microsoft.graph.identity", "id": "user-oid", "displayName": "Adele", "tenantId": TENANT_ID}
PHONE = {"@odata.type": "#microsoft.graph.identity", "id": "+14255550111"}
INSTANCE = {"@odata.type": "#microsoft.graph.identity", "id": "instance-oid", "displayName": "Main line"}
MEDIA_INFO = {"@odata.type": "#microsoft.graph.mediaInfo", "uri": WAV, "resourceId": RID}
JOIN_URL = ("https://teams.microsoft.com/l/meetup-join/19%3ameeting_NjQ1YzA%40thread.v2/0?context="
            "%7b%22Tid%22%3a%22" + TENANT_ID + "%22%2c%22Oid%22%3a%22organizer-oid%22%7d")

Action = Callable[[CallControl], Awaitable[Any]]
user = ids.teams_user("user-oid", display_name="Adele", tenant_id=TENANT_ID)

CASES: list[tuple[str, Action, str, str, Any]] = [
    ("answer service-hosted with prefetch",
     lambda c: c.answer("c1", media=ServiceHostedMedia((Prompt(WAV),))),
     "POST", "/communications/calls/c1/answer",
     {"callbackUri": CB, "acceptedModalities": ["audio"],
      "mediaConfig": {"@odata.type": "#microsoft.graph.serviceHostedMediaConfig", "preFetchMedia": [MEDIA_INFO]}}),
    ("answer app-hosted, content sharing, capacity",
     lambda c: c.answer("c1", media=AppHostedMedia("<blob>"), modalities=("audio", "video"),
                        content_sharing_notifications=True, participant_capacity=200,
                        callback_uri="https://vm0.example.com:9441/callback"),
     "POST", "/communications/calls/c1/answer",
     {"callbackUri": "https://vm0.example.com:9441/callback", "acceptedModalities": ["audio", "video"],
      "mediaConfig": {"@odata.type": "#microsoft.graph.appHostedMediaConfig", "blob": "<blob>"},
      "callOptions": {"@odata.type": "#microsoft.graph.incomingCallOptions",
                      "isContentSharingNotificationEnabled": True},
      "participantCapacity": 200}),
    ("reject busy", lambda c: c.reject("c1", reason="busy"), "POST", "/communications/calls/c1/reject",
     {"reason": "busy"}),
    ("redirect simultaneous ring with timeout",
     lambda c: c.redirect("c1", [ids.phone("+14255550111"), user], timeout=30),
     "POST", "/communications/calls/c1/redirect",
     {"targets": [{"@odata.type": "#microsoft.graph.invitationParticipantInfo", "identity": {"phone": PHONE}},
                  {"@odata.type": "#microsoft.graph.invitationParticipantInfo", "identity": {"user": USER}}],
      "timeout": 30}),
    ("playPrompt", lambda c: c.play_prompt("c1", [Prompt(WAV)], client_context="call-1:3"),
     "POST", "/communications/calls/c1/playPrompt",
     {"prompts": [{"@odata.type": "#microsoft.graph.mediaPrompt", "mediaInfo": MEDIA_INFO}],
      "clientContext": "call-1:3"}),
    ("recordResponse (voicemail)",
     lambda c: c.record_response("c1", prompt=Prompt(WAV), initial_silence_timeout=10, max_silence_timeout=5,
                                 max_record_duration=120, stop_tones=("#", "*"), client_context="vm"),
     "POST", "/communications/calls/c1/recordResponse",
     {"prompts": [{"@odata.type": "#microsoft.graph.mediaPrompt", "mediaInfo": MEDIA_INFO}],
      "bargeInAllowed": False, "initialSilenceTimeoutInSeconds": 10, "maxSilenceTimeoutInSeconds": 5,
      "maxRecordDurationInSeconds": 120, "playBeep": True, "stopTones": ["#", "*"], "clientContext": "vm"}),
    ("cancelMediaProcessing", lambda c: c.cancel_media_processing("c1", client_context="x"),
     "POST", "/communications/calls/c1/cancelMediaProcessing", {"clientContext": "x"}),
    ("subscribeToTone", lambda c: c.subscribe_to_tone("c1", client_context="x"),
     "POST", "/communications/calls/c1/subscribeToTone", {"clientContext": "x"}),
    ("sendDtmfTones", lambda c: c.send_dtmf_tones("c1", "12*#A", delay_between_tones_ms=300),
     "POST", "/communications/calls/c1/sendDtmfTones",
     {"tones": ["tone1", "tone2", "star", "pound", "a"], "delayBetweenTonesMs": 300}),
    ("keepAlive", lambda c: c.keep_alive("c1"), "POST", "/communications/calls/c1/keepAlive", None),
    ("blind transfer to a Teams user", lambda c: c.transfer("c1", user),
     "POST", "/communications/calls/c1/transfer",
     {"transferTarget": {"@odata.type": "#microsoft.graph.invitationParticipantInfo", "identity": {"user": USER}}}),
    ("consultative transfer", lambda c: c.transfer("c1", user, replaces_call_id="c2"),
     "POST", "/communications/calls/c1/transfer",
     {"transferTarget": {"@odata.type": "#microsoft.graph.invitationParticipantInfo", "identity": {"user": USER},
                         "replacesCallId": "c2"}}),
    ("transfer to PSTN", lambda c: c.transfer("c1", ids.phone("+14255550111")),
     "POST", "/communications/calls/c1/transfer",
     {"transferTarget": {"@odata.type": "#microsoft.graph.invitationParticipantInfo", "identity": {"phone": PHONE}}}),
    ("transfer from a group call names the transferee",
     lambda c: c.transfer("c1", ids.phone("+14255550111"), transferee=user, transferee_participant_id="p-9"),
     "POST", "/communications/calls/c1/transfer",
     {"transferTarget": {"@odata.type": "#microsoft.graph.invitationParticipantInfo", "identity": {"phone": PHONE}},
      "transferee": {"identity": {"user": USER}, "participantId": "p-9"}}),
    ("invite with replacesCallId", lambda c: c.invite("c1", [user], replaces_call_id="p2p-1", client_context="i"),
     "POST", "/communications/calls/c1/participants/invite",
     {"participants": [{"@odata.type": "#microsoft.graph.invitationParticipantInfo", "identity": {"user": USER},
                        "replacesCallId": "p2p-1"}], "clientContext": "i"}),
    ("mute self", lambda c: c.mute("c1", client_context="m"), "POST", "/communications/calls/c1/mute",
     {"clientContext": "m"}),
    ("unmute self", lambda c: c.unmute("c1", client_context="m"), "POST", "/communications/calls/c1/unmute",
     {"clientContext": "m"}),
    ("mute a participant", lambda c: c.mute_participant("c1", "p-9", client_context="m"),
     "POST", "/communications/calls/c1/participants/p-9/mute", {"clientContext": "m"}),
    ("remove a participant", lambda c: c.remove_participant("c1", "p-9"),
     "DELETE", "/communications/calls/c1/participants/p-9", None),
    ("updateRecordingStatus", lambda c: c.update_recording_status("c1", "recording", client_context="r"),
     "POST", "/communications/calls/c1/updateRecordingStatus", {"status": "recording", "clientContext": "r"}),
    ("changeScreenSharingRole", lambda c: c.change_screen_sharing_role("c1", "sharer"),
     "POST", "/communications/calls/c1/changeScreenSharingRole", {"role": "sharer"}),
    ("hang up", lambda c: c.hang_up("c1"), "DELETE", "/communications/calls/c1", None),
    ("get call", lambda c: c.get_call("c1"), "GET", "/communications/calls/c1", None),
    ("list participants", lambda c: c.list_participants("c1"), "GET", "/communications/calls/c1/participants", None),
    ("get operation", lambda c: c.get_operation("c1", "op-1"), "GET", "/communications/calls/c1/operations/op-1",
     None),
    ("call a Teams user", lambda c: c.call_teams_user(user),
     "POST", "/communications/calls",
     {"@odata.type": "#microsoft.graph.call", "callbackUri": CB, "tenantId": TENANT_ID,
      "requestedModalities": ["audio"], "mediaConfig": {"@odata.type": "#microsoft.graph.serviceHostedMediaConfig"},
      "targets": [{"@odata.type": "#microsoft.graph.invitationParticipantInfo", "identity": {"user": USER}}]}),
    ("call a phone number from the resource account",
     lambda c: c.call_phone(ids.phone("+14255550111"),
                            from_instance=ids.application_instance("instance-oid", display_name="Main line")),
     "POST", "/communications/calls",
     {"@odata.type": "#microsoft.graph.call", "callbackUri": CB, "tenantId": TENANT_ID,
      "requestedModalities": ["audio"], "mediaConfig": {"@odata.type": "#microsoft.graph.serviceHostedMediaConfig"},
      "source": {"identity": {"applicationInstance": INSTANCE}},
      "targets": [{"@odata.type": "#microsoft.graph.invitationParticipantInfo", "identity": {"phone": PHONE}}]}),
    ("group call", lambda c: c.create_group_call([user, ids.teams_user("u2")], subject="Standup"),
     "POST", "/communications/calls",
     {"@odata.type": "#microsoft.graph.call", "callbackUri": CB, "tenantId": TENANT_ID, "direction": "outgoing",
      "subject": "Standup", "requestedModalities": ["audio"],
      "mediaConfig": {"@odata.type": "#microsoft.graph.serviceHostedMediaConfig"},
      "source": {"identity": {"application": {"@odata.type": "#microsoft.graph.identity", "id": APP_ID}}},
      "targets": [{"@odata.type": "#microsoft.graph.invitationParticipantInfo", "identity": {"user": USER}},
                  {"@odata.type": "#microsoft.graph.invitationParticipantInfo",
                   "identity": {"user": {"@odata.type": "#microsoft.graph.identity", "id": "u2"}}}]}),
    ("join a meeting from its join URL", lambda c: c.join_meeting(JOIN_URL),
     "POST", "/communications/calls",
     {"@odata.type": "#microsoft.graph.call", "callbackUri": CB, "tenantId": TENANT_ID,
      "requestedModalities": ["audio"], "mediaConfig": {"@odata.type": "#microsoft.graph.serviceHostedMediaConfig"},
      "chatInfo": {"@odata.type": "#microsoft.graph.chatInfo", "threadId": "19:meeting_NjQ1YzA@thread.v2",
                   "messageId": "0"},
      "meetingInfo": {"@odata.type": "#microsoft.graph.organizerMeetingInfo",
                      "organizer": {"user": {"@odata.type": "#microsoft.graph.identity", "id": "organizer-oid",
                                             "tenantId": TENANT_ID}}}}),
    ("join a meeting by id and passcode", lambda c: c.join_meeting(MeetingId("1234567", "psw123")),
     "POST", "/communications/calls",
     {"@odata.type": "#microsoft.graph.call", "callbackUri": CB, "tenantId": TENANT_ID,
      "requestedModalities": ["audio"], "mediaConfig": {"@odata.type": "#microsoft.graph.serviceHostedMediaConfig"},
      "meetingInfo": {"@odata.type": "#microsoft.graph.joinMeetingIdMeetingInfo", "joinMeetingId": "1234567",
                      "passcode": "psw123"}}),
]


@pytest.mark.parametrize(("name", "action", "method", "path", "body"), CASES, ids=[c[0] for c in CASES])
async def test_action_request(server: LoopbackServer, control: CallControl, name: str, action: Action,
                              method: str, path: str, body: Any) -> None:
    await action(control)
    [request] = server.graph_requests()
    assert request.method == method
    assert request.path == "/v1.0" + path
    assert request.headers["Authorization"] == "Bearer local-simulator-token"
    assert request.json == body
    if method != "GET":
        errors = validate_request(method, path, request.json)
        assert errors == [], [str(e) for e in errors]


async def test_operation_and_call_results_are_typed(server: LoopbackServer, control: CallControl) -> None:
    op = await control.play_prompt("c1", [Prompt(WAV)], client_context="ctx")
    assert (op.type, op.status, op.client_context) == ("playPrompt", "running", "ctx")
    call = await control.call_teams_user(user)
    assert call.id.startswith("call-")
    assert call.state == "establishing"


@pytest.mark.parametrize(("name", "suffix", "action"), [
    ("PLAY_PROMPT_RESPONSE", "/calls/c1/playPrompt", lambda c: c.play_prompt("c1", [Prompt(WAV)])),
    ("RECORD_RESPONSE", "/calls/c1/recordResponse", lambda c: c.record_response("c1")),
])
async def test_operation_status_in_a_response_is_graphs_spelling(server: LoopbackServer, control: CallControl,
                                                                 name: str, suffix: str, action: Action) -> None:
    """The documented response, with the status spelt as the v1.0 schema's operationStatus enum spells it
    (`Running`): read the same way notifications are, so callers compare against one spelling."""
    from aiohttp import web

    body = {**example(getattr(graph_examples, name)), "status": "Running"}
    server.script("POST", suffix, lambda r: web.json_response(body))
    op = await action(control)
    assert (op.id, op.status, op.client_context) == \
        ("0fe0623f-d628-42ed-b4bd-8ac290072cc5", "running", "d45324c1-fcb5-430a-902c-f20af696537c")


async def test_an_unknown_operation_status_in_a_response_is_kept(server: LoopbackServer,
                                                                 control: CallControl) -> None:
    from aiohttp import web

    body = {**example(graph_examples.PLAY_PROMPT_RESPONSE), "status": "paused"}
    server.script("POST", "/calls/c1/playPrompt", lambda r: web.json_response(body))
    assert (await control.play_prompt("c1", [Prompt(WAV)])).status == "paused"


async def test_unknown_call_state_is_kept(server: LoopbackServer, control: CallControl) -> None:
    from aiohttp import web

    server.script("GET", "/calls/c1", lambda r: web.json_response({"id": "c1", "state": "ringing"}))
    assert (await control.get_call("c1")).state == "ringing"


OUT_OF_RANGE: list[tuple[str, Action, str]] = [
    ("redirect with no target", lambda c: c.redirect("c1", []), "1 to 25 targets"),
    ("redirect with 26 targets", lambda c: c.redirect("c1", [ids.phone(f"+1425555{i:04d}") for i in range(26)]),
     "1 to 25 targets"),
    ("redirect timeout 14", lambda c: c.redirect("c1", [user], timeout=14), "15-90"),
    ("redirect timeout 91", lambda c: c.redirect("c1", [user], timeout=91), "15-90"),
    ("playPrompt with none", lambda c: c.play_prompt("c1", []), "1 to 20 prompts"),
    ("playPrompt with 21", lambda c: c.play_prompt("c1", [Prompt(WAV)] * 21), "1 to 20 prompts"),
    ("record 0 s", lambda c: c.record_response("c1", max_record_duration=0), "max_record_duration must be 1-120"),
    ("record 121 s", lambda c: c.record_response("c1", max_record_duration=121), "1-120"),
    ("record silence 0", lambda c: c.record_response("c1", initial_silence_timeout=0), "initial_silence_timeout"),
    ("record stop tone", lambda c: c.record_response("c1", stop_tones=("x",)), "0-9 * # A-D"),
    ("invite none", lambda c: c.invite("c1", []), "1 to 5 participants"),
    ("invite six", lambda c: c.invite("c1", [user] * 6), "1 to 5 participants"),
    ("group call of six", lambda c: c.create_group_call([user] * 6), "1 to 5 targets"),
    ("client context too long", lambda c: c.subscribe_to_tone("c1", client_context="x" * 257), "at most 256"),
    ("dtmf bad key", lambda c: c.send_dtmf_tones("c1", "12x"), "0-9 * # A-D"),
    ("dtmf empty", lambda c: c.send_dtmf_tones("c1", ""), "must not be empty"),
    ("reject reason", lambda c: c.reject("c1", reason="later"), "reason must be one of"),  # type: ignore[arg-type]
    ("recording status", lambda c: c.update_recording_status("c1", "paused"), "status must be one of"),  # type: ignore[arg-type]
    ("capacity", lambda c: c.answer("c1", participant_capacity=0), "participantCapacity"),
    ("modality", lambda c: c.answer("c1", modalities=("smell",)), "modality must be one of"),  # type: ignore[arg-type]
    ("PSTN without instance", lambda c: c.call_phone(ids.phone("+14255550111"), from_instance=user),
     "applicationInstance"),
    ("p2p call to a number as a Teams user", lambda c: c.call_teams_user(ids.phone("+14255550111")), "user identity"),
    ("call id with a slash", lambda c: c.hang_up("c1/../x"), "not a valid call id"),
    ("call id with a space", lambda c: c.mute("c 1"), "not a valid call id"),
    ("call id with %00", lambda c: c.keep_alive("c1%00"), "not a valid call id"),
    ("call id with a lone surrogate", lambda c: c.hang_up("c1\ud800"), "not a valid call id"),
    ("call id with an emoji", lambda c: c.get_call("c1\U0001f4de"), "not a valid call id"),
    ("operation id with a query", lambda c: c.get_operation("c1", "op?x=1"), "not a valid operation id"),
    ("join URL that is not Teams", lambda c: c.join_meeting("https://example.com/l/meetup-join/a/b"),
     "not a Teams meeting"),
    ("transferee without participant id", lambda c: c.transfer("c1", user, transferee=user), "go together"),
]


@pytest.mark.parametrize(("name", "action", "message"), OUT_OF_RANGE, ids=[c[0] for c in OUT_OF_RANGE])
async def test_out_of_range_refused_before_any_request(server: LoopbackServer, control: CallControl, name: str,
                                                        action: Action, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("*", r"\*")):
        await action(control)
    assert server.graph_requests() == []


def test_prompt_must_be_https_and_gets_a_stable_resource_id() -> None:
    with pytest.raises(ValueError, match="https"):
        Prompt("http://prompts.example.com/a.wav")
    assert Prompt(WAV).resource_id == Prompt(WAV).resource_id == RID
    assert Prompt("https://prompts.example.com/other.wav").resource_id != RID
    assert Prompt(WAV, resource_id="fixed").resource_id == "fixed"


async def test_recording_download_uses_its_own_token(server: LoopbackServer, control: CallControl) -> None:
    from aiohttp import web

    def serve(r: Any) -> web.Response:
        if r.headers.get("Authorization") != "Bearer rec-token":
            return web.Response(status=401)
        return web.Response(body=b"RIFF....WAVEfmt ", content_type="application/octet-stream")

    server.script("GET", "/recordings/r1", serve)
    audio = await control.download_recording(f"{server.url}/recordings/r1", "rec-token")
    assert audio.startswith(b"RIFF")
    from calling.errors import GraphError

    with pytest.raises(GraphError) as info:
        await control.download_recording(f"{server.url}/recordings/r1", "wrong")
    assert info.value.status == 401
    with pytest.raises(GraphError, match="larger than"):
        await control.download_recording(f"{server.url}/recordings/r1", "rec-token", max_bytes=4)
