"""The request-body validator itself: it must refuse what Graph refuses, or the action tests prove nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from simulator.openapi import SCHEMA_PATH, match_path, validate_entity, validate_request
from tests import graph_examples
from tests.graph_examples import example

SHARED = Path(__file__).resolve().parents[2] / "shared" / "schemas" / SCHEMA_PATH.name


def messages(method: str, path: str, body: object) -> str:
    return "\n".join(str(e) for e in validate_request(method, path, body))


@pytest.mark.parametrize(("path", "body", "expected"), [
    ("/communications/calls/c/answer", {"acceptedModalities": [None], "mediaConfig": {}}, "None is not one of"),
    ("/communications/calls/c/answer", {"callbackURI": "https://x"}, "unknown action parameter 'callbackURI'"),
    ("/communications/calls/c/answer",
     {"mediaConfig": {"@odata.type": "#microsoft.graph.serviceHostedMediaConfig", "prefetchMedia": []}},
     "misspelt property 'prefetchMedia'"),
    ("/communications/calls/c/reject", {"reason": "Busy"}, "reason"),
    ("/communications/calls/c/sendDtmfTones", {"tones": ["1"]}, "'1' is not one of"),
    ("/communications/calls/c/transfer", {"transferTarget": {}, "clientContext": "x"}, "unknown action parameter"),
    ("/communications/calls/c/redirect", {"targets": "not-a-list"}, "is not of type 'array'"),
    ("/communications/calls/c/playPrompt",
     {"prompts": [{"@odata.type": "#microsoft.graph.nonsense"}]}, "unknown type"),
    ("/communications/calls", {"@odata.type": "#microsoft.graph.call", "requestedModalities": ["audio"],
                               "callbackURI": "https://x"}, "misspelt property 'callbackURI'"),
])
def test_refuses_what_graph_refuses(path: str, body: object, expected: str) -> None:
    assert expected in messages("POST", path, body)


def test_accepts_documented_examples() -> None:
    # From the Graph docs: answer (service-hosted with prefetch) and a PSTN transfer.
    answer = {"callbackUri": "https://bot.contoso.com/api/calls", "acceptedModalities": ["audio"],
              "mediaConfig": {"@odata.type": "#microsoft.graph.serviceHostedMediaConfig",
                              "preFetchMedia": [{"uri": "https://cdn.contoso.com/beep.wav", "resourceId": "1"}]}}
    transfer = {"transferTarget": {"endpointType": "default",
                                   "identity": {"phone": {"@odata.type": "#microsoft.graph.identity",
                                                          "id": "+12345678901"}},
                                   "languageId": "en-us", "region": "amer"}}
    assert messages("POST", "/communications/calls/c/answer", answer) == ""
    assert messages("POST", "/communications/calls/c/transfer", transfer) == ""


def test_paths_prefer_literal_segments() -> None:
    assert match_path("/communications/calls/c/participants/invite") == \
        "/communications/calls/{call-id}/participants/invite"
    assert match_path("/communications/calls/c/participants/p1") == \
        "/communications/calls/{call-id}/participants/{participant-id}"
    assert match_path("/communications/nope") is None
    with pytest.raises(KeyError):
        validate_request("POST", "/communications/nope", {})


def test_notifications_validate_as_entities() -> None:
    assert validate_entity("microsoft.graph.call", {"state": "established", "toneInfo": {"tone": "tone1"}}) == []
    assert validate_entity("microsoft.graph.call", {"state": "sleeping"}) != []


@pytest.mark.skipif(not SHARED.exists(), reason="shared/ is not beside this checkout")
def test_shipped_schema_is_the_official_copy() -> None:
    assert SCHEMA_PATH.read_bytes() == SHARED.read_bytes()


def _misspelt_uri() -> dict[str, Any]:
    body: dict[str, Any] = example(graph_examples.PLAY_PROMPT_REQUEST)
    media = body["prompts"][0]["mediaInfo"]
    media["urii"] = media.pop("uri")
    return body


def test_the_documented_play_prompt_request_is_valid() -> None:
    assert messages("POST", "/communications/calls/c/playPrompt", example(graph_examples.PLAY_PROMPT_REQUEST)) == ""


def test_an_unknown_property_of_a_closed_type_is_refused() -> None:
    """mediaInfo is not an OData open type (the schema gives it no additionalProperties): Graph refuses `urii`."""
    found = messages("POST", "/communications/calls/c/playPrompt", _misspelt_uri())
    assert "/prompts/0/mediaInfo/urii: unknown property 'urii' of microsoft.graph.mediaInfo" in found


def test_closed_types_are_checked_without_an_odata_type_too() -> None:
    """The declared type of a property or of a list's items is enough: the answer example's preFetchMedia
    items carry no @odata.type."""
    answer = {"callbackUri": "https://bot.contoso.com/api/calls", "acceptedModalities": ["audio"],
              "mediaConfig": {"@odata.type": "#microsoft.graph.serviceHostedMediaConfig",
                              "preFetchMedia": [{"uri": "https://cdn.contoso.com/beep.wav", "resourceId": "1",
                                                 "loop": True}]}}
    found = messages("POST", "/communications/calls/c/answer", answer)
    assert "/mediaConfig/preFetchMedia/0/loop: unknown property 'loop' of microsoft.graph.mediaInfo" in found
    prompt = example(graph_examples.PLAY_PROMPT_REQUEST)
    del prompt["prompts"][0]["@odata.type"], prompt["prompts"][0]["mediaInfo"]["@odata.type"]
    prompt["prompts"][0]["mediaInfo"]["urii"] = "x"
    assert "unknown property 'urii'" in messages("POST", "/communications/calls/c/playPrompt", prompt)


def test_annotations_and_open_types_stay_open() -> None:
    body = example(graph_examples.PLAY_PROMPT_REQUEST)
    body["prompts"][0]["mediaInfo"]["@odata.etag"] = 'W/"1"'  # any OData annotation
    body["prompts"][0]["mediaInfo"]["uri@odata.mediaContentType"] = "audio/wav"  # a property annotation
    assert messages("POST", "/communications/calls/c/playPrompt", body) == ""
    # identity and identitySet are open types: Graph's own examples add tenantId, and Graph accepts any other.
    transfer = {"transferTarget": {"endpointType": "default",
                                   "identity": {"phone": {"@odata.type": "#microsoft.graph.identity",
                                                          "id": "+12345678901", "anything": {"x": 1}},
                                                "somethingElse": True}}}
    assert messages("POST", "/communications/calls/c/transfer", transfer) == ""
    # a derived type is open when its base is (communicationsIdentitySet is an identitySet)
    assert validate_entity("microsoft.graph.communicationsIdentitySet", {"extra": 1}) == []


def test_what_graph_sends_may_have_properties_its_schema_leaves_out() -> None:
    """call-answer.md's policy-based recording notification gives the call's source (a participantInfo, which
    declares no `id`) an id; payloads are checked for misspellings only."""
    source = {"@odata.type": "#microsoft.graph.participantInfo", "id": "90fad2ce-8989-41a1-8a66-f6636e629a2a",
              "identity": {"@odata.type": "#microsoft.graph.identitySet",
                           "user": {"@odata.type": "#microsoft.graph.identity",
                                    "id": "8A34A46B-3D17-4ADC-8DCE-DC4E7D572698", "identityProvider": "AAD"}},
              "endpointType": "default", "region": "amer"}
    assert validate_entity("microsoft.graph.call", {"state": "incoming", "source": source}) == []
    found = "\n".join(str(e) for e in validate_entity("microsoft.graph.call", {"source": {**source, "Region": "x"}}))
    assert "misspelt property 'Region'" in found


def test_a_misspelt_annotation_is_still_a_misspelling() -> None:
    body = example(graph_examples.PLAY_PROMPT_REQUEST)
    body["prompts"][0]["mediaInfo"]["@OData.type"] = body["prompts"][0]["mediaInfo"].pop("@odata.type")
    assert "misspelt property '@OData.type'" in messages("POST", "/communications/calls/c/playPrompt", body)
