"""Outbound calls: the bot places a call (a Teams user or a phone number) or joins a meeting, and runs a flow.

Every decision lives here, testable without any runtime; functions/outbound.py only reads the request and
writes the answer. A request is checked as a whole and every problem is named at once (a 400 lists them all),
before anything reaches Graph: an unknown flow or a phone call without an application instance is the
caller's mistake, not a 500 or a Graph error minutes later.

How a call starts: the flow's first step runs before Graph is asked (a flow may decide not to call, e.g.
outside business hours), then Graph creates the call, then the call's session starts through the same sink
the webhook uses (the `call_session` orchestration, instance id = call id). The flow waits for the call to
be established, which the orchestration learns from Graph's notification. That notification could in
principle arrive before the session exists and be dropped; `reconcile` closes the gap by asking Graph once.

`answer_place` is a POST from its body to its answer. With an `Idempotency-Key` header, calling/idempotency.py
makes a retried POST get the first answer back instead of ringing someone twice.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from calling import idempotency, telemetry
from calling.errors import GraphError
from calling.flows import Bundle
from calling.flows import commands as c
from calling.flows.events import party_fact
from calling.flows.prompts import prefetch
from calling.flows.snapshot import snapshot
from calling.idempotency import Answer
from calling.identities import E164, MeetingId, MeetingJoin, Party, application_instance, parse_join_url, phone
from calling.identities import teams_user as teams_user_party
from calling.ids import is_graph_id
from calling.session import FlowLibrary, FlowNotFound, Session, open_call
from calling.yamlsource import SourceErrors

if TYPE_CHECKING:  # msgraph-sdk loads with the first Graph request (cold start)
    from calling.graph import CallControl, CallInfo

log = logging.getLogger("calling.outbound")

#: Request bodies are small JSON objects; anything larger is a mistake or an attack.
MAX_BODY_BYTES = 64 * 1024
MAX_SUBJECT = 256
GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
#: Flow names map to `<FLOWS_DIR>/<name>.yaml`: path segments without a leading dot cannot leave the folder.
FLOW_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*(/[A-Za-z0-9_-][A-Za-z0-9_.-]*)*$")

CALL_KEYS = ("to", "flow", "from_instance", "subject")
MEETING_KEYS = ("join_url", "meeting_id", "passcode", "flow")


class Refusal(Exception):
    """An outbound request that cannot be served: the HTTP status and JSON body to answer with."""

    status = 400

    def body(self) -> dict[str, Any]:
        return {"error": "bad_request", "reason": str(self)}


class BadRequest(Refusal):
    """The request cannot be served as sent; `reasons` names every problem (400)."""

    status = 400

    def __init__(self, reasons: list[str]) -> None:
        self.reasons = reasons
        super().__init__("; ".join(reasons))

    def body(self) -> dict[str, Any]:
        return {"error": "bad_request", "reasons": list(self.reasons)}


class NotPlaced(Refusal):
    """The flow's first step hung up (e.g. outside business hours): no call was placed (409)."""

    status = 409

    def body(self) -> dict[str, Any]:
        return {"error": "not_placed", "reason": str(self)}


class SessionNotStarted(Refusal):
    """Graph placed the call but its session could not start; the call was hung up rather than left silent."""

    status = 503

    def body(self) -> dict[str, Any]:
        return {"error": "session_not_started",
                "reason": "the call was placed but its session could not start, so it was hung up; see the logs"}


@dataclass(frozen=True)
class PlaceCall:
    """A peer-to-peer call from the bot to one Teams user or phone number."""

    target: Party
    flow: str
    source: Party | None = None  # an application instance; None: the bot's app places the call
    subject: str | None = None

    def caller_fact(self, app_id: str) -> str:
        return f"instance:{self.source.id}" if self.source is not None else f"app:{app_id}"

    @property
    def called_fact(self) -> str:
        return party_fact(self.target.kind, self.target.id)


