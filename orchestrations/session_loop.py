"""The `call_session` orchestrator's loop: one call's flow, from the webhook's answer to the call's end.

A thin loop over calling/session.py: carry out the engine's commands (Graph actions as the
`call_action` activity, with clientContext = the command's ref; timers as Durable timers), then wait
for the next Graph notification or the earliest timer, translate, step the engine, repeat. keepAlive
goes out every 15 minutes while the bot holds the call; continue-as-new bounds the history.
Orchestrator code must be deterministic: time comes from the context, telemetry only when not replaying.
Registered by orchestrations/call_session.py, which imports this module on the first replay.
"""

from __future__ import annotations

import json
import logging
from collections import deque
from collections.abc import Generator, Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import azure.durable_functions as df

from calling import consult, telemetry, watch
from calling.actions import CONSULT_END, CONSULT_HAND_OVER
from calling.flows import State, queueing, step
from calling.flows import commands as c
from calling.flows import events as e
from calling.flows.model import PromptFile
from calling.session import (
    KEEPALIVE_EVERY,
    KEEPALIVE_REF,
    FlowNotFound,
    Session,
    failure_event,
    translate,
    unrunnable,
)
from calling.sink import NOTIFICATION_EVENT
from calling.yamlsource import SourceErrors
from functions import runtime
from orchestrations.call_session import ACTIVITY, EVENTS_PER_EXECUTION, RETRY
from orchestrations.queue_line import ENTITY as QUEUE_ENTITY

log = logging.getLogger("orchestrations.call_session")
#: session.looks keys: a stray second call already hung up; a second call the session has had.
STRAY = "stray:"
LEG = "leg:"
#: How long a queue's line may take to answer an operation before the caller's session goes on without it.
QUEUE_ANSWER_WAIT = timedelta(seconds=10)


class DeferredEvents(dict[Any, Any]):
    """External events that arrived while nothing waited for them, kept in order, each delivered once.

    azure-functions-durable 1.7.0 keeps only the last such event per name and never forgets it: every
    later wait_for_external_event resolves at once with that same stale payload, and an earlier one is
    lost. A call's notifications often arrive while an activity runs, so the orchestration installs this
    queue (same dict interface the library uses) as its first act, before any history is applied.
    """

    def __setitem__(self, key: Any, action: Any) -> None:
        queue = super().get(key)
        if queue is None:
            queue = deque()
            super().__setitem__(key, queue)
        queue.append(action)

    def __getitem__(self, key: Any) -> Any:
        queue = super().__getitem__(key)
        action = queue.popleft()
        if not queue:
            super().__delitem__(key)
        return action


