"""End to end: simulated callers against the real function app on the local host, through real HTTP,
real tokens, the real webhook, routing and Graph client. Each test reads like the call it checks."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import pytest

from simulator.faults import GraphFault, NotificationFault
from simulator.harness import BotHandle, Simulation
from simulator.signing import Signer

CALLER = "+14255550100"
SALES = "+14255550111"


def requests(call: object, action: str) -> list[str]:
    """Transcript lines of the bot's requests for one Graph action (`answer`, `redirect`...)."""
    return [e.summary for e in call.transcript.entries if e.direction == "from-bot" and f" {action} " in e.summary]  # type: ignore[attr-defined]


def test_a_phone_call_to_the_bots_number_is_answered(sim: Simulation, bot: BotHandle) -> None:
    call = sim.dial(from_phone=CALLER, to=bot)
    call.expect_answered()
    call.expect_state("established")
    assert len(requests(call, "answer")) == 1
    assert requests(call, "answer")[0].endswith("[POST answer 202]")


@pytest.fixture
def redirect_policy(tmp_path: Path) -> Mapping[str, str]:
    policy = tmp_path / "routing.yaml"
    policy.write_text(f"rules:\n  - name: overflow\n    action: redirect\n    targets: ['{SALES}']\n"
                      "    timeout: 20\n", encoding="utf-8")
    return {"ROUTING_POLICY_PATH": str(policy)}


def test_incoming_to_the_bots_number_is_redirected_to_a_pstn_number(redirect_policy: Mapping[str, str]) -> None:
    with Simulation(settings=redirect_policy) as sim:
        sim.callee(SALES, "answer", after=4)
        call = sim.dial(from_phone=CALLER, to=sim.bot)
        leg = call.expect_redirect(to=SALES)
        assert leg.connected_to == SALES and leg.ended_at is not None
        assert leg.ended_at - leg.started_at == pytest.approx(4)
        call.expect_ended()
        assert requests(call, "answer") == []


def test_redirect_that_nobody_answers_ends_the_call_with_no_answer(redirect_policy: Mapping[str, str]) -> None:
    with Simulation(settings=redirect_policy) as sim:
        sim.callee(SALES, "no_answer", after=60)
        call = sim.dial(from_phone=CALLER, to=f"instance:{sim.bot.instance_id}")
        call.expect_redirect(to=SALES, outcome="no_answer")
        assert call.expect_ended(code=408, subcode=10057)


def test_a_forged_notification_is_refused_and_changes_nothing(sim: Simulation, bot: BotHandle) -> None:
    sim.fault(NotificationFault("incoming", "drop"))  # the genuine notification never arrives
    call = sim.dial(from_phone=CALLER, to=bot)
    forged = Signer().token(aud=bot.app_id, tid=bot.tenant_id)
    envelope = {"@odata.type": "#microsoft.graph.commsNotifications", "value": [{
        "@odata.type": "#microsoft.graph.commsNotification", "changeType": "created",
        "resourceUrl": f"/communications/calls/{call.id}", "resourceData": call.call.to_json()}]}
    status, body = sim.http("POST", "/api/calls", envelope, headers={"Authorization": f"Bearer {forged}"})
    assert status == 401 and body["error"] == "unauthorized"
    sim.wait(20)
    assert call.state == "terminated" and call.call.answered_at is None
    assert requests(call, "answer") == []


def test_a_duplicated_incoming_call_notification_is_answered_once(sim: Simulation, bot: BotHandle) -> None:
    sim.fault(NotificationFault("incoming", "duplicate"))
    call = sim.dial(from_phone=CALLER, to=bot)
    call.expect_answered()
    sim.wait(5)
    deliveries = [e for e in call.transcript.entries if e.direction == "to-bot" and "incoming call" in e.summary]
    assert len(deliveries) == 2
    assert len(requests(call, "answer")) == 1
    assert not [e for e in call.transcript.entries if "refused" in e.summary]


def test_graph_429_on_answer_is_retried_within_the_deadline(sim: Simulation, bot: BotHandle) -> None:
    sim.fault(GraphFault("answer", 429, retry_after=1))
    call = sim.dial(from_phone=CALLER, to=bot)
    call.expect_answered()
    faults = [e for e in call.transcript.entries if e.summary.startswith("fault: answer answered 429")]
    assert len(faults) == 1
    assert len(requests(call, "answer")) == 1


def test_graph_503_twice_on_answer_is_retried(sim: Simulation, bot: BotHandle) -> None:
    sim.fault(GraphFault("answer", 503, times=2, retry_after=0))
    call = sim.dial(from_phone=CALLER, to=bot)
    call.expect_answered()
    assert len([e for e in call.transcript.entries if e.summary.startswith("fault: answer")]) == 2


def test_transcript_is_readable_and_json(sim: Simulation, bot: BotHandle) -> None:
    call = sim.dial(from_phone=CALLER, to=bot)
    call.expect_answered()
    text = sim.transcript()
    assert f"{CALLER} dials {bot.number}" in text and "→ bot" in text and "← bot" in text
    data = json.loads(json.dumps([t.to_json() for t in sim.transcripts()]))
    assert data[0]["callId"] == call.id
    assert {"at", "direction", "summary"} <= set(data[0]["entries"][0])