@dataclass(frozen=True)
class JoinMeeting:
    """The bot joins a scheduled meeting, from its join URL or its numeric id and passcode."""

    meeting: MeetingJoin | MeetingId
    flow: str

    def caller_fact(self, app_id: str) -> str:
        return f"app:{app_id}"

    @property
    def called_fact(self) -> str:
        """`meeting:<thread id>` or `meeting:<join meeting id>`: conditions can tell meetings apart."""
        key = self.meeting.thread_id if isinstance(self.meeting, MeetingJoin) else self.meeting.join_meeting_id
        return f"meeting:{key}"


Outbound = PlaceCall | JoinMeeting


# --- reading requests --------------------------------------------------------------------------------


def read_json(body: bytes) -> Any:
    """The request body as JSON; a BadRequest says why not (never a traceback)."""
    if len(body) > MAX_BODY_BYTES:
        raise BadRequest([f"body exceeds {MAX_BODY_BYTES} bytes"])
    if not body.strip():
        raise BadRequest(["body is empty; send a JSON object"])
    try:
        return json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise BadRequest(["body is not UTF-8 text"]) from None
    except json.JSONDecodeError as exc:
        raise BadRequest([f"body is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"]) from None


def parse_place_call(data: Any, *, flows: FlowLibrary, default_instance: str | None) -> PlaceCall:
    """`{"to", "flow", "from_instance"?, "subject"?}` checked as a whole.

    `from_instance` (or BOT_INSTANCE_ID) is the application instance the call comes from: Graph cannot call
    a phone number without one. A Teams user is called from it too when there is one, else from the bot's app.
    """
    body, reasons = _object(data, CALL_KEYS)
    target = _target(body.get("to"), reasons)
    flow = _flow(body.get("flow"), flows, reasons)
    source: Party | None = None
    raw_instance = body.get("from_instance")
    if raw_instance is not None:
        if not isinstance(raw_instance, str) or not GUID.match(raw_instance.strip()):
            reasons.append(f"from_instance must be the object id (a GUID) of an application instance, "
                           f"got {raw_instance!r}")
        else:
            source = application_instance(raw_instance.strip().lower())
    elif default_instance:
        source = application_instance(default_instance)
    if target is not None and target.kind == "phone" and source is None and raw_instance is None:
        reasons.append("calling a phone number needs an application instance (a resource account with a phone "
                       "number): give from_instance, or set BOT_INSTANCE_ID")
    subject = body.get("subject")
    if subject is not None and (not isinstance(subject, str) or not subject.strip() or len(subject) > MAX_SUBJECT):
        reasons.append(f"subject must be a non-empty string of at most {MAX_SUBJECT} characters")
        subject = None
    if reasons or target is None or flow is None:
        raise BadRequest(reasons)
    return PlaceCall(target, flow, source, subject.strip() if isinstance(subject, str) else None)


def parse_join_meeting(data: Any, *, flows: FlowLibrary) -> JoinMeeting:
    """`{"join_url", "flow"}` or `{"meeting_id", "passcode"?, "flow"}` checked as a whole."""
    body, reasons = _object(data, MEETING_KEYS)
    flow = _flow(body.get("flow"), flows, reasons)
    url, meeting_id, passcode = body.get("join_url"), body.get("meeting_id"), body.get("passcode")
    meeting: MeetingJoin | MeetingId | None = None
    if url is not None and meeting_id is not None:
        reasons.append("give either join_url or meeting_id (with its passcode), not both")
    elif url is not None:
        if passcode is not None:
            reasons.append("passcode goes with meeting_id; a join_url needs none")
        if not isinstance(url, str):
            reasons.append(f"join_url must be a string, got {url!r}")
        else:
            try:
                meeting = parse_join_url(url)
            except ValueError as exc:
                reasons.append(f"join_url: {exc}")
    elif meeting_id is not None:
        if not isinstance(meeting_id, str | int) or isinstance(meeting_id, bool):
            reasons.append(f"meeting_id must be the meeting's numeric join id as a string, got {meeting_id!r}")
        elif passcode is not None and (not isinstance(passcode, str) or not passcode.strip()):
            reasons.append("passcode must be a non-empty string")
        else:
            try:
                meeting = MeetingId(str(meeting_id).replace(" ", ""), passcode.strip() if passcode else None)
            except ValueError as exc:
                reasons.append(f"meeting_id: {exc}")
    else:
        reasons.append("join_url (the meeting's https://teams.microsoft.com/l/meetup-join/... link) or meeting_id "
                       "(its numeric join id, with passcode) is required")
    if reasons or meeting is None or flow is None:
        raise BadRequest(reasons)
    return JoinMeeting(meeting, flow)


