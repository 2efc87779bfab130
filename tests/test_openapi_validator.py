"""The request-body validator itself: it must refuse what Graph refuses, or the action tests prove nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulator.openapi import SCHEMA_PATH, match_path, validate_entity, validate_request

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
