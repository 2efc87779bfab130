"""Identities on the wire, identities read back, and meeting join links."""

from __future__ import annotations

import json

import pytest
from kiota_serialization_json.json_serialization_writer import JsonSerializationWriter

from calling import identities as ids
from calling.identities import MeetingId, Party, parse_identity_set, parse_join_url
from tests.stubs import TENANT_ID


def wire(party: Party) -> object:
    writer = JsonSerializationWriter()
    writer.write_object_value(None, party.to_identity_set())
    return json.loads(writer.get_serialized_content())


@pytest.mark.parametrize(("party", "expected"), [
    (ids.teams_user("u1", display_name="Ann", tenant_id=TENANT_ID),
     {"user": {"@odata.type": "#microsoft.graph.identity", "id": "u1", "displayName": "Ann", "tenantId": TENANT_ID}}),
    (ids.phone("+14255550100"), {"phone": {"@odata.type": "#microsoft.graph.identity", "id": "+14255550100"}}),
    (ids.application_instance("i1", display_name="IVR"),
     {"applicationInstance": {"@odata.type": "#microsoft.graph.identity", "id": "i1", "displayName": "IVR"}}),
    (ids.application("app"), {"application": {"@odata.type": "#microsoft.graph.identity", "id": "app"}}),
    (ids.guest("g1", display_name="Visitor"),
     {"guest": {"@odata.type": "#microsoft.graph.identity", "id": "g1", "displayName": "Visitor"}}),
])
def test_wire_form_uses_graphs_camel_case_keys(party: Party, expected: object) -> None:
    assert wire(party) == expected
    assert parse_identity_set(expected) == party


@pytest.mark.parametrize("number", ["14255550100", "+0425", "+1 425 555 0100", "+1234567890123456", ""])
def test_phone_numbers_must_be_e164(number: str) -> None:
    with pytest.raises(ValueError, match=r"E\.164"):
        ids.phone(number)


def test_empty_ids_are_refused() -> None:
    for make in (ids.teams_user, ids.application, ids.application_instance, ids.guest):
        with pytest.raises(ValueError, match="must not be empty"):
            make(" ")


def test_most_specific_identity_wins_and_raw_is_kept() -> None:
    raw = {"application": {"id": "app"}, "applicationInstance": {"id": "inst", "tenantId": "T"}}
    party = parse_identity_set(raw)
    assert (party.kind, party.id, party.tenant_id) == ("applicationInstance", "inst", "T")
    assert party.raw == raw
    assert parse_identity_set({"futureKind": {"id": "x"}}).kind == "futureKind"
    assert parse_identity_set(None).kind == "none"
    assert parse_identity_set({"@odata.type": "#microsoft.graph.identitySet"}).is_anonymous


def test_join_url_is_parsed() -> None:
    url = ("https://teams.microsoft.com/l/meetup-join/19%3ameeting_abc%40thread.v2/0?context=%7b%22Tid%22%3a%22"
           + TENANT_ID + "%22%2c%22Oid%22%3a%22org-oid%22%2c%22MessageId%22%3a%22123%22%7d")
    meeting = parse_join_url(url)
    assert (meeting.thread_id, meeting.message_id, meeting.organizer_id, meeting.tenant_id,
            meeting.reply_chain_message_id) == ("19:meeting_abc@thread.v2", "0", "org-oid", TENANT_ID, "123")


@pytest.mark.parametrize(("url", "message"), [
    ("https://example.com/l/meetup-join/a/0?context={}", "not a Teams meeting join URL"),
    ("https://teams.microsoft.com/meet/2512345678?p=abc", "joinMeetingId and passcode"),
    ("https://teams.microsoft.com/l/meetup-join/t/0?context=%7bnot-json", "not JSON"),
    ("https://teams.microsoft.com/l/meetup-join/t/0?context=%7b%22Tid%22%3a%22x%22%7d", "Oid"),
])
def test_bad_join_urls(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_join_url(url)


def test_meeting_id_must_be_digits() -> None:
    assert MeetingId("1234567", None).join_meeting_id == "1234567"
    with pytest.raises(ValueError, match="digits"):
        MeetingId("12-34")
