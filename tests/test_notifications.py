"""calling.notifications: Graph commsNotifications bodies into typed call events.

Payloads follow the shapes in docs/graph notes (shared reference, section 1: envelope, incoming call,
policy recording, state changes, operations, tones, roster; section 3.4: transfer; section 5: resultInfo).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from calling.events import (
    CallEvent,
    CallStateChanged,
    ContentSharingUpdated,
    IncomingCall,
    OperationCompleted,
    ParticipantJoining,
    ParticipantsUpdated,
    ResultInfo,
    ToneReceived,
    UnknownEvent,
)
from calling.notifications import (
    MAX_NESTING,
    REJECTED_KEPT,
    LegacyNotificationError,
    NotificationError,
    Rejected,
    parse_body,
    parse_envelope,
    parse_notification,
    parse_result_info,
)
from tests import graph_examples
from tests.graph_examples import example

# --------------------------------------------------------------------------------------------------
# Builders

CALL_ID = "421f1100-f1f2-4b3a-9d6e-6f2b1c0a7e11"
OTHER_CALL_ID = "7a3c2200-aa11-4c2d-8e5f-0123456789ab"
TENANT_ID = "72f988bf-86f1-41af-91ab-2d7cd011db47"
BOT_APP_ID = "2c1a6e5d-0b4f-4d7e-9a3b-5e8f1c2d3b4a"
INSTANCE_ID = "11111111-2222-3333-4444-555555555555"
USER_ID = "8b081ef6-4792-4def-b2c9-c363a1bf41d5"
CALLBACK = "https://bot.contoso.com/api/calls"
CALL_URL = f"/communications/calls/{CALL_ID}"


def envelope(*notifications: dict[str, Any]) -> dict[str, Any]:
    return {"@odata.type": "#microsoft.graph.commsNotifications", "value": list(notifications)}


def to_body(payload: Any) -> bytes:
    return json.dumps(payload).encode("utf-8")


def notification(
    change: str,
    resource_data: Any = None,
    *,
    url: str | None = CALL_URL,
    resource: str | None = None,
) -> dict[str, Any]:
    item: dict[str, Any] = {"@odata.type": "#microsoft.graph.commsNotification", "changeType": change}
    if resource is not None:
        item["resource"] = resource
    if url is not None:
        item["resourceUrl"] = url
    if resource_data is not None:
        item["resourceData"] = resource_data
    return item


def call(**fields: Any) -> dict[str, Any]:
    return {"@odata.type": "#microsoft.graph.call", **fields}


def user_identity(user_id: str = USER_ID, name: str = "Adele Vance", tenant: str = TENANT_ID) -> dict[str, Any]:
    return {
        "@odata.type": "#microsoft.graph.identitySet",
        "user": {
            "@odata.type": "#microsoft.graph.identity",
            "id": user_id,
            "displayName": name,
            "tenantId": tenant,
            "identityProvider": "AAD",
        },
    }


def bot_target() -> dict[str, Any]:
    return {
        "@odata.type": "#microsoft.graph.invitationParticipantInfo",
        "identity": {"@odata.type": "#microsoft.graph.identitySet",
                     "application": {"@odata.type": "#microsoft.graph.identity", "id": BOT_APP_ID}},
        "endpointType": "default",
        "id": "e7f0a3b1-0c6e-4e5b-8a1b-9f0c1d2e3f40",
    }


def instance_target() -> dict[str, Any]:
    return {
        "@odata.type": "#microsoft.graph.invitationParticipantInfo",
        "identity": {"@odata.type": "#microsoft.graph.identitySet",
                     "applicationInstance": {"@odata.type": "#microsoft.graph.identity", "id": INSTANCE_ID,
                                             "displayName": "Contoso IVR", "tenantId": TENANT_ID}},
        "endpointType": "default",
        "id": "c0ffee00-0000-4000-8000-000000000001",
    }


def incoming_call(identity: dict[str, Any], *, targets: list[dict[str, Any]] | None = None,
                  **extra: Any) -> dict[str, Any]:
    return call(
        id=CALL_ID,
        state="incoming",
        direction="incoming",
        callbackUri=CALLBACK,
        callChainId="d8ba6a2b-7b1c-4b3e-a7f4-0a1b2c3d4e5f",
        tenantId=TENANT_ID,
        myParticipantId="a4f1e2d3-b5c6-4789-9abc-def012345678",
        source={
            "@odata.type": "#microsoft.graph.participantInfo",
            "id": "5e4d3c2b-1a09-4f8e-b7d6-c5b4a3928170",
            "identity": identity,
            "endpointType": "default",
            "region": "amer",
            "languageId": "en-US",
        },
        targets=targets if targets is not None else [bot_target()],
        **{"requestedModalities": ["audio"], **extra},
    )


def parse_one(item: dict[str, Any]) -> CallEvent:
    events = parse_body(to_body(envelope(item))).events
    assert len(events) == 1, events
    return events[0]


def parse_incoming(resource_data: dict[str, Any]) -> IncomingCall:
    event = parse_one(notification("created", resource_data))
    assert isinstance(event, IncomingCall)
    return event


def parse_state(item: dict[str, Any]) -> CallStateChanged:
    event = parse_one(item)
    assert isinstance(event, CallStateChanged)
    return event


def parse_operation(resource_data: dict[str, Any], op_id: str = "op-1") -> OperationCompleted:
    event = parse_one(notification("deleted", resource_data, url=f"{CALL_URL}/operations/{op_id}"))
    assert isinstance(event, OperationCompleted)
    return event


# --------------------------------------------------------------------------------------------------
# IncomingCall


def test_incoming_call_from_teams_user() -> None:
    event = parse_incoming(incoming_call(user_identity()))

    assert event.call_id == CALL_ID
    assert event.change_type == "created"
    assert event.resource_url == CALL_URL
    assert event.source.kind == "user"
    assert event.source.id == USER_ID
    assert event.source.tenant_id == TENANT_ID
    assert event.source.display_name == "Adele Vance"
    assert not event.source.is_anonymous
    assert event.tenant_id == TENANT_ID
    assert event.direction == "incoming"
    assert event.callback_uri == CALLBACK
    assert event.call_chain_id == "d8ba6a2b-7b1c-4b3e-a7f4-0a1b2c3d4e5f"
    assert event.my_participant_id == "a4f1e2d3-b5c6-4789-9abc-def012345678"
    assert event.source_participant_id == "5e4d3c2b-1a09-4f8e-b7d6-c5b4a3928170"
    assert event.requested_modalities == ("audio",)
    assert not event.is_transfer
    assert not event.is_policy_recording
    assert event.invite_reasons == ()
    assert event.bot_data is None
    assert event.chat_info is None
    assert event.meeting_info is None


def test_incoming_call_to_bot_application_directly() -> None:
    event = parse_incoming(incoming_call(user_identity(), targets=[bot_target()]))

    assert len(event.targets) == 1
    assert event.targets[0].kind == "application"
    assert event.targets[0].id == BOT_APP_ID


def test_incoming_pstn_call_to_application_instance() -> None:
    identity = {"@odata.type": "#microsoft.graph.identitySet",
                "phone": {"@odata.type": "#microsoft.graph.identity", "id": "+14255550123"}}
    event = parse_incoming(incoming_call(identity, targets=[instance_target()]))

    assert event.source.kind == "phone"
    assert event.source.id == "+14255550123"
    assert not event.source.is_anonymous
    assert [t.kind for t in event.targets] == ["applicationInstance"]
    assert event.targets[0].id == INSTANCE_ID
    assert event.targets[0].display_name == "Contoso IVR"
    assert event.targets[0].tenant_id == TENANT_ID


def test_incoming_guest_caller() -> None:
    identity = {"guest": {"id": "guest-9f8e7d", "displayName": "Visitor (Guest)"}}
    event = parse_incoming(incoming_call(identity))

    assert event.source.kind == "guest"
    assert event.source.id == "guest-9f8e7d"
    assert event.source.display_name == "Visitor (Guest)"
    assert not event.source.is_anonymous


def test_incoming_application_caller() -> None:
    identity = {"application": {"id": "0f9e8d7c-6b5a-4321-9876-abcdef012345", "displayName": "Other Bot"}}
    event = parse_incoming(incoming_call(identity))

    assert event.source.kind == "application"
    assert event.source.id == "0f9e8d7c-6b5a-4321-9876-abcdef012345"
    assert event.source.display_name == "Other Bot"


def test_incoming_encrypted_caller_is_anonymous() -> None:
    # Without a Calls.* permission the source identity arrives encrypted.
    identity = {"@odata.type": "#microsoft.graph.identitySet",
                "encrypted": {"@odata.type": "#microsoft.graph.identity", "id": "AAMkAGI2TG93AAA="}}
    event = parse_incoming(incoming_call(identity))

    assert event.source.kind == "encrypted"
    assert event.source.is_anonymous
    assert event.source.raw == identity


def test_incoming_meeting_invite_keeps_chat_and_meeting_info() -> None:
    chat_info = {"@odata.type": "#microsoft.graph.chatInfo",
                 "threadId": "19:meeting_NjQ5MzIyMjct@thread.v2", "messageId": "0",
                 "replyChainMessageId": "1600000000000"}
    meeting_info = {"@odata.type": "#microsoft.graph.organizerMeetingInfo",
                    "organizer": user_identity(name="Organizer")}
    event = parse_incoming(incoming_call(
        user_identity(), chatInfo=chat_info, meetingInfo=meeting_info,
        requestedModalities=["audio", "video", "videoBasedScreenSharing"]))

    assert event.chat_info == chat_info
    assert event.chat_info is not None
    assert event.chat_info["threadId"] == "19:meeting_NjQ5MzIyMjct@thread.v2"
    assert event.meeting_info == meeting_info
    assert event.requested_modalities == ("audio", "video", "videoBasedScreenSharing")


def test_incoming_transfer_has_transferor() -> None:
    context = {"@odata.type": "#microsoft.graph.incomingContext",
               "sourceParticipantId": "5e4d3c2b-1a09-4f8e-b7d6-c5b4a3928170",
               "transferor": user_identity("aaaa0000-1111-2222-3333-444455556666", "Transferring Agent")}
    event = parse_incoming(incoming_call(user_identity(), incomingContext=context))

    assert event.is_transfer
    assert event.incoming_context == context


def test_incoming_context_without_transferor_is_not_transfer() -> None:
    context = {"sourceParticipantId": "p1", "observedParticipantId": "p2",
               "onBehalfOf": user_identity("bbbb0000-1111-2222-3333-444455556666", "Boss")}
    event = parse_incoming(incoming_call(user_identity(), incomingContext=context))

    assert not event.is_transfer
    assert event.incoming_context is not None
    assert event.incoming_context["observedParticipantId"] == "p2"


def test_policy_recording_invite() -> None:
    bot_data = {
        "mediaHostedRegion": "USEA",
        "user": {"participationMethod": "callee", "clientLocation": "US"},
        "otherSideUser": {"id": "cccc0000-1111-2222-3333-444455556666", "participantId": "p-other",
                          "tenantId": TENANT_ID, "onBehalfOf": {"id": None},
                          "participationMethod": "caller", "clientLocation": "US"},
        "inviteReasons": ["PolicyBasedRecording"],
        "policyIdentifier": "Test Policy",
        "pairedRecorders": [{"id": "rec-1", "participantId": "rp-1"}],
        "otherRecorders": [],
    }
    data = incoming_call(
        user_identity(),
        meetingInfo={"@odata.type": "#microsoft.graph.tokenMeetingInfo", "token": "join token"},
        incomingContext={"sourceParticipantId": "p-src", "observedParticipantId": "p-obs"},
        applicationMetadata={"botData": bot_data},
    )
    event = parse_incoming(data)

    assert event.is_policy_recording
    assert event.invite_reasons == ("PolicyBasedRecording",)
    assert event.bot_data == bot_data
    assert event.bot_data is not None
    assert event.bot_data["policyIdentifier"] == "Test Policy"
    assert event.meeting_info == {"@odata.type": "#microsoft.graph.tokenMeetingInfo", "token": "join token"}
    assert not event.is_transfer


def test_bot_data_without_policy_reason_is_not_policy_recording() -> None:
    event = parse_incoming(incoming_call(user_identity(),
                                         applicationMetadata={"botData": {"inviteReasons": ["SomethingElse"]}}))
    assert not event.is_policy_recording
    assert event.invite_reasons == ("SomethingElse",)


def test_incoming_call_with_created_and_capitalised_state() -> None:
    data = incoming_call(user_identity())
    data["state"] = "Incoming"
    event = parse_one(notification("Created", data))
    assert isinstance(event, IncomingCall)
    assert event.change_type == "created"


# --------------------------------------------------------------------------------------------------
# CallStateChanged


def test_establishing() -> None:
    event = parse_state(notification("updated", call(id=CALL_ID, state="establishing")))
    assert event.state == "establishing"
    assert event.change_type == "updated"
    assert event.call_id == CALL_ID
    assert not event.audio_active
    assert not event.is_terminated
    assert event.result_info is None
    assert event.termination_reason is None


def test_established_with_active_audio() -> None:
    data = call(id=CALL_ID, state="established",
                mediaState={"@odata.type": "#microsoft.graph.callMediaState", "audio": "active"})
    event = parse_state(notification("updated", data))
    assert event.state == "established"
    assert event.audio_active
    assert event.media_state == {"audio": "active"}  # the @odata.type annotation is dropped


def test_established_with_inactive_audio() -> None:
    event = parse_state(notification("updated", call(state="established", mediaState={"audio": "inactive"})))
    assert not event.audio_active


def test_terminating() -> None:
    event = parse_state(notification("updated", call(id=CALL_ID, state="terminating")))
    assert event.state == "terminating"
    assert not event.is_terminated


def test_deleted_terminated_with_string_result_codes() -> None:
    data = call(id=CALL_ID, state="terminated",
                resultInfo={"@odata.type": "#microsoft.graph.resultInfo", "code": "200", "subcode": "5001",
                            "message": "The conversation has ended."})
    event = parse_state(notification("deleted", data))
    assert event.state == "terminated"
    assert event.is_terminated
    assert event.change_type == "deleted"
    assert event.result_info == ResultInfo(code=200, subcode=5001, message="The conversation has ended.")
    assert event.result_info is not None
    assert event.result_info.ok


def test_deleted_terminated_with_numeric_result_codes() -> None:
    data = call(state="terminated", resultInfo={"code": 408, "subcode": 8537, "message": "Keep Alive timeout"})
    event = parse_state(notification("deleted", data))
    assert event.result_info == ResultInfo(code=408, subcode=8537, message="Keep Alive timeout")
    assert event.result_info is not None
    assert not event.result_info.ok


def test_blind_transfer_failure_with_subcode_capital_c() -> None:
    # Section 3.4: failure examples spell it `subCode`; the call stays established.
    data = call(state="established",
                resultInfo={"@odata.type": "#microsoft.graph.resultInfo", "code": 500, "subCode": 7000,
                            "message": "Blind transfer failed"})
    event = parse_state(notification("updated", data))
    assert event.state == "established"
    assert event.result_info == ResultInfo(code=500, subcode=7000, message="Blind transfer failed")
    assert event.result_info is not None
    assert not event.result_info.ok


def test_transfer_sequence() -> None:
    items = [
        notification("updated", call(state="transferring")),
        notification("updated", call(state="transferaccepted")),
        notification("deleted", call(state="terminated",
                                     resultInfo={"code": 0, "subcode": 7015, "message": "GracefulTransferCompleted"})),
    ]
    events = parse_body(to_body(envelope(*items))).events
    assert [type(e) for e in events] == [CallStateChanged] * 3
    states = [e.state for e in events if isinstance(e, CallStateChanged)]
    assert states == ["transferring", "transferAccepted", "terminated"]
    last = events[-1]
    assert isinstance(last, CallStateChanged)
    assert last.result_info == ResultInfo(code=0, subcode=7015, message="GracefulTransferCompleted")
    assert last.result_info is not None
    assert last.result_info.ok


def test_termination_reason() -> None:
    data = call(state="terminated", terminationReason="AppTransferred",
                resultInfo={"code": 200, "subcode": 7015, "message": "ok"})
    event = parse_state(notification("deleted", data))
    assert event.termination_reason == "AppTransferred"


def test_rejected_call_deleted_without_state_is_terminated() -> None:
    data = {"@odata.type": "#microsoft.graph.call", "@odata.id": f"/app/calls/{CALL_ID}"}
    event = parse_state(notification("deleted", data))
    assert event.state == "terminated"
    assert event.is_terminated
    assert event.result_info is None
    assert event.media_state == {}


def test_ringing_is_kept() -> None:
    event = parse_state(notification("updated", call(state="ringing")))
    assert event.state == "ringing"


def test_unknown_future_state_kept_verbatim() -> None:
    event = parse_state(notification("updated", call(state="Parked")))
    assert event.state == "Parked"


@pytest.mark.parametrize(
    ("sent", "expected"),
    [("Terminated", "terminated"), ("ESTABLISHED", "established"), ("transferaccepted", "transferAccepted"),
     ("TransferAccepted", "transferAccepted"), ("hold", "hold"), ("Redirecting", "redirecting")],
)
def test_state_case_is_normalised(sent: str, expected: str) -> None:
    event = parse_state(notification("updated", call(state=sent)))
    assert event.state == expected


def test_change_type_case_is_normalised() -> None:
    event = parse_state(notification("Deleted", call(state="Terminated")))
    assert event.change_type == "deleted"
    assert event.state == "terminated"


def test_deleted_change_type_capitalised_without_state_is_terminated() -> None:
    event = parse_state(notification("DELETED", call()))
    assert event.state == "terminated"


def test_call_update_without_state_or_tone_is_unknown_event() -> None:
    event = parse_one(notification("updated", call(id=CALL_ID, mediaState={"audio": "inactive"})))
    assert isinstance(event, UnknownEvent)
    assert event.resource_type == "call"
    assert event.call_id == CALL_ID


def test_call_resource_without_odata_type_dispatches_on_url() -> None:
    event = parse_state(notification("updated", {"state": "established"}))
    assert event.state == "established"


def test_parse_result_info_both_spellings_and_garbage() -> None:
    assert parse_result_info({"code": "500", "subCode": "7700"}) == ResultInfo(500, 7700, None)
    assert parse_result_info({"code": 200, "subcode": 0, "message": "ok"}) == ResultInfo(200, 0, "ok")
    assert parse_result_info({"code": "n/a", "subcode": True}) == ResultInfo(None, None, None)
    assert parse_result_info("200/5001") is None
    assert str(ResultInfo(200, 5001, "The conversation has ended.")) == "200/5001 The conversation has ended."


# --------------------------------------------------------------------------------------------------
# ToneReceived


def tone_notification(tone: str, *, state: str = "established", sequence_id: Any = 1) -> dict[str, Any]:
    return notification("updated", call(
        state=state, toneInfo={"@odata.type": "#microsoft.graph.toneInfo", "sequenceId": sequence_id, "tone": tone}))


@pytest.mark.parametrize(
    ("tone", "key"),
    [("tone0", "0"), ("tone1", "1"), ("tone9", "9"), ("star", "*"), ("pound", "#"), ("a", "A"), ("d", "D"),
     ("flash", "flash"), ("Tone5", "5"), ("Pound", "#")],
)
def test_tone_keys(tone: str, key: str) -> None:
    event = parse_one(tone_notification(tone, sequence_id=7))
    assert isinstance(event, ToneReceived)
    assert event.tone == tone
    assert event.key == key
    assert event.sequence_id == 7
    assert event.state == "established"
    assert event.call_id == CALL_ID


def test_unknown_tone_kept_verbatim() -> None:
    event = parse_one(tone_notification("tone10"))
    assert isinstance(event, ToneReceived)
    assert event.key == "tone10"


def test_tone_sequence_id_string_becomes_int() -> None:
    event = parse_one(tone_notification("tone2", sequence_id="42"))
    assert isinstance(event, ToneReceived)
    assert event.sequence_id == 42


def test_tone_on_established_call_is_only_a_tone() -> None:
    events = parse_body(to_body(envelope(tone_notification("tone3", sequence_id=3)))).events
    assert len(events) == 1
    assert isinstance(events[0], ToneReceived)
    assert events[0].key == "3"


def test_tone_on_terminating_call_gives_tone_then_state() -> None:
    events = parse_body(to_body(envelope(tone_notification("pound", state="terminating", sequence_id=9)))).events
    assert [type(e) for e in events] == [ToneReceived, CallStateChanged]
    tone, state = events
    assert isinstance(tone, ToneReceived)
    assert isinstance(state, CallStateChanged)
    assert tone.key == "#"
    assert tone.sequence_id == 9
    assert tone.state == "terminating"
    assert state.state == "terminating"
    assert tone.raw is state.raw


def test_tone_without_state_is_only_a_tone() -> None:
    data = call(toneInfo={"sequenceId": 2, "tone": "star"})
    events = parse_body(to_body(envelope(notification("updated", data)))).events
    assert len(events) == 1
    assert isinstance(events[0], ToneReceived)
    assert events[0].state is None
    assert events[0].key == "*"


# --------------------------------------------------------------------------------------------------
# OperationCompleted


def test_play_prompt_completed() -> None:
    op = {"@odata.type": "#microsoft.graph.playPromptOperation", "id": "0fe0623f-d628-42ed-b4bd-8ac290072cc5",
          "clientContext": "d45324c1-fcb5-430a-902c-f20af696537c", "status": "completed",
          "resultInfo": {"@odata.type": "#microsoft.graph.resultInfo", "code": 200, "subcode": 0,
                         "message": "Action completed successfully."}}
    event = parse_operation(op, op_id="0fe0623f-d628-42ed-b4bd-8ac290072cc5")

    assert event.operation_type == "playPrompt"
    assert event.operation_id == "0fe0623f-d628-42ed-b4bd-8ac290072cc5"
    assert event.status == "completed"
    assert event.succeeded
    assert event.client_context == "d45324c1-fcb5-430a-902c-f20af696537c"
    assert event.result_info == ResultInfo(200, 0, "Action completed successfully.")
    assert event.call_id == CALL_ID
    assert event.change_type == "deleted"
    assert event.recording_location is None
    assert event.recording_access_token is None
    assert event.completion_reason is None


def test_record_completed_with_location_and_token() -> None:
    op = {"@odata.type": "#microsoft.graph.recordOperation", "id": "rec-op", "clientContext": "ctx-rec",
          "status": "completed",
          "resultInfo": {"code": 200, "subcode": 8515, "message": "Action completed, max record duration reached."},
          "recordingLocation": "https://file.location/17e3b46c-f61d-4f4d-9635-c626ef18e6ad",
          "recordingAccessToken": "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.token"}
    event = parse_operation(op, op_id="rec-op")

    assert event.operation_type == "record"
    assert event.succeeded
    assert event.result_info == ResultInfo(200, 8515, "Action completed, max record duration reached.")
    assert event.recording_location == "https://file.location/17e3b46c-f61d-4f4d-9635-c626ef18e6ad"
    assert event.recording_access_token == "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.token"
    assert "eyJ0eXAi" not in repr(event)  # the access token is kept out of logs


def test_cancelled_record_operation() -> None:
    op = {"@odata.type": "#microsoft.graph.recordOperation", "id": "rec-op-2", "status": "failed",
          "resultInfo": {"code": 400, "subcode": 8508, "message": "Action failed, the operation was cancelled."},
          "recordingLocation": "", "recordingAccessToken": "", "completionReason": "operationCanceled"}
    event = parse_operation(op, op_id="rec-op-2")

    assert event.operation_type == "record"
    assert event.status == "failed"
    assert not event.succeeded
    assert event.completion_reason == "operationCanceled"
    assert event.recording_location is None
    assert event.recording_access_token is None
    assert event.result_info == ResultInfo(400, 8508, "Action failed, the operation was cancelled.")


def test_send_dtmf_tones_operation() -> None:
    op = {"@odata.type": "#microsoft.graph.sendDtmfTonesOperation", "id": "dtmf-op", "status": "completed",
          "clientContext": "dtmf-ctx", "completionReason": "completedSuccessfully"}
    event = parse_operation(op, op_id="dtmf-op")
    assert event.operation_type == "sendDtmfTones"
    assert event.completion_reason == "completedSuccessfully"
    assert event.client_context == "dtmf-ctx"
    assert event.succeeded


def test_invite_participants_operation() -> None:
    op = {"@odata.type": "#microsoft.graph.inviteParticipantsOperation", "id": "invite-op",
          "status": "completed", "clientContext": "invite-ctx",
          "participants": [{"@odata.type": "#microsoft.graph.invitationParticipantInfo",
                            "identity": user_identity()}],
          "resultInfo": {"code": 200, "subcode": 0, "message": "ok"}}
    event = parse_operation(op, op_id="invite-op")
    assert event.operation_type == "inviteParticipants"
    assert event.operation_id == "invite-op"
    assert event.client_context == "invite-ctx"
    assert event.raw["resourceData"]["participants"][0]["identity"]["user"]["id"] == USER_ID


def test_operation_id_from_resource_url_when_entity_lacks_it() -> None:
    op = {"@odata.type": "#microsoft.graph.playPromptOperation", "status": "Completed",
          "clientContext": "c-1"}
    event = parse_operation(op, op_id="11aa22bb-33cc-44dd-55ee-66ff77889900")
    assert event.operation_id == "11aa22bb-33cc-44dd-55ee-66ff77889900"
    assert event.status == "completed"  # case normalised
    assert event.operation_type == "playPrompt"


def test_operation_without_odata_type_dispatches_on_url() -> None:
    event = parse_operation({"status": "failed", "resultInfo": {"code": "500", "subcode": "1005"}}, op_id="op-x")
    assert event.operation_type == "operation"
    assert event.operation_id == "op-x"
    assert event.status == "failed"
    assert event.result_info == ResultInfo(500, 1005, None)


def test_unknown_operation_status_kept() -> None:
    event = parse_operation({"@odata.type": "#microsoft.graph.recordOperation", "status": "paused"})
    assert event.status == "paused"
    assert not event.succeeded


# --------------------------------------------------------------------------------------------------
# ParticipantsUpdated, ParticipantJoining, ContentSharingUpdated


def roster() -> list[dict[str, Any]]:
    return [
        {"@odata.type": "#microsoft.graph.participant", "id": "p-user",
         "info": {"@odata.type": "#microsoft.graph.participantInfo", "identity": user_identity(),
                  "endpointType": "default", "region": "amer", "languageId": "en-US"},
         "mediaStreams": [{"mediaType": "audio", "sourceId": "1", "direction": "sendReceive",
                           "serverMuted": False, "label": "main-audio"}],
         "isMuted": True, "isInLobby": False,
         "recordingInfo": {"initiator": user_identity(), "recordingStatus": "recording"}},
        {"@odata.type": "#microsoft.graph.participant", "id": "p-phone",
         "info": {"identity": {"phone": {"id": "+4930123456789", "displayName": "+49 30 123456789"}},
                  "endpointType": "default"},
         "mediaStreams": [],
         "isMuted": False, "isInLobby": True,
         "recordingInfo": {"recordingStatus": "notRecording"}},
    ]


def test_roster_list() -> None:
    event = parse_one(notification("updated", roster(), url=f"{CALL_URL}/participants"))
    assert isinstance(event, ParticipantsUpdated)
    assert event.call_id == CALL_ID
    assert event.change_type == "updated"
    assert len(event.participants) == 2
    teams_user, caller = event.participants

    assert teams_user.participant_id == "p-user"
    assert teams_user.party.kind == "user"
    assert teams_user.party.id == USER_ID
    assert teams_user.party.display_name == "Adele Vance"
    assert teams_user.is_muted is True
    assert teams_user.is_in_lobby is False
    assert teams_user.recording_status == "recording"

    assert caller.participant_id == "p-phone"
    assert caller.party.kind == "phone"
    assert caller.party.id == "+4930123456789"
    assert caller.is_muted is False
    assert caller.is_in_lobby is True
    assert caller.recording_status == "notRecording"
    assert caller.raw["info"]["endpointType"] == "default"


def test_roster_list_trailing_slash_and_empty() -> None:
    event = parse_one(notification("updated", [], url=f"{CALL_URL}/participants/"))
    assert isinstance(event, ParticipantsUpdated)
    assert event.participants == ()


def test_single_participant_entity() -> None:
    entity = roster()[0]
    event = parse_one(notification("updated", entity, url=f"{CALL_URL}/participants/p-user"))
    assert isinstance(event, ParticipantsUpdated)
    assert [p.participant_id for p in event.participants] == ["p-user"]


def test_participant_missing_optional_fields() -> None:
    event = parse_one(notification("updated", [{"id": "p-bare", "isMuted": "yes"}],
                                   url=f"{CALL_URL}/participants"))
    assert isinstance(event, ParticipantsUpdated)
    (bare,) = event.participants
    assert bare.party.kind == "none"
    assert bare.is_muted is None  # not a boolean: not guessed
    assert bare.is_in_lobby is None
    assert bare.recording_status is None


def test_participant_joining_notification() -> None:
    joining_call = incoming_call(user_identity("dddd0000-1111-2222-3333-444455556666", "Joiner"))
    data = {"@odata.type": "#microsoft.graph.participantJoiningNotification", "call": joining_call}
    event = parse_one(notification("created", data))
    assert isinstance(event, ParticipantJoining)
    assert event.call_id == CALL_ID
    assert event.joining_call == joining_call
    assert event.joining_call["source"]["identity"]["user"]["displayName"] == "Joiner"


def test_participant_joining_without_call_object() -> None:
    data = {"@odata.type": "#microsoft.graph.participantJoiningNotification", "call": "nope"}
    event = parse_one(notification("created", data))
    assert isinstance(event, ParticipantJoining)
    assert event.joining_call == {}


def test_content_sharing_sessions_list() -> None:
    sessions = [{"@odata.type": "#microsoft.graph.contentSharingSession", "id": "share-1"},
                {"@odata.type": "#microsoft.graph.contentSharingSession", "id": "share-2"}]
    event = parse_one(notification("created", sessions, url=f"{CALL_URL}/contentSharingSessions"))
    assert isinstance(event, ContentSharingUpdated)
    assert event.session_ids == ("share-1", "share-2")
    assert event.call_id == CALL_ID
    assert event.change_type == "created"


def test_content_sharing_single_session() -> None:
    data = {"@odata.type": "#microsoft.graph.contentSharingSession", "id": "share-3"}
    event = parse_one(notification("deleted", data, url=f"{CALL_URL}/contentsharingsessions/share-3"))
    assert isinstance(event, ContentSharingUpdated)
    assert event.session_ids == ("share-3",)


# --------------------------------------------------------------------------------------------------
# UnknownEvent


def test_unknown_odata_type_is_kept() -> None:
    data = {"@odata.type": "#microsoft.graph.participantLeftNotification", "participantId": "p-9",
            "call": call(id=CALL_ID)}
    item = notification("created", data)
    event = parse_one(item)
    assert isinstance(event, UnknownEvent)
    assert event.resource_type == "participantleftnotification"
    assert event.raw == item
    assert event.call_id == CALL_ID


def test_unknown_list_at_unknown_url() -> None:
    data = [{"@odata.type": "#microsoft.graph.audioRoutingGroup", "id": "g1"}]
    item = notification("updated", data, url=f"{CALL_URL}/audioRoutingGroups")
    event = parse_one(item)
    assert isinstance(event, UnknownEvent)
    assert event.resource_type == "audioroutinggroup"
    assert event.raw == item


# --------------------------------------------------------------------------------------------------
# Envelope


def test_batch_keeps_order_across_calls() -> None:
    other_url = f"/communications/calls/{OTHER_CALL_ID}"
    items = [
        notification("updated", call(state="establishing")),
        notification("updated", call(state="established"), url=other_url),
        notification("deleted", {"@odata.type": "#microsoft.graph.playPromptOperation", "id": "op-a",
                                 "status": "completed"}, url=f"{other_url}/operations/op-a"),
        notification("updated", roster(), url=f"{CALL_URL}/participants"),
        tone_notification("tone4", sequence_id=4),
        notification("deleted", call(state="terminated"), url=other_url),
    ]
    events = parse_body(to_body(envelope(*items))).events

    assert [type(e) for e in events] == [CallStateChanged, CallStateChanged, OperationCompleted,
                                         ParticipantsUpdated, ToneReceived, CallStateChanged]
    assert [e.call_id for e in events] == [CALL_ID, OTHER_CALL_ID, OTHER_CALL_ID, CALL_ID, CALL_ID, OTHER_CALL_ID]
    assert [e.raw for e in events] == items


def test_each_event_raw_is_its_notification() -> None:
    items = [tone_notification("star", state="terminating"), notification("updated", call(state="hold"))]
    payload = envelope(*items)
    events = parse_envelope(payload).events
    assert len(events) == 3
    assert events[0].raw is items[0]
    assert events[1].raw is items[0]
    assert events[2].raw is items[1]


def test_empty_batch() -> None:
    assert parse_body(to_body(envelope())).events == []


def test_legacy_resource_without_resource_url() -> None:
    item = notification("deleted", call(state="terminated"), url=None, resource=f"/app/calls/{CALL_ID}")
    event = parse_state(item)
    assert event.call_id == CALL_ID
    assert event.resource_url == f"/app/calls/{CALL_ID}"


def test_legacy_resource_for_operation() -> None:
    item = notification("deleted", {"@odata.type": "#microsoft.graph.recordOperation", "status": "completed"},
                        url=None, resource=f"/app/calls/{CALL_ID}/operations/op-legacy")
    event = parse_one(item)
    assert isinstance(event, OperationCompleted)
    assert event.call_id == CALL_ID
    assert event.operation_id == "op-legacy"


def test_resource_url_wins_over_resource() -> None:
    item = notification("updated", call(state="established"), url=CALL_URL, resource=f"/app/calls/{OTHER_CALL_ID}")
    event = parse_state(item)
    assert event.call_id == CALL_ID
    assert event.resource_url == CALL_URL


def test_absolute_resource_url() -> None:
    url = f"https://graph.microsoft.com/v1.0/communications/calls/{CALL_ID}/operations/op-abs"
    event = parse_one(notification("deleted", {"@odata.type": "#microsoft.graph.playPromptOperation",
                                               "status": "completed"}, url=url))
    assert isinstance(event, OperationCompleted)
    assert event.call_id == CALL_ID
    assert event.operation_id == "op-abs"


def test_call_id_from_call_entity_when_url_names_none() -> None:
    event = parse_state(notification("updated", call(id=CALL_ID, state="established"), url="/somewhere/else"))
    assert event.call_id == CALL_ID


def test_parse_notification_directly() -> None:
    item = notification("updated", call(state="established"))
    events = parse_notification(item)
    assert len(events) == 1
    assert isinstance(events[0], CallStateChanged)
    assert events[0].raw is item
    with pytest.raises(NotificationError, match=r"^notification must be an object"):
        parse_notification([item])


def test_utf8_bom_and_non_ascii_display_name() -> None:
    data = incoming_call(user_identity(name="Zoë Müller"))
    body = b"\xef\xbb\xbf" + json.dumps(envelope(notification("created", data)), ensure_ascii=False).encode()
    (event,) = parse_body(body).events
    assert isinstance(event, IncomingCall)
    assert event.source.display_name == "Zoë Müller"


# --------------------------------------------------------------------------------------------------
# Errors


def error_for(body: bytes) -> str:
    with pytest.raises(NotificationError) as info:
        parse_body(body)
    assert not isinstance(info.value, LegacyNotificationError)
    return str(info.value)


def test_error_not_json() -> None:
    assert "body is not JSON" in error_for(b"changeType=updated&resourceUrl=/communications/calls/x")


def test_error_empty_body() -> None:
    assert "body is not JSON" in error_for(b"")


def test_error_invalid_utf8() -> None:
    message = error_for(b'{"value": [{"changeType": "upd\xff\xfeated"}]}')
    assert "body is not JSON" in message
    assert "utf-8" in message.lower()


def test_error_top_level_list() -> None:
    assert "must be a JSON object" in error_for(to_body([notification("updated", call(state="established"))]))


def test_error_no_value() -> None:
    assert "no 'value'" in error_for(to_body({"@odata.type": "#microsoft.graph.commsNotifications"}))


def test_error_value_not_a_list() -> None:
    message = error_for(to_body({"value": notification("updated", call(state="established"))}))
    assert "'value' must be a list" in message


def test_error_entry_not_an_object() -> None:
    payload = {"value": ["updated"]}
    message = error_for(to_body(payload))
    assert "value[0] must be an object" in message


@pytest.mark.parametrize("change", [None, "", 3])
def test_error_missing_change_type(change: Any) -> None:
    item = notification("updated", call(state="established"))
    if change is None:
        del item["changeType"]
    else:
        item["changeType"] = change
    message = error_for(to_body(envelope(item)))
    assert "value[0].changeType" in message
    assert "non-empty string" in message


def test_error_missing_resource_url_and_resource() -> None:
    message = error_for(to_body(envelope(notification("updated", call(state="established"), url=None))))
    assert "value[0] has neither resourceUrl nor resource" in message


def test_error_resource_data_string() -> None:
    message = error_for(to_body(envelope(notification("updated", "established"))))
    assert "value[0].resourceData must be an object or a list" in message


def test_error_resource_data_list_with_non_objects() -> None:
    data = [roster()[0], "p-phone", 3]
    message = error_for(to_body(envelope(notification("updated", data, url=f"{CALL_URL}/participants"))))
    assert "value[0].resourceData list must hold objects" in message


def test_error_resource_url_names_no_call() -> None:
    item = notification("updated", {"@odata.type": "#microsoft.graph.participant", "id": "p"},
                        url="/communications/onlineMeetings/abc")
    message = error_for(to_body(envelope(item)))
    assert "cannot tell the call id" in message
    assert "/communications/onlineMeetings/abc" in message


def test_a_bad_notification_is_rejected_and_the_others_still_parse() -> None:
    """Graph's documented established notification twice, with an entry between them that lacks its URL."""
    good = example(graph_examples.ANSWER_ESTABLISHED)["value"][0]
    bad = {**good}
    del bad["resourceUrl"]
    batch = parse_body(to_body(envelope(good, bad, "updated", good)))
    assert [(type(e), e.raw) for e in batch.events] == [(CallStateChanged, good), (CallStateChanged, good)]
    assert batch.rejected == [Rejected(1, "value[1] has neither resourceUrl nor resource"),
                              Rejected(2, "value[2] must be an object")]