def _object(data: Any, keys: tuple[str, ...]) -> tuple[Mapping[str, Any], list[str]]:
    if not isinstance(data, Mapping):
        raise BadRequest([f"body must be a JSON object with {', '.join(keys)}"])
    unknown = sorted(str(k) for k in data if k not in keys)
    reasons = [f"unknown key {k!r} (expected: {', '.join(keys)})" for k in unknown]
    return data, reasons


def _target(value: Any, reasons: list[str]) -> Party | None:
    if value is None:
        reasons.append("to is required: a phone number (+E164, like +14255550100) or user:<Entra object id>")
        return None
    if not isinstance(value, str):
        reasons.append(f"to must be a string (+E164 or user:<Entra object id>), got {value!r}")
        return None
    text = value.strip()
    if text.startswith("+"):
        if not E164.match(text):
            reasons.append(f"to: a phone number must be E.164, a + and up to 15 digits (like +14255550100), "
                           f"got {value!r}")
            return None
        return phone(text)
    kind, _, ident = text.partition(":")
    if kind == "user":
        if not GUID.match(ident):
            reasons.append(f"to: a Teams user is user:<Entra object id, a GUID>, got {value!r}")
            return None
        return teams_user_party(ident.lower())
    reasons.append(f"to must be a phone number (+E164) or user:<Entra object id>, got {value!r}")
    return None


def _flow(value: Any, flows: FlowLibrary, reasons: list[str]) -> str | None:
    """The flow's name if it exists and checks clean; otherwise a reason (the file's own errors included)."""
    if value is None:
        reasons.append("flow is required: the name of a flow file in the flows folder, without .yaml")
        return None
    if not isinstance(value, str) or not FLOW_NAME.match(value):
        reasons.append(f"flow must be a flow's name (letters, digits, - _ . and / between folders), got {value!r}")
        return None
    name = value.removesuffix(".yaml")
    try:
        flows.bundle(name)
    except FlowNotFound:
        reasons.append(f"flow {name!r} does not exist (no {name}.yaml in the flows folder)")
        return None
    except SourceErrors as exc:
        reasons.extend(f"flow {name!r} is invalid: {Path(e.file).name}:{e.line}:{e.column}: "
                       + (f"{e.field}: {e.message}" if e.field else e.message) for e in exc.errors)
        return None
    return name


# --- answering a request ------------------------------------------------------------------------------


async def answer_place(body: bytes, key_header: str | None, *, route: str, parse: Callable[[Any], Outbound],
                       place: Callable[[Outbound], Awaitable[Placed]], status_url: Callable[[str], str],
                       keys: idempotency.KeyStore, now: Callable[[], datetime],
                       key_ttl: timedelta = idempotency.DEFAULT_TTL) -> Answer:
    """`POST /api/outbound/calls` or `/meetings`: the body and the Idempotency-Key header to the answer.

    `route` names the endpoint in the key's fingerprint, `parse` checks the body, `place` places the call.
    Without the header the call is placed as asked. With it, a retry gets the first answer (calling/idempotency.py).
    """
    reasons: list[str] = []
    data: Any = None
    try:
        data = read_json(body)
    except BadRequest as exc:
        reasons.extend(exc.reasons)
    key: str | None = None
    try:
        key = idempotency.parse_key(key_header)
    except idempotency.KeyRefused as exc:
        reasons.append(str(exc))
    if reasons:
        return Answer(400, BadRequest(reasons).body(), retryable=True)

    async def attempt() -> Answer:
        try:
            placed = await place(parse(data))
        except Refusal as exc:  # a 400 changed nothing; not_placed and session_not_started are final
            return Answer(exc.status, exc.body(), retryable=isinstance(exc, BadRequest))
        except GraphError as exc:
            status, failure = graph_failure(exc)
            # Graph throttled it: no call exists. Any other failure may have created one (a timeout, a 5xx,
            # a 503 included: createCall is not retried on it either, calling/graph.py THROTTLED): a retry
            # with the same key gets this answer back rather than another call.
            return Answer(status, failure, retryable=exc.status == 429)
        except Exception:
            log.exception("placing the outbound call failed unexpectedly")
            return Answer(500, {"error": "internal", "reason": "unexpected error; see the logs"})
        uri = status_url(placed.call_id)
        return Answer(202, {"callId": placed.call_id, "statusUri": uri}, {"Location": uri})

    if key is None:
        return await attempt()
    return await idempotency.run(keys, key, idempotency.fingerprint(route, data), attempt, now=now, ttl=key_ttl)


