"""The `queue` node and its line: the engine's commands, the shared line's decisions, several callers at once.

The flow harness carries queue commands out on in-memory lines (calling/queues.py), as the queue's
Durable entity does in Azure; these tests need no runtime."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from calling import queues
from calling.flows import commands as c
from calling.flows import events as e
from calling.flows import queueing
from calling.flows.engine import MUSIC_FAILURES, MUSIC_REPEATS, QUEUE_LOOK, QUEUE_OP_GUARD
from calling.flows.harness import FlowCall, write_flows
from calling.flows.load import load_bundle
from calling.flows.model import Bundle
from calling.queues import Line, QueueInputError
from calling.yamlsource import SourceErrors

AT = datetime(2026, 3, 3, 17, 0, tzinfo=UTC)
A, B, C = "user:agent-a", "user:agent-b", "user:agent-c"
MUSIC = ("music.wav",) * MUSIC_REPEATS

QUEUE = """
nodes:
  line:
    type: queue
    queue: support
    agents: [user:agent-a, user:agent-b, user:agent-c]
    music: music.wav
    greeting: hello.wav
    positions: [first.wav, second.wav]
    announce_every: 30
    ring_timeout: 10
    max_wait: 120
    max_callers: 3
    rounds: 1
    wrap_up: 60
    timeout: late
    overflow: full
    no_agents: nobody
  late: {type: hangup, reason: late}
  full: {type: hangup, reason: full}
  nobody: {type: hangup, reason: nobody}
