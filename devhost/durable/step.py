"""One step of an orchestration: what it adds to history and what it sets in motion.

A step turns what the orchestrator asked for into the history events DurableTask.Core records (TaskScheduled,
TimerCreated, SubOrchestrationInstanceCreated, EventSent, each with the next sequence number; the completion
events) and into the work that follows: activities to run, timers to arm, child instances to create, messages
for other instances and for entities. Nothing of it happens until the engine commits the step, so a step that
fails is dropped, except for the entity messages it sent before the failure (DurableTask.Core sends those).
"""

from __future__ import annotations

import copy
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from azure.durable_functions.models.actions import ActionType
from azure.durable_functions.models.history import HistoryEventType

from devhost.durable import actions, entities, history, payloads, retries
from devhost.durable.store import InstanceRecord, Message
from devhost.functions import AppIndex

START_PRIORITY = 0  # a new execution starts before any event queued for its instance
EVENT_PRIORITY = 1


def fresh_state(generation: int = 0) -> dict[str, Any]:
    """Per-execution bookkeeping: next sequence number, recorded action signatures, retries, open timers."""
    return {"next_id": 0, "scheduled": [], "retries": {}, "timers": {}, "generation": generation}


def unknown_orchestrator(name: str, index: AppIndex) -> str:
    """The extension's message for a name that is not an orchestrator function."""
    known = "', '".join(f.name for f in index.orchestrators.values())
    listed = f"The following are the known orchestrator functions: '{known}'." if known \
        else "No orchestrator functions are currently registered!"
    return f"The function '{name}' doesn't exist, is disabled, or is not an orchestrator function. " \
           f"Additional info: {listed}"


def unknown_activity(name: str, index: AppIndex) -> str:
    """The extension's message for a name that is not an activity function."""
    known = "', '".join(f.name for f in index.activities.values())
    listed = f"The following are the known activity functions: '{known}'." if known \
        else "No activity functions are currently registered!"
    return f"The function '{name}' doesn't exist, is disabled, or is not an activity function. " \
           f"Additional info: {listed}"


def unknown_entity(name: str, index: AppIndex) -> str:
    """The extension's message for a name that is not an entity function (GetInvalidEntityFunctionMessage).

    The extension decides between the two endings by whether any *orchestrator* is known; so does this.
    """
    known = "', '".join(f.name for f in index.entities.values())
    listed = f"The following are the known entity functions: '{known}'." if index.orchestrators \
        else "No entity functions are currently registered!"
    return f"The function '{name}' doesn't exist, is disabled, or is not an entity function. " \
           f"Additional info: {listed}"


def entity_message(at: datetime, request_text: str) -> Message:
    """The queued EventRaised that delivers one request to an entity."""
    return {"kind": "event", "execution_id": None, "event": history.event_raised(at, entities.REQUEST_EVENT,
                                                                                 request_text)}


def start_message(record: InstanceRecord, now: datetime, generation: int = 0) -> Message:
    """The queued ExecutionStarted that begins the record's current execution."""
    event = history.execution_started(now, instance_id=record.instance_id, execution_id=record.execution_id,
                                      name=record.name, input_text=record.input, parent=record.parent,
                                      generation=generation)
    return {"kind": "start", "event": event}