# --- placing the call ----------------------------------------------------------------------------------


class SessionSink(Protocol):
    """Where the call's session runs: functions/calls.py `DurableEventSink` (calling.webhook.CallEventSink)."""

    async def start(self, call_id: str, session: Mapping[str, Any]) -> None: ...

    async def deliver(self, call_id: str, notifications: list[Mapping[str, Any]]) -> bool: ...


@dataclass(frozen=True)
class Placed:
    call_id: str
    flow: str
    tenant_id: str


async def place(request: Outbound, *, control: CallControl, flows: FlowLibrary, sink: SessionSink,
                now: datetime, app_id: str) -> Placed:
    """Open the flow, ask Graph for the call, start its session.

    Raises NotPlaced (the flow hung up first), BadRequest (the flow starts with something only an incoming
    call can do), GraphError (Graph refused the call) or SessionNotStarted.
    """
    bundle = flows.bundle(request.flow)
    opening = open_call(bundle, caller=request.caller_fact(app_id), called=request.called_fact, at=now,
                        established=False)
    leaving = opening.leaving
    if isinstance(leaving, c.HangUp):
        raise NotPlaced(f"flow {request.flow!r} hung up before the call was placed (reason {leaving.reason!r})")
    if isinstance(leaving, c.Redirect | c.HandOff):
        raise BadRequest([f"flow {request.flow!r} starts with a {type(leaving).__name__.lower()}, which only an "
                          "incoming call that is not answered yet can do"])
    with telemetry.correlation(tenant_id=control.tenant_id):
        info = await _create(request, control, bundle, await flows.prompts_url())
        with telemetry.correlation(call_id=info.id):
            session = Session(info.id, control.tenant_id, request.flow, opening.state, list(opening.commands),
                              snapshot=snapshot(bundle))
            try:
                await sink.start(info.id, session.to_json())
            except Exception as exc:
                log.exception("starting the outbound call's session failed: hanging the call up")
                await _hang_up_quietly(control, info.id)
                raise SessionNotStarted(str(exc)) from exc
            telemetry.emit("call.placed", flow=request.flow, target_kind=_kind(request))
            await reconcile(info.id, control=control, sink=sink)
    return Placed(info.id, request.flow, control.tenant_id)


async def _create(request: Outbound, control: CallControl, bundle: Bundle, base_url: str) -> CallInfo:
    media = prefetch(bundle, base_url)
    try:
        if isinstance(request, JoinMeeting):
            return await control.join_meeting(request.meeting, media=media)
        if request.target.kind == "phone" and request.source is not None and request.subject is None:
            return await control.call_phone(request.target, from_instance=request.source, media=media)
        if request.source is None:
            return await control.call_teams_user(request.target, media=media, subject=request.subject)
        # A Teams user called from the resource account, or a subject on a phone call: the shape they share.
        return await control.create_call([request.target], source=request.source, media=media,
                                         subject=request.subject)
    except GraphError as exc:
        log.warning("placing the call failed: %s", exc)
        telemetry.emit("call.place_failed", flow=request.flow, target_kind=_kind(request), status=exc.status,
                       code=exc.code, error=exc.message, request_id=exc.request_id,
                       client_request_id=exc.client_request_id)
        raise


def _kind(request: Outbound) -> str:
    return "meeting" if isinstance(request, JoinMeeting) else request.target.kind