"""


def bundle(tmp_path: Path, text: str = QUEUE) -> Bundle:
    write_flows(tmp_path, {"flow.yaml": text})
    return load_bundle(tmp_path / "flow.yaml")


def callers(tmp_path: Path, n: int, text: str = QUEUE) -> tuple[list[FlowCall], dict[str, Line]]:
    flows, lines = bundle(tmp_path, text), {}
    calls = [FlowCall(flows, at=AT, lines=lines, call_id=f"call-{i + 1}") for i in range(n)]
    return calls, lines


def ringing(call: FlowCall) -> str | None:
    """The agent the call rings now (its awaited transfer), or None."""
    transfers = [cmd for cmd in call.of(c.Transfer) if cmd.ref == call.state.op]
    return transfers[0].target if transfers else None


def look(call: FlowCall, times: int = 1) -> None:
    for _ in range(times):
        call.fire_timer()


# --- one caller -----------------------------------------------------------------------------------

def test_a_caller_joins_hears_the_greeting_its_place_and_music_and_rings_the_first_agent(tmp_path: Path) -> None:
    [call], lines = callers(tmp_path, 1)
    call.start()
    joins = call.of(c.QueueJoin)
    assert [(j.queue, j.max_callers, j.hold, j.agents) for j in joins] == [("support", 3, 120 + 10 + 60, (A, B, C))]
    # The greeting goes out before the line is asked, so the caller hears something at once; its place
    # and the music are queued after it, nothing cancelled.
    assert call.commands.index(call.of(c.Play)[0]) < call.commands.index(joins[0])
    assert [p.prompts for p in call.of(c.Play)] == [("hello.wav",), ("first.wav", *MUSIC)]
    assert call.of(c.CancelMedia) == []
    transfer = call.of(c.Transfer)[0]
    assert (transfer.target, transfer.mode, transfer.ring_timeout) == (A, "consultative", 10)
    assert lines["support"].taken[A].state == "ringing" and lines["support"].place("call-1") == 1


def test_the_agent_answering_hands_the_caller_over_and_leaves_the_line_with_the_agent_in_wrap_up(
        tmp_path: Path) -> None:
    [call], lines = callers(tmp_path, 1)
    call.start()
    call.transfer("completed", after=4)
    leave = call.of(c.QueueLeave)
    assert [(x.answered_by, x.wrap_up) for x in leave] == [(A, 60)]
    assert call.phase == "leaving" and call.state.left == "transfer"
    assert lines["support"].waiting == [] and lines["support"].taken[A].state == "connected"
    assert call.milestones("flow.transfer")[-1]["outcome"] == "completed"
    [node] = call.milestones("flow.node")
    assert (node["outcome"], node["queue"], node["agent"], node["position"]) == ("answered", "support", A, 1)
    assert node["waited"] == 4.0  # rung at once, answered after 4 s


def test_agents_who_do_not_answer_are_tried_in_order_then_the_caller_goes_to_no_agents(tmp_path: Path) -> None:
    [call], lines = callers(tmp_path, 1)
    call.start()
    rung = [ringing(call)]
    call.transfer("no_answer")
    rung.append(ringing(call))
    call.transfer("declined")
    rung.append(ringing(call))
    call.transfer("no_answer")
    assert rung == [A, B, C]
    assert call.node == "nobody" and call.phase == "leaving"
    assert call.of(c.QueueLeave) and lines["support"].waiting == [] and lines["support"].taken == {}
    assert call.milestones("flow.node")[0]["outcome"] == "no_agents"


def test_the_music_plays_again_each_time_it_ends(tmp_path: Path) -> None:
    [call], _ = callers(tmp_path, 1)
    call.start()
    call.finish_prompt()
    call.finish_prompt()
    assert [p.prompts for p in call.of(c.Play)][-2:] == [MUSIC, MUSIC]


def test_music_that_fails_is_not_replayed_at_once_but_at_the_next_look(tmp_path: Path) -> None:
    [call], _ = callers(tmp_path, 1)
    call.start()
    call.finish_prompt(failed=True)
    assert not call.of(c.Play, last=True)
    look(call)
    assert call.of(c.Play, last=True)[0].prompts == MUSIC
    call.finish_prompt()  # it played: the count of failures starts again
    assert call.state.attempt == 0


def test_music_that_keeps_failing_sends_the_caller_on_rather_than_leave_it_in_silence(tmp_path: Path) -> None:
    [call], lines = callers(tmp_path, 1)
    call.start()
    for _ in range(MUSIC_FAILURES - 1):
        call.finish_prompt(failed=True)
        look(call)
    assert call.node == "line"
    call.finish_prompt(failed=True)
    assert call.node == "nobody" and call.milestones("flow.node")[0]["outcome"] == "music_failed"
    assert lines["support"].waiting == [] and lines["support"].taken == {}


def test_the_wait_ends_at_max_wait_with_the_timeout_branch(tmp_path: Path) -> None:
    text = QUEUE.replace("agents: [user:agent-a, user:agent-b, user:agent-c]", "agents: [user:agent-a]") \
        .replace("wrap_up: 60", "wrap_up: 600")
    [first, second], lines = callers(tmp_path, 2, text)
    first.start()
    first.transfer("completed")  # agent-a is in wrap-up for 10 minutes: taken for the whole wait
    second.start()
    assert ringing(second) is None
    looks = 0
    while second.phase == "running":
        look(second)
        looks += 1
    assert second.node == "late" and second.now - AT >= timedelta(seconds=120)
    assert looks == pytest.approx(120 / QUEUE_LOOK, abs=1)
    assert second.of(c.Transfer) == [] and len(second.of(c.QueueOffer)) == looks  # asked at every look
    assert lines["support"].waiting == [] and second.milestones("flow.node")[0]["outcome"] == "timeout"


def test_the_caller_hanging_up_leaves_the_line_and_frees_the_agent_it_rang(tmp_path: Path) -> None:
    [call], lines = callers(tmp_path, 1)
    call.start()
    assert lines["support"].taken
    call.end()
    assert call.of(c.QueueLeave) and lines["support"].waiting == [] and lines["support"].taken == {}


def test_a_lost_answer_from_the_line_is_given_up_and_asked_again(tmp_path: Path) -> None:
    flows = bundle(tmp_path)
    call = FlowCall(flows, at=AT)  # no lines: nobody answers the queue commands
    call.start()
    assert call.state.stage == "queue_op"
    while (call.now - AT).total_seconds() <= QUEUE_OP_GUARD:
        look(call)
    look(call)
    # The join's answer was lost: whether the line took the call is unknown, so the next look joins again.
    assert len(call.of(c.QueueJoin)) == 2 and call.state.stage == "queue_op"
    assert call.state.play  # meanwhile the music played on after the greeting
    again = call.of(c.QueueJoin)[-1]
    call.send(e.QueueReply(ref=again.ref, ok=True, position=1, at=call.now))
    assert call.of(c.Play)[-1].prompts == ("first.wav", *MUSIC)  # its place, over the music; no greeting twice
    assert call.of(c.CancelMedia) and call.of(c.QueueOffer)


def test_a_call_the_line_no_longer_holds_joins_again_at_the_next_look(tmp_path: Path) -> None:
    [call], lines = callers(tmp_path, 1)
    call.start()
    call.transfer("no_answer")
    lines["support"].waiting.clear()  # its place expired (say, the session was stuck for minutes)
    call.transfer("no_answer")
    assert call.state.stage == "queue" and call.state.position == 0 and len(call.of(c.QueueJoin)) == 1
    look(call)
    assert len(call.of(c.QueueJoin)) == 2 and lines["support"].place("call-1") == 1
    assert ringing(call) == A  # a new place starts a new round of the agents


def test_a_failed_line_answer_keeps_the_caller_waiting_with_music(tmp_path: Path) -> None:
    flows = bundle(tmp_path)
    call = FlowCall(flows, at=AT)
    call.start()
    join = call.of(c.QueueJoin)[0]
    call.send(e.QueueReply(ref=join.ref, ok=False, why="error", at=call.now))
    assert call.node == "line" and call.of(c.Play)[-1].prompts == MUSIC  # after the greeting
    look(call)
    assert len(call.of(c.QueueJoin)) == 2  # asked again


# --- several callers ------------------------------------------------------------------------------

def test_callers_beyond_max_callers_overflow_at_once(tmp_path: Path) -> None:
    text = QUEUE.replace("agents: [user:agent-a, user:agent-b, user:agent-c]", "agents: [user:agent-a]")
    calls, lines = callers(tmp_path, 4, text)
    for call in calls:
        call.start()
    assert [call.node for call in calls] == ["line", "line", "line", "full"]
    assert calls[3].of(c.QueueLeave) == [] and len(lines["support"].waiting) == 3
    assert calls[3].milestones("flow.queue")[0]["outcome"] == "overflow"


def test_places_are_said_honestly_and_move_up_as_callers_ahead_are_served(tmp_path: Path) -> None:
    text = QUEUE.replace("agents: [user:agent-a, user:agent-b, user:agent-c]", "agents: [user:agent-a]") \
        .replace("wrap_up: 60", "wrap_up: 0")
    [first, second, third], lines = callers(tmp_path, 3, text)
    for call in (first, second, third):
        call.start()
    assert [call.of(c.Play)[1].prompts for call in (first, second, third)] == [
        ("first.wav", *MUSIC), ("second.wav", *MUSIC), MUSIC]  # no prompt for a third place: none said
    assert ringing(first) == A and ringing(second) is None and ringing(third) is None
    first.transfer("completed")
    for call in (second, third):
        call.now = first.now
    look(second)
    assert ringing(second) == A  # first come, first served
    look(third)
    assert ringing(third) is None and third.state.position == 2
    for _ in range(30 // QUEUE_LOOK):
        look(third)
    assert ("second.wav", *MUSIC) in [p.prompts for p in third.of(c.Play)]
    assert lines["support"].place("call-3") == 2


def test_callers_ring_different_free_agents_at_the_same_time(tmp_path: Path) -> None:
    calls, _ = callers(tmp_path, 3)
    for call in calls:
        call.start()
    assert [ringing(call) for call in calls] == [A, B, C]


def test_the_caller_first_in_line_is_not_passed_over_when_it_has_rung_every_free_agent(tmp_path: Path) -> None:
    text = QUEUE.replace("wrap_up: 60", "wrap_up: 600").replace("rounds: 1", "rounds: 3")
    calls, _ = callers(tmp_path, 4, text)
    calls[0].start()
    calls[0].transfer("completed", after=0)  # agent-a is taken for 10 minutes
    first = calls[1]
    first.start()
    assert ringing(first) == B
    first.transfer("no_answer", after=0)
    assert ringing(first) == C
    for call in calls[2:]:
        call.start()  # they join behind, while agent-c rings for the first caller
    # agent-b is idle while the first caller rings agent-c: the next caller rings it rather than leave it idle.
    assert [ringing(c) for c in calls[2:]] == [B, None]
    first.transfer("no_answer", after=0)
    # Every free agent has rung for the first caller: its next round starts at once, and the caller behind
    # it does not take agent-c from it (it was told it is 3 in line).
    assert ringing(first) == C and first.state.position == 1
    look(calls[3])
    assert ringing(calls[3]) is None and calls[3].state.position == 3


def test_a_ring_the_line_offered_after_its_answer_was_given_up_on_frees_the_agent_at_the_next_ask() -> None:
    line = Line()
    for call in ("x", "y"):
        line.join(call, AT, 5, hold=600, agents=[A])
    line.offer("x", AT, [A], queues.IN_ORDER, 2, ring=10)  # x's session never got this answer
    assert line.taken[A].call == "x"
    later = AT + timedelta(seconds=15)
    assert line.offer("x", later, [A], queues.IN_ORDER, 2, ring=10)["agent"] == A  # x asks again: a is free


def test_a_call_whose_session_stopped_asking_loses_its_place_to_the_calls_behind() -> None:
    line = Line()
    line.join("dead", AT, 5, hold=3600, agents=[A])
    line.join("alive", AT, 5, hold=3600, agents=[A])
    line.taken[A] = queues.Taken("someone", "connected", (AT + timedelta(seconds=30)).isoformat())
    at = AT
    for _ in range(queues.LEASE // 5 + 1):
        at += timedelta(seconds=5)
        answer = line.apply("offer", {"call": "alive", "now": at.isoformat(), "agents": [A], "rounds": 2,
                                      "ring": 10})
        if answer["agent"]:
            break
    assert answer["agent"] == A and answer["position"] == 1 and line.place("dead") is None


def test_callers_of_nodes_with_other_agents_do_not_hold_up_each_other() -> None:
    line = Line()
    line.join("x", AT, 5, hold=600, agents=[A])
    line.taken[A] = queues.Taken("someone", "connected", (AT + timedelta(seconds=300)).isoformat())
    line.join("y", AT, 5, hold=600, agents=[B])
    assert line.offer("y", AT, [B], queues.IN_ORDER, 2, ring=10)["agent"] == B


def test_round_robin_starts_after_the_agent_offered_the_last_call(tmp_path: Path) -> None:
    text = QUEUE.replace("queue: support", "queue: support\n    routing: round_robin") \
        .replace("wrap_up: 60", "wrap_up: 0")
    calls, _ = callers(tmp_path, 3, text)
    offered = []
    for call in calls:
        call.start()
        offered.append(ringing(call))
        call.transfer("completed")
        for other in calls:
            other.now = call.now
    assert offered == [A, B, C]
    text_in_order = QUEUE.replace("wrap_up: 60", "wrap_up: 0")
    calls, _ = callers(tmp_path / "in-order", 3, text_in_order)
    offered = []
    for call in calls:
        call.start()
        offered.append(ringing(call))
        call.transfer("completed")
    assert offered == [A, A, A]


# --- the line on its own --------------------------------------------------------------------------

def test_the_line_drops_entries_whose_session_never_came_back() -> None:
    line = Line()
    line.join("ghost", AT, 5, hold=60)
    line.offer("ghost", AT, [A], queues.IN_ORDER, 1, ring=10)
    assert line.taken[A].call == "ghost"
    later = AT + timedelta(seconds=61)
    result = line.apply("join", {"call": "real", "now": later.isoformat(), "max_callers": 5, "hold": 60})
    assert result["position"] == 1 and line.taken == {}


def test_the_line_state_survives_json_and_an_unknown_state_is_an_empty_line() -> None:
    line = Line()
    line.join("x", AT, 5, hold=60)
    line.offer("x", AT, [A, B], queues.ROUND_ROBIN, 2, ring=10)
    again = Line.from_json(line.to_json())
    assert again == line
    assert Line.from_json({"v": 99}) == Line() and Line.from_json(None) == Line()


@pytest.mark.parametrize(("operation", "data", "message"), [
    ("join", {"now": AT.isoformat(), "max_callers": 1, "hold": 1}, "call must be"),
    ("join", {"call": "x", "now": "yesterday", "max_callers": 1, "hold": 1}, "ISO 8601"),
    ("join", {"call": "x", "now": "2026-03-03T17:00:00", "max_callers": 1, "hold": 1}, "UTC offset"),
    ("join", {"call": "x", "now": AT.isoformat(), "max_callers": 0, "hold": 1}, "max_callers"),
    ("offer", {"call": "x", "now": AT.isoformat(), "agents": "user:a", "rounds": 1, "ring": 5}, "agents"),
    ("offer", {"call": "x", "now": AT.isoformat(), "agents": [A], "routing": "random", "rounds": 1, "ring": 5},
     "routing"),
    ("dance", {"call": "x", "now": AT.isoformat()}, "unknown operation"),
])
def test_bad_line_input_is_a_clear_error(operation: str, data: dict[str, object], message: str) -> None:
    with pytest.raises(QueueInputError, match=message):
        Line().apply(operation, data)


def test_entity_keys_keep_tenants_apart_and_avoid_characters_storage_refuses() -> None:
    assert queueing.entity_key("t1", "support") != queueing.entity_key("t2", "support")
    key = queueing.entity_key("t1", "main menu/support#1?")
    assert not set(key) & set("/\\#?")


# --- checking -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("change", "where", "message"), [
    (("agents: [user:agent-a, user:agent-b, user:agent-c]", "agents: [user:agent-a, user:agent-a]"),
     "agents[1]", "listed twice"),
    (("queue: support", "queue: sup/port"), "queue", "letters, digits"),
    (("agents: [user:agent-a, user:agent-b, user:agent-c]", "agents: []"), "agents", ""),
    (("routing", "routing"), "", ""),
    (("max_wait: 120", "max_wait: 5"), "max_wait", ""),
    (("timeout: late", "timeout: nowhere"), "timeout", ""),
])
def test_a_bad_queue_node_is_reported_at_its_field(tmp_path: Path, change: tuple[str, str], where: str,
                                                   message: str) -> None:
    if change == ("routing", "routing"):
        change = ("queue: support", "queue: support\n    routing: random")
        where = "routing"
    write_flows(tmp_path, {"flow.yaml": QUEUE.replace(*change)})
    with pytest.raises(SourceErrors) as raised:
        load_bundle(tmp_path / "flow.yaml")
    text = str(raised.value)
    assert f"nodes.line.{where}" in text and message in text, text


def test_a_reply_that_is_not_a_reply_is_an_error_event() -> None:
    join = c.QueueJoin(ref="qjoin-1", queue="q", max_callers=1, hold=10)
    event = queueing.reply_event(join, None, AT)
    assert event == e.QueueReply(at=AT, ref="qjoin-1", ok=False, why="error")
    assert queueing.reply_event(c.QueueLeave(ref="qleave-2", queue="q"), {"ok": True}, AT) is None
