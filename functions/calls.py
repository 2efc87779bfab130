"""POST /api/calls: the calling webhook Graph posts every notification to.

`/api/calls/{session}` is the same webhook for calls the bot places on a session's behalf (a consultative
transfer's second call): their notifications are raised on that session's orchestration.

Thin by design: read the request, hand it to calling.webhook.Webhook, write its answer. Later events of
a call are raised on the call's orchestration (instance id = call id) through the Durable client.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

import azure.durable_functions as df
import azure.functions as func

from calling.sink import NOTIFICATION_EVENT
from functions import runtime

bp = df.Blueprint()
log = logging.getLogger("functions.calls")


class DurableEventSink:
    """Raises a call's notifications as one external event on its orchestration (instance id = call id)."""

    def __init__(self, client: df.DurableOrchestrationClient) -> None:
        self._client = client

    async def deliver(self, call_id: str, notifications: list[Mapping[str, Any]]) -> bool:
        try:
            await self._client.raise_event(call_id, NOTIFICATION_EVENT, {"notifications": notifications})
        except Exception as exc:
            # The Durable client reports a missing (404) or finished (410) instance as a bare Exception.
            text = str(exc)
            if "No instance with ID" in text or "is gone" in text:
                return False
            raise
        return True

    async def start(self, call_id: str, session: Mapping[str, Any]) -> None:
        from orchestrations.call_session import ORCHESTRATOR

        await self._client.start_new(ORCHESTRATOR, call_id, dict(session))


@bp.route(route="calls/{session?}", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
@bp.durable_client_input(client_name="client")
async def calls(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    try:
        app = runtime.get()
    except runtime.NotConfigured:
        return _json(503, {"error": "not_configured", "reason": "the bot's settings are incomplete; see the logs"})
    try:
        result = await app.webhook.handle(dict(req.headers), req.get_body(), DurableEventSink(client),
                                          session=req.route_params.get("session") or None)
    except Exception:  # the last line of defence: log it, answer JSON, never a traceback to the caller
        log.exception("the webhook failed unexpectedly")
        return _json(500, {"error": "internal", "reason": "unexpected error; see the logs"})
    return func.HttpResponse(body=result.content() or None, status_code=result.status,
                             mimetype="application/json" if result.body is not None else None,
                             headers=dict(result.headers))


def _json(status: int, body: dict[str, str]) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(body), status_code=status, mimetype="application/json")