async def reconcile(call_id: str, *, control: CallControl, sink: SessionSink) -> None:
    """Feed the session the call's state once, in case Graph's notification beat the session's start.

    Graph answers the create request before the call rings, and a phone rings for seconds, so the session
    is nearly always there first; a meeting join or an auto-answering endpoint could be faster. A call
    already established (or already gone) is told to the session as Graph would have told it; a
    duplicate of a notification that did arrive changes nothing in the engine.
    """
    try:
        info = await control.get_call(call_id)
    except GraphError as exc:
        if exc.status != 404:
            log.info("checking the new call's state failed (%s); its notifications will tell", exc)
            return
        await _deliver(sink, call_id, {"@odata.type": "#microsoft.graph.call", "id": call_id, "state": "terminated",
                                       "resultInfo": {"code": 404, "subcode": 0, "message": "The call is gone."}},
                       "deleted")
        return
    if (info.state or "").lower() in ("established", "terminated"):
        resource = dict(info.raw)
        resource.setdefault("@odata.type", "#microsoft.graph.call")
        await _deliver(sink, call_id, resource, "deleted" if info.state == "terminated" else "updated")


async def _deliver(sink: SessionSink, call_id: str, resource: Mapping[str, Any], change: str) -> None:
    notification = {"@odata.type": "#microsoft.graph.commsNotification", "changeType": change,
                    "resourceUrl": f"/communications/calls/{call_id}", "resourceData": dict(resource)}
    try:
        await sink.deliver(call_id, [notification])
    except Exception:  # the session still has its notifications and guard timers; nothing to fail here
        log.exception("telling the session the call's state failed")


async def _hang_up_quietly(control: CallControl, call_id: str) -> None:
    try:
        await control.hang_up(call_id)
    except GraphError as exc:
        log.warning("hanging up the call whose session did not start failed: %s", exc)


def graph_failure(exc: GraphError) -> tuple[int, dict[str, Any]]:
    """Graph refused a request made for the caller: 502 with what Microsoft support asks for.

    A 404 on an existing call's action means the call is gone (404 to our caller); Graph's 429 stays
    retryable for our caller too (503), and so does a 503, except for createCall: Graph may have placed a
    call it answered 503, so that is a 502 like any other failure that may have done the work.
    """
    if exc.status == 404 and exc.action != "createCall":
        return 404, {"error": "not_found", "reason": "Graph has no such call (it ended, or never existed)"}
    retry = exc.status == 429 or (exc.status == 503 and exc.action != "createCall")
    status = 503 if retry else 502
    return status, {"error": "graph_error", "reason": f"Graph refused {exc.action}",
                    "graph": {k: v for k, v in exc.as_dict().items() if v is not None}}


# --- status and hang-up --------------------------------------------------------------------------------


def status_view(call_id: str, *, runtime_status: str | None, custom_status: Any, created: datetime | None,
                updated: datetime | None, output: Any) -> dict[str, Any]:
    """A call's session as the status endpoint shows it: where the flow is, and how it ended.

    customStatus is `{"node", "phase", "flow"}` (set after each step by the orchestration); output, when
    the session completed, is `{"node", "left"}`: the node the call ended in and how the bot left it.
    """
    return {"callId": call_id, "runtimeStatus": runtime_status, "customStatus": _json_value(custom_status),
            "createdTime": created.isoformat() if created else None,
            "lastUpdatedTime": updated.isoformat() if updated else None, "output": _json_value(output)}


def session_tenant(session_input: Any) -> str | None:
    """The tenant a call's session acts for (its orchestration input), to hang up with that tenant's token."""
    try:
        return Session.from_json(session_input).tenant_id or None
    except (ValueError, KeyError, TypeError):
        return None


def check_call_id(value: str) -> str:
    """A call id from a URL path: Graph ids are GUID-like; anything with path characters is refused."""
    if not is_graph_id(value):
        raise BadRequest([f"not a call id: {value[:130]!r}"])
    return value


def _json_value(value: Any) -> Any:
    """The Durable client hands JSON values through as JSON text; show them as JSON, not strings in strings."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value
