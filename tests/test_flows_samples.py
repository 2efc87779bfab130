"""The sample flows do what they promise, driven through the engine like a call."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from calling.flows import commands as c
from calling.flows.harness import FlowCall
from calling.flows.load import load_bundle

FLOWS = Path(__file__).resolve().parent.parent / "flows"
MAIN = load_bundle(FLOWS / "main-menu.yaml")
TUESDAY_10AM_SEATTLE = datetime(2026, 3, 3, 18, 0, tzinfo=UTC)
TUESDAY_8PM_SEATTLE = datetime(2026, 3, 4, 4, 0, tzinfo=UTC)
THANKSGIVING_NOON = datetime(2026, 11, 26, 20, 0, tzinfo=UTC)


def main_menu(at: datetime = TUESDAY_10AM_SEATTLE) -> FlowCall:
    call = FlowCall(MAIN, at=at)
    call.start(established=False)
    call.establish()
    return call


def at_menu() -> FlowCall:
    call = main_menu()
    assert call.played() == ["prompts/welcome.wav"]
    call.finish_prompt()
    assert call.node == "main-menu"
    return call


@pytest.mark.parametrize(("key", "transfer", "mailbox"), [
    ("1", "user:6e1c7b52-3d4f-4a8e-9b21-0c5d7e8f9a10", "sales"),
    ("2", "instance:2b7d9c41-8e5a-4f36-a1c2-3d4e5f607182", "support"),
    ("0", "+14255550100", "reception"),
])
def test_transfers_fall_back_to_voicemail_when_nobody_answers(key: str, transfer: str, mailbox: str) -> None:
    call = at_menu()
    call.press(key)
    assert call.played()[-1] == "prompts/connecting.wav"
    call.finish_prompt()
    [command] = call.of(c.Transfer)
    assert isinstance(command, c.Transfer) and command.target == transfer
    call.transfer("no_answer", after=20)
    [record] = call.of(c.Record)
    assert isinstance(record, c.Record) and record.mailbox == mailbox and record.max_duration == 120
    call.record(duration=14)
    [saved] = call.of(c.SaveRecording)
    assert isinstance(saved, c.SaveRecording) and (saved.mailbox, saved.duration) == (mailbox, 14)
    call.finish_prompt()
    assert call.played()[-2:] == ["prompts/thanks-for-message.wav", "prompts/goodbye.wav"]
    assert call.of(c.HangUp, last=True) == [c.HangUp(reason="completed")]
    assert call.milestones("flow.transfer")[0]["ring_seconds"] == 20.0


def test_an_answered_transfer_ends_the_flow() -> None:
    call = at_menu()
    call.press("1")
    call.finish_prompt()
    call.transfer("completed")
    call.end(code=0, subcode=7015)
    assert call.milestones("flow.ended")[0]["left"] == "transfer"
    assert call.of(c.Record) == []


def test_nine_repeats_the_menu() -> None:
    call = at_menu()
    call.finish_prompt()
    call.press("9")
    assert call.node == "main-menu" and call.played()[-1] == "prompts/main-menu.wav"


def test_three_misses_reach_the_operator() -> None:
    call = at_menu()
    call.finish_prompt()
    call.fire_timer()  # nothing pressed
    assert call.played()[-2:] == ["prompts/no-input.wav", "prompts/main-menu.wav"]
    call.press("5")  # not an option
    assert call.played()[-2:] == ["prompts/invalid-choice.wav", "prompts/main-menu.wav"]
    call.finish_prompt()
    call.fire_timer()
    assert call.node == "to-operator"
    assert [m["reason"] for m in call.milestones("flow.retry")] == ["no_input", "no_match", "no_input"]


@pytest.mark.parametrize("at", [TUESDAY_8PM_SEATTLE, THANKSGIVING_NOON], ids=["after hours", "holiday"])
def test_after_hours_runs_the_after_hours_voicemail(at: datetime) -> None:
    call = main_menu(at)
    assert call.state.flow == "after-hours.yaml"
    assert call.played() == ["prompts/closed.wav"]
    call.finish_prompt()
    call.record()
    assert call.of(c.SaveRecording)[0].mailbox == "after-hours"  # type: ignore[attr-defined]
    call.finish_prompt()
    assert call.of(c.HangUp, last=True) == [c.HangUp(reason="completed")]
    assert call.path() == ["office-hours", "after-hours", "closed", "leave-message", "thanks", "done", "goodbye"]


def test_after_hours_on_its_own_hangs_up_after_the_message() -> None:
    call = FlowCall(load_bundle(FLOWS / "after-hours.yaml"))
    call.start()
    call.finish_prompt()
    call.record(ok=True, location="")  # the caller said nothing
    call.finish_prompt()
    assert call.of(c.HangUp, last=True) == [c.HangUp(reason="returned")]


REMINDER = load_bundle(FLOWS / "reminder.yaml")


def test_reminder_confirm_with_one() -> None:
    call = FlowCall(REMINDER, caller="instance:bot", called="+14255550123")
    call.start(established=False)
    call.establish()
    call.finish_prompt()
    call.press("1")
    call.finish_prompt()
    assert call.played() == ["prompts/reminder-message.wav", "prompts/reminder-options.wav",
                             "prompts/appointment-confirmed.wav"]
    assert call.of(c.HangUp, last=True) == [c.HangUp(reason="confirmed")]


def test_reminder_two_repeats_the_message_and_silence_is_not_a_confirmation() -> None:
    call = FlowCall(REMINDER)
    call.start()
    call.finish_prompt()
    call.press("2")
    assert call.node == "message"
    call.finish_prompt()
    for _ in range(3):
        call.finish_prompt()
        call.fire_timer()
    call.finish_prompt()
    assert call.of(c.HangUp, last=True) == [c.HangUp(reason="not_confirmed")]


def test_the_callee_not_answering_ends_quietly() -> None:
    call = FlowCall(REMINDER)
    call.start(established=False)
    assert call.end(code=408, subcode=10057) == [call.commands[-1]]
    assert call.milestones("flow.ended")[0]["visits"] == 1
