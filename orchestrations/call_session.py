"""`call_session`: one orchestration per answered call (instance id = call id), running its flow.

This module only registers the orchestrator and its `call_action` activity; the Functions host imports
it on every cold start, so the loop (orchestrations/session_loop.py) and the core load on the first
replay instead. The webhook starts the orchestration before it answers (calling/webhook.py).
"""

from __future__ import annotations

import typing
from collections.abc import Generator
from typing import Any

import azure.durable_functions as df

from functions import runtime

bp = df.Blueprint()

ORCHESTRATOR = "call_session"
ACTIVITY = "call_action"
#: Engine events per execution before continue-as-new: keeps every replay short, whatever the call's length.
EVENTS_PER_EXECUTION = 20
RETRY = df.RetryOptions(first_retry_interval_in_milliseconds=1000, max_number_of_attempts=4)


@bp.orchestration_trigger(context_name="context", orchestration=ORCHESTRATOR)
def call_session(context: df.DurableOrchestrationContext) -> Generator[Any, Any, Any]:
    from orchestrations.session_loop import run

    return (yield from run(context))


@bp.activity_trigger(input_name="request", activity=ACTIVITY)
async def call_action(request: typing.Mapping[str, Any]) -> dict[str, Any]:
    # A binding's annotation must be a class or a `typing` generic: the Functions Python worker refuses
    # PEP 585 aliases (`collections.abc.Mapping[...]`, `dict[...]`) and indexes no function at all.
    from calling import telemetry
    from calling.actions import perform

    app = runtime.get()
    control = app.calls.for_tenant(str(request.get("tenant_id") or "") or None)
    with telemetry.correlation(call_id=str(request.get("call_id")), tenant_id=str(request.get("tenant_id") or "")):
        return await perform(control, app.flows, app.recordings, request, instance_id=app.settings.bot_instance_id)
