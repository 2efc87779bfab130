"""No caller left in silence: what the session does when Graph loses, repeats or refuses what a call needs.

Each case once left a caller on an established call with nothing running, or a session running for a call
that was gone (issue 11). The bot now waits a bounded time for what it expects, then asks Graph (GET the
call or the operation) and goes on or ends (calling/watch.py); every test also passes the simulator's
watchdog on leaving its `with` block (simulator/watchdog.py). Real bot, local host, simulator, virtual clock.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from calling import consult
from simulator.faults import GraphFault, NotificationFault
from simulator.harness import CallHandle, Simulation

CALLER = "+14255550123"
SALES = "user:6e1c7b52-3d4f-4a8e-9b21-0c5d7e8f9a10"
SUPPORT = "instance:2b7d9c41-8e5a-4f36-a1c2-3d4e5f607182"
SATURDAY = datetime(2026, 3, 7, 18, 0, tzinfo=UTC)  # main-menu is closed: straight to the voicemail


def _said(call: CallHandle, start: str) -> list[Any]:
    return [e for e in call.transcript.entries if e.summary.startswith(start)]


def _session(sim: Simulation, call: CallHandle) -> dict[str, Any]:
    status = sim._host.status(call.id)
    assert status is not None
    return status


def test_a_lost_established_is_asked_for_and_the_flow_goes_on() -> None:
    with Simulation() as sim:
        sim.fault(NotificationFault("established", "drop"))
        call = sim.dial(from_phone=CALLER, to=sim.bot)
        welcome = call.expect_prompt("welcome", to_the_end=False)
        call.expect_prompt("main-menu", to_the_end=False)
        [asked] = _said(call, "bot asks for the call")
        assert "(it is established)" in asked.summary
        assert call.call.answered_at is not None
        assert 7.5 <= welcome.started_at - call.call.answered_at <= 9.5  # the bounded wait, not keepAlive's 15 min


def test_a_refused_answer_rejects_the_call_at_once_and_ends_its_session() -> None:
    with Simulation() as sim:
        sim.fault(GraphFault("answer", 500, times=10))
        call = sim.dial(from_phone=CALLER, to=sim.bot)
        result = call.expect_ended(within=2)
        assert result.get("code") == 486 and call.call.answered_at is None  # rejected busy, never answered
        sim.wait(30)
        assert _session(sim, call)["runtimeStatus"] == "Completed"


def test_an_answer_that_fails_once_is_answered_again_and_the_caller_served() -> None:
    with Simulation() as sim:
        sim.fault(GraphFault("answer", 500, times=1))  # lost or refused: Graph refuses a second answer anyway
        call = sim.dial(from_phone=CALLER, to=sim.bot)
        call.expect_prompt("welcome")
        assert len(_said(call, "bot answers")) == 1 and not _said(call, "bot rejects")


def test_when_graph_refuses_answer_and_reject_the_session_still_ends() -> None:
    """Nothing the bot asks for takes: the call rings until Graph drops it; its session must not outlive it."""
    with Simulation() as sim:
        sim.fault(GraphFault("answer", 500, times=2))
        sim.fault(GraphFault("reject", 500, times=2))
        call = sim.dial(from_phone=CALLER, to=sim.bot)
        call.expect_ended(within=20)
        assert call.call.answered_at is None
        sim.wait(10)
        assert _session(sim, call)["runtimeStatus"] == "Completed"
        # Within the answer window the session only looked (the webhook may still be answering, under load);
        # it never rejected a call the webhook was answering.
        assert [e.at for e in _said(call, "bot asks for the call")][:1] == [8.0]
        assert not _said(call, "bot rejects")


def test_a_hang_up_graph_keeps_refusing_ends_the_session_without_keeping_the_call_alive() -> None:
    with Simulation(starts_at=SATURDAY) as sim:
        sim.fault(GraphFault("hangUp", 500, times=1000))
        call = sim.dial(from_phone=CALLER, to=sim.bot)
        call.expect_prompt("closed")
        call.speak(4)
        call.expect_recording(downloaded=True)
        call.expect_prompt("goodbye")
        sim.wait(180)
        session = _session(sim, call)
        assert session["runtimeStatus"] == "Completed" and session["output"]["left"] == "hangup"
        refused = _said(call, "fault: hangUp")
        assert len(refused) == 16  # the flow's hang-up and 3 more, each tried 4 times by the activity's retries
        assert call.state == "established"
        sim.wait(2700)  # Graph ends a call with no keepAlive for 45 minutes: the session sent none
        result = call.expect_ended()
        assert (result.get("code"), result.get("subcode")) == (408, 8537)
        assert not [e for e in _said(call, "bot keeps the call alive") if e.at > refused[0].at]


def test_a_lost_recording_completion_is_found_and_the_voicemail_kept() -> None:
    with Simulation(starts_at=SATURDAY) as sim:
        sim.fault(NotificationFault("record", "drop"))
        call = sim.dial(from_phone=CALLER, to=sim.bot)
        call.expect_prompt("closed")
        call.speak(4)
        recording = call.expect_recording(downloaded=True, within=60)
        assert _said(call, "bot asks for operation")
        stored = list(sim.recordings_dir.rglob("*.wav"))
        assert len(stored) == 1 and stored[0].stat().st_size > 44
        call.expect_prompt("thanks-for-message")
        call.expect_ended(code=200, subcode=7000)
        assert recording.downloaded


def test_lost_established_notifications_of_both_legs_of_a_consultative_transfer() -> None:
    """The caller's `established` and then the consult call's are dropped: the caller's is found by the
    session's look, the target's at the ring timeout, and the caller is handed over instead of given up."""
    with Simulation() as sim:
        sim.callee(SALES, "answer", after=3)
        sim.fault(NotificationFault("established", "drop", times=2))
        call = sim.dial(from_phone=CALLER, to=sim.bot)
        call.expect_prompt("main-menu", to_the_end=False)
        call.press("1")
        call.expect_consult(to=SALES)
        call.expect_transfer(to=SALES, within=60)
        call.expect_ended(code=0)
        assert call.call.termination_reason == "AppTransferred"
        second = [c for c in sim.simulator.calls.values() if c is not call.call]
        assert [c.state for c in second] == ["terminated"]
        assert _said(type(call)(sim, second[0]), "bot asks for the call")


def test_every_notification_twice_on_the_support_voicemail_path() -> None:
    with Simulation() as sim:
        sim.callee(SUPPORT, "no_answer", after=8)
        sim.fault(NotificationFault("*", "duplicate", times=1000))
        call = sim.dial(from_phone=CALLER, to=sim.bot)
        call.expect_prompt("main-menu", to_the_end=False)
        call.press("2")
        call.expect_prompt("support-voicemail", within=60)
        call.speak(4)
        call.expect_ended(code=200, subcode=7000, within=120)
        assert len(list(sim.recordings_dir.rglob("*.wav"))) == 1  # stored once
        assert len(_said(call, "bot hangs up")) == 1
        assert len(_said(call, "bot answers")) == 1


def test_the_watchdog_reports_a_call_left_in_silence(monkeypatch: pytest.MonkeyPatch) -> None:
    """The watchdog itself: with the old consult split back (a ring-out's end taken for the caller's), the
    caller is left on an established call mid-voicemail; the check says so."""
    def old_split(notifications: Any, own: str, second: consult.Consult | None
                  ) -> tuple[list[Any], list[Any], list[Any]]:
        mine: list[Any] = []
        theirs: list[Any] = []
        for raw in notifications:
            (theirs if second is not None and consult.call_id_of(raw) == second.call_id else mine).append(raw)
        return mine, theirs, []

    monkeypatch.setattr(consult, "split", old_split)
    with Simulation(watchdog=False) as sim:
        sim.callee(SALES, "no_answer")
        call = sim.dial(from_phone=CALLER, to=sim.bot)
        call.expect_prompt("main-menu", to_the_end=False)
        call.press("1")
        call.expect_prompt("sales-voicemail", within=60)
        violations = sim.check_calls()
    assert [(v.call_id, v.rule) for v in violations] == [(call.id, "zombie")]


def test_an_answer_graph_carried_out_but_answered_500_is_not_followed_by_a_reject() -> None:
    with Simulation() as sim:
        sim.fault(GraphFault("answer", 500, applied=True))  # answered; the bot is told 500
        call = sim.dial(from_phone=CALLER, to=sim.bot)
        call.expect_prompt("welcome")
        assert not [e for e in call.transcript.entries if "reject" in e.summary]
        answers = [e.summary.split("  [")[0] for e in call.transcript.entries if "answer" in e.summary]
        assert answers[0].startswith("bot answers") and answers[2].startswith("POST answer refused: 400")
