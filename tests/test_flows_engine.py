"""The flow engine, node by node: what each node asks for, how it reacts, and what it ignores."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from calling.flows import commands as c
from calling.flows import events as e
from calling.flows.harness import FlowCall, write_flows
from calling.flows.load import load_bundle
from calling.flows.model import Bundle
from calling.flows.state import State

TUESDAY_9AM_LONDON = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)


def bundle(tmp_path: Path, text: str, **others: str) -> Bundle:
    write_flows(tmp_path, {"flow.yaml": text, **others})
    return load_bundle(tmp_path / "flow.yaml")


def call(tmp_path: Path, text: str, *, at: datetime = TUESDAY_9AM_LONDON, caller: str = "+14255550123",
         called: str = "+14255550100", **others: str) -> FlowCall:
    return FlowCall(bundle(tmp_path, text, **others), at=at, caller=caller, called=called)


PLAY = """
nodes:
  hello: {type: play, prompt: [a.wav, b.wav], next: bye}
  bye: {type: hangup, reason: done}
"""

MENU = """
nodes:
  menu:
    type: menu
    prompt: menu.wav
    options: {1: one, 2: two, 42: answer, "*": star}
    no_input_prompt: no-input.wav
    no_match_prompt: no-match.wav
    retries: 1
    no_input_timeout: 4
    inter_digit_timeout: 2
    on_max_retries: give-up
  one: {type: hangup, reason: one}
  two: {type: hangup, reason: two}
  answer: {type: hangup, reason: answer}
  star: {type: hangup, reason: star}
  give-up: {type: hangup, reason: gave_up}
