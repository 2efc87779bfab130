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
from datetime import timedelta
from typing import Any

import azure.durable_functions as df

from calling import consult, telemetry
from calling.actions import CONSULT_END, CONSULT_HAND_OVER
from calling.flows import commands as c
from calling.flows import events as e
from calling.flows import step
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

log = logging.getLogger("orchestrations.call_session")


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
    if KEEPALIVE_REF not in session.timers:
        session.start_timer(KEEPALIVE_REF, context.current_utc_datetime + KEEPALIVE_EVERY)
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
            else:
                result = yield from _act(context, session, command, bundle.prompts)
                event = failure_event(command, result, context.current_utc_datetime)
                if event is not None:
                    followups.append(event)
                elif isinstance(command, c.Transfer) and result.get("consult_call_id"):
                    session.consult = consult.Consult(command.ref, command.target, str(result["consult_call_id"]))
                    session.start_timer(consult.RING_TIMER, now + timedelta(seconds=command.ring_timeout))
        queue = []
        if state.phase == "ended":
            return {"node": state.node, "left": state.left}
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
                mine, second = consult.split(_notifications(waiting_for_graph.result), session.call_id,
                                             session.consult)
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
                        yield from _act(context, session, None)
                        session.start_timer(KEEPALIVE_REF, now + KEEPALIVE_EVERY)
                    elif ref == consult.RING_TIMER and session.consult is not None:
                        events += yield from _consult(context, session, consult.on_ring_timeout(session.consult, now))
                    else:
                        events.append(e.TimerFired(at=now, ref=ref))
        for event in events:
            state, commands = step(bundle, state, event)
            queue.extend(commands)
        if session.consult is not None:
            yield from _consult(context, session, consult.on_engine(session.consult, state.op, state.left))
        handled += len(events)
        context.set_custom_status({"node": state.node, "phase": state.phase, "flow": state.flow})
        if handled >= EVENTS_PER_EXECUTION and waiting_for_graph is None and state.phase != "ended":
            session.state, session.commands = state, queue
            session.executions += 1
            context.continue_as_new(session.to_json())
            return None


def _consult(context: df.DurableOrchestrationContext, session: Session,
             decided: consult.Step) -> Generator[Any, Any, list[e.Event]]:
    """Carry out a consultative transfer's step (calling/consult.py decided it); the engine events it yields."""
    second = session.consult
    session.consult = decided.consult
    if decided.consult is None or decided.hand_over:
        session.timers.pop(consult.RING_TIMER, None)
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
    if decided.hang_up:
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