def test_a_batch_with_nothing_usable_names_every_problem() -> None:
    bad = notification("updated", call(state="established"), url=None)
    message = error_for(to_body(envelope(bad, "updated")))
    assert message == ("no notification in the batch can be read: value[0] has neither resourceUrl nor resource; "
                       "value[1] must be an object")
    many = error_for(to_body(envelope(*[bad] * 8)))
    assert "value[4] has neither" in many
    assert "value[5]" not in many
    assert many.endswith("(and 3 more)")


@pytest.mark.parametrize(("url", "reason"), [
    (f"{CALL_URL}#b", f"value[0]: '{CALL_ID}#b' in resourceUrl is not a Graph call id"),
    (f"{CALL_URL}?x=1", f"value[0]: '{CALL_ID}?x=1' in resourceUrl is not a Graph call id"),
    (f"/v1.0/calls/{OTHER_CALL_ID}/communications/calls/{CALL_ID}", "value[0]: cannot tell the call id"),
    (f"{CALL_URL}/participants/calls/{OTHER_CALL_ID}", "value[0]: cannot tell the call id"),
    (f"/v1.0/calls/{OTHER_CALL_ID}", "value[0]: cannot tell the call id"),
])
def test_a_resource_url_the_session_would_read_as_another_call_is_refused(url: str, reason: str) -> None:
    """Found by fuzzing (tests/test_fuzz_webhook.py): the call's session reads a notification's call as the segment
    after the path's first `calls` (calling/consult.call_id_of), up to the next `/`. The webhook read
    `communications/calls/{id}` anywhere, stopping at `?` or `#`, so it delivered these to CALL_ID's session,
    which took them for another call: it hung up OTHER_CALL_ID, or tried to hang up `CALL_ID#b`."""
    item = notification("updated", call(id=CALL_ID, state="established"), url=url)
    assert error_for(to_body(envelope(item))).startswith(reason)


