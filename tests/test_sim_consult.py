"""Consultative transfer end to end (flows/main-menu.yaml: 1 = sales, 2 = support, both consultative):
the bot rings the target on a call of its own, hands the caller over with replacesCallId when the target
answers, and otherwise ends its second call and takes the flow's fallback. Real bot, local host, simulator."""

from __future__ import annotations

from typing import Any

from simulator.calls import SimCall
from simulator.faults import GraphFault
from simulator.harness import CallHandle, Simulation

SALES = "user:6e1c7b52-3d4f-4a8e-9b21-0c5d7e8f9a10"
SUPPORT = "instance:2b7d9c41-8e5a-4f36-a1c2-3d4e5f607182"
CALLER = "+14255550123"


def _ask_for(sim: Simulation, digit: str) -> CallHandle:
    call = sim.dial(from_phone=CALLER, to=sim.bot)
    call.expect_prompt("main-menu", to_the_end=False)
    call.press(digit)
    return call


def _second_call(sim: Simulation, caller: CallHandle) -> SimCall:
    found = [c for c in sim.simulator.calls.values() if c.direction == "outgoing" and c is not caller.call]
    assert len(found) == 1, f"expected one call placed by the bot, got {len(found)}"
    return found[0]


def _requests(call: SimCall, word: str) -> list[dict[str, Any]]:
    return [e.detail.get("request") or {} for e in call.transcript.entries
            if e.direction == "from-bot" and word in e.summary]


def test_the_target_answers_and_the_caller_is_handed_over_with_replaces_call_id() -> None:
    with Simulation() as sim:
        sim.callee(SALES, "answer", after=3)
        call = _ask_for(sim, "1")
        call.expect_consult(to=SALES)
        leg = call.expect_transfer(to=SALES)
        result = call.expect_ended()
        second = _second_call(sim, call)
        # The bot's second call reports to the caller's session: /api/calls/{caller's call id}.
        assert second.callback_uri.endswith(f"/api/calls/{call.id}")
        transfers = _requests(call.call, "transfers")
        assert transfers[-1]["transferTarget"]["replacesCallId"] == second.id
        assert leg.detail["mode"] == "consultative"
        assert call.call.termination_reason == "AppTransferred" and result.get("code") == 0
        assert second.state == "terminated" and second.termination_reason == "AppTransferred"
        # Nobody hung up the target: the bot never ended its second call itself.
        assert not [e for e in second.transcript.entries if e.summary.startswith("bot hangs up")]


def test_a_target_that_never_answers_is_given_up_after_the_ring_timeout() -> None:
    with Simulation() as sim:
        sim.callee(SUPPORT, "no_answer", after=90)  # rings longer than the flow's ring_timeout of 20 s
        call = _ask_for(sim, "2")
        call.expect_prompt("support-voicemail")
        second = _second_call(sim, call)
        assert second.ended and [e for e in second.transcript.entries if e.summary.startswith("bot hangs up")]
        rang = second.ended_at - second.legs[0].started_at if second.ended_at is not None else None
        assert rang is not None and 19.5 <= rang <= 21.5, rang
        assert call.state == "established"  # the caller is still with the bot, leaving a voicemail


def test_the_caller_hanging_up_while_the_target_rings_ends_the_second_call() -> None:
    with Simulation() as sim:
        sim.callee(SALES, "no_answer", after=60)
        call = _ask_for(sim, "1")
        call.expect_consult(to=SALES, outcome=None)
        sim.wait(3)
        call.hang_up()
        sim.wait(5)
        second = _second_call(sim, call)
        assert second.state == "terminated"
        assert [e for e in second.transcript.entries if e.summary.startswith("bot hangs up")]


def test_a_refused_hand_over_ends_the_second_call_and_takes_the_fallback() -> None:
    # No in-request retries (they wait in wall time): the activity's own Durable retries, on the virtual
    # clock, meet the 503s, run out, and the hand-over counts as failed.
    with Simulation(settings={"GRAPH_RETRY_BUDGET_SECONDS": "0"}) as sim:
        sim.callee(SUPPORT, "answer", after=2)
        sim.fault(GraphFault("transfer", 503, times=50))
        call = _ask_for(sim, "2")
        call.expect_consult(to=SUPPORT)
        call.expect_prompt("support-voicemail", within=600)
        second = _second_call(sim, call)
        assert second.state == "terminated"
        assert [e for e in second.transcript.entries if e.summary.startswith("bot hangs up")]