@dataclass
class Step:
    record: InstanceRecord
    now: datetime
    index: AppIndex
    state: dict[str, Any] = field(default_factory=dict)
    execution_id: str = ""  # the execution this step belongs to (continue-as-new moves the record on)
    scheduling: list[history.Event] = field(default_factory=list)
    completion: list[history.Event] = field(default_factory=list)
    activities: list[tuple[int, str, str | None]] = field(default_factory=list)  # (task id, name, input text)
    timers: list[tuple[int, str]] = field(default_factory=list)  # (timer id, fire at)
    cancel_timers: list[int] = field(default_factory=list)
    children: list[InstanceRecord] = field(default_factory=list)
    messages: list[tuple[str, Message, int]] = field(default_factory=list)  # (instance, message, priority)
    continue_input: str | None = None
    continues: bool = False

    @classmethod
    def of(cls, record: InstanceRecord, now: datetime, index: AppIndex) -> Step:
        """A step over a copy of the record's bookkeeping, so dropping the step changes nothing."""
        return cls(record=record, now=now, index=index, state=copy.deepcopy(record.state),
                   execution_id=record.execution_id)

    def take_id(self) -> int:
        value = int(self.state["next_id"])
        self.state["next_id"] = value + 1
        return value

    # -------------------------------------------------------------------------------------------- actions

    def schedule(self, action: actions.Action) -> str | None:
        """Record one new action; the reason it cannot be carried out, or None."""
        kind = actions.action_type(action)
        self.state["scheduled"].append(actions.signature(action))
        if kind in (ActionType.CALL_ACTIVITY, ActionType.CALL_ACTIVITY_WITH_RETRY):
            name = str(action.get("functionName"))
            if self.index.activity(name) is None:
                return unknown_activity(name, self.index)
            task_id = self.take_id()
            self.schedule_activity(task_id, name, action.get("input"))
            if kind == ActionType.CALL_ACTIVITY_WITH_RETRY:
                retries.begin(self, task_id, "activity", action)
        elif kind in (ActionType.CALL_SUB_ORCHESTRATOR, ActionType.CALL_SUB_ORCHESTRATOR_WITH_RETRY):
            name = str(action.get("functionName"))
            refusal = self._refuse_child(name, action.get("instanceId"))
            if refusal:
                return refusal
            task_id = self.take_id()
            self.schedule_child(task_id, name, action.get("instanceId"), action.get("input"))
            if kind == ActionType.CALL_SUB_ORCHESTRATOR_WITH_RETRY:
                retries.begin(self, task_id, "orchestration", action)
        elif kind == ActionType.CREATE_TIMER:
            timer_id = self.take_id()
            self.schedule_timer(timer_id, history.parse_time(str(action["fireAt"])),
                                armed=not action.get("isCanceled"))
            self.state["scheduled"][-1].append(timer_id)  # remembered, to cancel it later
        elif kind == ActionType.WAIT_FOR_EXTERNAL_EVENT:
            pass  # matched by name when the event arrives; takes no sequence number
        elif kind == ActionType.CONTINUE_AS_NEW:
            self.continues = True
            self.continue_input = payloads.text_of(action["input"]) if action.get("input") is not None else None
        elif kind == ActionType.CALL_HTTP:
            return "Durable HTTP (context.call_http) is not supported by devhost; call HTTP from an activity instead"
        elif kind in (ActionType.CALL_ENTITY, ActionType.SIGNAL_ENTITY):
            try:
                name, key = entities.parse_scheduler_id(str(action.get("instanceId") or ""))
            except ValueError as exc:
                return str(exc)
            if self.index.entity(name) is None:
                return unknown_entity(name, self.index)
            self.send_to_entity(self.take_id(), name, key, action, signal=kind == ActionType.SIGNAL_ENTITY)
        else:
            return f"devhost does not know the orchestrator action {action!r}"
        return None

    def _refuse_child(self, name: str, explicit: str | None) -> str | None:
        if self.index.orchestrator(name) is None:
            return unknown_orchestrator(name, self.index)
        parent_id = (self.record.parent or {}).get("OrchestrationInstance", {}).get("InstanceId") or ""
        if explicit and explicit.casefold() in (self.record.instance_id.casefold(), parent_id.casefold()):
            return "The instance ID of a sub-orchestration must be different than the instance ID of a parent " \
                   "orchestration."
        if explicit and explicit.startswith("@"):
            return "Orchestration instance ids must not start with @"
        return None

    def schedule_activity(self, task_id: int, name: str, input_text: str | None) -> None:
        stored = payloads.text_of(input_text) if input_text is not None else None
        self.scheduling.append(history.task_scheduled(self.now, task_id, name=name, input_text=stored))
        self.activities.append((task_id, name, input_text))

    def send_to_entity(self, event_id: int, name: str, key: str, action: actions.Action, *, signal: bool) -> None:
        """EventSent with a RequestMessage, and that request queued for the entity (a call waits for the answer)."""
        target = entities.scheduler_id(name, key)
        counter = int(self.state.get("entity_requests", 0))
        self.state["entity_requests"] = counter + 1
        timestamp, predecessor = entities.label(self.state.setdefault("entity_sends", {}), target, self.now)
        text = entities.request(
            str(action.get("operation")), signal=signal, input_text=entities.action_input(action.get("input")),
            request_id=entities.request_guid(self.record.instance_id, self.now, counter),
            parent=self.record.instance_id, parent_execution=self.execution_id, timestamp=timestamp,
            predecessor=predecessor)
        self.scheduling.append(history.event_sent(self.now, event_id, instance_id=target,
                                                  name=entities.REQUEST_EVENT, input_text=text))
        self.messages.append((target, entity_message(self.now, text), EVENT_PRIORITY))

    def entity_sends(self) -> tuple[list[history.Event], list[tuple[str, Message, int]]]:
        """The EventSent events this step recorded and the entity requests they queued."""
        events = [e for e in self.scheduling if history.kind(e) == HistoryEventType.EVENT_SENT]
        return events, [m for m in self.messages if entities.is_entity(m[0])]

    def keep_sends(self, events: list[history.Event], messages: list[tuple[str, Message, int]]) -> None:
        """Carry another step's entity messages into this one (a failing episode still sends them)."""
        self.scheduling.extend(events)
        self.messages.extend(messages)

    def schedule_timer(self, timer_id: int, fire_at: datetime, *, armed: bool = True) -> None:
        self.scheduling.append(history.timer_created(self.now, timer_id, fire_at))
        if armed:
            self.state["timers"][str(timer_id)] = history.timestamp(fire_at)
            self.timers.append((timer_id, history.timestamp(fire_at)))

    def schedule_child(self, task_id: int, name: str, explicit: str | None, input_text: str | None) -> None:
        record = self.record
        child_id = explicit or f"{record.execution_id}:{task_id}"
        stored = payloads.text_of(input_text) if input_text is not None else None
        self.scheduling.append(history.sub_orchestration_created(self.now, task_id, name=name, instance_id=child_id,
                                                                 input_text=stored))
        function = self.index.orchestrator(name)
        child = InstanceRecord(
            instance_id=child_id, name=function.name if function else name, execution_id=uuid.uuid4().hex,
            status="Pending", input=stored, created_time=self.now, last_updated_time=self.now,
            parent={"Name": record.name, "Version": "", "TaskScheduleId": task_id,
                    "OrchestrationInstance": {"InstanceId": record.instance_id, "ExecutionId": record.execution_id}},
            state=fresh_state())
        self.children.append(child)
        self.messages.append((child_id, start_message(child, self.now), START_PRIORITY))

    def cancel_recorded_timers(self, replayed: list[actions.Action]) -> None:
        """A timer the orchestrator cancelled since it was scheduled never needs to fire."""
        for signature, action in zip(self.state["scheduled"], replayed, strict=False):
            if actions.action_type(action) == ActionType.CREATE_TIMER and action.get("isCanceled") \
                    and len(signature) > 2 and str(signature[2]) in self.state["timers"]:
                del self.state["timers"][str(signature[2])]
                self.cancel_timers.append(int(signature[2]))

    # ------------------------------------------------------------------------------------------ endings

    def complete(self, status: str, result: str | None, *, details: str | None = None) -> None:
        """End the execution: Completed / Failed / Terminated, or ContinuedAsNew into a fresh execution."""
        record, now = self.record, self.now
        if status == "ContinuedAsNew":
            self.completion = [history.continued_as_new(now, result)]
            generation = int(self.state.get("generation", 0)) + 1
            record.status, record.input, record.output, record.custom_status = "ContinuedAsNew", result, None, None
            record.execution_id = uuid.uuid4().hex
            self.state = fresh_state(generation)
            self.messages.append((record.instance_id, start_message(record, now, generation), START_PRIORITY))
            return
        failure = None if status != "Failed" else {
            "ErrorType": "OrchestrationFailureException", "ErrorMessage": result, "StackTrace": None,
            "InnerFailure": None, "IsNonRetriable": False}
        self.completion = [history.execution_completed(now, history.OrchestrationStatus[status], result, failure)]
        record.status, record.output = status, result
        self.notify_parent(status, result, details)

    def notify_parent(self, status: str, result: str | None, details: str | None) -> None:
        """DurableTask.Core tells a parent about Completed, and about Failed or Terminated as a failure."""
        parent = self.record.parent
        if not parent:
            return
        task_id = int(parent["TaskScheduleId"])
        if status == "Completed":
            event = history.sub_orchestration_completed(self.now, task_id, result)
        else:
            event = history.sub_orchestration_failed(self.now, task_id, reason=result, details=details)
        target = parent["OrchestrationInstance"]
        self.messages.append((target["InstanceId"], {"kind": "event", "execution_id": target["ExecutionId"],
                                                     "event": event}, EVENT_PRIORITY))