def test_a_notification_nested_past_the_limit_is_refused_and_the_rest_of_its_batch_goes_on() -> None:
    """Found by fuzzing: a policy-recording invite with a value nested 600 deep (the body parses) lost the call in
    the hand-off (dataclasses.asdict recursed past Python's limit), and deep values reached the sessions."""
    def nested(levels: int) -> Any:
        value: Any = 1
        for _ in range(levels):
            value = [value]
        return value

    at_limit = notification("updated", call(state="established", chatInfo=nested(MAX_NESTING - 2)))
    past = notification("updated", call(state="established", chatInfo=nested(MAX_NESTING - 1)))
    batch = parse_envelope(envelope(at_limit, past))
    assert [e.raw for e in batch.events] == [at_limit]
    assert batch.rejected == [Rejected(1, f"value[1] is nested too deeply (more than {MAX_NESTING} levels)")]


def test_a_huge_batch_keeps_the_first_reasons_and_counts_the_rest() -> None:
    """Found by fuzzing (tests/test_fuzz_webhook.py): one good notification and two million `1`s fit in the default
    4 MiB body, and the batch kept a reason for each, about 400 MB, which the webhook then logged and echoed."""
    good = example(graph_examples.ANSWER_ESTABLISHED)["value"][0]
    batch = parse_envelope({"value": [good, *[1] * 100_000]})
    assert [e.raw for e in batch.events] == [good]
    assert batch.rejected == [Rejected(i, f"value[{i}] must be an object") for i in range(1, REJECTED_KEPT + 1)]
    assert batch.rejected_total == 100_000
    assert error_for(to_body({"value": [1] * 100_000})).endswith("value[4] must be an object (and 99995 more)")


