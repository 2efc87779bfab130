"""A call's session as a readable timeline, from its orchestration's history (the status API's historyEvents).

Why from the history: it already records every Graph action the session took (the `call_action` activity's
input and result) and every notification it was given (the raised `graph_notification` events), in order
and with times, so nothing extra is stored per call. The history covers the current execution only: the
orchestration continues as new every few dozen events, so a long call's timeline starts there. The
`flow.*` telemetry milestones are the complete record.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from calling.events import CallEvent, CallStateChanged, OperationCompleted, ParticipantsUpdated, ToneReceived
from calling.flows import commands as c
from calling.notifications import NotificationError, parse_notification

ACTIVITY = "call_action"
NOTIFICATION_EVENT = "graph_notification"


def timeline(history: Iterable[Any]) -> list[dict[str, Any]]:
    """`[{"at": <time>, "event": <what happened>}, ...]`: Graph actions, notifications, timers, the end."""
    lines: list[dict[str, Any]] = []
    for item in history:
        if not isinstance(item, Mapping):
            continue
        at = item.get("Timestamp")
        for text in _describe(item):
            lines.append({"at": at, "event": text})
    return lines


def _describe(item: Mapping[str, Any]) -> list[str]:
    kind = item.get("EventType")
    if kind == "ExecutionStarted":
        return ["session started"]
    if kind in ("TaskCompleted", "TaskFailed") and str(item.get("FunctionName", "")).lower() == ACTIVITY:
        action = _action(_decode(item.get("Input")))
        if kind == "TaskFailed":
            return [f"{action}: failed after retries"]
        result = _decode(item.get("Result"))
        if isinstance(result, Mapping) and not result.get("ok", True):
            why = " ".join(str(result[k]) for k in ("status", "code") if result.get(k) is not None)
            return [f"{action}: refused" + (f" ({why})" if why else "")]
        return [action]
    if kind == "EventRaised" and item.get("Name") == NOTIFICATION_EVENT:
        return [text for event in _events(_decode(item.get("Input"))) if (text := _notification(event))]
    if kind == "TimerFired":
        return ["timer fired"]
    if kind == "ExecutionCompleted":
        return [f"session {str(item.get('OrchestrationStatus', 'completed')).lower()}"]
    if kind == "ContinueAsNew":
        return ["session continued as new"]
    return []


def _decode(value: Any) -> Any:
    """History payloads are JSON text, and the Python client's own payloads JSON inside that."""
    for _ in range(2):
        if not isinstance(value, str):
            break
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            break
    return value


def _action(data: Any) -> str:
    command = data.get("command") if isinstance(data, Mapping) else None
    if not isinstance(command, Mapping):
        return "Graph action"
    if command.get("type") == "KeepAlive":
        return "keep alive"
    try:
        parsed = c.command_from_json(command)
    except (KeyError, TypeError, ValueError):
        return str(command.get("type") or "Graph action")
    return _command(parsed)


def _command(command: c.Command) -> str:
    if isinstance(command, c.Play):
        return "play " + ", ".join(command.prompts)
    if isinstance(command, c.SubscribeTones):
        return "subscribe to tones"
    if isinstance(command, c.CancelMedia):
        return "cancel media"
    if isinstance(command, c.Record):
        return "record" + (f" ({command.mailbox})" if command.mailbox else "")
    if isinstance(command, c.SaveRecording):
        return "store the recording"
    if isinstance(command, c.Transfer):
        return f"transfer to {command.target} ({command.mode})"
    if isinstance(command, c.Invite):
        return "invite " + ", ".join(command.targets)
    if isinstance(command, c.Redirect):
        return "redirect to " + ", ".join(command.targets)
    if isinstance(command, c.HangUp):
        return "hang up" + (f" ({command.reason})" if command.reason else "")
    return type(command).__name__


def _events(data: Any) -> list[CallEvent]:
    items = data.get("notifications") if isinstance(data, Mapping) else None
    events: list[CallEvent] = []
    for raw in items if isinstance(items, list) else []:
        try:
            events.extend(parse_notification(raw))
        except NotificationError:
            continue
    return events


def _notification(event: CallEvent) -> str | None:
    if isinstance(event, CallStateChanged):
        result = event.result_info
        if result is None:
            return f"call {event.state}"
        message = f" {result.message}" if result.message else ""
        return f"call {event.state} ({result.code}/{result.subcode}{message})"
    if isinstance(event, ToneReceived):
        return f"caller pressed {event.key}"
    if isinstance(event, OperationCompleted):
        return f"{event.operation_type} {event.status or 'done'}"
    if isinstance(event, ParticipantsUpdated):
        return f"participants: {len(event.participants)}"
    return None
