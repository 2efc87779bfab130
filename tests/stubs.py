"""Test doubles that speak HTTP on loopback: the code under test uses its real network paths.

`Signer` plays the calling platform's token issuer; `LoopbackServer` plays Graph, the OpenID/JWKS
endpoints and the Durable Functions management API, recording every request it receives.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from simulator.signing import ISSUER
from simulator.signing import Signer as _SimSigner

APP_ID = "11111111-2222-3333-4444-555555555555"
TENANT_ID = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
OTHER_TENANT = "99999999-8888-7777-6666-555555555555"


class Signer(_SimSigner):
    """The simulator's signer with this suite's defaults (audience APP_ID, tenant TENANT_ID)."""

    def __init__(self, kid: str | None = None) -> None:
        super().__init__(kid or f"key-{uuid.uuid4().hex[:8]}")

    def token(self, *, aud: str = APP_ID, tid: str | None = TENANT_ID, **extra: Any) -> str:  # type: ignore[override]
        return super().token(aud=aud, tid=tid, **extra)


@dataclass
class Recorded:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.monotonic)

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


Responder = Callable[[Recorded], web.StreamResponse | None]


class LoopbackServer:
    """An aiohttp server on 127.0.0.1:<ephemeral>. Scripted responses per (method, path suffix).

    Defaults: OpenID config and JWKS for `signers`; Graph actions answer like Graph (202 for
    answer/reject/redirect/transfer, 200 + an operation for media actions, 204 for deletes);
    Durable raiseEvent answers 202 for instances in `instances`, else 404.
    """

    def __init__(self) -> None:
        self.signers: list[Signer] = []
        self.requests: list[Recorded] = []
        self.scripts: list[tuple[str, str, Responder]] = []
        self.instances: set[str] = set()
        self.delays: dict[str, float] = {}  # path suffix -> seconds to wait before answering
        self.jwks_available = True
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def graph_url(self) -> str:
        return f"{self.url}/v1.0"

    @property
    def openid_url(self) -> str:
        return f"{self.url}/openid"

    async def start(self) -> LoopbackServer:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def script(self, method: str, path_suffix: str, responder: Responder) -> None:
        """Answer matching requests with `responder` (returning None falls through to the default)."""
        self.scripts.append((method.upper(), path_suffix, responder))

    def graph_requests(self) -> list[Recorded]:
        return [r for r in self.requests if r.path.startswith("/v1.0/")]

    def durable_requests(self) -> list[Recorded]:
        return [r for r in self.requests if r.path.startswith("/durabletask/")]

    def key_fetches(self) -> int:
        return sum(1 for r in self.requests if r.path == "/jwks")

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        rec = Recorded(request.method, request.path, request.query_string, dict(request.headers),
                       await request.read())
        self.requests.append(rec)
        for suffix, seconds in self.delays.items():
            if rec.path.endswith(suffix):
                await asyncio.sleep(seconds)
        for method, suffix, responder in self.scripts:
            if method == rec.method and rec.path.endswith(suffix):
                answer = responder(rec)
                if answer is not None:
                    return answer
        return self._default(rec)

    def _default(self, rec: Recorded) -> web.StreamResponse:
        path = rec.path
        if path == "/openid":
            return web.json_response({"issuer": ISSUER, "jwks_uri": f"{self.url}/jwks"})
        if path == "/jwks":
            if not self.jwks_available:
                return web.Response(status=503)
            return web.json_response({"keys": [s.jwk() for s in self.signers]})
        if path.startswith("/durabletask/orchestrators/"):
            instance = path.rstrip("/").split("/")[-1]
            self.instances.add(instance)
            return web.json_response({"id": instance, "statusQueryGetUri": f"{self.url}/status/{instance}"},
                                     status=202)
        if path.startswith("/durabletask/instances/"):
            instance = path.split("/")[3]
            return web.Response(status=202 if instance in self.instances else 404)
        if path.startswith("/v1.0/communications/calls"):
            return _graph_default(rec)
        return web.Response(status=404)


def _graph_default(rec: Recorded) -> web.StreamResponse:
    action = rec.path.rstrip("/").rsplit("/", 1)[-1]
    if rec.method == "DELETE":
        return web.Response(status=204)
    if rec.method == "GET":
        if action == "participants":
            return web.json_response({"value": []})
        return web.json_response({"@odata.type": "#microsoft.graph.call", "id": action, "state": "established"})
    if action in ("answer", "reject", "redirect", "transfer", "changeScreenSharingRole", "keepAlive"):
        return web.Response(status=202 if action != "keepAlive" else 200)
    if rec.path.rstrip("/").endswith("/communications/calls"):
        body = rec.json or {}
        return web.json_response({**body, "id": f"call-{uuid.uuid4().hex[:8]}", "state": "establishing"},
                                 status=201)
    kinds = {"playPrompt": "playPromptOperation", "recordResponse": "recordOperation",
             "cancelMediaProcessing": "cancelMediaProcessingOperation",
             "subscribeToTone": "subscribeToToneOperation", "sendDtmfTones": "sendDtmfTonesOperation",
             "invite": "inviteParticipantsOperation", "mute": "muteParticipantOperation",
             "unmute": "unmuteParticipantOperation",
             "updateRecordingStatus": "updateRecordingStatusOperation"}
    body = rec.json or {}
    return web.json_response({"@odata.type": f"#microsoft.graph.{kinds.get(action, 'commsOperation')}",
                              "id": f"op-{uuid.uuid4().hex[:8]}", "status": "running",
                              "clientContext": body.get("clientContext")})


def graph_error(status: int, code: str, message: str, *, retry_after: str | None = None,
                request_id: str = "req-1") -> web.Response:
    headers = {"request-id": request_id}
    if retry_after is not None:
        headers["Retry-After"] = retry_after
    body = {"error": {"code": code, "message": message,
                      "innerError": {"request-id": request_id, "client-request-id": "client-1",
                                     "date": "2026-11-21T00:00:00"}}}
    return web.json_response(body, status=status, headers=headers)


def incoming_call(call_id: str = "call-1", *, source: dict[str, Any] | None = None,
                  targets: list[dict[str, Any]] | None = None, tenant: str = TENANT_ID,
                  bot_data: dict[str, Any] | None = None) -> dict[str, Any]:
    """A commsNotification for a new incoming call, as Graph sends it."""
    resource: dict[str, Any] = {
        "@odata.type": "#microsoft.graph.call",
        "id": call_id,
        "state": "incoming",
        "direction": "incoming",
        "callbackUri": "https://bot.example.com/api/calls",
        "callChainId": f"chain-{call_id}",
        "tenantId": tenant,
        "myParticipantId": "bot-participant",
        "source": {"@odata.type": "#microsoft.graph.participantInfo", "id": "src-participant",
                   "identity": source or {"@odata.type": "#microsoft.graph.identitySet",
                                          "phone": {"@odata.type": "#microsoft.graph.identity",
                                                    "id": "+14255550100"}}},
        "targets": targets or [{"@odata.type": "#microsoft.graph.invitationParticipantInfo",
                                "identity": {"@odata.type": "#microsoft.graph.identitySet",
                                             "applicationInstance": {"@odata.type": "#microsoft.graph.identity",
                                                                     "id": "instance-1",
                                                                     "tenantId": tenant}}}],
        "requestedModalities": ["audio"],
    }
    if bot_data is not None:
        resource["applicationMetadata"] = {"botData": bot_data}
    return {"@odata.type": "#microsoft.graph.commsNotification", "changeType": "created",
            "resource": f"/app/calls/{call_id}", "resourceUrl": f"/communications/calls/{call_id}",
            "resourceData": resource}


def call_update(call_id: str, state: str, **extra: Any) -> dict[str, Any]:
    change = "deleted" if state == "terminated" else "updated"
    return {"@odata.type": "#microsoft.graph.commsNotification", "changeType": change,
            "resourceUrl": f"/communications/calls/{call_id}",
            "resourceData": {"@odata.type": "#microsoft.graph.call", "id": call_id, "state": state, **extra}}


def envelope(*notifications: dict[str, Any]) -> bytes:
    return json.dumps({"@odata.type": "#microsoft.graph.commsNotifications", "value": list(notifications)}).encode()
