"""Properties of the engine over any caller, any environment, and any flow the checker accepts.

- Any sequence of keys, timeouts, prompt results, transfer/record/invite outcomes and stale or repeated
  events ends in a hang-up, transfer, redirect or hand-off; once the caller stops pressing keys, within
  a bounded number of steps (bounded by the flow's size, not by luck).
- While the flow runs, the engine always waits on something that will come: a timer, or the call
  being established. A call is never left hanging.
- After the call has ended, no step asks for anything.
- The state survives JSON unchanged and stays small however long the call lasts.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from calling.flows import commands as c
from calling.flows import events as e
from calling.flows import model as m
from calling.flows.check import check_flows
from calling.flows.engine import step
from calling.flows.load import load_bundle
from calling.flows.state import State

FLOWS = Path(__file__).resolve().parent.parent / "flows"
SAMPLES = {name: load_bundle(FLOWS / name)
           for name in ("main-menu.yaml", "after-hours.yaml", "reminder.yaml", "support.yaml")}
KEYS = "0123456789*#"
MAX_STATE_BYTES = 1024


# --- random flows that pass the checker -----------------------------------------------------------

SUB = m.Flow(id="sub.yaml", file="sub.yaml", name="sub", start="ask", nodes={
    "ask": m.Menu(id="ask", prompt=("sub.wav",), options={"1": "back", "2": "ask"}, on_max_retries="back",
                  retries=1),
    "back": m.Return(id="back"),
})


@st.composite
def flows(draw: st.DrawFn) -> m.Bundle:
    """A random flow: idle transitions only go forward (so a silent caller always gets to the end), key
    presses go anywhere after the first media node, redirect and hand-off only before any media."""
    size = draw(st.integers(2, 9))
    names = [f"n{i}" for i in range(size)]
    nodes: dict[str, m.Node] = {}
    first_media = size

    def forward(i: int) -> str:
        return names[draw(st.integers(i + 1, size - 1))]

    def anywhere(i: int) -> str:
        return names[draw(st.integers(min(first_media, i), size - 1))]

    for i, name in enumerate(names):
        if i == size - 1:
            nodes[name] = m.HangUp(id=name, reason="end")
            continue
        kinds = ["play", "menu", "record", "transfer", "queue", "invite", "hours", "condition", "subflow", "hangup",
                 "return"]
        if first_media == size:
            kinds += ["redirect", "handoff"]
        kind = draw(st.sampled_from(kinds))
        if kind in ("play", "menu", "record", "transfer", "queue", "invite", "subflow") and first_media == size:
            first_media = i
        prompt = (f"{name}.wav",)
        node: m.Node
        if kind == "play":
            node = m.Play(id=name, prompt=prompt, next=forward(i))
        elif kind == "menu":
            keys = draw(st.lists(st.sampled_from(["1", "2", "3", "9", "*", "42", "0"]), min_size=1, max_size=4,
                                 unique=True))
            options = {k: anywhere(i) for k in keys}
            node = m.Menu(id=name, prompt=prompt, options=options, on_max_retries=forward(i),
                          retries=draw(st.integers(0, 3)), no_input_prompt=draw(st.sampled_from([(), ("ni.wav",)])),
                          barge_in=draw(st.booleans()), terminator=draw(st.sampled_from(["#", None])))
        elif kind == "record":
            node = m.Record(id=name, prompt=draw(st.sampled_from([None, "r.wav"])), mailbox=name, next=forward(i),
                            failed=draw(st.sampled_from([None, forward(i)])))
        elif kind == "transfer":
            node = m.Transfer(id=name, target="user:agent", mode=draw(st.sampled_from(["blind", "consultative"])),
                              failed=forward(i), no_answer=draw(st.sampled_from([None, forward(i)])))
        elif kind == "queue":
            node = m.Queue(id=name, agents=("user:a", "user:b"), music="m.wav", positions=("p1.wav",),
                           greeting=draw(st.sampled_from([(), ("g.wav",)])), max_wait=60, ring_timeout=10,
                           rounds=1, routing=draw(st.sampled_from(["in_order", "round_robin"])), timeout=forward(i),
                           overflow=draw(st.sampled_from([None, forward(i)])),
                           no_agents=draw(st.sampled_from([None, forward(i)])))
        elif kind == "invite":
            node = m.Invite(id=name, targets=("user:a",), next=forward(i), failed=forward(i))
        elif kind == "hours":
            node = m.Hours(id=name, timezone="Europe/London",
                           weekly=(m.OpenHours((0, 1, 2, 3, 4), m.TimeRange(540, 1020)),),
                           holidays=(m.Holiday(datetime(2026, 12, 25).date(), datetime(2026, 12, 25).date()),),
                           open=forward(i), closed=forward(i), holiday=draw(st.sampled_from([None, forward(i)])))
        elif kind == "condition":
            node = m.Condition(id=name, cases=(m.Case(when=m.When(caller=("+1*",)), next=forward(i)),
                                               m.Case(when=m.When(time=(m.TimeRange(1320, 360),)), next=forward(i))),
                               otherwise=forward(i))
        elif kind == "subflow":
            node = m.SubFlow(id=name, flow="sub.yaml", next=forward(i))
        elif kind == "redirect":
            node = m.Redirect(id=name, targets=("+14255550100",), timeout=20)
        elif kind == "handoff":
            node = m.HandOff(id=name)
        elif kind == "return":
            node = m.Return(id=name)
        else:
            node = m.HangUp(id=name)
        nodes[name] = node
    reachable = _reachable(nodes, "n0")
    flow = m.Flow(id="gen.yaml", file="gen.yaml", name="gen", start="n0",
                  nodes={k: v for k, v in nodes.items() if k in reachable})
    bundle = m.Bundle("gen.yaml", {"gen.yaml": flow, "sub.yaml": SUB})
    assert check_flows(bundle.flows, bundle.root) == [], "the generator made a flow the checker rejects"
    return bundle


def _reachable(nodes: dict[str, m.Node], start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(edge.target for edge in nodes[name].edges())
    return seen


# --- the environment: a caller and Graph doing anything allowed -----------------------------------

@dataclass
class Run:
    bundle: m.Bundle
    state: State = field(default_factory=State)
    now: datetime = datetime(2026, 3, 3, 10, tzinfo=UTC)
    steps: int = 0
    refs: list[str] = field(default_factory=list)
    out: list[c.Command] = field(default_factory=list)
    events: list[e.Event] = field(default_factory=list)
    left: bool = False
    due: dict[str, datetime] = field(default_factory=dict)  # when each timer started fires

    def send(self, event: e.Event) -> list[c.Command]:
        self.events.append(event)
        before = self.state
        self.state, commands = step(self.bundle, before, event)
        self.steps += 1
        self.out.extend(commands)
        self.refs.extend(r for r in (getattr(x, "ref", None) for x in commands) if r)
        for x in commands:
            if isinstance(x, c.StartTimer):
                self.due[x.ref] = (event.at or self.now) + timedelta(seconds=x.seconds)
        if before.phase == "ended":
            assert commands == [], f"commands after the call ended: {commands}"
            assert self.state == before
        if isinstance(event, e.CallEnded) and before.phase != "ended":
            # only telemetry, and for a caller waiting in a queue, leaving its line
            assert all(isinstance(x, c.Milestone | c.QueueLeave) for x in commands)
            assert bool([x for x in commands if isinstance(x, c.QueueLeave)]) == bool(before.queued)
        _check_state(self.state)
        if before.phase == "running" and self.state.phase == "leaving":
            # the flow ended in a hang-up, a completed transfer, a redirect or a hand-off
            expected = {"hangup": c.HangUp, "redirect": c.Redirect, "handoff": c.HandOff}.get(self.state.left)
            if expected is None:
                assert self.state.left == "transfer"
                assert isinstance(event, e.TransferOutcome) and event.outcome == "completed"
            else:
                assert any(isinstance(x, expected) for x in commands)
        if self.state.phase in ("leaving", "ended"):
            self.left = True
        return commands


def _check_state(state: State) -> None:
    text = json.dumps(state.to_json())
    assert len(text) < MAX_STATE_BYTES
    assert State.from_json(json.loads(text)) == state
    if state.phase == "running":
        waiting_for_call = state.stage == "await_call" and not state.established
        assert waiting_for_call or state.timer, f"a running call waits on nothing: {state}"


def _idle_bound(bundle: m.Bundle) -> int:
    """Steps a silent caller can take at most before the call ends: every node at most once per frame
    (no idle loops), each costing at most two events per menu attempt plus one per operation."""
    per_node = 2 * (max((n.retries for f in bundle.flows.values() for n in f.nodes.values()
                         if isinstance(n, m.Menu)), default=0) + 1) + 2
    depth = len(bundle.flows)
    # A queue waits in time, not steps: until max_wait, the music (an event a second at most), rings (an outcome
    # and the line's reply a second at most) and a look every 5 s with the line's reply.
    queues = sum(3 * n.max_wait + 2 * n.max_wait // 5 + 20 for f in bundle.flows.values()
                 for n in f.nodes.values() if isinstance(n, m.Queue))
    return (per_node * sum(len(f.nodes) for f in bundle.flows.values()) + queues) * depth + 4


def _completion(run: Run, data: st.DataObject) -> e.Event | None:
    """What the engine waits for, finishing in any way Graph may finish it."""
    s = run.state
    at = run.now
    if s.stage == "await_call" and not s.established:
        return e.CallEstablished(at=at)
    if s.timer and s.timer in run.due and run.due[s.timer] <= at:
        return e.TimerFired(ref=s.timer, at=at)  # a timer that is due fires: nothing can keep it waiting
    choices: list[e.Event] = []
    if s.play:
        choices += [e.PromptFinished(ref=s.play, at=at), e.PromptFailed(ref=s.play, code=500, at=at)]
    if s.op:
        ref = s.op
        if ref.startswith("transfer"):
            choices += [e.TransferOutcome(ref=ref, outcome=o, at=at) for o in e.TRANSFER_OUTCOMES]
        elif ref.startswith("record"):
            choices += [e.RecordFinished(ref=ref, location="https://r/1", token="t", duration=3, at=at),
                        e.RecordFinished(ref=ref, location="", at=at), e.RecordFinished(ref=ref, ok=False, at=at)]
        elif ref.startswith("invite"):
            choices += [e.InviteOutcome(ref=ref, ok=True, at=at), e.InviteOutcome(ref=ref, ok=False, at=at)]
        elif ref.startswith(("qjoin", "qoffer")):
            choices += [e.QueueReply(ref=ref, ok=True, position=p, agent=a, why=w, at=at)
                        for p, a, w in ((1, "user:a", ""), (2, "", "wait"), (1, "", "exhausted"),
                                        (0, "", "not_waiting"), (1, "user:b", ""))]
            choices += [e.QueueReply(ref=ref, ok=False, why=w, at=at) for w in ("overflow", "error")]
    if s.timer:
        choices.append(e.TimerFired(ref=s.timer, at=at))
    return data.draw(st.sampled_from(choices)) if choices else None


def _drive(bundle: m.Bundle, data: st.DataObject) -> Run:
    run = Run(bundle, now=data.draw(st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 1, 1),
                                                 timezones=st.just(UTC))))
    run.send(e.Started(at=run.now, caller=data.draw(st.sampled_from(["+14255550123", "+442079460000", "user:u"])),
                       called="instance:line", established=data.draw(st.booleans())))
    keys = data.draw(st.text(alphabet=KEYS, max_size=40))
    bound = _idle_bound(bundle)
    idle = 0
    while not run.left:
        run.now += timedelta(seconds=data.draw(st.integers(0, 30)))
        action = data.draw(st.sampled_from(["key", "wait", "wait", "noise", "hang up"]))
        if action == "key" and keys:
            key, keys = keys[0], keys[1:]
            run.send(e.Tone(key=key, sequence=run.steps, at=run.now))
            idle = 0
            continue
        if action == "noise" and run.refs:
            stale = data.draw(st.sampled_from(run.refs))
            if stale not in (run.state.play, run.state.timer, run.state.op):
                repeated = [e.Tone(key="1", sequence=run.state.tone_seq)] if run.state.tone_seq >= 0 else []
                noise = data.draw(st.sampled_from([
                    e.TimerFired(ref=stale), e.PromptFinished(ref=stale), e.PromptFailed(ref=stale),
                    e.TransferOutcome(ref=stale, outcome="failed"), e.RecordFinished(ref=stale, ok=False),
                    e.InviteOutcome(ref=stale, ok=False), e.QueueReply(ref=stale, agent="user:a"), *repeated]))
                before = run.state
                assert run.send(noise) == [], f"a stale {noise} changed something"
                assert run.state == before
            continue
        if action == "hang up" and data.draw(st.integers(0, 9)) == 0:
            run.send(e.CallEnded(code=200, subcode=4097, at=run.now))
            break
        event = _completion(run, data)
        assert event is not None, f"nothing to wait for: {run.state}"
        if isinstance(event, e.TimerFired):  # a timer fires when it is due, not before
            run.now = max(run.now, run.due.get(event.ref, run.now))
        elif isinstance(event, e.PromptFinished | e.PromptFailed | e.TransferOutcome):
            run.now += timedelta(seconds=1)  # a prompt or a ring takes time
        event = dataclasses.replace(event, at=run.now)
        run.send(event)
        idle += 1
        assert idle <= bound, f"a silent caller went {idle} steps without the call ending"
    # once the bot is leaving or the call is over, only the end remains, and then nothing at all
    run.send(e.CallEnded(code=200, subcode=5001, at=run.now))
    for event in (e.Tone(key="1"), e.TimerFired(ref=run.refs[-1] if run.refs else "x"), e.CallEstablished(),
                  e.CallEnded()):
        run.send(event)
    assert run.state.phase == "ended"
    return run


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(SAMPLES)), data=st.data())
def test_sample_flows_always_end(name: str, data: st.DataObject) -> None:
    _drive(SAMPLES[name], data)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bundle=flows(), data=st.data())
def test_any_checked_flow_always_ends(bundle: m.Bundle, data: st.DataObject) -> None:
    _drive(bundle, data)


@settings(max_examples=100, deadline=None)
@given(bundle=flows(), data=st.data())
def test_the_same_events_give_the_same_commands(bundle: m.Bundle, data: st.DataObject) -> None:
    first = _drive(bundle, data)
    state = State()
    out: list[c.Command] = []
    for event in first.events:
        state, commands = step(bundle, state, event)
        out.extend(commands)
    assert (state, out) == (first.state, first.out)


def test_a_caller_looping_a_menu_500_times_costs_the_same_per_step() -> None:
    bundle = SAMPLES["main-menu.yaml"]
    state, _ = step(bundle, State(), e.Started(at=datetime(2026, 3, 3, 17, tzinfo=UTC), caller="+1",
                                               called="+2", established=True))
    state, _ = step(bundle, state, e.PromptFinished(ref=state.play))  # welcome
    sizes: list[int] = []
    counts: list[int] = []
    for i in range(500):
        state, out = step(bundle, state, e.Tone(key="9", sequence=i))  # repeat
        sizes.append(len(json.dumps(state.to_json())))
        counts.append(len(out))
        assert state.node == "main-menu" and state.attempt == 1
    assert set(counts) == {counts[0]}  # the same commands every time
    assert max(sizes) - min(sizes) <= 16  # only the digits of five counters grow (seq, refs, tone_seq, visits)
    assert state.visits == 503  # office-hours, welcome, then the menu 501 times

