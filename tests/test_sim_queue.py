"""Call queues end to end: several callers at once in flows/support.yaml's line, the real bot on the local host,
its `queue_line` Durable entity, consult calls to the agents, the simulator playing Teams.

What is checked is what callers and agents live: who is rung when (never one agent for two callers at once),
who gets which agent in what order, what each caller hears (music, honest places), and that every call ends.
"""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path

import pytest

from calling.queues import Line
from simulator.calls import SimCall
from simulator.faults import NotificationFault
from simulator.harness import CallHandle, Simulation
from simulator.scenario import load_scenario, run_scenario

ANA = "user:4f2a6c1e-7b3d-4e58-9a01-b2c3d4e5f601"
BEN = "user:5b3c7d2f-8c4e-4f69-8b12-c3d4e5f60712"
CHEN = "user:6c4d8e3a-9d5f-4a7a-9c23-d4e5f6071823"
AGENTS = (ANA, BEN, CHEN)
SUPPORT = {"DEFAULT_FLOW": "support"}
ROOT = Path(__file__).resolve().parent.parent
FLOWS = ROOT / "flows"


def rings(sim: Simulation) -> list[tuple[str, float, float | None, str]]:
    """Every call the bot placed to an agent: (agent, started, ended, how it ended), in order."""
    out = []
    for call in sim.simulator.calls.values():
        if call.direction == "outgoing" and call.remote in AGENTS:
            out.append((call.remote, call.legs[0].started_at if call.legs else 0.0, call.ended_at,
                        call.termination_reason or call.state))
    return sorted(out, key=lambda r: r[1])


def assert_no_agent_rung_twice_at_once(sim: Simulation) -> None:
    by_agent: dict[str, list[tuple[float, float]]] = {}
    for agent, start, end, _ in rings(sim):
        by_agent.setdefault(agent, []).append((start, end if end is not None else float("inf")))
    for agent, spans in by_agent.items():
        spans.sort()
        for (_, first_end), (second_start, _) in itertools.pairwise(spans):
            assert second_start >= first_end, f"{agent} was rung for two callers at once: {spans}"


def heard(call: CallHandle) -> list[str]:
    return [h.name for h in call.call.heard]


def agent_of(sim: Simulation, call: CallHandle) -> str | None:
    """The agent the caller was handed to (the consult call its transfer replaced)."""
    for leg in call.call.legs:
        if leg.kind == "transfer" and leg.outcome == "answered":
            return leg.targets[0] if leg.targets else None
    return None


def second_calls(sim: Simulation, caller: CallHandle) -> list[SimCall]:
    return [c for c in sim.simulator.calls.values()
            if c.direction == "outgoing" and c.callback_uri.endswith(f"/api/calls/{caller.id}")]


def test_five_callers_at_once_are_served_first_come_first_served_by_three_agents() -> None:
    with Simulation(settings=SUPPORT) as sim:
        for agent in AGENTS:
            sim.callee(agent, "answer", after=8)  # the first three still ring as the last two join
        callers = []
        for n in range(5):
            callers.append(sim.dial(from_phone=f"+1425555{100 + n:04d}", to=sim.bot))
            sim.wait(1)
        for call in callers[:3]:
            call.expect_ended()
        # Round robin over Ana, Ben, Chen, in the order the callers joined.
        assert [agent_of(sim, c) for c in callers[:3]] == [ANA, BEN, CHEN]
        assert all(c.call.termination_reason == "AppTransferred" for c in callers[:3])
        # The fourth and fifth joined while the first three were still in line (their agents ringing): they
        # heard their true places then, after the greeting, and wait with music.
        callers[3].expect_prompt("hold-music", to_the_end=False)
        callers[4].expect_prompt("hold-music", to_the_end=False)
        assert heard(callers[3])[:4] == ["welcome", "queue-greeting", "queue-fourth", "hold-music"]
        assert heard(callers[4])[:4] == ["welcome", "queue-greeting", "queue-fifth", "hold-music"]
        assert callers[3].state == "established" and callers[4].state == "established"
        # After the 30 s wrap-up the agents are rung again: the fourth caller first.
        callers[3].expect_ended(within=90)
        callers[4].expect_ended(within=30)
        assert agent_of(sim, callers[3]) == ANA and agent_of(sim, callers[4]) == BEN
        first_ring = {r[0]: r[1] for r in reversed(rings(sim))}
        assert first_ring[ANA] < first_ring[BEN]
        assert_no_agent_rung_twice_at_once(sim)
        assert len(rings(sim)) == 5