@pytest.mark.parametrize(
    "legacy",
    [
        {"id": CALL_ID, "callState": "incoming", "presentedModalityTypes": ["audio"],
         "links": {"call": f"/v1/calls/{CALL_ID}"}},
        {"id": CALL_ID, "appState": "x", "conversationResult": {"callState": "terminated"}},
        {"callState": "established"},
    ],
)
def test_legacy_body_raises_legacy_error(legacy: dict[str, Any]) -> None:
    with pytest.raises(LegacyNotificationError, match="legacy"):
        parse_body(to_body(legacy))


def test_legacy_error_is_a_notification_error() -> None:
    with pytest.raises(NotificationError):
        parse_body(to_body({"callState": "incoming"}))


def test_body_with_value_and_legacy_key_is_not_legacy() -> None:
    payload = envelope(notification("updated", call(state="established")))
    payload["links"] = {}
    (event,) = parse_body(to_body(payload)).events
    assert isinstance(event, CallStateChanged)


# --------------------------------------------------------------------------------------------------
# Robustness: the body either parses or is a NotificationError (400), never anything else (500).

json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=25,
)

ODATA_TYPES = [
    "#microsoft.graph.call", "#microsoft.graph.participant", "#microsoft.graph.playPromptOperation",
    "#microsoft.graph.recordOperation", "#microsoft.graph.sendDtmfTonesOperation",
    "#microsoft.graph.inviteParticipantsOperation", "#microsoft.graph.contentSharingSession",
    "#microsoft.graph.participantJoiningNotification", "#microsoft.graph.somethingNew", "",
]
ENTITY_KEYS = [
    "@odata.type", "id", "state", "toneInfo", "resultInfo", "mediaState", "source", "targets", "tenantId",
    "applicationMetadata", "incomingContext", "chatInfo", "meetingInfo", "requestedModalities", "status",
    "clientContext", "recordingLocation", "recordingAccessToken", "completionReason", "info", "isMuted",
    "recordingInfo", "call", "terminationReason", "direction",
]
URLS = [
    CALL_URL, f"{CALL_URL}/participants", f"{CALL_URL}/operations/op-1", f"{CALL_URL}/contentsharingsessions",
    f"/app/calls/{CALL_ID}", "/communications/calls/", "/elsewhere", "",
]