def test_a_ring_out_reaches_voicemail_and_the_second_calls_end_is_not_taken_for_the_callers() -> None:
    """The bot hangs up its second call on the ring timeout; that call's terminating/terminated come to the
    caller's session too. Taken for the caller's own end, they once completed the session mid-voicemail,
    leaving the caller on an established call in silence and the voicemail unsaved."""
    with Simulation() as sim:
        sim.callee(SALES, "no_answer")
        call = _ask_for(sim, "1")
        call.expect_consult(to=SALES, outcome=None)
        call.expect_prompt("sales-voicemail", within=60)
        call.speak(4)
        recording = call.expect_recording(downloaded=True)
        call.expect_prompt("thanks-for-message")
        result = call.expect_ended(code=200, subcode=7000)  # the bot's own hang-up, after the voicemail
        assert result and recording.downloaded
        stored = sorted(p.relative_to(sim.recordings_dir).as_posix() for p in sim.recordings_dir.rglob("*.wav"))
        assert len(stored) == 1 and stored[0].startswith("sales/") and call.id in stored[0]
        second = _second_call(sim, call)
        assert second.ended
        sim.wait(5)
        status = sim._host.status(call.id)
        assert status is not None and status["runtimeStatus"] == "Completed"
        assert status["output"] == {"node": "goodbye", "left": "hangup"}


def test_a_second_call_graph_placed_although_it_answered_500_is_found_not_placed_again() -> None:
    """Graph created the call but the bot was told 500 (a lost answer): a blind retry rang the target
    twice and left the first copy up. The session now looks for the call before placing it again."""
    with Simulation() as sim:
        sim.callee(SALES, "answer", after=3)
        sim.fault(GraphFault("create", 500, applied=True))
        call = _ask_for(sim, "1")
        call.expect_transfer(to=SALES)
        call.expect_ended(code=0)
        second = _second_call(sim, call)  # exactly one call to the target
        assert second.state == "terminated" and second.termination_reason == "AppTransferred"
        transfers = _requests(call.call, "transfers")
        assert transfers[-1]["transferTarget"]["replacesCallId"] == second.id


def test_a_second_call_graph_refused_with_500_is_placed_again_after_a_look() -> None:
    with Simulation() as sim:
        sim.callee(SALES, "answer", after=3)
        sim.fault(GraphFault("create", 500))  # not carried out: nothing rings, and nothing writes back
        call = _ask_for(sim, "1")
        call.expect_transfer(to=SALES, within=60)
        call.expect_ended(code=0)
        second = _second_call(sim, call)
        assert second.termination_reason == "AppTransferred"
        connecting = next(h for h in call.heard if h.name == "connecting")
        assert connecting.ended_at is not None
        # The refused placement came right after "connecting"; the one that rang waited for the look.
        assert 9.5 <= second.legs[0].started_at - connecting.ended_at <= 12


def test_an_earlier_second_calls_end_is_not_taken_for_a_new_one_placed_without_an_answer(tmp_path: Any) -> None:
    """Sales rings out and the flow tries support; Graph places the support call but answers 500. The sales
    call's `terminating`, arriving meanwhile, once got adopted as the support call, and the real support
    call hung up as a stray: the caller ended in voicemail instead of with support."""
    import shutil
    from pathlib import Path

    flows = Path(tmp_path) / "flows"
    shutil.copytree(Path(__file__).resolve().parents[1] / "flows", flows)
    menu = flows / "main-menu.yaml"
    text = menu.read_text().replace("    failed: sales-voicemail\n", "    failed: support\n")
    menu.write_text(text.replace("      9: main-menu", "      9: sales-voicemail"))  # still reachable
    with Simulation(settings={"FLOWS_DIR": str(flows)}) as sim:
        sim.callee(SALES, "no_answer")
        sim.callee(SUPPORT, "answer", after=5)
        call = _ask_for(sim, "1")
        call.expect_consult(to=SALES, outcome=None)
        sim.wait(16)  # sales is about to ring out (20 s)
        sim.fault(GraphFault("create", 500, applied=True))
        call.expect_transfer(to=SUPPORT, within=60)
        call.expect_ended(code=0)
        support = [c for c in sim.simulator.calls.values() if c is not call.call and c.remote == SUPPORT]
        assert len(support) == 1 and support[0].termination_reason == "AppTransferred"