def test_agents_who_decline_or_ring_out_are_skipped_and_the_next_one_answers() -> None:
    with Simulation(settings=SUPPORT) as sim:
        sim.callee(ANA, "decline", after=2)
        sim.callee(BEN, "no_answer", after=90)
        sim.callee(CHEN, "answer", after=3)
        call = sim.dial(from_phone="+14255550100", to=sim.bot)
        call.expect_ended(within=60)
        assert agent_of(sim, call) == CHEN
        assert [(agent, end) for agent, _, _, end in rings(sim)][:2] == [(ANA, rings(sim)[0][3]),
                                                                         (BEN, rings(sim)[1][3])]
        ana, ben = rings(sim)[0], rings(sim)[1]
        assert ben[2] is not None and 19.5 <= ben[2] - ben[1] <= 21.5  # rung for ring_timeout, then hung up
        assert ana[2] is not None and ana[2] - ana[1] < 5


def test_nobody_answering_sends_the_caller_to_voicemail_after_two_rounds() -> None:
    with Simulation(settings=SUPPORT) as sim:
        for agent in AGENTS:
            sim.callee(agent, "no_answer", after=90)
        call = sim.dial(from_phone="+14255550100", to=sim.bot)
        call.expect_prompt("support-voicemail", within=200)
        assert [r[0] for r in rings(sim)] == [ANA, BEN, CHEN, ANA, BEN, CHEN]
        assert all(r[3] != "AppTransferred" for r in rings(sim))
        call.speak(3)
        call.expect_recording()
        call.expect_ended()


def support_flows(tmp_path: Path, *changes: tuple[str, str]) -> dict[str, str]:
    """Settings for flows/support.yaml with `changes` made to its text, in a folder of its own."""
    flows = tmp_path / "flows"
    shutil.copytree(FLOWS / "prompts", flows / "prompts")  # the app serves no prompt outside FLOWS_DIR
    text = (FLOWS / "support.yaml").read_text()
    for old, new in changes:
        assert old in text, old
        text = text.replace(old, new)
    (flows / "support.yaml").write_text(text)
    return {**SUPPORT, "FLOWS_DIR": str(flows)}


def test_a_caller_who_hangs_up_leaves_the_line_and_the_caller_behind_moves_up(tmp_path: Path) -> None:
    settings = support_flows(tmp_path, ("wrap_up: 30", "wrap_up: 600"), ("announce_every: 60", "announce_every: 15"))
    with Simulation(settings=settings) as sim:
        for agent in AGENTS:
            sim.callee(agent, "answer", after=2)
        served = [sim.dial(from_phone=f"+1425555{200 + n:04d}", to=sim.bot) for n in range(3)]
        for call in served:
            call.expect_ended(within=30)
        # All three agents are in wrap-up for 10 minutes: the next two callers wait.
        first = sim.dial(from_phone="+14255550300", to=sim.bot)
        first.expect_prompt("queue-first", within=30)
        second = sim.dial(from_phone="+14255550301", to=sim.bot)
        second.expect_prompt("queue-second", within=30)
        first.hang_up()
        # The next announcement tells the second caller the truth: first in line now.
        second.expect_prompt("queue-first", within=40, to_the_end=False)
        assert second.state == "established"
        assert [h for h in heard(second) if h.startswith("queue-")][-2:] == ["queue-second", "queue-first"]
        assert not second_calls(sim, first) and not second_calls(sim, second)  # no agent is free to ring
        second.hang_up()
        assert_no_agent_rung_twice_at_once(sim)


def test_a_full_line_overflows_to_voicemail_at_once(tmp_path: Path) -> None:
    settings = support_flows(tmp_path, ("max_callers: 10 ", "max_callers: 1  "))
    with Simulation(settings=settings) as sim:
        for agent in AGENTS:
            sim.callee(agent, "no_answer", after=90)
        waiting = sim.dial(from_phone="+14255550100", to=sim.bot)
        waiting.expect_prompt("queue-first")
        full = sim.dial(from_phone="+14255550101", to=sim.bot)
        full.expect_prompt("support-voicemail")
        assert "queue-first" not in heard(full) and "hold-music" not in heard(full)
        assert not second_calls(sim, full)
        full.hang_up()
        waiting.hang_up()


