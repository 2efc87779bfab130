"""Outbound call endpoints: place a call or join a meeting running a flow, read its status, hang it up.

Thin adapters over calling/outbound.py, which makes every decision. FUNCTION auth level: these place calls
that cost money and reach real people, so a function key (`x-functions-key` or `?code=`) is required in
Azure; the calling webhook is the only anonymous route. Every answer is JSON, never a traceback.

    POST   /api/outbound/calls        {"to", "flow", "from_instance"?, "subject"?}   -> 202 {"callId", "statusUri"}
    POST   /api/outbound/meetings     {"join_url" | "meeting_id"+"passcode", "flow"}  -> 202 {"callId", "statusUri"}
    GET    /api/outbound/calls/{id}   -> 200 the session's status (?transcript=true: and its timeline), or 404
    DELETE /api/outbound/calls/{id}   -> 204 hung up, or 404 when Graph says the call is gone

The POSTs take an `Idempotency-Key` header: a retry with the same key gets the first answer, not a second call
(calling/idempotency.py; docs/flows.md "Retrying safely").
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import azure.durable_functions as df
import azure.functions as func

from calling.errors import GraphError
from functions import runtime
from functions.calls import DurableEventSink

bp = df.Blueprint()
if TYPE_CHECKING:
    from calling import outbound

log = logging.getLogger("functions.outbound")

STATUS_PATH = "/api/outbound/calls/"


@bp.route(route="outbound/calls", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@bp.durable_client_input(client_name="client")
async def place_call(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    from calling import outbound  # the core loads on first use, not with the app (cold start)

    return await _place(req, client, "outbound/calls", lambda data, app: outbound.parse_place_call(
        data, flows=app.flows, default_instance=app.settings.bot_instance_id))


@bp.route(route="outbound/meetings", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@bp.durable_client_input(client_name="client")
async def join_meeting(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    from calling import outbound

    return await _place(req, client, "outbound/meetings",
                        lambda data, app: outbound.parse_join_meeting(data, flows=app.flows))


@bp.route(route="outbound/calls/{id}", methods=["GET", "DELETE"], auth_level=func.AuthLevel.FUNCTION)
@bp.durable_client_input(client_name="client")
async def outbound_call(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    from calling import outbound

    try:
        app = runtime.get()
        call_id = outbound.check_call_id(req.route_params.get("id", ""))
        if req.method.upper() == "DELETE":
            return await _hang_up(app, client, call_id)
        return await _status(client, call_id, transcript=_flag(req.params.get("transcript")))
    except runtime.NotConfigured:
        return _not_configured()
    except outbound.Refusal as exc:
        return _json(exc.status, exc.body())
    except Exception:  # the last line of defence: log it, answer JSON
        log.exception("the outbound call endpoint failed unexpectedly")
        return _json(500, {"error": "internal", "reason": "unexpected error; see the logs"})


async def _place(req: func.HttpRequest, client: df.DurableOrchestrationClient, route: str,
                 parse: Callable[[Any, runtime.Runtime], outbound.Outbound]) -> func.HttpResponse:
    from calling import outbound
    from calling.idempotency import HEADER

    try:
        app = runtime.get()
    except runtime.NotConfigured:
        return _not_configured()

    def place(request: outbound.Outbound) -> Awaitable[outbound.Placed]:
        return outbound.place(request, control=app.calls.for_tenant(), flows=app.flows, sink=DurableEventSink(client),
                              now=app.now(), app_id=app.settings.bot_app_id)

    try:
        answer = await outbound.answer_place(
            req.get_body(), req.headers.get(HEADER), route=route, parse=lambda data: parse(data, app), place=place,
            status_url=lambda call_id: f"{app.settings.public_url}{STATUS_PATH}{call_id}", keys=app.idempotency,
            now=app.now, key_ttl=app.settings.idempotency_key_ttl)
    except Exception:
        log.exception("placing the outbound call failed unexpectedly")
        return _json(500, {"error": "internal", "reason": "unexpected error; see the logs"})
    return _json(answer.status, answer.body or {}, headers=answer.headers)


async def _status(client: df.DurableOrchestrationClient, call_id: str, *, transcript: bool) -> func.HttpResponse:
    from calling import outbound
    from calling.session_log import timeline

    status = await client.get_status(call_id, show_history=transcript, show_history_output=transcript,
                                     show_input=transcript)
    if not status:  # the client's status for an unknown instance has no creation time
        return _json(404, {"error": "not_found", "reason": f"no session for call {call_id}"})
    runtime_status = status.runtime_status.value if status.runtime_status is not None else None
    view = outbound.status_view(call_id, runtime_status=runtime_status, custom_status=status.custom_status,
                                created=status.created_time, updated=status.last_updated_time, output=status.output)
    if transcript:
        # The status API names the history `historyEvents`, which the client keeps as an attribute of that name.
        view["transcript"] = timeline(getattr(status, "historyEvents", None) or status.history or [])
    return _json(200, view)


async def _hang_up(app: runtime.Runtime, client: df.DurableOrchestrationClient, call_id: str) -> func.HttpResponse:
    from calling import outbound

    status = await client.get_status(call_id, show_input=True)
    tenant = outbound.session_tenant(status.input_) if status else None
    try:
        await app.calls.for_tenant(tenant).hang_up(call_id)
    except GraphError as exc:
        return _json(*outbound.graph_failure(exc))
    return func.HttpResponse(status_code=204)


def _flag(value: str | None) -> bool:
    return (value or "").lower() in ("1", "true", "yes")


def _not_configured() -> func.HttpResponse:
    return _json(503, {"error": "not_configured", "reason": "the bot's settings are incomplete; see the logs"})


def _json(status: int, body: Mapping[str, Any], *, headers: Mapping[str, str] | None = None) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(body), status_code=status, mimetype="application/json",
                             headers=dict(headers or {}))
