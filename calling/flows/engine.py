"""The flow engine: `step(bundle, state, event) -> (state, commands)`. Pure, deterministic, no I/O.

No clock (time comes from events), no randomness, no storage: the same inputs give the same outputs,
which is what a Durable orchestration needs to replay it. The engine waits for at most one prompt, one
timer and one operation at a time, each by a ref it issued; anything else is stale and ignored.
Every wait is bounded by a timer (a prompt that never reports back, a transfer Graph forgets), so a
call never hangs in a node; with a checked flow a silent caller always reaches the end.

Telemetry leaves as Milestone commands: `flow.started`, `flow.node` (each node left, with its input
and outcome), `flow.retry`, `flow.transfer`, `flow.recording` and `flow.ended`.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from calling.flows import commands as c
from calling.flows import events as e
from calling.flows import model as m
from calling.flows.state import State

MEDIA_GUARD = 15  # seconds beyond a prompt's or recording's length before it counts as lost
TRANSFER_GUARD = 30  # seconds beyond the ring timeout before a silent transfer counts as not answered
INVITE_GUARD = 90  # seconds an invitation may take
QUEUE_LOOK = 5  # seconds between a queue's looks for a free agent (and at its music, deadline, announcements)
QUEUE_OP_GUARD = 30  # seconds the line's answer may take before it counts as lost
QUEUE_HOLD_GUARD = 60  # seconds a place in line outlives the longest wait (a session that died leaves then)
MUSIC_REPEATS = 3  # the music, this many times per playPrompt: fewer requests, no gap while the line answers
MUSIC_FAILURES = 3  # music plays failed in a row before the caller leaves the queue rather than wait in silence
UNKNOWN_PROMPT_SECONDS = 30.0  # length assumed for a prompt the bundle has no file for
MAX_DEPTH = 16  # sub-flow nesting


def step(bundle: m.Bundle, state: State, event: e.Event) -> tuple[State, list[c.Command]]:
    """Apply one event; return the new state and the commands to carry out, in order."""
    run = _Run(bundle, state)
    run.handle(event)
    return run.s, run.out


class _Run:
    """One step's working copy: the state so far and the commands emitted."""

    def __init__(self, bundle: m.Bundle, state: State) -> None:
        self.bundle = bundle
        self.s = state
        self.out: list[c.Command] = []

    def set(self, **changes: Any) -> None:
        self.s = dataclasses.replace(self.s, **changes)

    def emit(self, command: c.Command) -> None:
        self.out.append(command)

    def ref(self, kind: str) -> str:
        self.set(seq=self.s.seq + 1)
        return f"{kind}-{self.s.seq}"

    def milestone(self, name: str, **facts: c.Fact) -> None:
        self.emit(c.Milestone(name=name, facts={"flow": self.flow_name(), **facts}))

    def flow_name(self) -> str:
        flow = self.bundle.flows.get(self.s.flow)
        return flow.name if flow else self.s.flow

    def node(self) -> m.Node | None:
        flow = self.bundle.flows.get(self.s.flow)
        return flow.nodes.get(self.s.node) if flow else None

    # --- dispatch ---------------------------------------------------------------------------------

    def handle(self, event: e.Event) -> None:
        if self.s.phase == "ended":
            return
        if event.at is not None:
            self.set(now=event.at.isoformat())
        if isinstance(event, e.CallEnded):
            self.ended(event)
            return
        if self.s.phase == "new":
            if isinstance(event, e.Started):
                self.begin(event)
            return
        if self.s.phase == "leaving":
            if isinstance(event, e.Redirected) and event.ref == self.s.op and not event.ok:
                self.set(op="")
                self.emit(c.HangUp(reason="redirect_failed"))
            return
        if isinstance(event, e.CallEstablished):
            if not self.s.established:
                self.set(established=True)
                if self.s.stage == "await_call":
                    self.enter_current()
            return
        node = self.node()
        if node is None:
            self.hang_up("flow_changed")
            return
        if isinstance(event, e.PromptFinished | e.PromptFailed):
            if event.ref and event.ref == self.s.play:
                self.prompt_done(node, failed=isinstance(event, e.PromptFailed))
        elif isinstance(event, e.Tone):
            self.tone(node, event)
        elif isinstance(event, e.TimerFired):
            if event.ref and event.ref == self.s.timer:
                self.set(timer="")
                self.timer_fired(node)
        elif isinstance(event, e.TransferOutcome | e.RecordFinished | e.InviteOutcome | e.QueueReply) and event.ref \
                and event.ref == self.s.op:
            self.set(op="")
            if isinstance(node, m.Queue):
                self.queue_done(node, event)  # its timer is the periodic look, not a guard for this operation
            else:
                self.cancel_timer()
                self.operation_done(node, event)

    # --- starting, walking, leaving ---------------------------------------------------------------

    def begin(self, event: e.Started) -> None:
        self.set(phase="running", flow=self.bundle.root, caller=event.caller, called=event.called,
                 established=event.established)
        self.milestone("flow.started", established=event.established)
        self.walk(self.bundle.flow.start)

    def walk(self, name: str) -> None:
        """Enter `name`, passing through nodes that need no media until one needs the call or ends it."""
        limit = 64 + 4 * sum(len(f.nodes) for f in self.bundle.flows.values())
        for _ in range(limit):
            flow = self.bundle.flows.get(self.s.flow)
            node = flow.nodes.get(name) if flow else None
            if node is None:
                self.set(node=name)
                self.hang_up("flow_changed")
                return
            self.set(node=name, stage="", attempt=0, digits="", since="", visits=self.s.visits + 1)
            following = self.pass_through(node)
            if following is None:
                return
            name = following
        self.hang_up("flow_loop")

    def pass_through(self, node: m.Node) -> str | None:
        """For a node that decides at once, the next node's name; otherwise act on the node, None."""
        if isinstance(node, m.Hours):
            outcome = _hours(node, self.local(node.timezone))
            target = node.open if outcome == "open" else (
                node.holiday or node.closed if outcome == "holiday" else node.closed)
            return self.passed(node, outcome, target)
        if isinstance(node, m.Condition):
            local = self.local(node.timezone)
            for i, case in enumerate(node.cases):
                if _matches(case.when, self.s.caller, self.s.called, local):
                    return self.passed(node, f"case {i + 1}", case.next)
            return self.passed(node, "else", node.otherwise)
        if isinstance(node, m.SubFlow):
            sub = self.bundle.flows.get(node.flow)
            if sub is None or len(self.s.stack) >= MAX_DEPTH:
                self.hang_up("flow_changed" if sub is None else "subflow_depth")
                return None
            self.passed(node, "call", sub.start)
            self.set(stack=(*self.s.stack, (self.s.flow, node.next)), flow=node.flow)
            return sub.start
        if isinstance(node, m.Return):
            if not self.s.stack:
                self.passed(node, "return", None)
                self.hang_up("returned")
                return None
            (flow_id, target), rest = self.s.stack[-1], self.s.stack[:-1]
            self.passed(node, "return", target)
            self.set(flow=flow_id, stack=rest)
            return target
        if isinstance(node, m.HangUp):
            self.passed(node, node.reason, None)
            self.hang_up(node.reason)
        elif isinstance(node, m.Redirect):
            self.passed(node, "redirect", None)
            ref = self.ref("redirect")
            self.emit(c.Redirect(ref=ref, targets=node.targets, timeout=node.timeout))
            self.leave("redirect", op=ref)
        elif isinstance(node, m.HandOff):
            self.passed(node, "handoff", None)
            self.emit(c.HandOff(reason=node.reason))
            self.leave("handoff")
        elif not self.s.established:
            self.set(stage="await_call")
        else:
            self.enter(node)
        return None

    def passed(self, node: m.Node, outcome: str, target: str | None) -> str | None:
        self.milestone("flow.node", node=node.id, type=node.TYPE, outcome=outcome, next=target)
        return target

    def exit(self, node: m.Node, outcome: str, target: str, **facts: c.Fact) -> None:
        """Leave a media node: stop what it still runs, report it, go on."""
        self.stop_media()
        self.milestone("flow.node", node=node.id, type=node.TYPE, outcome=outcome, next=target, **facts)
        self.walk(target)

    def stop_media(self) -> None:
        self.cancel_timer()
        if self.s.play:
            self.set(play="")
            self.emit(c.CancelMedia(ref=self.ref("cancel")))

    def hang_up(self, reason: str) -> None:
        self.cancel_timer()
        self.emit(c.HangUp(reason=reason))
        self.leave("hangup")

    def leave(self, how: str, *, op: str = "") -> None:
        self.cancel_timer()
        self.set(phase="leaving", left=how, op=op, play="", stage="")

    def ended(self, event: e.CallEnded) -> None:
        node = self.node()
        self.leave_line()
        if self.s.phase != "new":
            self.milestone("flow.ended", node=self.s.node, type=node.TYPE if node else None, code=event.code,
                           subcode=event.subcode, reason=event.reason or None, left=self.s.left or None,
                           input=self.s.digits or None, visits=self.s.visits)
        self.set(phase="ended", play="", timer="", op="", stage="")

    # --- media nodes ------------------------------------------------------------------------------

    def enter_current(self) -> None:
        node = self.node()
        if node is None:
            self.hang_up("flow_changed")
        else:
            self.enter(node)

    def enter(self, node: m.Node) -> None:
        if isinstance(node, m.Play):
            self.play(node.prompt)
        elif isinstance(node, m.Menu):
            if not self.s.tones:
                self.set(tones=True)
                self.emit(c.SubscribeTones(ref=self.ref("tones")))
            self.set(attempt=1)
            self.play(node.prompt)
        elif isinstance(node, m.Record):
            ref = self.ref("record")
            self.emit(c.Record(ref=ref, prompt=node.prompt, beep=node.beep, max_duration=node.max_duration,
                               initial_silence_timeout=node.initial_silence_timeout,
                               max_silence_timeout=node.max_silence_timeout, stop_tones=node.stop_tones,
                               mailbox=node.mailbox))
            prompt = self.seconds((node.prompt,) if node.prompt else ())
            self.await_op(ref, prompt + node.initial_silence_timeout + node.max_duration + MEDIA_GUARD)
        elif isinstance(node, m.Transfer):
            ref = self.ref("transfer")
            self.emit(c.Transfer(ref=ref, target=node.target, mode=node.mode, ring_timeout=node.ring_timeout))
            self.await_op(ref, node.ring_timeout + TRANSFER_GUARD)
        elif isinstance(node, m.Invite):
            ref = self.ref("invite")
            self.emit(c.Invite(ref=ref, targets=node.targets))
            self.await_op(ref, INVITE_GUARD)
        elif isinstance(node, m.Queue):
            self.join_line(node)

    def play(self, prompts: tuple[str, ...]) -> None:
        ref = self.ref("play")
        self.set(play=ref, stage="prompt", digits="")
        self.emit(c.Play(ref=ref, prompts=prompts))
        self.start_timer(self.seconds(prompts) + MEDIA_GUARD)

    def await_op(self, ref: str, guard: float) -> None:
        self.set(op=ref, stage="op", since=self.s.now)
        self.start_timer(guard)

    def seconds(self, prompts: tuple[str, ...]) -> float:
        known = self.bundle.prompts
        return round(sum(known[p].duration if p in known else UNKNOWN_PROMPT_SECONDS for p in prompts), 3)

    def start_timer(self, seconds: float) -> None:
        self.cancel_timer()
        ref = self.ref("timer")
        self.set(timer=ref)
        self.emit(c.StartTimer(ref=ref, seconds=seconds))

    def cancel_timer(self) -> None:
        if self.s.timer:
            self.emit(c.CancelTimer(ref=self.s.timer))
            self.set(timer="")

    def prompt_done(self, node: m.Node, *, failed: bool) -> None:
        self.set(play="")
        if isinstance(node, m.Queue):
            self.music_done(node, failed=failed)
            return
        self.cancel_timer()
        if isinstance(node, m.Play):
            self.exit(node, "prompt_failed" if failed else "played", node.next)
        elif isinstance(node, m.Menu):
            self.set(stage="wait")
            self.start_timer(node.no_input_timeout)

    def timer_fired(self, node: m.Node) -> None:
        stage = self.s.stage
        if isinstance(node, m.Queue):
            self.look(node)
            return
        if stage == "prompt":  # the prompt never reported back: stop it and go on as if it had failed
            self.stop_media()
            self.prompt_done(node, failed=True)
        elif stage == "wait" and isinstance(node, m.Menu):
            self.retry(node, "no_input", "")
        elif stage == "input" and isinstance(node, m.Menu):
            self.evaluate(node)
        elif stage == "op":
            op = self.s.op
            self.set(op="")
            if isinstance(node, m.Transfer):
                self.transfer_done(node, e.TransferOutcome(ref=op, outcome="no_answer"), timed_out=True)
            elif isinstance(node, m.Record):
                self.emit(c.CancelMedia(ref=self.ref("cancel")))
                self.milestone("flow.recording", node=node.id, mailbox=node.mailbox, outcome="timeout")
                self.exit(node, "timeout", node.failed or node.next)
            elif isinstance(node, m.Invite):
                self.exit(node, "timeout", node.failed or node.next)

    # --- menus ------------------------------------------------------------------------------------

    def tone(self, node: m.Node, event: e.Tone) -> None:
        if event.sequence is not None:
            if event.sequence <= self.s.tone_seq:
                return
            self.set(tone_seq=event.sequence)
        if not isinstance(node, m.Menu) or self.s.stage not in ("prompt", "wait", "input"):
            return
        if event.key not in m.KEYS:
            return
        if self.s.stage == "prompt":
            if not node.barge_in:
                return
            self.stop_media()
        else:
            self.cancel_timer()
        self.set(stage="input")
        if event.key == node.terminator:
            self.evaluate(node, terminated=True)
            return
        digits = self.s.digits + event.key
        self.set(digits=digits)
        candidates = [k for k in node.options if k.startswith(digits)]
        if len(digits) >= node.digits_max or not candidates or (digits in node.options and len(candidates) == 1):
            self.evaluate(node)
        else:
            self.start_timer(node.inter_digit_timeout)

    def evaluate(self, node: m.Menu, *, terminated: bool = False) -> None:
        digits = self.s.digits
        if len(digits) >= node.min_digits and digits in node.options:
            self.exit(node, "option", node.options[digits], input=digits, attempt=self.s.attempt)
        elif not digits and not terminated:
            self.retry(node, "no_input", "")
        else:
            self.retry(node, "no_match", digits or (node.terminator or ""))

    def retry(self, node: m.Menu, reason: str, pressed: str) -> None:
        attempt = self.s.attempt
        self.milestone("flow.retry", node=node.id, attempt=attempt, reason=reason, input=pressed or None)
        if attempt > node.retries:
            self.exit(node, "max_retries", node.on_max_retries, input=pressed or None, attempt=attempt,
                      reason=reason)
            return
        self.set(attempt=attempt + 1)
        lead = node.no_input_prompt if reason == "no_input" else node.no_match_prompt
        self.play((*lead, *node.prompt))

    # --- operations -------------------------------------------------------------------------------

    def operation_done(self, node: m.Node, event: e.Event) -> None:
        if isinstance(event, e.TransferOutcome) and isinstance(node, m.Transfer):
            self.transfer_done(node, event)
        elif isinstance(event, e.RecordFinished) and isinstance(node, m.Record):
            self.record_done(node, event)
        elif isinstance(event, e.InviteOutcome) and isinstance(node, m.Invite):
            outcome = "invited" if event.ok else "failed"
            self.exit(node, outcome, node.next if event.ok else (node.failed or node.next), code=event.code,
                      subcode=event.subcode)

    def transfer_done(self, node: m.Transfer, event: e.TransferOutcome, *, timed_out: bool = False) -> None:
        outcome = event.outcome if event.outcome in e.TRANSFER_OUTCOMES else "failed"
        self.milestone("flow.transfer", node=node.id, target=node.target, mode=node.mode, outcome=outcome,
                       code=event.code, subcode=event.subcode, ring_seconds=_elapsed(self.s.since, self.s.now),
                       timed_out=timed_out)
        if outcome == "completed":
            self.passed(node, "completed", None)
            self.leave("transfer")
        else:
            self.exit(node, outcome, node.branch(outcome))

    def record_done(self, node: m.Record, event: e.RecordFinished) -> None:
        facts: dict[str, c.Fact] = {"node": node.id, "mailbox": node.mailbox, "duration": event.duration,
                                    "code": event.code, "subcode": event.subcode}
        if event.ok and event.location:
            self.emit(c.SaveRecording(ref=event.ref, mailbox=node.mailbox, location=event.location,
                                      token=event.token, duration=event.duration, caller=self.s.caller,
                                      called=self.s.called, at=self.s.now, flow=self.flow_name(), node=node.id))
            self.milestone("flow.recording", **facts, outcome="saved")
            self.exit(node, "recorded", node.next)
        elif event.ok:
            self.milestone("flow.recording", **facts, outcome="empty")
            self.exit(node, "empty", node.next)
        else:
            self.milestone("flow.recording", **facts, outcome="failed")
            self.exit(node, "failed", node.failed or node.next)

    # --- queues (calling/queues.py holds the line; the caller waits here) ---------------------------

    def join_line(self, node: m.Queue) -> None:
        """Sound at once (the greeting, else the music), then ask the line for a place."""
        line = node.queue or f"{self.flow_name()}:{node.id}"
        self.set(queued=line, position=0, agent="", deadline=_plus(self.s.now, node.max_wait), announced="",
                 playing_until="", attempt=0)
        if node.greeting:
            self.sound(node.greeting)
        else:
            self.hold(node)
        self.join(node)
        self.start_timer(QUEUE_LOOK)

    def join(self, node: m.Queue) -> None:
        ref = self.ref("qjoin")
        self.set(stage="queue_op", op=ref, since=self.s.now)
        left = int(_elapsed(self.s.now, self.s.deadline) or 0)
        self.emit(c.QueueJoin(ref=ref, queue=self.s.queued, max_callers=node.max_callers, agents=node.agents,
                              hold=max(left, 0) + node.ring_timeout + QUEUE_HOLD_GUARD))

    def offer(self, node: m.Queue, rung: str = "") -> None:
        ref = self.ref("qoffer")
        self.set(stage="queue_op", op=ref, since=self.s.now)
        self.emit(c.QueueOffer(ref=ref, queue=self.s.queued, agents=node.agents, routing=node.routing,
                               rounds=node.rounds, ring_timeout=node.ring_timeout, rung=rung))

    def leave_line(self, answered_by: str = "", wrap_up: int = 0) -> None:
        if self.s.queued:
            self.emit(c.QueueLeave(ref=self.ref("qleave"), queue=self.s.queued, answered_by=answered_by,
                                   wrap_up=wrap_up))
            self.set(queued="")

    def sound(self, prompts: tuple[str, ...], *, after: bool = False) -> None:
        """Play `prompts`: at once (cancelling what plays), or `after` what plays (Graph queues media)."""
        start = self.s.now
        if self.s.play and after and (_elapsed(self.s.now, self.s.playing_until) or 0.0) > 0:
            start = self.s.playing_until
        elif self.s.play:
            self.set(play="")
            self.emit(c.CancelMedia(ref=self.ref("cancel")))
        ref = self.ref("play")
        self.set(play=ref, playing_until=_plus(start, self.seconds(prompts)))
        self.emit(c.Play(ref=ref, prompts=prompts))

    def hold(self, node: m.Queue, lead: tuple[str, ...] = (), *, after: bool = False) -> None:
        """Play `lead`, then the music MUSIC_REPEATS times; the end plays the music again (prompt_done)."""
        self.sound((*lead, *(node.music,) * MUSIC_REPEATS), after=after)

    def music_done(self, node: m.Queue, *, failed: bool) -> None:
        """The music (or greeting) ended: play the music again. Music that keeps failing would leave the
        caller in silence for the whole wait: after MUSIC_FAILURES in a row the caller leaves the line."""
        if not failed:
            self.set(attempt=0)
            self.hold(node)
            return
        self.set(attempt=self.s.attempt + 1, playing_until="")
        if self.s.attempt >= MUSIC_FAILURES:
            if self.s.stage == "queue_ring":
                self.set(op="")  # the ring ends with the node: the consult call is hung up
            self.queue_exit(node, "music_failed", node.no_agents or node.timeout)
        # otherwise the next look plays it again: at most once a look

    def place_prompt(self, node: m.Queue) -> tuple[str, ...]:
        """The prompt that says the caller's place, if there is one for it."""
        position = self.s.position
        return (node.positions[position - 1],) if 0 < position <= len(node.positions) else ()

    def wait_facts(self, node: m.Queue) -> dict[str, c.Fact]:
        waited = node.max_wait - (_elapsed(self.s.now, self.s.deadline) or 0.0)
        return {"queue": self.s.queued or node.queue or None, "position": self.s.position or None,
                "waited": round(max(waited, 0.0), 3)}

    def queue_exit(self, node: m.Queue, outcome: str, target: str) -> None:
        facts = self.wait_facts(node)
        self.leave_line()
        self.set(agent="", deadline="", attempt=0)
        self.exit(node, outcome, target, **facts)

    def wait_over(self) -> bool:
        left = _elapsed(self.s.now, self.s.deadline)
        return left is not None and left <= 0

    def queue_done(self, node: m.Queue, event: e.Event) -> None:
        if isinstance(event, e.TransferOutcome) and self.s.stage == "queue_ring":
            self.rung(node, event)
        elif isinstance(event, e.QueueReply) and event.ref.startswith("qjoin"):
            self.joined(node, event)
        elif isinstance(event, e.QueueReply):
            self.offered(node, event)

    def greeting_plays(self, node: m.Queue) -> bool:
        """The greeting played on entering the node is still playing (the music is queued after it)."""
        if not node.greeting or not self.s.play:
            return False
        entered = _plus(self.s.deadline, -node.max_wait)
        return (_elapsed(self.s.now, _plus(entered, self.seconds(node.greeting))) or 0.0) > 0

    def joined(self, node: m.Queue, event: e.QueueReply) -> None:
        first = not self.s.announced  # not back in line after losing its place
        greeting = self.greeting_plays(node)
        if event.ok and event.position:
            self.set(position=event.position, announced=self.s.now)
            self.milestone("flow.queue", node=node.id, queue=self.s.queued, step="join", outcome="joined",
                           position=event.position, again=not first)
            if self.place_prompt(node):  # after the greeting if it still plays; else at once, over the music
                self.hold(node, self.place_prompt(node), after=greeting)
            elif greeting:
                self.hold(node, after=True)
            self.offer(node)
        elif event.why == "overflow":
            self.milestone("flow.queue", node=node.id, queue=self.s.queued, step="join", outcome="overflow")
            self.set(queued="")  # the line did not take the call: nothing to leave
            self.queue_exit(node, "overflow", node.overflow or node.timeout)
        else:  # no answer from the line: the caller waits with music; the next look asks again
            self.set(stage="queue", position=0)
            if greeting:
                self.hold(node, after=True)

    def offered(self, node: m.Queue, event: e.QueueReply) -> None:
        if event.position:
            self.set(position=event.position)
        if event.agent and self.wait_over():
            self.queue_exit(node, "timeout", node.timeout)  # leaving frees the agent the line offered
        elif event.agent:
            ref = self.ref("transfer")
            self.set(stage="queue_ring", op=ref, agent=event.agent, since=self.s.now)
            self.emit(c.Transfer(ref=ref, target=event.agent, mode="consultative", ring_timeout=node.ring_timeout,
                                 queue=self.s.queued))
        elif event.why == "exhausted":
            self.queue_exit(node, "no_agents", node.no_agents or node.timeout)
        elif event.why == "not_waiting":  # the line dropped the call (its place expired): back in at the next look
            self.set(stage="queue", position=0)
        else:  # wait (no agent for this caller yet), or no answer came: the next look asks again
            self.set(stage="queue")

    def rung(self, node: m.Queue, event: e.TransferOutcome, *, timed_out: bool = False) -> None:
        agent = self.s.agent
        outcome = event.outcome if event.outcome in e.TRANSFER_OUTCOMES else "failed"
        self.milestone("flow.transfer", node=node.id, target=agent, mode="queue", outcome=outcome, code=event.code,
                       subcode=event.subcode, ring_seconds=_elapsed(self.s.since, self.s.now), timed_out=timed_out)
        self.set(agent="")
        if outcome == "completed":
            facts = self.wait_facts(node)
            self.leave_line(answered_by=agent, wrap_up=node.wrap_up)
            self.milestone("flow.node", node=node.id, type=node.TYPE, outcome="answered", next=None, **facts,
                           agent=agent)
            self.leave("transfer")
        elif self.wait_over():
            self.queue_exit(node, "timeout", node.timeout)
        elif outcome == "failed":  # Graph refused the ring: try the next agent at the next look, not in a burst
            self.set(stage="queue", agent=agent)
        else:
            self.offer(node, rung=agent)

    def look(self, node: m.Queue) -> None:
        """Every QUEUE_LOOK seconds: a lost ring or answer, the music, the deadline, the place, an agent."""
        self.start_timer(QUEUE_LOOK)
        stage, since = self.s.stage, _elapsed(self.s.since, self.s.now) or 0.0
        if stage == "queue_ring" and since > node.ring_timeout + TRANSFER_GUARD:
            op = self.s.op
            self.set(op="")
            self.rung(node, e.TransferOutcome(ref=op, outcome="no_answer"), timed_out=True)
            return
        if stage == "queue_op" and since > QUEUE_OP_GUARD:
            self.set(op="", stage="queue")
            stage = "queue"
        lost = self.s.playing_until and (_elapsed(self.s.playing_until, self.s.now) or 0.0) > MEDIA_GUARD
        if not self.s.play or lost:
            self.hold(node)  # the music failed or never reported back: start it again
        if stage != "queue":
            return
        if self.wait_over():
            self.queue_exit(node, "timeout", node.timeout)
            return
        if not self.s.position:  # not in line (no answer to the join, or its place expired): back in, at the end
            self.join(node)
            return
        if self.place_prompt(node) and (_elapsed(self.s.announced, self.s.now) or 0.0) >= node.announce_every:
            self.set(announced=self.s.now)
            self.hold(node, self.place_prompt(node))
        rung = self.s.agent  # a ring Graph refused, told to the line only now
        self.set(agent="")
        self.offer(node, rung=rung)

    def local(self, zone: str) -> datetime:
        now = datetime.fromisoformat(self.s.now) if self.s.now else datetime(1970, 1, 1, tzinfo=UTC)
        return now.astimezone(ZoneInfo(zone))