def run(context: df.DurableOrchestrationContext) -> Generator[Any, Any, Any]:
    """The orchestrator: the call's session, from its input (calling.session.Session) to the end of its flow."""
    context.deferred_tasks = DeferredEvents()
    session = Session.from_json(context.get_input())
    try:
        bundle = runtime.get().flows.pinned(session.flow, session.snapshot)
        problem = unrunnable(bundle, session.state)
    except (FlowNotFound, SourceErrors, ValueError) as exc:
        problem = str(exc)
    if problem is not None:
        # Deterministic as long as the cause is (the same input, the same code). Caught at an execution's
        # start, the bot hangs up; a code deployment that stops reading a snapshot in mid-execution makes
        # the replay diverge from its history, which Durable fails (docs/flows.md, "A flow changed mid-call").
        return (yield from _end_unrunnable(context, session, problem))
    state = session.state
    queue: list[c.Command] = list(session.commands)
    start = context.current_utc_datetime
    if KEEPALIVE_REF not in session.timers:
        session.start_timer(KEEPALIVE_REF, start + KEEPALIVE_EVERY)
    if state.phase == "running" and not state.established and watch.ESTABLISH not in session.looks:
        session.looks[watch.ESTABLISH] = 0
        session.start_timer(watch.ESTABLISH, start + watch.ESTABLISH_WAIT)
    handled = 0
    waiting_for_graph: Any = None
    while True:
        followups: list[e.Event] = []
        for command in queue:
            now = context.current_utc_datetime
            if isinstance(command, c.StartTimer):
                session.start_timer(command.ref, now + timedelta(seconds=command.seconds))
            elif isinstance(command, c.CancelTimer):
                session.timers.pop(command.ref, None)
            elif isinstance(command, c.Milestone):
                if not context.is_replaying:
                    with telemetry.correlation(call_id=session.call_id, tenant_id=session.tenant_id):
                        telemetry.emit(command.name, **{"flow": session.flow, **dict(command.facts)})
            elif isinstance(command, c.HandOff):
                log.error("flow %s hands off mid-call; only an unanswered call can be handed off", session.flow)
            elif isinstance(command, c.QUEUE):
                reply = yield from _queue(context, session, command)
                if reply is not None:
                    followups.append(reply)
            else:
                if isinstance(command, c.Transfer) and command.queue:
                    # A queue rings agents for as long as the caller waits: a caller whose `terminated` was
                    # lost must not have agents rung for it. One GET of the call before each ring.
                    gone = [ev for ev in (yield from _look_call(context, session, state, now))
                            if isinstance(ev, e.CallEnded)]
                    if gone:
                        followups.extend(gone)
                        continue
                result = yield from _act(context, session, command, bundle.prompts)
                if isinstance(command, c.Transfer) and result.get("uncertain"):
                    # Graph may have placed the second call: look for it before placing it again.
                    session.consult = consult.Consult(command.ref, command.target, "", consult.PLACING,
                                                      command.ring_timeout)
                    session.start_timer(consult.RING_TIMER, now + timedelta(seconds=command.ring_timeout))
                    session.start_timer(consult.PLACE_TIMER, now + consult.PLACE_LOOK)
                    continue
                event = failure_event(command, result, context.current_utc_datetime)
                if event is not None:
                    followups.append(event)
                elif isinstance(command, c.Transfer) and result.get("consult_call_id"):
                    session.consult = consult.Consult(command.ref, command.target, str(result["consult_call_id"]),
                                                      ring_timeout=command.ring_timeout)
                    _remember_leg(session, session.consult.call_id)
                    session.start_timer(consult.RING_TIMER, now + timedelta(seconds=command.ring_timeout))
                elif isinstance(command, c.Play | c.Record | c.Invite) and result.get("operation"):
                    session.ops[command.ref] = str(result["operation"])
                    if isinstance(command, c.Record):
                        session.start_timer(f"{watch.RECORDING}:{command.ref}", now + watch.RECORDING_POLL)
        queue = []
        if state.phase == "ended":
            return {"node": state.node, "left": state.left}
        _arm_watches(session, state, context.current_utc_datetime)
        if followups:
            events = followups
        else:
            if waiting_for_graph is None:
                waiting_for_graph = context.wait_for_external_event(NOTIFICATION_EVENT)
            due = session.next_due()
            timer = context.create_timer(due) if due is not None else None
            winner = yield context.task_any([waiting_for_graph, timer] if timer is not None else [waiting_for_graph])
            now = context.current_utc_datetime
            if winner is waiting_for_graph:
                if timer is not None and not timer.is_completed:
                    timer.cancel()
                mine, second, others = consult.split(_notifications(waiting_for_graph.result), session.call_id,
                                                     session.consult)
                if session.consult is not None and session.consult.stage == consult.PLACING:
                    session.consult, adopted, others = consult.adopt(session.consult, others, _legs(session))
                    if adopted:
                        session.timers.pop(consult.PLACE_TIMER, None)
                        _remember_leg(session, session.consult.call_id)
                        second = adopted + second
                for stray in consult.strays_to_end(others, ended=_strays(session)):
                    session.looks[f"{STRAY}{stray}"] = 1  # an extra copy of a second call: hang it up, once
                    yield from _act(context, session, {"type": CONSULT_END, "consult_call_id": stray, "target": ""})
                events = []
                if second and session.consult is not None:
                    events += yield from _consult(context, session, consult.on_notifications(session.consult,
                                                                                             second, now))
                events += translate(mine, state, now)
                waiting_for_graph = None
            else:
                events = []
                for ref in session.pop_due(now):
                    if ref == KEEPALIVE_REF:
                        if state.phase != "leaving":  # a call the flow is done with gets none (watch.LEAVE)
                            kept = yield from _act(context, session, None)
                            if kept.get("gone"):  # Graph no longer has the call: whatever said so was lost
                                events.append(e.CallEnded(at=now, code=404, subcode=None, reason="call gone"))
                            session.start_timer(KEEPALIVE_REF, now + KEEPALIVE_EVERY)
                    elif ref == watch.ESTABLISH:
                        events += yield from _look_established(context, session, state, now)
                    elif ref == watch.LEAVE:
                        events += yield from _look_left(context, session, state, now)
                    elif ref == consult.RING_TIMER and session.consult is not None:
                        events += yield from _ring_timeout(context, session, now)
                    elif ref == consult.PLACE_TIMER and session.consult is not None:
                        events += yield from _place_again(context, session, now)
                    elif ref.startswith(f"{watch.RECORDING}:"):
                        events += yield from _look_recording(context, session, state, now, ref)
                    else:
                        if ref == state.timer:
                            events += yield from _look_before_guard(context, session, state, now)
                        events.append(e.TimerFired(at=now, ref=ref))
        for event in events:
            state, commands = step(bundle, state, event)
            queue.extend(commands)
        if session.consult is not None:
            yield from _consult(context, session, consult.on_engine(session.consult, state.op, state.left))
        for ref in [r for r in session.ops if r not in (state.play, state.op)]:
            del session.ops[ref]  # no longer awaited: its completion, if it ever comes, changes nothing
        handled += len(events)
        context.set_custom_status({"node": state.node, "phase": state.phase, "flow": state.flow})
        if handled >= EVENTS_PER_EXECUTION and waiting_for_graph is None and state.phase != "ended":
            session.state, session.commands = state, queue
            session.executions += 1
            context.continue_as_new(session.to_json())
            return None