"""


# --- play ----------------------------------------------------------------------------------------

def test_play_plays_its_prompts_in_one_command_then_goes_on(tmp_path: Path) -> None:
    flow = call(tmp_path, PLAY)
    out = flow.start()
    [play] = flow.of(c.Play)
    assert isinstance(play, c.Play)
    assert play.prompts == ("a.wav", "b.wav")
    [timer] = [x for x in out if isinstance(x, c.StartTimer)]
    assert isinstance(timer, c.StartTimer) and timer.seconds == 2.0 + 15  # the prompts' length + the guard
    flow.finish_prompt()
    assert flow.of(c.HangUp, last=True) == [c.HangUp(reason="done")]
    assert flow.of(c.CancelTimer, last=True) == [c.CancelTimer(ref=timer.ref)]
    assert flow.phase == "leaving"


def test_a_failed_prompt_does_not_stop_the_flow(tmp_path: Path) -> None:
    flow = call(tmp_path, PLAY)
    flow.start()
    flow.finish_prompt(failed=True)
    assert flow.of(c.HangUp, last=True) == [c.HangUp(reason="done")]
    assert flow.milestones("flow.node")[0]["outcome"] == "prompt_failed"


def test_a_prompt_that_never_reports_back_is_stopped_by_its_guard_timer(tmp_path: Path) -> None:
    flow = call(tmp_path, PLAY)
    flow.start()
    out = flow.fire_timer()
    assert isinstance(out[0], c.CancelMedia)
    assert flow.of(c.HangUp, last=True) == [c.HangUp(reason="done")]


def test_media_waits_for_the_call_to_be_established(tmp_path: Path) -> None:
    flow = call(tmp_path, PLAY)
    out = flow.start(established=False)
    assert not [x for x in out if not isinstance(x, c.Milestone)]
    assert flow.state.stage == "await_call"
    out = flow.establish()
    assert [type(x) for x in out] == [c.Play, c.StartTimer]
    assert flow.establish() == []  # a second "established" (after a failed transfer) changes nothing


def test_events_before_started_are_ignored(tmp_path: Path) -> None:
    flow = call(tmp_path, PLAY)
    assert flow.send(e.Tone(key="1")) == []
    assert flow.send(e.CallEstablished()) == []
    assert flow.state == State()


# --- menu ----------------------------------------------------------------------------------------

def test_menu_subscribes_to_tones_once_and_a_key_barges_in(tmp_path: Path) -> None:
    flow = call(tmp_path, MENU)
    out = flow.start()
    assert [type(x) for x in out if not isinstance(x, c.Milestone)] == [c.SubscribeTones, c.Play, c.StartTimer]
    out = flow.press("1")
    kinds = [type(x) for x in out if not isinstance(x, c.Milestone)]
    assert kinds == [c.CancelTimer, c.CancelMedia, c.HangUp]
    assert flow.milestones("flow.node")[0] == {"flow": "flow", "node": "menu", "type": "menu", "outcome": "option",
                                               "next": "one", "input": "1", "attempt": 1}


def test_menu_no_input_waits_after_the_prompt_then_retries_with_its_prompt(tmp_path: Path) -> None:
    flow = call(tmp_path, MENU)
    flow.start()
    out = flow.finish_prompt()
    assert [x.seconds for x in out if isinstance(x, c.StartTimer)] == [4]
    flow.fire_timer()
    assert flow.of(c.Play, last=True)[0] == c.Play(ref=flow.state.play, prompts=("no-input.wav", "menu.wav"))
    assert flow.milestones("flow.retry") == [{"flow": "flow", "node": "menu", "attempt": 1, "reason": "no_input",
                                              "input": None}]
    flow.finish_prompt()
    flow.fire_timer()  # the second and last attempt
    assert flow.of(c.HangUp, last=True) == [c.HangUp(reason="gave_up")]
    assert flow.milestones("flow.node")[-2]["outcome"] == "max_retries"


def test_menu_wrong_key_retries_with_the_no_match_prompt_at_once(tmp_path: Path) -> None:
    flow = call(tmp_path, MENU)
    flow.start()
    flow.finish_prompt()
    flow.press("7")  # no option starts with 7: no need to wait
    assert flow.of(c.Play, last=True)[0].prompts == ("no-match.wav", "menu.wav")  # type: ignore[attr-defined]
    assert flow.milestones("flow.retry")[0]["input"] == "7"
    assert flow.state.attempt == 2


def test_menu_multi_digit_option_waits_for_the_next_key(tmp_path: Path) -> None:
    flow = call(tmp_path, MENU)
    flow.start()
    out = flow.press("4")  # 42 is an option: wait up to the inter-digit timeout
    assert [x.seconds for x in out if isinstance(x, c.StartTimer)] == [2]
    flow.press("2")
    assert flow.of(c.HangUp, last=True) == [c.HangUp(reason="answer")]


def test_menu_inter_digit_timeout_completes_the_input(tmp_path: Path) -> None:
    flow = call(tmp_path, MENU)
    flow.start()
    flow.press("4")
    flow.fire_timer()  # "4" alone is not an option
    assert flow.milestones("flow.retry")[0] == {"flow": "flow", "node": "menu", "attempt": 1, "reason": "no_match",
                                                "input": "4"}


def test_menu_terminator_ends_the_input(tmp_path: Path) -> None:
    flow = call(tmp_path, MENU.replace("options: {1: one", "max_digits: 3\n    options: {1: one"))
    flow.start()
    flow.press("1")  # with max_digits 3, "1" alone could still grow? no option starts "1x": matched at once
    assert flow.of(c.HangUp, last=True) == [c.HangUp(reason="one")]


def test_menu_terminator_submits_a_prefix(tmp_path: Path) -> None:
    text = MENU.replace("options: {1: one, 2: two, 42: answer", "options: {1: one, 12: two, 42: answer")
    flow = call(tmp_path, text)
    flow.start()
    flow.press("1")  # could be 1 or 12: wait
    assert flow.state.stage == "input"
    flow.press("#")
    assert flow.of(c.HangUp, last=True) == [c.HangUp(reason="one")]


def test_menu_star_option(tmp_path: Path) -> None:
    flow = call(tmp_path, MENU)
    flow.start()
    flow.press("*")
    assert flow.of(c.HangUp, last=True) == [c.HangUp(reason="star")]


def test_menu_without_barge_in_ignores_keys_during_the_prompt(tmp_path: Path) -> None:
    flow = call(tmp_path, MENU.replace("retries: 1", "retries: 1\n    barge_in: false"))
    flow.start()
    assert flow.press("1") == []
    flow.finish_prompt()
    flow.press("1")
    assert flow.of(c.HangUp, last=True) == [c.HangUp(reason="one")]


def test_repeated_tones_are_ignored_by_sequence_id(tmp_path: Path) -> None:
    flow = call(tmp_path, MENU)
    flow.start()
    flow.finish_prompt()
    flow.send(e.Tone(key="4", sequence=5))
    assert flow.send(e.Tone(key="2", sequence=5)) == []
    assert flow.send(e.Tone(key="2", sequence=3)) == []
    assert flow.state.digits == "4"


def test_repeat_option_restarts_the_menu_with_fresh_retries(tmp_path: Path) -> None:
    text = MENU.replace("2: two", "2: two, 9: menu")
    flow = call(tmp_path, text)
    flow.start()
    flow.finish_prompt()
    flow.fire_timer()  # attempt 2
    assert flow.state.attempt == 2
    flow.press("9")
    assert flow.node == "menu" and flow.state.attempt == 1
    assert flow.of(c.Play, last=True)[0].prompts == ("menu.wav",)  # type: ignore[attr-defined]


def test_keys_outside_a_menu_are_ignored(tmp_path: Path) -> None:
    flow = call(tmp_path, PLAY)
    flow.start()
    assert flow.press("1") == []


# --- record ---------------------------------------------------------------------------------------

RECORD = """
nodes:
  message:
    type: record
    prompt: leave.wav
    max_duration: 90
    initial_silence_timeout: 4
    max_silence_timeout: 3
    stop_tones: ["#", 1]
    next: thanks
    failed: sorry
  thanks: {type: hangup, reason: thanks}
  sorry: {type: hangup, reason: sorry}
