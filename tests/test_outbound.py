"""Outbound requests: every problem named at once (400 reasons), the call placed with the right identities
and prefetched prompts, the session opened waiting for the call, and the race with Graph's first
notifications closed. Graph is the loopback stub; request bodies are checked against Graph's schema."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from calling import outbound
from calling.errors import GraphError
from calling.flows import events as e
from calling.flows.harness import write_flows
from calling.graph import CallControl
from calling.identities import MeetingId, MeetingJoin
from calling.session import FlowLibrary, Session, translate
from simulator.openapi import validate_request
from tests.stubs import APP_ID, TENANT_ID, LoopbackServer, graph_error

INSTANCE = "1a5ace00-0000-4000-8000-0000000001a5"
USER = "6e1c7b52-3d4f-4a8e-9b21-0c5d7e8f9a10"
THREAD = "19:meeting_NjQ1YzA@thread.v2"
JOIN_URL = ("https://teams.microsoft.com/l/meetup-join/19%3ameeting_NjQ1YzA%40thread.v2/0?context="
            "%7b%22Tid%22%3a%22" + TENANT_ID + "%22%2c%22Oid%22%3a%22" + USER + "%22%7d")
NOW = datetime(2026, 3, 3, 18, 0, tzinfo=UTC)  # a Tuesday, 10:00 in Seattle

FLOWS = {
    "greet.yaml": "version: 1\nnodes:\n  hello: {type: play, prompt: prompts/hello.wav, next: bye}\n"
                  "  bye: {type: hangup}\n",
    "office.yaml": "version: 1\nnodes:\n  hours:\n    type: hours\n    timezone: America/Los_Angeles\n"
                   "    weekly: {mon-fri: '08:00-17:00'}\n    open: hello\n    closed: closed\n"
                   "  hello: {type: play, prompt: prompts/hello.wav, next: bye}\n"
                   "  bye: {type: hangup}\n  closed: {type: hangup, reason: closed}\n",
    "forward.yaml": "version: 1\nnodes:\n  away: {type: redirect, targets: ['+14255550111']}\n",
    "broken.yaml": "version: 1\nnodes:\n  hello: {type: play, prompt: prompts/hello.wav, next: nowhere}\n",
}


@pytest.fixture
def flows(tmp_path: Path) -> FlowLibrary:
    write_flows(tmp_path, FLOWS)
    return FlowLibrary(tmp_path, "https://bot.example.com/api/prompts")


def reasons(action: Any) -> list[str]:
    with pytest.raises(outbound.BadRequest) as info:
        action()
    assert info.value.body() == {"error": "bad_request", "reasons": info.value.reasons}
    return info.value.reasons


def place_call(body: Any, flows: FlowLibrary, default_instance: str | None = None) -> outbound.PlaceCall:
    return outbound.parse_place_call(body, flows=flows, default_instance=default_instance)


# --- reading the body --------------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "reason"), [
    (b"", "body is empty; send a JSON object"),
    (b"{to: 1}", "body is not JSON: Expecting property name enclosed in double quotes at line 1 column 2"),
    (b"\xff\xfe", "body is not UTF-8 text"),
    (b"{" + b" " * outbound.MAX_BODY_BYTES + b"}", f"body exceeds {outbound.MAX_BODY_BYTES} bytes"),
])
def test_a_body_that_is_not_json_is_a_400_with_the_reason(raw: bytes, reason: str) -> None:
    assert reasons(lambda: outbound.read_json(raw)) == [reason]


def test_a_body_that_is_not_an_object_says_what_it_should_be(flows: FlowLibrary) -> None:
    assert reasons(lambda: place_call(["+14255550100"], flows)) == [
        "body must be a JSON object with to, flow, from_instance, subject"]


# --- placing a call ----------------------------------------------------------------------------------


def test_a_phone_call_from_the_configured_instance(flows: FlowLibrary) -> None:
    request = place_call({"to": "+14255550100", "flow": "greet"}, flows, default_instance=INSTANCE)
    assert (request.target.kind, request.target.id, request.flow) == ("phone", "+14255550100", "greet")
    assert request.source is not None and (request.source.kind, request.source.id) == ("applicationInstance",
                                                                                       INSTANCE)
    assert (request.caller_fact(APP_ID), request.called_fact) == (f"instance:{INSTANCE}", "+14255550100")


def test_from_instance_in_the_request_wins_over_the_setting(flows: FlowLibrary) -> None:
    other = "2b7d9c41-8e5a-4f36-a1c2-3d4e5f607182"
    request = place_call({"to": "+14255550100", "flow": "greet.yaml", "from_instance": other.upper()}, flows,
                         default_instance=INSTANCE)
    assert request.source is not None and request.source.id == other
    assert request.flow == "greet"


def test_a_teams_user_is_called_by_the_bot_itself_without_an_instance(flows: FlowLibrary) -> None:
    request = place_call({"to": f"user:{USER.upper()}", "flow": "greet", "subject": " Reminder "}, flows)
    assert (request.target.kind, request.target.id, request.source, request.subject) == (
        "user", USER, None, "Reminder")
    assert (request.caller_fact(APP_ID), request.called_fact) == (f"app:{APP_ID}", f"user:{USER}")


def test_a_phone_target_without_any_instance_is_refused(flows: FlowLibrary) -> None:
    assert reasons(lambda: place_call({"to": "+14255550100", "flow": "greet"}, flows)) == [
        "calling a phone number needs an application instance (a resource account with a phone number): "
        "give from_instance, or set BOT_INSTANCE_ID"]


def test_every_problem_is_named_at_once(flows: FlowLibrary) -> None:
    found = reasons(lambda: place_call({"to": "555-0100", "flow": "../secrets", "from_instance": "main line",
                                        "subject": 7, "priority": "high", "callback": "x"}, flows))
    assert found == [
        "unknown key 'callback' (expected: to, flow, from_instance, subject)",
        "unknown key 'priority' (expected: to, flow, from_instance, subject)",
        "to must be a phone number (+E164) or user:<Entra object id>, got '555-0100'",
        "flow must be a flow's name (letters, digits, - _ . and / between folders), got '../secrets'",
        "from_instance must be the object id (a GUID) of an application instance, got 'main line'",
        "subject must be a non-empty string of at most 256 characters",
    ]


@pytest.mark.parametrize(("body", "reason"), [
    ({"flow": "greet"}, "to is required: a phone number (+E164, like +14255550100) or user:<Entra object id>"),
    ({"to": 14255550100, "flow": "greet"}, "to must be a string (+E164 or user:<Entra object id>), got 14255550100"),
    ({"to": "+1425555010000000", "flow": "greet"}, "to: a phone number must be E.164"),
    ({"to": "user:adele", "flow": "greet"}, "to: a Teams user is user:<Entra object id, a GUID>, got 'user:adele'"),
    ({"to": f"instance:{INSTANCE}", "flow": "greet"}, "to must be a phone number (+E164) or user:<Entra object id>"),
    ({"to": f"user:{USER}"}, "flow is required: the name of a flow file in the flows folder, without .yaml"),
    ({"to": f"user:{USER}", "flow": "nope"}, "flow 'nope' does not exist (no nope.yaml in the flows folder)"),
    ({"to": f"user:{USER}", "flow": "broken"}, "flow 'broken' is invalid: broken.yaml:3:"),
    ({"to": f"user:{USER}", "flow": "/etc/passwd"}, "flow must be a flow's name"),
    ({"to": f"user:{USER}", "flow": "greet", "subject": "x" * 257}, "subject must be a non-empty string"),
])
def test_each_bad_field_is_a_reason(flows: FlowLibrary, body: dict[str, Any], reason: str) -> None:
    found = reasons(lambda: place_call(body, flows, default_instance=INSTANCE))
    assert len(found) == 1 and found[0].startswith(reason), found


def test_an_invalid_flow_reports_its_own_errors_without_server_paths(flows: FlowLibrary) -> None:
    found = reasons(lambda: place_call({"to": f"user:{USER}", "flow": "broken"}, flows))
    assert "nowhere" in found[0] and str(flows.folder) not in found[0]


# --- joining a meeting -------------------------------------------------------------------------------


def test_a_meeting_from_its_join_url(flows: FlowLibrary) -> None:
    request = outbound.parse_join_meeting({"join_url": JOIN_URL, "flow": "greet"}, flows=flows)
    assert isinstance(request.meeting, MeetingJoin)
    assert (request.meeting.thread_id, request.meeting.organizer_id) == (THREAD, USER)
    assert (request.caller_fact(APP_ID), request.called_fact) == (f"app:{APP_ID}", f"meeting:{THREAD}")


def test_a_meeting_from_its_id_and_passcode(flows: FlowLibrary) -> None:
    request = outbound.parse_join_meeting({"meeting_id": "123 456 789 012", "passcode": "Ab3dE", "flow": "greet"},
                                          flows=flows)
    assert request.meeting == MeetingId("123456789012", "Ab3dE")
    assert request.called_fact == "meeting:123456789012"


@pytest.mark.parametrize(("body", "expected"), [
    ({"flow": "greet"}, ["join_url (the meeting's https://teams.microsoft.com/l/meetup-join/... link) or "
                         "meeting_id (its numeric join id, with passcode) is required"]),
    ({"join_url": JOIN_URL, "meeting_id": "123456789", "flow": "greet"},
     ["give either join_url or meeting_id (with its passcode), not both"]),
    ({"join_url": "https://example.com/meet", "flow": "greet"},
     ["join_url: not a Teams meeting join URL: 'https://example.com/meet'"]),
    ({"join_url": "https://teams.microsoft.com/meet/123?p=abc", "flow": "greet"},
     ["join_url: join URL has no /l/meetup-join/<thread>/<message> part; short links cannot be joined directly: "
      "use the meeting's joinMeetingId and passcode"]),
    ({"join_url": JOIN_URL, "passcode": "x", "flow": "greet"},
     ["passcode goes with meeting_id; a join_url needs none"]),
    ({"meeting_id": "12-34", "flow": "greet"}, ["meeting_id: joinMeetingId must be digits, got '12-34'"]),
    ({"meeting_id": True, "flow": "greet"},
     ["meeting_id must be the meeting's numeric join id as a string, got True"]),
    ({"meeting_id": "123456789", "passcode": "", "flow": "greet"}, ["passcode must be a non-empty string"]),
    ({"join_url": JOIN_URL, "flow": "missing", "to": "+14255550100"},
     ["unknown key 'to' (expected: join_url, meeting_id, passcode, flow)",
      "flow 'missing' does not exist (no missing.yaml in the flows folder)"]),
])
def test_bad_meeting_requests_name_every_problem(flows: FlowLibrary, body: dict[str, Any],
                                                 expected: list[str]) -> None:
    assert reasons(lambda: outbound.parse_join_meeting(body, flows=flows)) == expected


# --- placing: Graph, the session, the race -----------------------------------------------------------


class Sink:
    """Plays functions/calls.py DurableEventSink: records what the session would get."""

    def __init__(self, *, fail: bool = False) -> None:
        self.started: dict[str, Mapping[str, Any]] = {}
        self.delivered: list[tuple[str, list[Mapping[str, Any]]]] = []
        self.fail = fail

    async def start(self, call_id: str, session: Mapping[str, Any]) -> None:
        if self.fail:
            raise RuntimeError("task hub unavailable")
        self.started[call_id] = session

    async def deliver(self, call_id: str, notifications: list[Mapping[str, Any]]) -> bool:
        self.delivered.append((call_id, notifications))
        return call_id in self.started


def created(server: LoopbackServer) -> Any:
    [request] = [r for r in server.graph_requests() if r.method == "POST" and r.path.endswith("/communications/calls")]
    assert validate_request("POST", "/communications/calls", request.json) == []
    return request.json


def still_establishing(server: LoopbackServer) -> None:
    server.script("GET", "", lambda r: web.json_response({"@odata.type": "#microsoft.graph.call",
                                                          "id": r.path.rsplit("/", 1)[-1], "state": "establishing"}))


async def test_a_phone_call_is_placed_from_the_instance_and_its_session_waits_for_the_call(
        server: LoopbackServer, control: CallControl, flows: FlowLibrary) -> None:
    still_establishing(server)
    sink = Sink()
    request = place_call({"to": "+14255550100", "flow": "greet"}, flows, default_instance=INSTANCE)
    placed = await outbound.place(request, control=control, flows=flows, sink=sink, now=NOW, app_id=APP_ID)
    body = created(server)
    assert body["targets"][0]["identity"] == {"phone": {"@odata.type": "#microsoft.graph.identity",
                                                        "id": "+14255550100"}}
    assert body["source"]["identity"]["applicationInstance"]["id"] == INSTANCE
    [prefetched] = body["mediaConfig"]["preFetchMedia"]
    assert prefetched["uri"].startswith("https://bot.example.com/api/prompts/prompts/hello.wav?v=")
    session = Session.from_json(sink.started[placed.call_id])
    assert (session.call_id, session.tenant_id, session.flow) == (placed.call_id, TENANT_ID, "greet")
    assert (session.state.phase, session.state.stage, session.state.established) == ("running", "await_call", False)
    assert (session.state.caller, session.state.called) == (f"instance:{INSTANCE}", "+14255550100")
    assert sink.delivered == []  # still establishing: Graph's notifications will tell


async def test_a_teams_user_with_an_instance_and_a_subject(server: LoopbackServer, control: CallControl,
                                                           flows: FlowLibrary) -> None:
    still_establishing(server)
    request = place_call({"to": f"user:{USER}", "flow": "greet", "subject": "Your appointment"}, flows,
                         default_instance=INSTANCE)
    await outbound.place(request, control=control, flows=flows, sink=Sink(), now=NOW, app_id=APP_ID)
    body = created(server)
    assert body["targets"][0]["identity"]["user"]["id"] == USER
    assert body["source"]["identity"]["applicationInstance"]["id"] == INSTANCE
    assert body["subject"] == "Your appointment"


async def test_a_meeting_join_names_the_meeting(server: LoopbackServer, control: CallControl,
                                                flows: FlowLibrary) -> None:
    still_establishing(server)
    sink = Sink()
    request = outbound.parse_join_meeting({"join_url": JOIN_URL, "flow": "greet"}, flows=flows)
    placed = await outbound.place(request, control=control, flows=flows, sink=sink, now=NOW, app_id=APP_ID)
    body = created(server)
    assert body["chatInfo"]["threadId"] == THREAD
    assert body["meetingInfo"]["organizer"]["user"]["id"] == USER
    assert Session.from_json(sink.started[placed.call_id]).state.called == f"meeting:{THREAD}"


async def test_a_call_established_before_its_session_started_is_told_to_the_session(
        server: LoopbackServer, control: CallControl, flows: FlowLibrary) -> None:
    sink = Sink()  # the stub's GET says the call is already established
    request = place_call({"to": "+14255550100", "flow": "greet"}, flows, default_instance=INSTANCE)
    placed = await outbound.place(request, control=control, flows=flows, sink=sink, now=NOW, app_id=APP_ID)
    [(call_id, notifications)] = sink.delivered
    assert call_id == placed.call_id
    state = Session.from_json(sink.started[call_id]).state
    assert [type(x) for x in translate(notifications, state, NOW)] == [e.CallEstablished]


async def test_a_call_already_gone_is_told_to_the_session_as_ended(server: LoopbackServer, control: CallControl,
                                                                   flows: FlowLibrary) -> None:
    server.script("GET", "", lambda r: graph_error(404, "itemNotFound", "Call not found"))
    sink = Sink()
    request = place_call({"to": "+14255550100", "flow": "greet"}, flows, default_instance=INSTANCE)
    placed = await outbound.place(request, control=control, flows=flows, sink=sink, now=NOW, app_id=APP_ID)
    [(_, notifications)] = sink.delivered
    events = translate(notifications, Session.from_json(sink.started[placed.call_id]).state, NOW)
    assert [type(x) for x in events] == [e.CallEnded]


async def test_a_flow_that_hangs_up_first_places_no_call(server: LoopbackServer, control: CallControl,
                                                         flows: FlowLibrary) -> None:
    request = place_call({"to": "+14255550100", "flow": "office"}, flows, default_instance=INSTANCE)
    evening = datetime(2026, 3, 4, 4, 0, tzinfo=UTC)
    with pytest.raises(outbound.NotPlaced) as info:
        await outbound.place(request, control=control, flows=flows, sink=Sink(), now=evening, app_id=APP_ID)
    assert (info.value.status, info.value.body()) == (409, {
        "error": "not_placed", "reason": "flow 'office' hung up before the call was placed (reason 'closed')"})
    assert server.graph_requests() == []


async def test_a_flow_that_starts_with_a_redirect_cannot_place_a_call(server: LoopbackServer, control: CallControl,
                                                                      flows: FlowLibrary) -> None:
    request = place_call({"to": "+14255550100", "flow": "forward"}, flows, default_instance=INSTANCE)
    with pytest.raises(outbound.BadRequest) as info:
        await outbound.place(request, control=control, flows=flows, sink=Sink(), now=NOW, app_id=APP_ID)
    assert info.value.reasons == ["flow 'forward' starts with a redirect, which only an incoming call that is not "
                                  "answered yet can do"]
    assert server.graph_requests() == []


async def test_graph_refusing_the_call_is_a_502_with_its_ids(server: LoopbackServer, control: CallControl,
                                                             flows: FlowLibrary) -> None:
    server.script("POST", "/communications/calls",
                  lambda r: graph_error(403, "Forbidden", "Calls.Initiate.All is not granted", request_id="req-9"))
    request = place_call({"to": "+14255550100", "flow": "greet"}, flows, default_instance=INSTANCE)
    with pytest.raises(GraphError) as info:
        await outbound.place(request, control=control, flows=flows, sink=Sink(), now=NOW, app_id=APP_ID)
    status, body = outbound.graph_failure(info.value)
    assert status == 502 and body["error"] == "graph_error"
    assert body["graph"]["status"] == 403 and body["graph"]["request_id"] == "req-9"


async def test_a_session_that_cannot_start_hangs_the_call_up(server: LoopbackServer, control: CallControl,
                                                             flows: FlowLibrary) -> None:
    request = place_call({"to": "+14255550100", "flow": "greet"}, flows, default_instance=INSTANCE)
    with pytest.raises(outbound.SessionNotStarted) as info:
        await outbound.place(request, control=control, flows=flows, sink=Sink(fail=True), now=NOW, app_id=APP_ID)
    assert info.value.status == 503 and info.value.body()["error"] == "session_not_started"
    assert [r.method for r in server.graph_requests()] == ["POST", "DELETE"]


# --- status, hang-up, call ids -----------------------------------------------------------------------


def test_graph_failures_for_an_existing_call() -> None:
    assert outbound.graph_failure(GraphError("hangUp", 404, "itemNotFound", "gone"))[0] == 404
    assert outbound.graph_failure(GraphError("createCall", 404, "itemNotFound", "no such instance"))[0] == 502
    assert outbound.graph_failure(GraphError("hangUp", 429, "TooManyRequests", "slow down"))[0] == 503
    status, body = outbound.graph_failure(GraphError("hangUp", None, "transportError", "connection reset"))
    assert status == 502 and body["graph"] == {"action": "hangUp", "code": "transportError",
                                               "message": "connection reset"}


def test_status_view_shows_json_values_as_json() -> None:
    created_at = datetime(2026, 3, 3, 18, 0, tzinfo=UTC)
    view = outbound.status_view("c1", runtime_status="Completed", custom_status='{"node": "bye"}',
                                created=created_at, updated=None, output={"node": "bye", "left": "hangup"})
    assert view == {"callId": "c1", "runtimeStatus": "Completed", "customStatus": {"node": "bye"},
                    "createdTime": "2026-03-03T18:00:00+00:00", "lastUpdatedTime": None,
                    "output": {"node": "bye", "left": "hangup"}}
    assert json.loads(json.dumps(view)) == view


def test_the_session_tenant_is_read_from_the_orchestration_input(flows: FlowLibrary) -> None:
    from calling.flows import State

    session = Session("c1", TENANT_ID, "greet", State()).to_json()
    assert outbound.session_tenant(session) == TENANT_ID
    assert outbound.session_tenant(json.dumps(session)) == TENANT_ID
    assert outbound.session_tenant(None) is None
    assert outbound.session_tenant("not json") is None


@pytest.mark.parametrize("value", ["", "a/b", "x?y=1", "../calls", "c" * 129, "a b"])
def test_call_ids_with_path_characters_are_refused(value: str) -> None:
    assert reasons(lambda: outbound.check_call_id(value))[0].startswith("not a call id")


def test_graph_call_ids_are_accepted() -> None:
    assert outbound.check_call_id("491f0b00-ffff-4e1c-9d0e-3c1b2a3f4e5d") == "491f0b00-ffff-4e1c-9d0e-3c1b2a3f4e5d"


# --- the transcript: a session's timeline from its orchestration history -----------------------------


def test_the_timeline_reads_the_history_like_a_call() -> None:
    from calling.session_log import timeline

    def action(command: dict[str, Any]) -> str:  # the activity input as history keeps it: JSON in JSON
        return json.dumps(json.dumps({"call_id": "c1", "tenant_id": TENANT_ID, "flow": "greet", "command": command}))

    def raised(*resources: dict[str, Any]) -> str:
        return json.dumps(json.dumps({"notifications": [
            {"@odata.type": "#microsoft.graph.commsNotification", "changeType": change,
             "resourceUrl": "/communications/calls/c1" + suffix, "resourceData": data}
            for change, suffix, data in resources]}))

    tone = {"@odata.type": "#microsoft.graph.call", "id": "c1", "state": "established",
            "toneInfo": {"@odata.type": "#microsoft.graph.toneInfo", "sequenceId": 1, "tone": "tone2"}}
    ended = {"@odata.type": "#microsoft.graph.call", "id": "c1", "state": "terminated",
             "resultInfo": {"code": 200, "subcode": 540000, "message": "Call ended by PSTN user."}}
    played = {"@odata.type": "#microsoft.graph.playPromptOperation", "id": "op1", "status": "completed",
              "clientContext": "play-1"}
    history = [
        {"EventType": "ExecutionStarted", "Timestamp": "t0", "FunctionName": "call_session"},
        {"EventType": "TaskCompleted", "Timestamp": "t1", "FunctionName": "call_action",
         "Input": action({"type": "Play", "ref": "play-1", "prompts": ["prompts/hello.wav"]}),
         "Result": {"ok": True, "operation": "op1"}},
        {"EventType": "EventRaised", "Timestamp": "t2", "Name": "graph_notification",
         "Input": raised(("deleted", "/operations/op1", played), ("updated", "", tone))},
        {"EventType": "TaskCompleted", "Timestamp": "t3", "FunctionName": "call_action",
         "Input": action({"type": "Transfer", "ref": "transfer-2", "target": "+14255550111", "mode": "blind",
                          "ring_timeout": 30}),
         "Result": json.dumps({"ok": False, "status": 403, "code": "Forbidden"})},
        {"EventType": "TaskFailed", "Timestamp": "t4", "FunctionName": "call_action",
         "Input": action({"type": "KeepAlive"})},
        {"EventType": "TaskCompleted", "Timestamp": "t5", "FunctionName": "something_else"},
        {"EventType": "TimerFired", "Timestamp": "t6"},
        "not an event",
        {"EventType": "EventRaised", "Timestamp": "t7", "Name": "graph_notification",
         "Input": raised(("deleted", "", ended))},
        {"EventType": "ExecutionCompleted", "Timestamp": "t8", "OrchestrationStatus": "Completed"},
    ]
    assert timeline(history) == [
        {"at": "t0", "event": "session started"},
        {"at": "t1", "event": "play prompts/hello.wav"},
        {"at": "t2", "event": "playPrompt completed"},
        {"at": "t2", "event": "caller pressed 2"},
        {"at": "t3", "event": "transfer to +14255550111 (blind): refused (403 Forbidden)"},
        {"at": "t4", "event": "keep alive: failed after retries"},
        {"at": "t6", "event": "timer fired"},
        {"at": "t7", "event": "call terminated (200/540000 Call ended by PSTN user.)"},
        {"at": "t8", "event": "session completed"},
    ]