def _arm_watches(session: Session, state: State, now: datetime) -> None:
    """Start the bounded waits the state calls for (calling/watch.py); drop those it no longer needs."""
    if state.established:
        session.timers.pop(watch.ESTABLISH, None)
    if state.phase == "leaving" and watch.LEAVE not in session.looks:
        session.looks[watch.LEAVE] = 0
        wait = watch.LEAVE_AFTER_TRANSFER if state.left in ("transfer", "redirect") else watch.LEAVE_WAIT
        session.start_timer(watch.LEAVE, now + wait)
        session.timers.pop(KEEPALIVE_REF, None)


def _look_established(context: df.DurableOrchestrationContext, session: Session, state: State,
                      now: datetime) -> Generator[Any, Any, list[e.Event]]:
    """Answered, but `established` never came: ask Graph; reject a call still ringing, hang up a stuck one."""
    if state.established or state.phase != "running":
        return []
    result = yield from _act(context, session, watch.call_request(session.call_id))
    events = translate(watch.call_notifications(session.call_id, result), state, now)
    if any(isinstance(ev, e.CallEstablished | e.CallEnded) for ev in events):
        return events
    looks = session.looks[watch.ESTABLISH] = session.looks.get(watch.ESTABLISH, 0) + 1
    status = watch.call_status(result)
    never_answered = status == "incoming" and watch.establish_waited(looks) > watch.ANSWER_WINDOW
    if never_answered or looks >= watch.ESTABLISH_LOOKS:
        _note(context, session, "call.not_established", status=status, looks=looks)
        yield from _act(context, session, watch.reject_request() if status == "incoming"
                        else c.HangUp(reason="not_established"))
        _let_go(session, now, "not_established")
        return events
    session.start_timer(watch.ESTABLISH, now + watch.ESTABLISH_AGAIN)
    return events


