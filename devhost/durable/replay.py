"""Running an orchestrator function through azure-functions-durable's own replay engine.

The function registered with `@app.orchestration_trigger` is the SDK's `Orchestrator.create` handle. The
worker decodes the extension's context JSON with `OrchestrationTriggerConverter` and calls the handle, which
replays the generator over the history and returns the OrchestratorState JSON; a failing orchestrator raises
an exception whose message carries that JSON after `$OutOfProcData$:`. This module does exactly that, with
the context fields the extension sends (`OrchestrationTriggerAttributeBindingProvider`).
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Callable
from typing import Any

from azure.functions import meta
from azure.functions.durable_functions import OrchestrationTriggerConverter

from devhost.durable import history, payloads
from devhost.durable.actions import OrchestratorState, parse_state

log = logging.getLogger("devhost.durable")

_OUT_OF_PROC_DATA = "\n\n$OutOfProcData$:"

#: Azure Storage's limits, which the extension passes so that the SDK splits timers longer than 6 days.
MAXIMUM_SHORT_TIMER = "6.00:00:00"
LONG_TIMER_INTERVAL = "3.00:00:00"


def context_json(*, instance_id: str, parent_instance_id: str | None, events: list[history.Event],
                 new_from: int | None) -> str:
    """The orchestration trigger's payload: history (IsPlayed up to `new_from`), input, ids, schema versions."""
    started = next(e for e in events if history.kind(e) == 0)
    return json.dumps({
        "history": history.played(events, new_from),
        "input": payloads.value_of(started.get("Input")) if started.get("Input") is not None else None,
        "instanceId": instance_id,
        "isReplaying": new_from is None or new_from > 0,
        "parentInstanceId": parent_instance_id,
        "upperSchemaVersion": 1,  # V2, as the extension declares for SDKs that only know up to V2
        "upperSchemaVersionNew": 2,  # V3: long timers
        "longRunningTimerIntervalDuration": LONG_TIMER_INTERVAL,
        "maximumShortTimerDuration": MAXIMUM_SHORT_TIMER,
        "defaultHttpAsyncRequestSleepTimeMillseconds": 30000,
    })


def run(handle: Callable[..., Any], context: str) -> OrchestratorState:
    """Invoke the handle as the worker does; a failure without state JSON becomes an error state."""
    datum = meta.Datum(context, "json")
    try:
        with warnings.catch_warnings():
            # The SDK warns on every replay of an event raised before anything waited for it; that buffering
            # is the documented behaviour, not a problem worth a warning per replay.
            warnings.filterwarnings("ignore", message="Potential duplicate Task completion")
            result = handle(OrchestrationTriggerConverter.decode(datum, trigger_metadata=None))
    except Exception as exc:
        message = str(exc)
        if _OUT_OF_PROC_DATA in message:
            return parse_state(message.split(_OUT_OF_PROC_DATA, 1)[1])
        log.debug("the orchestrator failed before producing a state", exc_info=True)
        return OrchestratorState(is_done=False, actions=[], error=message or type(exc).__name__)
    return parse_state(result if isinstance(result, str) else json.dumps(result))