"""


def test_record_asks_for_a_recording_and_the_recording_to_be_saved(tmp_path: Path) -> None:
    flow = call(tmp_path, RECORD)
    flow.start()
    [record] = flow.of(c.Record)
    assert record == c.Record(ref=flow.state.op, prompt="leave.wav", beep=True, max_duration=90,
                              initial_silence_timeout=4, max_silence_timeout=3, stop_tones=("#", "1"),
                              mailbox="message")
    assert flow.of(c.StartTimer)[0].seconds == 1 + 4 + 90 + 15  # type: ignore[attr-defined]
    flow.record(duration=12.5, location="https://recordings.example/r1", token="tok")
    [save] = flow.of(c.SaveRecording)
    assert save == c.SaveRecording(ref=record.ref, mailbox="message", location="https://recordings.example/r1",
                                   token="tok", duration=12.5, caller="+14255550123", called="+14255550100",
                                   at=flow.now.isoformat(), flow="flow", node="message")
    assert "tok" not in repr(save)
    assert flow.of(c.HangUp, last=True) == [c.HangUp(reason="thanks")]
    assert flow.milestones("flow.recording")[0]["outcome"] == "saved"


def test_record_with_nothing_said_goes_on_without_saving(tmp_path: Path) -> None:
    flow = call(tmp_path, RECORD)
    flow.start()
    flow.send(e.RecordFinished(ref=flow.state.op, ok=True, location=""))
    assert flow.of(c.SaveRecording) == []
    assert flow.of(c.HangUp, last=True) == [c.HangUp(reason="thanks")]


def test_record_failure_takes_the_failed_branch(tmp_path: Path) -> None:
    flow = call(tmp_path, RECORD)
    flow.start()
    flow.record(ok=False)
    assert flow.of(c.HangUp, last=True) == [c.HangUp(reason="sorry")]


def test_record_that_never_finishes_is_cancelled_by_its_guard(tmp_path: Path) -> None:
    flow = call(tmp_path, RECORD)
    flow.start()
    out = flow.fire_timer()
    assert isinstance(out[0], c.CancelMedia)
    assert flow.of(c.HangUp, last=True) == [c.HangUp(reason="sorry")]
    assert flow.milestones("flow.recording")[0]["outcome"] == "timeout"


# --- transfer -------------------------------------------------------------------------------------

TRANSFER = """
nodes:
  agent:
    type: transfer
    target: user:agent-1
    mode: consultative
    ring_timeout: 20
    no_answer: voicemail
    failed: sorry
  voicemail: {type: hangup, reason: voicemail}
  sorry: {type: hangup, reason: sorry}