def _let_go(session: Session, now: datetime, reason: str) -> None:
    """The session ended a call the flow did not: no more keepAlive; look after LEAVE_WAIT, as after a hang-up."""
    session.closing = reason
    session.looks.setdefault(watch.LEAVE, 0)
    session.start_timer(watch.LEAVE, now + watch.LEAVE_WAIT)
    session.timers.pop(KEEPALIVE_REF, None)
    session.timers.pop(watch.ESTABLISH, None)


def _look_left(context: df.DurableOrchestrationContext, session: Session, state: State,
               now: datetime) -> Generator[Any, Any, list[e.Event]]:
    """The bot let go of the call and `terminated` never came: ask Graph, hang up again, then give up."""
    result = yield from _act(context, session, watch.call_request(session.call_id))
    events = translate(watch.call_notifications(session.call_id, result), state, now)
    if any(isinstance(ev, e.CallEnded) for ev in events):
        return events
    looks = session.looks[watch.LEAVE] = session.looks.get(watch.LEAVE, 0) + 1
    if looks > watch.MAX_HANG_UPS:
        _note(context, session, "call.hangup_failed", status=watch.call_status(result), hang_ups=looks - 1,
              reason=session.closing or state.left or None)
        return [e.CallEnded(at=now, code=None, subcode=None, reason="hangup_refused")]
    yield from _act(context, session, c.HangUp(reason="not_ended"))
    session.start_timer(watch.LEAVE, now + watch.LEAVE_WAIT)
    return [ev for ev in events if not isinstance(ev, e.CallEstablished)]


def _look_before_guard(context: df.DurableOrchestrationContext, session: Session, state: State,
                       now: datetime) -> Generator[Any, Any, list[e.Event]]:
    """The engine's guard timer for a prompt, recording or transfer is due: ask Graph how it ended first."""
    awaited = state.play if state.stage == "prompt" else state.op if state.stage in ("op", "queue_ring") else ""
    if awaited.startswith("transfer") and session.consult is None:
        # A blind transfer, or a queue's ring whose second call is over (handed over or gone) while the caller's
        # outcome has not come: Graph's view of the caller's call settles it.
        result = yield from _act(context, session, watch.call_request(session.call_id))
        return translate(watch.call_notifications(session.call_id, result), state, now)
    operation = session.ops.get(awaited) if awaited else None
    if operation is None:
        return []
    result = yield from _act(context, session, watch.operation_request(operation))
    events = translate(watch.operation_notifications(session.call_id, operation, awaited, result), state, now)
    if not events and result.get("gone"):
        events = yield from _look_call(context, session, state, now)
    return events


def _look_recording(context: df.DurableOrchestrationContext, session: Session, state: State, now: datetime,
                    timer: str) -> Generator[Any, Any, list[e.Event]]:
    """A recording is still awaited: has Graph finished it (and its notification been lost)?"""
    ref = timer.split(":", 2)[-1]
    operation = session.ops.get(ref)
    if ref != state.op or operation is None:
        return []
    result = yield from _act(context, session, watch.operation_request(operation))
    events = translate(watch.operation_notifications(session.call_id, operation, ref, result), state, now)
    if not events and result.get("gone"):  # no such operation: is the call itself gone?
        events = yield from _look_call(context, session, state, now)
    if not events:
        session.start_timer(timer, now + watch.RECORDING_POLL)
    return events


def _look_call(context: df.DurableOrchestrationContext, session: Session, state: State,
               now: datetime) -> Generator[Any, Any, list[e.Event]]:
    """GET the call, read as the notification Graph would have sent; only an end or an error counts here."""
    result = yield from _act(context, session, watch.call_request(session.call_id))
    events = translate(watch.call_notifications(session.call_id, result), state, now)
    return [ev for ev in events if not isinstance(ev, e.CallEstablished)]


