"""The app-hosted hand-off contract: round trip, versioning, deadlines, duplicate detection."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from calling.handoff import HandoffError, HandoffMessage, InProcessTransport, deadline_for
from tests.stubs import TENANT_ID, incoming_call

NOW = datetime(2026, 11, 21, 9, 30, tzinfo=UTC)


def message(call_id: str = "call-1", **extra: object) -> HandoffMessage:
    return HandoffMessage(call_id=call_id, tenant_id=TENANT_ID, notification=incoming_call(call_id),
                          decision={"action": "handoff", "reason": "policy_recording"},
                          deadline=deadline_for(NOW, policy_recording=True), received_at=NOW,
                          scenario_id="s-1", chain_id="ch-1", **extra)  # type: ignore[arg-type]


def test_round_trip_keeps_everything() -> None:
    original = message()
    text = original.to_json()
    again = HandoffMessage.from_json(text)
    assert again == original
    assert json.loads(text)["version"] == 1
    assert again.message_id == "call-1:incoming_call"
    assert again.session_id == "call-1"


def test_deadlines() -> None:
    assert deadline_for(NOW, policy_recording=True) - NOW == timedelta(seconds=5)
    assert deadline_for(NOW, policy_recording=False) - NOW == timedelta(seconds=15)
    assert not message().expired(NOW + timedelta(seconds=4))
    assert message().expired(NOW + timedelta(seconds=5))


def test_unknown_fields_are_kept_for_minor_additions() -> None:
    data = json.loads(message().to_json())
    data["media_region"] = "USEA"
    again = HandoffMessage.from_json(json.dumps(data))
    assert again.extra == {"media_region": "USEA"}
    assert json.loads(again.to_json())["media_region"] == "USEA"


@pytest.mark.parametrize(("mutate", "error"), [
    (lambda d: d.update(version=2), "unsupported hand-off contract version 2"),
    (lambda d: d.pop("version"), "unsupported hand-off contract version None"),
    (lambda d: d.pop("call_id"), "lacks call_id"),
    (lambda d: d.update(deadline="2026-11-21T09:30:05"), "with a zone"),
    (lambda d: d.update(deadline="tomorrow"), "ISO 8601"),
])
def test_contract_violations(mutate: object, error: str) -> None:
    data = json.loads(message().to_json())
    mutate(data)  # type: ignore[operator]
    with pytest.raises(HandoffError, match=error):
        HandoffMessage.from_json(json.dumps(data))


def test_not_json() -> None:
    with pytest.raises(HandoffError, match="not JSON"):
        HandoffMessage.from_json(b"\xff")
    with pytest.raises(HandoffError, match="JSON object"):
        HandoffMessage.from_json("[]")


async def test_in_process_transport_drops_duplicates_and_keeps_order() -> None:
    transport = InProcessTransport()
    await transport.send(message("a"))
    await transport.send(message("b"))
    await transport.send(message("a"))
    assert transport.pending() == 2
    assert [(await transport.receive(1)).call_id for _ in range(2)] == ["a", "b"]