"""


def test_transfer_completed_leaves_the_call(tmp_path: Path) -> None:
    flow = call(tmp_path, TRANSFER)
    flow.start()
    assert flow.of(c.Transfer) == [c.Transfer(ref=flow.state.op, target="user:agent-1", mode="consultative",
                                              ring_timeout=20)]
    flow.transfer("completed", after=7, code=0, subcode=7015)
    assert flow.phase == "leaving" and flow.state.left == "transfer"
    [facts] = flow.milestones("flow.transfer")
    assert facts["outcome"] == "completed" and facts["ring_seconds"] == 7.0 and facts["subcode"] == 7015
    assert flow.press("1") == [] and flow.fire_timer.__self__ is flow
    out = flow.end(code=200, subcode=7015)
    assert [x.name for x in out if isinstance(x, c.Milestone)] == ["flow.ended"]
    assert flow.milestones("flow.ended")[0]["left"] == "transfer"


@pytest.mark.parametrize(("outcome", "reason"), [("no_answer", "voicemail"), ("declined", "voicemail"),
                                                 ("failed", "sorry"), ("something new", "sorry")])
def test_transfer_outcomes_take_their_branch(tmp_path: Path, outcome: str, reason: str) -> None:
    flow = call(tmp_path, TRANSFER)
    flow.start()
    flow.transfer(outcome)
    assert flow.of(c.HangUp, last=True) == [c.HangUp(reason=reason)]


def test_a_transfer_graph_never_reports_on_counts_as_not_answered(tmp_path: Path) -> None:
    flow = call(tmp_path, TRANSFER)
    flow.start()
    assert flow.of(c.StartTimer)[0].seconds == 20 + 30  # type: ignore[attr-defined]
    flow.fire_timer()
    assert flow.of(c.HangUp, last=True) == [c.HangUp(reason="voicemail")]
    assert flow.milestones("flow.transfer")[0]["timed_out"] is True


def test_a_late_transfer_outcome_after_the_guard_is_stale(tmp_path: Path) -> None:
    text = TRANSFER.replace("no_answer: voicemail", "no_answer: menu") + """
  menu:
    type: menu
    prompt: menu.wav
    options: {1: voicemail}
    on_max_retries: sorry
"""
    flow = call(tmp_path, text)
    flow.start()
    ref = flow.state.op
    flow.fire_timer()
    assert flow.node == "menu"
    assert flow.send(e.TransferOutcome(ref=ref, outcome="failed")) == []
    assert flow.node == "menu"


# --- redirect, hand-off, hang-up ------------------------------------------------------------------

def test_redirect_before_answer_then_a_failed_redirect_hangs_up(tmp_path: Path) -> None:
    flow = call(tmp_path, """
nodes:
  ring-all: {type: redirect, targets: ["+14255550100", "user:a"], timeout: 20}