def _ring_timeout(context: df.DurableOrchestrationContext, session: Session,
                  now: datetime) -> Generator[Any, Any, list[e.Event]]:
    """The consult target rang out: unless Graph says its `established` was lost, give up on it."""
    second = session.consult
    assert second is not None
    decided = consult.Step(second)
    if second.call_id:
        result = yield from _act(context, session, watch.call_request(second.call_id))
        decided = consult.on_notifications(second, watch.call_notifications(second.call_id, result), now)
    if decided == consult.Step(second):
        decided = consult.on_ring_timeout(second, now)
    return (yield from _consult(context, session, decided))


def _place_again(context: df.DurableOrchestrationContext, session: Session,
                 now: datetime) -> Generator[Any, Any, list[e.Event]]:
    """Placing the second call was uncertain and no such call has written since: place it once more."""
    second = session.consult
    if second is None or second.stage != consult.PLACING:
        return []
    if second.placements >= consult.MAX_PLACEMENTS:
        session.consult = None
        session.timers.pop(consult.RING_TIMER, None)
        return [e.TransferOutcome(at=now, ref=second.ref, outcome="failed", code=None)]
    result = yield from _act(context, session, second.command())
    again = replace(second, placements=second.placements + 1)
    if result.get("consult_call_id"):
        session.consult = replace(again, call_id=str(result["consult_call_id"]), stage=consult.RINGING)
        _remember_leg(session, session.consult.call_id)
        session.start_timer(consult.RING_TIMER, now + timedelta(seconds=second.ring_timeout))  # a full ring
    elif result.get("uncertain"):
        session.consult = again
        session.start_timer(consult.PLACE_TIMER, now + consult.PLACE_LOOK)
    else:
        session.consult = None
        session.timers.pop(consult.RING_TIMER, None)
        return [e.TransferOutcome(at=now, ref=second.ref, outcome="failed", code=result.get("status"))]
    return []


def _queue(context: df.DurableOrchestrationContext, session: Session,
           command: c.Command) -> Generator[Any, Any, e.Event | None]:
    """A queue command as an operation on the line's entity. Leaving is a signal (nothing waits for it;
    an entity takes one sender's messages in order). Joining and offers are calls waited for at most
    QUEUE_ANSWER_WAIT: a line that does not answer leaves the caller waiting with music (the engine asks
    again at its next look), never stuck here."""
    name, data = queueing.operation(command, session.call_id, context.current_utc_datetime)
    queue = str(getattr(command, "queue", ""))
    line = df.EntityId(QUEUE_ENTITY, queueing.entity_key(session.tenant_id, queue))
    if isinstance(command, c.QueueLeave):
        context.signal_entity(line, name, data)  # recorded at once; yielding a signal is not needed
        return None
    asked = context.call_entity(line, name, data)
    deadline = context.create_timer(context.current_utc_datetime + QUEUE_ANSWER_WAIT)
    winner = yield context.task_any([asked, deadline])
    result: Any = asked.result if winner is asked else None
    if not deadline.is_completed:
        deadline.cancel()
    if isinstance(result, Exception):  # the entity failed the operation (task_any hands the failure back)
        _note(context, session, "queue.failed", queue=queue, operation=name, error=str(result)[:300])
        result = None
    elif winner is not asked:
        _note(context, session, "queue.no_answer", queue=queue, operation=name)
    return queueing.reply_event(command, result, context.current_utc_datetime)


def _strays(session: Session) -> list[str]:
    return [key.removeprefix(STRAY) for key in session.looks if key.startswith(STRAY)]


def _remember_leg(session: Session, call_id: str) -> None:
    session.looks[f"{LEG}{call_id}"] = 1