def entities() -> st.SearchStrategy[Any]:
    identity_sets = st.dictionaries(
        st.sampled_from(["user", "phone", "guest", "application", "applicationInstance", "encrypted", "@odata.type"]),
        json_values | st.fixed_dictionaries({}, optional={"id": json_values, "displayName": json_values}),
        max_size=3,
    )
    values = json_values | identity_sets | st.lists(st.fixed_dictionaries({}, optional={"identity": identity_sets}))
    entity = st.dictionaries(st.sampled_from(ENTITY_KEYS), values, max_size=8).flatmap(
        lambda d: st.sampled_from(ODATA_TYPES).map(lambda t: {**d, "@odata.type": t}) | st.just(d)
    )
    return entity | st.lists(entity, max_size=3) | json_values


# Mostly well-formed envelopes (so the property reaches the typed parsers), some with any field anything.
well_formed_notifications = st.fixed_dictionaries(
    {
        "changeType": st.sampled_from(["created", "updated", "deleted", "Deleted"]),
        "resourceUrl": st.sampled_from(URLS),
    },
    optional={"resource": st.sampled_from(URLS), "resourceData": entities()},
)
loose_notifications = st.fixed_dictionaries(
    {},
    optional={
        "changeType": st.sampled_from(["created", "updated", "deleted"]) | json_values,
        "resourceUrl": st.sampled_from(URLS) | json_values,
        "resource": st.sampled_from(URLS) | json_values,
        "resourceData": entities(),
    },
)
notifications = well_formed_notifications | loose_notifications


