"""DurableTask.Core's RetryInterceptor, which the extension applies to `*_with_retry` calls.

After each failed attempt it creates a timer (first interval * backoff ** (attempt - 1), capped by the maximum
interval when given) and, when the timer fires, schedules the next attempt. After the last attempt it still
creates a timer, due at once (DurableTask's back-compat "dummy" timer), and the SDK's RetryAbleTask waits for
exactly that timer before it raises the last failure. Timers and attempts take sequence numbers when the
failure or the timer is processed, which is where the SDK numbers them too.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from azure.durable_functions.models.history import HistoryEventType

from devhost.durable import actions, history

if TYPE_CHECKING:
    from devhost.durable.step import Step

_COMPLETED = (HistoryEventType.TASK_COMPLETED, HistoryEventType.SUB_ORCHESTRATION_INSTANCE_COMPLETED)
_FAILED = (HistoryEventType.TASK_FAILED, HistoryEventType.SUB_ORCHESTRATION_INSTANCE_FAILED)


def begin(step: Step, task_id: int, kind: str, action: actions.Action) -> None:
    """Track a call with retry from its first attempt (sequence number `task_id`)."""
    step.state["retries"][str(task_id)] = {
        "kind": kind, "name": action.get("functionName"), "input": action.get("input"),
        "instance_id": action.get("instanceId"), "options": action.get("retryOptions") or {},
        "attempt": 1, "task_id": task_id, "timer_id": None}


def delay(options: dict[str, Any], attempt: int) -> float:
    """Seconds before the next attempt after `attempt` failed."""
    seconds = float(options.get("firstRetryIntervalInMilliseconds", 0)) / 1000
    seconds *= float(options.get("backoffCoefficient", 1.0)) ** (attempt - 1)
    if "maxRetryIntervalInMilliseconds" in options:
        seconds = min(seconds, float(options["maxRetryIntervalInMilliseconds"]) / 1000)
    return seconds


def advance(step: Step, event: history.Event) -> None:
    """Apply one new history event to the retries in flight."""
    kind = history.kind(event)
    chains: dict[str, dict[str, Any]] = step.state["retries"]
    if kind == HistoryEventType.TIMER_FIRED:
        step.state["timers"].pop(str(event["TimerId"]), None)
    for key, chain in list(chains.items()):
        attempts = int(chain["options"].get("maxNumberOfAttempts", 1))
        if kind in _COMPLETED and event.get("TaskScheduledId") == chain["task_id"]:
            del chains[key]
        elif kind in _FAILED and event.get("TaskScheduledId") == chain["task_id"] and chain["timer_id"] is None:
            wait = 0.0 if chain["attempt"] >= attempts else delay(chain["options"], chain["attempt"])
            timer_id = step.take_id()
            chain["timer_id"] = timer_id
            step.schedule_timer(timer_id, step.now + timedelta(seconds=wait))
        elif kind == HistoryEventType.TIMER_FIRED and event.get("TimerId") == chain["timer_id"]:
            chain["timer_id"] = None
            if chain["attempt"] >= attempts:
                del chains[key]  # the SDK now raises the last failure
                continue
            chain["attempt"] += 1
            task_id = chain["task_id"] = step.take_id()
            if chain["kind"] == "activity":
                step.schedule_activity(task_id, chain["name"], chain["input"])
            else:
                step.schedule_child(task_id, chain["name"], chain["instance_id"], chain["input"])
