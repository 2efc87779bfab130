"""What an orchestrator asked for: the SDK's OrchestratorState JSON, flattened into the order the extension acts.

The SDK returns every action scheduled so far (append-only), grouped as schema V1 (a list per `yield`) or
V2/V3 (one list, with `task_all`/`task_any` as nested WhenAll/WhenAny compound actions). The extension's
`OutOfProcOrchestrationShim` walks that structure depth-first and calls the Durable Task APIs in order; each
call that schedules work takes the next sequence number, which is how completions find their task again.
Flattening the same way gives the same numbering.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from azure.durable_functions.models.actions import ActionType

Action = dict[str, Any]

#: Action types that schedule work and take a sequence number (DurableTask.Core's idCounter).
NUMBERED = frozenset({ActionType.CALL_ACTIVITY, ActionType.CALL_ACTIVITY_WITH_RETRY, ActionType.CALL_SUB_ORCHESTRATOR,
                      ActionType.CALL_SUB_ORCHESTRATOR_WITH_RETRY, ActionType.CREATE_TIMER, ActionType.CALL_HTTP,
                      ActionType.CALL_ENTITY, ActionType.SIGNAL_ENTITY})

_COMPOUND = frozenset({ActionType.WHEN_ALL, ActionType.WHEN_ANY})

NAMES = {int(t): t.name for t in ActionType}


@dataclass
class OrchestratorState:
    """One invocation's result, as the extension reads it (isDone, actions, output, error, customStatus)."""

    is_done: bool
    actions: list[Action]
    output: Any = None
    error: str | None = None
    custom_status: Any = None
    has_custom_status: bool = False
    schema_version: int = 0
    raw: dict[str, Any] = field(default_factory=dict)


def flatten(groups: Any) -> list[Action]:
    """Leaf actions in the shim's order: groups in order, compound actions depth-first."""
    leaves: list[Action] = []

    def walk(action: Action) -> None:
        if int(action.get("actionType", -1)) in _COMPOUND:
            for child in action.get("compoundActions") or []:
                walk(child)
        else:
            leaves.append(action)

    for group in groups or []:
        for action in group if isinstance(group, list) else [group]:
            walk(action)
    return leaves


def parse_state(text: str) -> OrchestratorState:
    """The SDK's state JSON (returned, or carried in a failure's `$OutOfProcData$`)."""
    raw = json.loads(text)
    return OrchestratorState(is_done=bool(raw.get("isDone")), actions=flatten(raw.get("actions")),
                             output=raw.get("output"), error=raw.get("error"), custom_status=raw.get("customStatus"),
                             has_custom_status="customStatus" in raw, schema_version=int(raw.get("schemaVersion", 0)),
                             raw=raw)


def action_type(action: Action) -> int:
    return int(action.get("actionType", -1))


def signature(action: Action) -> list[Any]:
    """What DurableTask.Core compares on replay: the kind of call and its target, not inputs or times."""
    kind = action_type(action)
    target = action.get("functionName") or action.get("externalEventName") or action.get("instanceId")
    return [NAMES.get(kind, str(kind)), target]


def describe(action: Action) -> str:
    kind, target = signature(action)
    return f"{kind}({target!r})" if target else str(kind)


#: Signature kinds that DurableTask.Core sees as one SendEventOrchestratorAction named `op`.
_ENTITY_KINDS = frozenset({ActionType.CALL_ENTITY.name, ActionType.SIGNAL_ENTITY.name})


def _compared(recorded: list[Any], *, strict: bool) -> list[Any]:
    """The part of a signature the replay check compares.

    TaskOrchestrationContext.HandleEventSentEvent only checks that a SendEvent with the event name `op` is
    scheduled at that sequence number: not its target instance, and a call and a signal are both SendEvent.
    `strict` (devhost's `replay_check`) compares the kind and the entity too.
    """
    if not strict and recorded[0] in _ENTITY_KINDS:
        return ["SEND_EVENT", "op"]
    return list(recorded[:2])


def prefix_mismatch(recorded: list[list[Any]], actions: list[Action], *, strict: bool = False) -> str | None:
    """Why a replay does not reproduce the actions already recorded, or None when it does."""
    for index, expected in enumerate(recorded):
        if index >= len(actions):
            return (f"Non-deterministic workflow detected: action #{index} was {expected[0]}({expected[1]!r}) "
                    "when the orchestrator first ran, but the replay stopped before scheduling it")
        if _compared(signature(actions[index]), strict=strict) != _compared(expected, strict=strict):
            return (f"Non-deterministic workflow detected: action #{index} was {expected[0]}({expected[1]!r}) "
                    f"when the orchestrator first ran, but is {describe(actions[index])} on replay")
    return None


def replay_mismatch(first: OrchestratorState, again: OrchestratorState) -> str | None:
    """How a from-scratch replay differs from the invocation it replays, or None."""
    for index in range(max(len(first.actions), len(again.actions))):
        a = first.actions[index] if index < len(first.actions) else None
        b = again.actions[index] if index < len(again.actions) else None
        if a != b:
            was = "nothing" if a is None else f"{describe(a)} {json.dumps(a, sort_keys=True)}"
            now = "nothing" if b is None else f"{describe(b)} {json.dumps(b, sort_keys=True)}"
            return (f"action #{index} was {was} when the step ran, but {now} when replayed over the recorded "
                    "history")
    if first.is_done != again.is_done:
        return f"the step {'finished' if first.is_done else 'did not finish'} the orchestration, the replay did not"
    return None