def assert_parses_or_rejects(body: bytes) -> None:
    try:
        events = parse_body(body).events
    except NotificationError:
        return
    assert isinstance(events, list)
    assert all(isinstance(e, CallEvent) for e in events)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_property_arbitrary_json_body(value: Any) -> None:
    assert_parses_or_rejects(json.dumps(value).encode())


@settings(max_examples=300)
@given(st.binary(max_size=64))
def test_property_arbitrary_bytes(body: bytes) -> None:
    assert_parses_or_rejects(body)


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(notifications | json_values, max_size=4))
def test_property_envelope_of_arbitrary_notifications(items: list[Any]) -> None:
    payload = {"value": items}
    assert_parses_or_rejects(json.dumps(payload).encode())
    try:
        batch = parse_envelope(payload)
    except NotificationError:
        return
    # Every event comes from one of the notifications, in batch order; every notification either gave
    # events or was rejected, and something was usable.
    positions = [next(i for i, item in enumerate(items) if item is e.raw) for e in batch.events]
    assert positions == sorted(positions)
    rejected = {r.index for r in batch.rejected}
    for i, item in enumerate(items):
        assert any(e.raw is item for e in batch.events) is (i not in rejected)
    assert len(rejected) < len(items) or not items


# json.loads raises more than JSONDecodeError / UnicodeDecodeError: an integer past Python's digit limit is
# a plain ValueError and deep nesting a RecursionError. Both must still be a 400, not a 500.