""")
    out = flow.start(established=False)
    [redirect] = [x for x in out if isinstance(x, c.Redirect)]
    assert redirect == c.Redirect(ref=redirect.ref, targets=("+14255550100", "user:a"), timeout=20)
    assert flow.phase == "leaving"
    assert flow.send(e.Redirected(ref="other", ok=False)) == []
    assert flow.send(e.Redirected(ref=redirect.ref, ok=False)) == [c.HangUp(reason="redirect_failed")]


def test_handoff_gives_the_call_away(tmp_path: Path) -> None:
    flow = call(tmp_path, "nodes:\n  media: {type: handoff, reason: recording}\n")
    out = flow.start(established=False)
    assert c.HandOff(reason="recording") in out
    assert flow.state.left == "handoff"


def test_after_the_call_ended_nothing_is_asked_for(tmp_path: Path) -> None:
    flow = call(tmp_path, MENU)
    flow.start()
    timer = flow.state.timer
    out = flow.end()
    assert [type(x) for x in out] == [c.Milestone]
    assert flow.milestones("flow.ended")[0]["node"] == "menu"
    for event in (e.Tone(key="1"), e.TimerFired(ref=timer), e.CallEstablished(), e.CallEnded(),
                  e.Started(at=flow.now)):
        assert flow.send(event) == []
    assert flow.phase == "ended"


# --- invite ---------------------------------------------------------------------------------------

def test_invite_then_next_or_failed(tmp_path: Path) -> None:
    text = """
nodes:
  add: {type: invite, targets: ["user:a", "user:b"], next: ok, failed: sorry}
  ok: {type: hangup, reason: ok}
  sorry: {type: hangup, reason: sorry}
"""
    flow = call(tmp_path, text)
    flow.start()
    assert flow.of(c.Invite) == [c.Invite(ref=flow.state.op, targets=("user:a", "user:b"))]
    flow.invite(ok=True)
    assert flow.of(c.HangUp, last=True) == [c.HangUp(reason="ok")]
    flow = call(tmp_path, text)
    flow.start()
    flow.invite(ok=False)
    assert flow.of(c.HangUp, last=True) == [c.HangUp(reason="sorry")]


# --- hours and conditions -------------------------------------------------------------------------

HOURS = """
nodes:
  hours:
    type: hours
    timezone: Europe/London
    weekly:
      mon-fri: ["08:30-12:00", "13:00-17:30"]
      sat: "22:00-02:00"
    holidays: [2026-04-03, "2026-12-24..2026-12-26", "01-01"]
    open: open
    closed: closed
    holiday: holiday
  open: {type: hangup, reason: open}
  closed: {type: hangup, reason: closed}
  holiday: {type: hangup, reason: holiday}
"""


@pytest.mark.parametrize(("when", "expected"), [
    (datetime(2026, 3, 3, 9, 0, tzinfo=UTC), "open"),  # Tuesday 09:00 GMT
    (datetime(2026, 3, 3, 12, 30, tzinfo=UTC), "closed"),  # lunch
    (datetime(2026, 3, 3, 8, 29, tzinfo=UTC), "closed"),
    (datetime(2026, 3, 3, 8, 30, tzinfo=UTC), "open"),
    (datetime(2026, 3, 3, 17, 30, tzinfo=UTC), "closed"),  # the end is exclusive
    (datetime(2026, 7, 7, 7, 45, tzinfo=UTC), "open"),  # 08:45 BST: the zone's summer time counts
    (datetime(2026, 3, 7, 23, 0, tzinfo=UTC), "open"),  # Saturday late, past midnight range
    (datetime(2026, 3, 8, 1, 0, tzinfo=UTC), "open"),  # Sunday 01:00 belongs to Saturday's range
    (datetime(2026, 3, 8, 2, 0, tzinfo=UTC), "closed"),
    (datetime(2026, 4, 3, 10, 0, tzinfo=UTC), "holiday"),  # Good Friday
    (datetime(2026, 12, 25, 10, 0, tzinfo=UTC), "holiday"),
    (datetime(2027, 1, 1, 10, 0, tzinfo=UTC), "holiday"),  # every year
])
def test_hours_and_holidays_in_the_time_zone(tmp_path: Path, when: datetime, expected: str) -> None:
    flow = call(tmp_path, HOURS, at=when)
    flow.start()
    assert flow.of(c.HangUp) == [c.HangUp(reason=expected)]


def test_hours_use_the_time_of_the_event_that_reaches_them(tmp_path: Path) -> None:
    text = HOURS.replace("  hours:\n", "  first: {type: play, prompt: a.wav, next: hours}\n  hours:\n")
    text = text.replace("nodes:\n", "start: first\nnodes:\n")
    flow = call(tmp_path, text, at=datetime(2026, 3, 3, 17, 29, 58, tzinfo=UTC))
    flow.start()
    flow.finish_prompt()  # one second of prompt: 17:29:59 still open
    assert flow.of(c.HangUp) == [c.HangUp(reason="open")]
    flow = call(tmp_path, text, at=datetime(2026, 3, 3, 17, 29, 58, tzinfo=UTC))
    flow.start()
    flow.send(e.PromptFinished(ref=flow.state.play, at=datetime(2026, 3, 3, 17, 30, 1, tzinfo=UTC)))
    assert flow.of(c.HangUp) == [c.HangUp(reason="closed")]


CONDITION = """
nodes:
  route:
    type: condition
    timezone: America/New_York
    cases:
      - when: {caller: ["+1206*", "+1425555*"]}
        next: local
      - when: {called: "instance:*", time: "18:00-08:00"}
        next: night-line
      - when: {days: [sat, sun]}
        next: weekend
      - when: {caller: "user:*", days: mon-fri, time: ["09:00-12:00", "13:00-17:00"]}
        next: colleague
    else: other
  local: {type: hangup, reason: local}
  night-line: {type: hangup, reason: night}
  weekend: {type: hangup, reason: weekend}
  colleague: {type: hangup, reason: colleague}
  other: {type: hangup, reason: other}
