"""The HTTP face of the simulator: Graph's calls endpoints, the platform's OpenID metadata, recordings.

Each Graph request is checked the way Graph checks it (a bearer token; a body valid against the official
v1.0 OpenAPI schema, unknown action parameters refused) before the simulator acts on it; a refusal uses
Graph's error shape `{"error": {"code", "message", "innerError": {...}}}`. Injected faults answer first.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from simulator.calls import SimCall
from simulator.core import GraphHttpError, Simulator
from simulator.openapi import validate_request
from simulator.signing import openid_configuration

_CALL = re.compile(r"^/v1\.0/communications/calls/(?P<id>[^/]+)(?P<rest>/.*)?$")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def build_app(sim: Simulator) -> web.Application:
    app = web.Application(client_max_size=4 * 1024 * 1024)
    api = GraphApi(sim)
    app.router.add_get("/v1/.well-known/OpenIdConfiguration", api.openid)
    app.router.add_get("/v1/keys", api.keys)
    app.router.add_get("/recordings/{id}", api.recording)
    app.router.add_route("*", "/v1.0/{tail:.*}", api.graph)
    return app


def graph_error(status: int, code: str, message: str, *, client_request_id: str | None = None,
                headers: dict[str, str] | None = None) -> web.Response:
    request_id = str(uuid.uuid4())
    inner = {"date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"), "request-id": request_id,
             "client-request-id": client_request_id or request_id}
    return web.json_response({"error": {"code": code, "message": message, "innerError": inner}}, status=status,
                             headers={"request-id": request_id, "client-request-id": inner["client-request-id"],
                                      **(headers or {})})


class GraphApi:
    def __init__(self, sim: Simulator) -> None:
        self.sim = sim

    async def openid(self, request: web.Request) -> web.Response:
        return web.json_response(openid_configuration(self.sim.url))

    async def keys(self, request: web.Request) -> web.Response:
        return web.json_response({"keys": [self.sim.signer.jwk()]})

    async def recording(self, request: web.Request) -> web.StreamResponse:
        found = self.sim.recordings.get(request.match_info["id"])
        if found is None:
            return web.Response(status=404, text="no such recording")
        call, recording = found
        if request.headers.get("Authorization") != f"Bearer {recording.access_token}":
            self.sim.note(call, f"recording {recording.id[:8]} download refused: wrong or missing access token")
            return web.Response(status=401, text="the recordingAccessToken is required as a bearer token")
        recording.downloaded += 1
        self.sim.note(call, f"bot downloads recording {recording.id[:8]}", "from-bot")
        return web.Response(body=self.sim.recording_audio(recording), content_type="audio/wav")

    async def graph(self, request: web.Request) -> web.StreamResponse:
        async with self.sim.clock.busy():
            return await self._graph(request)

    async def _graph(self, request: web.Request) -> web.StreamResponse:
        client_id = request.headers.get("client-request-id")
        raw = await request.read()
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError as exc:
            return graph_error(400, "BadRequest", f"The request body is not JSON: {exc}", client_request_id=client_id)
        if not request.headers.get("Authorization", "").startswith("Bearer "):
            return graph_error(401, "InvalidAuthenticationToken", "Access token is empty.",
                               client_request_id=client_id)
        path = request.path
        action = _action(request.method, path)
        call = self._call_of(path)
        fault = self.sim.faults.take_graph(action)
        if fault is not None and not fault.applied:
            if call is not None:
                self.sim.note(call, f"fault: {action} answered "
                              + (f"{fault.status}" if fault.status else f"slowly ({fault.delay:g} s)"))
            if fault.delay:
                await asyncio.sleep(fault.delay)
            if fault.status:
                headers = {"Retry-After": f"{fault.retry_after:g}"} if fault.retry_after is not None else {}
                code = "TooManyRequests" if fault.status == 429 else "ServiceUnavailable"
                return graph_error(fault.status, code, f"Injected fault on {action}.", client_request_id=client_id,
                                   headers=headers)
        try:
            problems = validate_request(request.method, path.removeprefix("/v1.0"), body)
        except KeyError as exc:
            return graph_error(405 if "not allowed" in str(exc) else 404, "BadRequest", str(exc.args[0]),
                               client_request_id=client_id)
        if problems:
            message = "; ".join(str(p) for p in problems)
            if call is not None:
                self.sim.note(call, f"{request.method} {action} refused: 400 {message}", "from-bot")
            return graph_error(400, "BadRequest", f"Invalid request body: {message}", client_request_id=client_id)
        mark = len(call.transcript.entries) if call is not None else 0
        try:
            status, payload, call = self._dispatch(request.method, path, body or {})
        except GraphHttpError as exc:
            if call is not None:
                self.sim.note(call, f"{request.method} {action} refused: {exc.status} {exc.message}", "from-bot")
            return graph_error(exc.status, exc.code, exc.message, client_request_id=client_id)
        if call is not None:
            _tag(call, mark, f"{request.method} {action} {status}", body, self.sim.now())
        if fault is not None and fault.applied:  # done, but the bot is told it failed
            if call is not None:
                self.sim.note(call, f"fault: {action} carried out, answered {fault.status}")
            return graph_error(fault.status, "ServiceUnavailable", f"Injected fault on {action} (carried out).",
                               client_request_id=client_id)
        headers = {"request-id": str(uuid.uuid4()), "client-request-id": client_id or ""}
        if isinstance(payload, dict) and payload.get("id") and call is not None:
            suffix = "" if payload.get("@odata.type") == "#microsoft.graph.call" else f"/operations/{payload['id']}"
            headers["Location"] = f"{self.sim.url}/v1.0/communications/calls/{call.id}{suffix}"
        if payload is None:
            return web.Response(status=status, headers=headers)
        return web.json_response(payload, status=status, headers=headers)

    def _call_of(self, path: str) -> SimCall | None:
        match = _CALL.match(path.rstrip("/"))
        return self.sim.calls.get(match["id"]) if match else None

    def _dispatch(self, method: str, path: str, body: dict[str, Any]) -> tuple[int, Any, SimCall | None]:
        sim = self.sim
        clean = path.rstrip("/")
        if clean == "/v1.0/communications/calls":
            if method != "POST":
                raise GraphHttpError(405, "MethodNotAllowed", f"{method} is not supported on calls.")
            call = sim.graph_create_call(body)
            return 201, call.to_json(), call
        match = _CALL.match(clean)
        if match is None:
            raise GraphHttpError(404, "BadRequest", f"Resource not found for the segment in {path}.")
        rest = (match["rest"] or "").strip("/")
        call = sim.call_for(match["id"], live=not (method == "GET" and rest.startswith("operations/")))
        parts = rest.split("/") if rest else []
        if not parts:
            if method == "GET":
                sim.note(call, f"bot asks for the call (it is {call.state})", "from-bot")
                return 200, call.to_json(), call
            if method == "DELETE":
                sim.graph_hang_up(call)
                return 204, None, call
        elif parts == ["participants"] and method == "GET":
            return 200, {"value": [p.to_json() for p in call.participants.values()]}, call
        elif parts == ["participants", "invite"] and method == "POST":
            return 200, sim.graph_invite(call, body), call
        elif len(parts) == 2 and parts[0] == "participants" and method == "DELETE":
            sim.graph_remove_participant(call, parts[1])
            return 204, None, call
        elif len(parts) == 3 and parts[0] == "participants" and parts[2] == "mute" and method == "POST":
            return 200, sim.graph_mute(call, body, muted=True, participant_id=parts[1]), call
        elif len(parts) == 2 and parts[0] == "operations" and method == "GET":
            op = call.operations.get(parts[1])
            if op is None:
                raise GraphHttpError(404, "itemNotFound", f"Operation {parts[1]} was not found.")
            sim.note(call, f"bot asks for operation {parts[1][:8]} (it is {op.get('status')})", "from-bot")
            return 200, op, call
        elif len(parts) == 1 and method == "POST":
            return self._action(call, parts[0], body)
        raise GraphHttpError(405 if parts else 400, "BadRequest", f"{method} {path} is not a calls API request.")

    def _action(self, call: SimCall, name: str, body: dict[str, Any]) -> tuple[int, Any, SimCall]:
        sim = self.sim
        accepted: dict[str, Callable[[SimCall, dict[str, Any]], None]] = {
            "answer": sim.graph_answer, "reject": sim.graph_reject, "redirect": sim.graph_redirect,
            "transfer": sim.graph_transfer,
        }
        if name in accepted:
            accepted[name](call, body)
            return 202, None, call
        operations: dict[str, Callable[[SimCall, dict[str, Any]], dict[str, Any]]] = {
            "playPrompt": sim.graph_play_prompt, "recordResponse": sim.graph_record,
            "cancelMediaProcessing": sim.graph_cancel_media, "subscribeToTone": sim.graph_subscribe_to_tone,
            "sendDtmfTones": sim.graph_send_dtmf, "updateRecordingStatus": sim.graph_update_recording_status,
            "mute": lambda c, b: sim.graph_mute(c, b, muted=True),
            "unmute": lambda c, b: sim.graph_mute(c, b, muted=False),
        }
        if name in operations:
            return 200, operations[name](call, body), call
        if name == "keepAlive":
            sim.graph_keep_alive(call)
            return 200, None, call
        if name == "changeScreenSharingRole":
            sim.note(call, f"bot changes its screen sharing role to {body.get('role')}", "from-bot")
            return 202, None, call
        raise GraphHttpError(400, "BadRequest", f"{name} is not a call action.")


def _action(method: str, path: str) -> str:
    """A short name for fault matching: `create`, `answer`, `playPrompt`, `hangUp`, `get`, `invite`..."""
    clean = path.rstrip("/")
    if clean == "/v1.0/communications/calls":
        return "create"
    match = _CALL.match(clean)
    rest = (match["rest"] or "").strip("/") if match else ""
    if not rest:
        return {"DELETE": "hangUp", "GET": "get"}.get(method, method.lower())
    last = rest.rsplit("/", 1)[-1]
    if rest.startswith("participants/") and method == "DELETE":
        return "removeParticipant"
    if rest.startswith("participants/") and last == "mute":
        return "muteParticipant"
    if rest.startswith("operations/"):
        return "getOperation"
    return last


def _tag(call: SimCall, mark: int, http: str, body: Any, at: float) -> None:
    """Attach the HTTP exchange to the transcript line the simulator wrote for this request."""
    entries = call.transcript.entries
    for index in range(mark, len(entries)):
        entry = entries[index]
        if entry.direction == "from-bot":
            detail = {**entry.detail, "request": body} if body else entry.detail
            entries[index] = type(entry)(entry.at, entry.direction, f"{entry.summary}  [{http}]", detail)
            return
    call.transcript.add(at, "from-bot", http,
                        **({"request": body} if body else {}))