def _legs(session: Session) -> list[str]:
    """Every second call the session has had, and every stray it hung up: none of them is a new placement."""
    return [key.split(":", 1)[1] for key in session.looks if key.startswith((LEG, STRAY))]


def _note(context: df.DurableOrchestrationContext, session: Session, name: str, **facts: Any) -> None:
    if not context.is_replaying:
        log.warning("call %s: %s %s", session.call_id, name, facts)
        with telemetry.correlation(call_id=session.call_id, tenant_id=session.tenant_id):
            telemetry.emit(name, flow=session.flow, **facts)


def _consult(context: df.DurableOrchestrationContext, session: Session,
             decided: consult.Step) -> Generator[Any, Any, list[e.Event]]:
    """Carry out a consultative transfer's step (calling/consult.py decided it); the engine events it yields."""
    second = session.consult
    session.consult = decided.consult
    if decided.consult is None or decided.hand_over:
        session.timers.pop(consult.RING_TIMER, None)
        session.timers.pop(consult.PLACE_TIMER, None)
    if second is None:
        return []
    ids = {"consult_call_id": second.call_id, "target": second.target}
    events: list[e.Event] = [decided.outcome] if decided.outcome is not None else []
    if decided.hand_over:
        result = yield from _act(context, session, {"type": CONSULT_HAND_OVER, **ids})
        if not result.get("ok"):
            now = context.current_utc_datetime
            session.consult = None
            yield from _act(context, session, {"type": CONSULT_END, **ids})
            events.append(e.TransferOutcome(at=now, ref=second.ref, outcome="failed", code=result.get("status")))
    if decided.hang_up and second.call_id:  # a call never known ends as a stray, when it writes
        yield from _act(context, session, {"type": CONSULT_END, **ids})
    return events


def _end_unrunnable(context: df.DurableOrchestrationContext, session: Session,
                    problem: str) -> Generator[Any, Any, dict[str, Any]]:
    """The session cannot run its flow here (its snapshot no longer loads, or it has none and the flow file
    changed under it): never leave the caller in silence; hang up, and the consult call too."""
    if not context.is_replaying:
        log.error("call %s: its flow %s cannot go on (%s); hanging up", session.call_id, session.flow, problem)
        with telemetry.correlation(call_id=session.call_id, tenant_id=session.tenant_id):
            telemetry.emit("call.flow_unavailable", flow=session.flow, node=session.state.node, error=problem[:300],
                           mid_call=True)
    if session.consult is not None:
        yield from _act(context, session, {"type": CONSULT_END, "consult_call_id": session.consult.call_id,
                                           "target": session.consult.target})
    yield from _act(context, session, c.HangUp(reason="flow_unavailable"))
    return {"node": session.state.node, "left": "hangup", "error": problem[:300]}


def _act(context: df.DurableOrchestrationContext, session: Session, command: c.Command | Mapping[str, Any] | None,
         prompts: Mapping[str, PromptFile] | None = None) -> Generator[Any, Any, Mapping[str, Any]]:
    try:
        result = yield context.call_activity_with_retry(ACTIVITY, RETRY, session.action(command, prompts))
    except Exception as exc:  # retries exhausted: the engine takes the failure branch
        if not context.is_replaying:
            log.warning("%s failed after retries: %s", _name(command), exc)
        return {"ok": False, "code": "retries_exhausted", "message": str(exc)[:300]}
    return result if isinstance(result, Mapping) else {"ok": False, "code": "bad_result"}


def _name(command: c.Command | Mapping[str, Any] | None) -> str:
    if command is None:
        return "keepAlive"
    return type(command).__name__ if isinstance(command, c.Command) else str(command.get("type"))


def _notifications(data: Any) -> list[Mapping[str, Any]]:
    """The raised event's data: the Python Durable client sends it JSON-encoded inside JSON."""
    if isinstance(data, str):
        data = json.loads(data)
    items = data.get("notifications") if isinstance(data, Mapping) else None
    return [n for n in items or [] if isinstance(n, Mapping)]