"""


@pytest.mark.parametrize(("caller", "called", "when", "expected"), [
    ("+14255550123", "+18005550100", datetime(2026, 3, 3, 15, tzinfo=UTC), "local"),
    ("+442079460000", "instance:abc", datetime(2026, 3, 3, 3, tzinfo=UTC), "night"),  # 22:00 in New York
    ("+442079460000", "instance:abc", datetime(2026, 3, 3, 15, tzinfo=UTC), "other"),  # 10:00
    ("+442079460000", "+18005550100", datetime(2026, 3, 7, 15, tzinfo=UTC), "weekend"),
    ("user:abc", "+18005550100", datetime(2026, 3, 3, 15, tzinfo=UTC), "colleague"),
    ("user:abc", "+18005550100", datetime(2026, 3, 3, 17, 30, tzinfo=UTC), "other"),  # 12:30 lunch
    ("anonymous", "+18005550100", datetime(2026, 3, 3, 15, tzinfo=UTC), "other"),
])
def test_condition_first_matching_case_wins(tmp_path: Path, caller: str, called: str, when: datetime,
                                            expected: str) -> None:
    flow = call(tmp_path, CONDITION, caller=caller, called=called, at=when)
    flow.start(established=False)  # conditions need no media: they run before the call is answered
    assert flow.of(c.HangUp) == [c.HangUp(reason=expected)]


def test_party_fact_is_the_flows_target_syntax() -> None:
    assert e.party_fact("phone", "+14255550123") == "+14255550123"
    assert e.party_fact("user", "abc") == "user:abc"
    assert e.party_fact("applicationInstance", "x") == "instance:x"
    assert e.party_fact("application", "bot") == "app:bot"
    assert e.party_fact("encrypted", None) == "anonymous"
    assert e.party_fact("phone", "anonymous") == "anonymous"
    assert e.party_fact("guest", "g1") == "guest:g1"


# --- sub-flows ------------------------------------------------------------------------------------

def test_subflow_runs_and_returns_and_return_on_its_own_hangs_up(tmp_path: Path) -> None:
    main = """
nodes:
  first: {type: subflow, flow: common/greet.yaml, next: again}
  again: {type: subflow, flow: common/greet.yaml, next: bye}
  bye: {type: hangup, reason: bye}
"""
    greet = """
nodes:
  hi: {type: play, prompt: prompts/hi.wav, next: back}
  back: {type: return}