def test_the_support_queue_scenario_passes() -> None:
    outcome = run_scenario(load_scenario(ROOT / "scenarios" / "support-queue.yaml"))
    assert outcome.passed, outcome.message
    assert "bot plays queue-greeting  [POST playPrompt 200]" in outcome.transcript
    assert "bot plays queue-first, hold-music, hold-music, hold-music" in outcome.transcript


def test_a_prompt_is_heard_to_its_end_before_the_rest_of_its_play_finishes() -> None:
    with Simulation(settings=SUPPORT) as sim:
        for agent in AGENTS:
            sim.callee(agent, "no_answer", after=90)
        call = sim.dial(from_phone="+14255550100", to=sim.bot)
        first = call.expect_prompt("queue-first")  # played with the music, in one playPrompt
        assert first.outcome == "playing" and first.started_at + first.seconds <= sim.simulator.now()
        music = call.call.heard[-3:]
        assert [m.name for m in music] == ["hold-music"] * 3
        assert music[0].started_at == first.started_at + first.seconds
        call.hang_up()


def test_the_queue_example_in_testing_flows_md_runs() -> None:
    doc = (ROOT / "docs" / "testing-flows.md").read_text(encoding="utf-8")
    start = doc.index("# flows/support.yaml's agents")
    code = doc[doc.rindex("```python", 0, start) + len("```python"):doc.index("```", start)]
    scope: dict[str, object] = {}
    exec(compile(code, "docs/testing-flows.md", "exec"), scope)  # noqa: S102 (the project's own docs)
    test = scope["test_the_fourth_caller_waits_for_the_first_free_agent"]
    assert callable(test)
    test()


def test_a_line_that_fails_every_operation_leaves_callers_with_music_until_max_wait(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    def broken(self: Line, operation: str | None, data: object) -> dict[str, object]:
        raise RuntimeError("the line's storage is gone")

    monkeypatch.setattr(Line, "apply", broken)
    settings = support_flows(tmp_path, ("max_wait: 300", "max_wait: 60"))
    with Simulation(settings=settings) as sim:
        call = sim.dial(from_phone="+14255550100", to=sim.bot)
        call.expect_prompt("support-voicemail", within=120)
        assert "hold-music" in heard(call) and "queue-first" not in heard(call)  # no place: none is known
        music = [h for h in call.call.heard if h.name == "hold-music"]
        assert music[-1].started_at + music[-1].seconds >= 55  # music the whole minute, no silence
        assert not rings(sim)
        call.hang_up()
    assert "queue.failed" in caplog.text and "the line's storage is gone" in caplog.text


def test_entity_keys_for_names_that_need_changing_keep_lines_apart() -> None:
    from calling.flows.queueing import entity_key

    assert entity_key("t", "main-menu:support") == "t:main-menu:support"
    assert entity_key("t", "a/b") != entity_key("t", "a_b")
    assert len(entity_key("t", "x" * 300)) <= 102 and entity_key("t", "x" * 300) != entity_key("t", "x" * 299)


def test_a_caller_whose_hang_up_was_lost_gets_no_more_agents_rung_for_it() -> None:
    with Simulation(settings=SUPPORT) as sim:
        for agent in AGENTS:
            sim.callee(agent, "no_answer", after=90)
        call = sim.dial(from_phone="+14255550100", to=sim.bot)
        call.expect_consult(to=ANA, outcome=None)
        sim.fault(NotificationFault("terminated", "drop"))  # the caller's own `terminated` never reaches the bot
        call.hang_up()
        sim.wait(60)
        # Ana rang out; before ringing Ben the bot asked Graph for the caller's call, found it gone, and ended.
        assert [r[0] for r in rings(sim)] == [ANA]
        gets = [e for e in call.call.transcript.entries if e.summary.startswith("bot asks for the call")]
        assert gets, "the bot never asked Graph about the caller's call"


def test_a_lost_terminated_after_the_hand_over_rings_nobody_else() -> None:
    with Simulation(settings=SUPPORT) as sim:
        sim.callee(ANA, "answer", after=4)
        call = sim.dial(from_phone="+14255550100", to=sim.bot)
        call.expect_consult(to=ANA, outcome=None)
        sim.fault(NotificationFault("terminated", "drop"))  # the first to end: the caller's, at the hand-over
        call.expect_ended()
        sim.wait(120)
        assert call.call.termination_reason == "AppTransferred"
        assert [r[0] for r in rings(sim)] == [ANA]