def test_huge_integer_is_a_notification_error() -> None:
    body = b'{"value": [{"changeType": "updated", "resourceUrl": "/communications/calls/x", ' \
           b'"resourceData": {"@odata.type": "#microsoft.graph.call", "toneInfo": {"sequenceId": ' \
           + b"9" * 5000 + b', "tone": "tone1"}}}]}'
    with pytest.raises(NotificationError, match="not JSON"):
        parse_body(body)


def test_deeply_nested_json_is_a_notification_error() -> None:
    body = b'{"value": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    with pytest.raises(NotificationError, match="nested too deeply"):
        parse_body(body)


# --------------------------------------------------------------------------------------------------
# Graph's published examples (tests/graph_examples.py names the doc page of each)


def doc_events(text: str) -> list[CallEvent]:
    return parse_body(text.encode()).events


def without_leading_slash(text: str) -> str:
    payload = example(text)
    for item in payload["value"]:
        item["resourceUrl"] = item["resourceUrl"].lstrip("/")
    return json.dumps(payload)


@pytest.mark.parametrize(("name", "change"), [("CONTENT_SHARING_STARTED", "created"),
                                              ("CONTENT_SHARING_ENDED", "deleted")])
def test_content_sharing_session_id_from_the_resource_url(name: str, change: str) -> None:
    """The documented content-sharing notifications carry no resourceData: the session id is in the URL."""
    (event,) = doc_events(getattr(graph_examples, name))
    assert isinstance(event, ContentSharingUpdated)
    assert event.call_id == "421f4c00-4436-4c3a-9d9a-c4924cf98e67"
    assert event.session_ids == ("2765eb15-01f8-47c6-b12b-c32111a4a86f",)
    assert event.change_type == change