# --- pure helpers ---------------------------------------------------------------------------------

def _hours(node: m.Hours, local: datetime) -> str:
    """open, closed or holiday at `local` (a time in the node's zone)."""
    if any(h.contains(local.date()) for h in node.holidays):
        return "holiday"
    day, minute = local.weekday(), local.hour * 60 + local.minute
    for rule in node.weekly:
        span = rule.time
        if span.start < span.end:
            if day in rule.days and span.start <= minute < span.end:
                return "open"
        elif (day in rule.days and minute >= span.start) or ((day - 1) % 7 in rule.days and minute < span.end):
            return "open"
    return "closed"


def _matches(when: m.When, caller: str, called: str, local: datetime) -> bool:
    minute = local.hour * 60 + local.minute
    return all((
        not when.caller or any(fnmatch.fnmatchcase(caller, p) for p in when.caller),
        not when.called or any(fnmatch.fnmatchcase(called, p) for p in when.called),
        not when.time or any(r.contains(minute) for r in when.time),
        not when.days or local.weekday() in when.days,
    ))


def _plus(moment: str, seconds: float) -> str:
    start = datetime.fromisoformat(moment) if moment else datetime(1970, 1, 1, tzinfo=UTC)
    return (start + timedelta(seconds=seconds)).isoformat()


def _elapsed(since: str, now: str) -> float | None:
    if not since or not now:
        return None
    return round((datetime.fromisoformat(now) - datetime.fromisoformat(since)).total_seconds(), 3)
