"""The sample main-menu flow end to end: a PSTN caller, the real bot on the local host (webhook, routing,
flow engine, call_session orchestration under the Durable replay engine with a replay check after every
step), the simulator as Graph. Virtual time: each call takes milliseconds."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from simulator.harness import CallHandle, Simulation
from simulator.scenario import load_scenario, run_scenario

ROOT = Path(__file__).resolve().parent.parent
SUPPORT = "instance:2b7d9c41-8e5a-4f36-a1c2-3d4e5f607182"
SALES = "user:6e1c7b52-3d4f-4a8e-9b21-0c5d7e8f9a10"
OPERATOR = "+14255550100"
CALLER = "+14255550123"


def test_the_demo_scenario_passes_and_stores_the_voicemail() -> None:
    outcome = run_scenario(load_scenario(ROOT / "scenarios" / "demo.yaml"))
    assert outcome.passed, outcome.message + "\n" + outcome.transcript
    assert len(outcome.stored) == 1
    path, size = outcome.stored[0]
    assert path.startswith("support/") and path.endswith(".wav") and size > 44


def test_operator_on_0_is_a_transfer_to_a_pstn_number() -> None:
    with Simulation() as sim:
        sim.callee(OPERATOR, "answer", after=5)
        call = sim.dial(from_phone=CALLER, to=sim.bot)
        call.expect_prompt("main-menu", to_the_end=False)
        call.press("0")
        call.expect_prompt("connecting")
        leg = call.expect_transfer(to=OPERATOR)
        assert leg.detail["mode"] == "blind"
        result = call.expect_ended(code=0, subcode=7015)
        assert result["message"] == "GracefulTransferCompleted"


def test_a_silent_caller_gets_two_reminders_then_the_operator() -> None:
    with Simulation() as sim:
        call = sim.dial(from_phone=CALLER, to=sim.bot)
        call.expect_transfer(to=OPERATOR)
        names = [h.name for h in call.heard]
        assert names == ["welcome", "main-menu", "no-input", "main-menu", "no-input", "main-menu", "connecting"]


def test_a_wrong_key_plays_invalid_choice_and_the_menu_again() -> None:
    with Simulation() as sim:
        call = sim.dial(from_phone=CALLER, to=sim.bot)
        call.expect_prompt("main-menu", to_the_end=False)
        call.press("7")
        call.expect_prompt("invalid-choice")
        call.expect_prompt("main-menu", to_the_end=False)
        call.press("1")
        call.expect_consult(to=SALES)
        call.expect_transfer(to=SALES)


def test_after_hours_the_caller_reaches_voicemail() -> None:
    saturday = datetime(2026, 3, 7, 18, 0, tzinfo=UTC)
    with Simulation(starts_at=saturday) as sim:
        call = sim.dial(from_phone=CALLER, to=sim.bot)
        call.expect_prompt("closed")
        call.speak(4)
        recording = call.expect_recording(downloaded=True)
        assert recording.completion_reason == "maxSilenceTimeout"
        call.expect_ended(code=200, subcode=7000)
        assert "welcome" not in [h.name for h in call.heard]


def test_the_caller_hanging_up_mid_menu_ends_the_session(sim: Simulation) -> None:
    call = sim.dial(from_phone=CALLER, to=sim.bot)
    call.expect_prompt("main-menu", to_the_end=False)
    call.hang_up()
    sim.wait(60)
    status = sim._host.status(call.id)
    assert status is not None and status["runtimeStatus"] == "Completed"
    assert [e for e in call.transcript.entries if e.direction == "from-bot" and "after" not in e.summary][-1]


def test_the_demo_says_what_to_do_when_a_port_is_busy() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "simulator", "demo", "--virtual", "--host-port", str(port),
                                 "--sim-port", "0"], cwd=ROOT, capture_output=True, text=True, timeout=120,
                                check=False)
    assert result.returncode == 2
    assert f"port {port}" in result.stderr and "--host-port" in result.stderr
    assert "Traceback" not in result.stderr


def test_transcript_json_of_a_flow_call_has_the_request_bodies() -> None:
    with Simulation() as sim:
        call = sim.dial(from_phone=CALLER, to=sim.bot)
        call.expect_prompt("welcome")
        data = json.loads(json.dumps(call.transcript.to_json()))
    plays = [e for e in data["entries"] if "playPrompt" in e["summary"] and e["direction"] == "from-bot"]
    prompt = plays[0]["detail"]["request"]["prompts"][0]["mediaInfo"]
    assert prompt["uri"].startswith(sim.bot.url + "/api/prompts/prompts/welcome.wav?v=")


@pytest.mark.parametrize("digit", ["1", "2"])
def test_sales_and_support_fall_back_to_their_own_voicemail(digit: str) -> None:
    target = {"1": SALES, "2": SUPPORT}[digit]
    with Simulation() as sim:
        sim.callee(target, "decline", after=4)
        call = sim.dial(from_phone=CALLER, to=sim.bot)
        call.expect_prompt("main-menu", to_the_end=False)
        call.press(digit)
        call.expect_consult(to=target, outcome="declined")
        call.expect_prompt({"1": "sales-voicemail", "2": "support-voicemail"}[digit])
        call.hang_up()
        sim.wait(30)
        assert call.state == "terminated"


def _menu_trips(sim: Simulation, trips: int) -> tuple[CallHandle, list[int], dict[str, Any]]:
    """Press 9 (repeat) `trips` times; the call, the history length after each trip, the session input."""
    call = sim.dial(from_phone=CALLER, to=sim.bot)
    lengths = []
    for _ in range(trips):
        call.expect_prompt("main-menu", to_the_end=False)
        call.press("9")
        lengths.append(len(sim._host.history(call.id)))
    status = sim._host.status(call.id)
    assert status is not None
    session = status["input"]
    while isinstance(session, str):
        session = json.loads(session)
    return call, lengths, session


def test_a_long_menu_loop_keeps_each_execution_short_and_handles_each_event_once() -> None:
    """60 trips round the menu: continue-as-new bounds the history, and no notification is handled twice
    (azure-functions-durable 1.7.0 would re-deliver a buffered event to every later wait; see DeferredEvents)."""
    with Simulation() as sim:
        call, lengths, session = _menu_trips(sim, 60)
        assert [h.name for h in call.heard].count("main-menu") == 61  # before the watchdog lets the call go on
    assert 2 <= session["executions"] <= 20
    assert max(lengths) < 250


def test_a_500_trip_menu_loop_stays_flat() -> None:
    """Issue 4's long call: 500 trips round the menu in one call. Each execution's history stays under the
    same bound at trip 500 as at trip 5 (continue-as-new every 20 engine events), so work per step is flat;
    bench/ivr.py times the same call. Without the replay check, as the Functions host runs it."""
    with Simulation(replay_check=False, wall_timeout=120) as sim:
        call, lengths, session = _menu_trips(sim, 500)
        assert [h.name for h in call.heard].count("main-menu") == 501
    early, late = max(lengths[:50]), max(lengths[450:])
    assert late <= early < 250, (early, late)
    assert session["executions"] >= 45