def test_content_sharing_without_any_session_id_names_none() -> None:
    (event,) = doc_events(json.dumps(envelope(notification("created", url=f"{CALL_URL}/contentSharingSessions"))))
    assert isinstance(event, ContentSharingUpdated)
    assert event.session_ids == ()


def test_resource_url_without_its_leading_slash_still_names_the_call() -> None:
    (state,) = doc_events(without_leading_slash(graph_examples.ANSWER_ESTABLISHED))
    assert isinstance(state, CallStateChanged)
    assert (state.call_id, state.state) == ("57DAB8B1894C409AB240BD8BEAE78896", "established")

    (operation,) = doc_events(without_leading_slash(graph_examples.PLAY_PROMPT_COMPLETED))
    assert isinstance(operation, OperationCompleted)
    assert operation.call_id == "57DAB8B1894C409AB240BD8BEAE78896"
    assert operation.operation_id == "0FE0623FD62842EDB4BD8AC290072CC5"  # the example's entity has no id
    assert operation.succeeded

    (sharing,) = doc_events(without_leading_slash(graph_examples.CONTENT_SHARING_STARTED))
    assert isinstance(sharing, ContentSharingUpdated)
    assert sharing.call_id == "421f4c00-4436-4c3a-9d9a-c4924cf98e67"
    assert sharing.session_ids == ("2765eb15-01f8-47c6-b12b-c32111a4a86f",)

    (legacy,) = doc_events(json.dumps(envelope(notification("updated", call(state="hold"), url=None,
                                                            resource=f"app/calls/{CALL_ID}"))))
    assert legacy.call_id == CALL_ID


def test_a_path_that_merely_ends_in_communications_is_not_a_call() -> None:
    item = notification("updated", {"@odata.type": "#microsoft.graph.participant", "id": "p"},
                        url=f"/telecommunications/calls/{CALL_ID}")
    assert "cannot tell the call id" in error_for(to_body(envelope(item)))


@pytest.mark.parametrize(("name", "succeeded"), [
    ("PLAY_PROMPT_COMPLETED", True),
    ("RECORD_COMPLETED", True),  # 200/8515: max record duration reached is a full recording
    ("RECORD_CANCELED", False),
    ("DTMF_SUCCESS", True),
    ("DTMF_ERROR_1", False),  # completed, completionReason mediaOperationCanceled
    ("DTMF_ERROR_2", False),  # completed, completionReason unknown
])
def test_documented_operation_outcomes(name: str, succeeded: bool) -> None:
    (event,) = doc_events(getattr(graph_examples, name))
    assert isinstance(event, OperationCompleted)
    assert event.succeeded is succeeded


def _completed_play_prompt(**changes: Any) -> str:
    payload = example(graph_examples.PLAY_PROMPT_COMPLETED)
    payload["value"][0]["resourceData"].update(changes)
    return json.dumps(payload)


@pytest.mark.parametrize(("changes", "succeeded"), [
    # playPromptCompletionReason (beta; v1.0 models it through the open commsOperation): unknown,
    # completedSuccessfully, mediaOperationCanceled.
    ({"completionReason": "completedSuccessfully"}, True),
    ({"completionReason": "mediaOperationCanceled"}, False),
    ({"completionReason": "unknown"}, False),
    ({"resultInfo": {"@odata.type": "#microsoft.graph.resultInfo", "code": 500, "subcode": 1005,
                     "message": "Server Internal Error."}}, False),
    ({"resultInfo": {"code": "404", "subcode": "0"}}, False),
    ({"resultInfo": None}, True),
])
def test_a_completed_status_with_a_failing_reason_or_result_is_not_a_success(changes: dict[str, Any],
                                                                             succeeded: bool) -> None:
    (event,) = doc_events(_completed_play_prompt(**changes))
    assert isinstance(event, OperationCompleted)
    assert event.status == "completed"
    assert event.succeeded is succeeded


@pytest.mark.parametrize("reason", ["stopToneDetected", "maxRecordDurationReached", "maxSilenceTimeout",
                                    "initialSilenceTimeout"])
def test_a_recording_that_ended_normally_succeeded(reason: str) -> None:
    payload = example(graph_examples.RECORD_COMPLETED)
    payload["value"][0]["resourceData"]["completionReason"] = reason
    (event,) = doc_events(json.dumps(payload))
    assert isinstance(event, OperationCompleted)
    assert event.succeeded


@pytest.mark.parametrize("reason", ["operationCanceled", "playPromptFailed", "playBeepFailed", "mediaReceiveTimeout",
                                    "unspecifiedError"])
def test_a_recording_that_ended_on_an_error_failed(reason: str) -> None:
    payload = example(graph_examples.RECORD_COMPLETED)
    payload["value"][0]["resourceData"]["completionReason"] = reason
    (event,) = doc_events(json.dumps(payload))
    assert isinstance(event, OperationCompleted)
    assert not event.succeeded
