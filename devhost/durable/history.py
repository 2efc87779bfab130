"""History events in the Durable Task Framework's JSON shape, as the extension hands them to the Python SDK.

The SDK's replay engine (`TaskOrchestrationExecutor`) reads `EventType`, `EventId`, `IsPlayed`, `Timestamp`
and the per-type fields below; it matches completions to tasks by `TaskScheduledId` / `TimerId` and external
events by `Name`. Field names follow DurableTask.Core's history classes, so histories read like the ones the
real extension shows (`showHistory=true`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import IntEnum
from typing import Any

from azure.durable_functions.models.history import HistoryEventType

Event = dict[str, Any]

#: Event types by value (names as DurableTask.Core spells them, for readable histories).
EVENT_NAMES = {
    0: "ExecutionStarted", 1: "ExecutionCompleted", 2: "ExecutionFailed", 3: "ExecutionTerminated",
    4: "TaskScheduled", 5: "TaskCompleted", 6: "TaskFailed", 7: "SubOrchestrationInstanceCreated",
    8: "SubOrchestrationInstanceCompleted", 9: "SubOrchestrationInstanceFailed", 10: "TimerCreated",
    11: "TimerFired", 12: "OrchestratorStarted", 13: "OrchestratorCompleted", 14: "EventSent", 15: "EventRaised",
    16: "ContinueAsNew", 17: "GenericEvent", 18: "HistoryState", 19: "ExecutionSuspended", 20: "ExecutionResumed",
}


class OrchestrationStatus(IntEnum):
    """DurableTask.Core's OrchestrationStatus: the value ExecutionCompleted events carry."""

    Running = 0
    Completed = 1
    ContinuedAsNew = 2
    Failed = 3
    Canceled = 4
    Terminated = 5
    Pending = 6
    Suspended = 7


def timestamp(at: datetime) -> str:
    """ISO 8601 UTC with trailing zeros of the fraction dropped, as Newtonsoft writes a DateTime."""
    at = at.astimezone(UTC)
    fraction = f"{at.microsecond:06d}".rstrip("0")
    return at.strftime("%Y-%m-%dT%H:%M:%S") + (f".{fraction}" if fraction else "") + "Z"


def parse_time(text: str) -> datetime:
    """A timestamp from history or from an action's fireAt; naive values are UTC (the SDK formats with 'Z')."""
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _event(kind: int, at: datetime, event_id: int = -1, **fields: Any) -> Event:
    return {"EventType": int(kind), "EventId": event_id, "IsPlayed": False, "Timestamp": timestamp(at), **fields}


def orchestrator_started(at: datetime) -> Event:
    return _event(HistoryEventType.ORCHESTRATOR_STARTED, at)


def orchestrator_completed(at: datetime) -> Event:
    return _event(HistoryEventType.ORCHESTRATOR_COMPLETED, at)


def execution_started(at: datetime, *, instance_id: str, execution_id: str, name: str, input_text: str | None,
                      parent: dict[str, Any] | None, generation: int) -> Event:
    return _event(HistoryEventType.EXECUTION_STARTED, at,
                  OrchestrationInstance={"InstanceId": instance_id, "ExecutionId": execution_id},
                  ParentInstance=parent, Name=name, Version="", Input=input_text, Tags=None,
                  ScheduledStartTime=None, Generation=generation)


def task_scheduled(at: datetime, event_id: int, *, name: str, input_text: str | None) -> Event:
    return _event(HistoryEventType.TASK_SCHEDULED, at, event_id, Name=name, Version="", Input=input_text)


def task_completed(at: datetime, scheduled_id: int, result: str | None) -> Event:
    return _event(HistoryEventType.TASK_COMPLETED, at, TaskScheduledId=scheduled_id, Result=result)


def task_failed(at: datetime, scheduled_id: int, *, reason: str, details: str | None) -> Event:
    return _event(HistoryEventType.TASK_FAILED, at, TaskScheduledId=scheduled_id, Reason=reason, Details=details)


def timer_created(at: datetime, event_id: int, fire_at: datetime) -> Event:
    return _event(HistoryEventType.TIMER_CREATED, at, event_id, FireAt=timestamp(fire_at))


def timer_fired(at: datetime, timer_id: int, fire_at: str) -> Event:
    return _event(HistoryEventType.TIMER_FIRED, at, TimerId=timer_id, FireAt=fire_at)


def sub_orchestration_created(at: datetime, event_id: int, *, name: str, instance_id: str,
                              input_text: str | None) -> Event:
    return _event(HistoryEventType.SUB_ORCHESTRATION_INSTANCE_CREATED, at, event_id, Name=name, Version="",
                  InstanceId=instance_id, Input=input_text)


def sub_orchestration_completed(at: datetime, scheduled_id: int, result: str | None) -> Event:
    return _event(HistoryEventType.SUB_ORCHESTRATION_INSTANCE_COMPLETED, at, TaskScheduledId=scheduled_id,
                  Result=result)


def sub_orchestration_failed(at: datetime, scheduled_id: int, *, reason: str | None, details: str | None) -> Event:
    return _event(HistoryEventType.SUB_ORCHESTRATION_INSTANCE_FAILED, at, TaskScheduledId=scheduled_id,
                  Reason=reason, Details=details)


def event_raised(at: datetime, name: str, input_text: str | None) -> Event:
    return _event(HistoryEventType.EVENT_RAISED, at, Name=name, Input=input_text)


def event_sent(at: datetime, event_id: int, *, instance_id: str, name: str, input_text: str | None) -> Event:
    """DurableTask.Core's EventSentEvent: what SendEvent records (an entity request, for this SDK)."""
    return _event(HistoryEventType.EVENT_SENT, at, event_id, InstanceId=instance_id, Name=name, Input=input_text)


def execution_completed(at: datetime, status: OrchestrationStatus, result: str | None,
                        failure: dict[str, Any] | None = None) -> Event:
    return _event(HistoryEventType.EXECUTION_COMPLETED, at, OrchestrationStatus=int(status), Result=result,
                  FailureDetails=failure)


def continued_as_new(at: datetime, input_text: str | None) -> Event:
    return _event(HistoryEventType.CONTINUE_AS_NEW, at, OrchestrationStatus=int(OrchestrationStatus.ContinuedAsNew),
                  Result=input_text)


def execution_terminated(at: datetime, reason: str | None) -> Event:
    return _event(HistoryEventType.EXECUTION_TERMINATED, at, Input=reason)


def execution_suspended(at: datetime, reason: str | None) -> Event:
    return _event(HistoryEventType.EXECUTION_SUSPENDED, at, Reason=reason)


def execution_resumed(at: datetime, reason: str | None) -> Event:
    return _event(HistoryEventType.EXECUTION_RESUMED, at, Reason=reason)


def kind(event: Event) -> int:
    return int(event["EventType"])


def played(events: list[Event], new_from: int | None) -> list[Event]:
    """Copies with IsPlayed set as the extension does: true for past episodes, false from `new_from` on."""
    return [{**e, "IsPlayed": new_from is None or i < new_from} for i, e in enumerate(events)]


def readable(events: list[Event]) -> list[Event]:
    """Copies with EventType as a name ("TaskScheduled"), for tests and transcripts."""
    return [{**e, "EventType": EVENT_NAMES.get(kind(e), str(kind(e)))} for e in events]