"""
    flow = call(tmp_path, main, **{"common/greet.yaml": greet})
    flow.start()
    assert flow.state.flow == "common/greet.yaml" and flow.state.stack == (("flow.yaml", "again"),)
    assert flow.of(c.Play)[0].prompts == ("common/prompts/hi.wav",)  # type: ignore[attr-defined]
    flow.finish_prompt()
    assert flow.state.flow == "common/greet.yaml" and flow.node == "hi"
    flow.finish_prompt()
    assert flow.of(c.HangUp, last=True) == [c.HangUp(reason="bye")]
    assert flow.state.stack == ()
    alone = FlowCall(load_bundle(tmp_path / "common" / "greet.yaml", folder=tmp_path))
    alone.start()
    alone.finish_prompt()
    assert alone.of(c.HangUp, last=True) == [c.HangUp(reason="returned")]


# --- state and contract ---------------------------------------------------------------------------

def test_state_is_json_and_a_stale_timer_is_ignored(tmp_path: Path) -> None:
    flow = call(tmp_path, MENU)
    flow.start()
    guard = flow.state.timer
    flow.finish_prompt()
    assert flow.send(e.TimerFired(ref=guard)) == []  # the prompt's guard, from before: stale
    again = State.from_json(json.loads(json.dumps(flow.state.to_json())))
    assert again == flow.state
    with pytest.raises(ValueError, match="version"):
        State.from_json({"phase": "running"})


def test_a_state_from_an_older_flow_version_hangs_up_cleanly(tmp_path: Path) -> None:
    flow = call(tmp_path, MENU)
    flow.start()
    changed = FlowCall(bundle(tmp_path / "v2", PLAY))
    changed.state = flow.state
    out = changed.press("1")
    assert out == [c.CancelTimer(ref=flow.state.timer), c.HangUp(reason="flow_changed")]


def test_events_and_commands_cross_json() -> None:
    at = datetime(2026, 3, 3, 9, tzinfo=UTC)
    for event in (e.Started(at=at, caller="+1", called="user:x"), e.Tone(key="#", sequence=3, at=at),
                  e.RecordFinished(ref="record-1", location="https://x", token="t", duration=1.5),
                  e.TransferOutcome(ref="transfer-2", outcome="declined", code=603, subcode=0), e.CallEnded()):
        assert e.event_from_json(json.loads(json.dumps(e.event_to_json(event)))) == event
    for command in (c.Play(ref="play-1", prompts=("a.wav", "b.wav")), c.StartTimer(ref="timer-2", seconds=4.5),
                    c.Redirect(ref="redirect-3", targets=("+1425",), timeout=None),
                    c.Milestone(name="flow.node", facts={"node": "x", "attempt": 1, "next": None})):
        assert c.command_from_json(json.loads(json.dumps(c.command_to_json(command)))) == command
    with pytest.raises(ValueError, match="unknown type"):
        e.event_from_json({"type": "Nope"})
    with pytest.raises(ValueError, match="unknown fields"):
        c.command_from_json({"type": "HangUp", "reason": "x", "extra": 1})
    with pytest.raises(ValueError, match="timezone-aware"):
        e.Tone(key="1", at=datetime(2026, 1, 1))


def test_refs_are_unique_and_fit_client_context(tmp_path: Path) -> None:
    flow = call(tmp_path, MENU)
    flow.start()
    for _ in range(2):
        flow.finish_prompt()
        flow.press("5")
    refs = [getattr(x, "ref", None) for x in flow.commands if not isinstance(x, c.CancelTimer | c.Milestone)]
    refs = [r for r in refs if r]
    assert len(refs) == len(set(refs))
    assert all(len(r) <= 256 for r in refs)


def test_the_clock_only_moves_with_events(tmp_path: Path) -> None:
    flow = call(tmp_path, PLAY, at=datetime(2026, 3, 3, 9, tzinfo=UTC))
    flow.start()
    assert flow.state.now == "2026-03-03T09:00:00+00:00"
    flow.send(e.PromptFinished(ref="stale"))  # no `at`: the clock stays
    assert flow.state.now == "2026-03-03T09:00:00+00:00"
    flow.send(e.Tone(key="1", at=datetime(2026, 3, 3, 9, tzinfo=UTC) + timedelta(seconds=3)))
    assert flow.state.now == "2026-03-03T09:00:03+00:00"
