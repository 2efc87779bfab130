"""The webhook through the function registered on the app (app.get_functions()), with real tokens, a
loopback Graph stub and the Durable management API stub: assertions are on the requests that arrive."""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
from aiohttp import web

import function_app
from calling.handoff import HandoffExpired, HandoffFailed, InProcessTransport
from functions import runtime
from simulator.openapi import validate_request
from tests import graph_examples
from tests.graph_examples import example
from tests.stubs import (
    APP_ID,
    OTHER_TENANT,
    TENANT_ID,
    LoopbackServer,
    Signer,
    call_update,
    envelope,
    graph_error,
    incoming_call,
)

Post = Callable[..., Awaitable[func.HttpResponse]]


@functools.cache
def _calls_function() -> Callable[..., Awaitable[func.HttpResponse]]:
    """get_functions() indexes the app and may run once per process, as in the Functions host."""
    [fn] = [f for f in function_app.app.get_functions() if f.get_function_name() == "calls"]
    user: Callable[..., Awaitable[func.HttpResponse]] = fn.get_user_function()
    return user


@pytest.fixture
def env(server: LoopbackServer, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    values = {
        "BOT_APP_ID": APP_ID,
        "BOT_TENANT_ID": TENANT_ID,
        "BOT_PUBLIC_URL": "https://bot.example.com",
        "CALLING_OPENID_CONFIG_URL": server.openid_url,
        "GRAPH_BASE_URL": server.graph_url,
    }
    for key in ("BOT_ALLOWED_TENANTS", "ROUTING_POLICY_PATH", "MEDIA_HANDOFF_TRANSPORT", "WEBHOOK_MAX_BODY_BYTES",
                "GRAPH_CREDENTIAL", "BOT_CLIENT_SECRET", "BOT_CERTIFICATE_PATH", "BOT_MANAGED_IDENTITY_CLIENT_ID",
                "APPLICATIONINSIGHTS_CONNECTION_STRING"):
        monkeypatch.delenv(key, raising=False)
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return values


@pytest.fixture
async def post(server: LoopbackServer, signer: Signer, env: dict[str, str]) -> AsyncIterator[Post]:
    runtime.reset()
    binding = json.dumps({"taskHubName": "hub", "creationUrls": {}, "managementUrls": {},
                          "rpcBaseUrl": f"{server.url}/durabletask/", "baseUrl": f"{server.url}/runtime"})
    handler = _calls_function()

    async def send(body: bytes | dict[str, Any], *, token: str | None = "default",
                   headers: dict[str, str] | None = None, session: str | None = None) -> func.HttpResponse:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        h = {"Content-Type": "application/json", "Scenario-ID": "scenario-7",
             "X-Microsoft-Skype-Chain-ID": "chain-7", **(headers or {})}
        if token is not None:
            h["Authorization"] = f"Bearer {signer.token() if token == 'default' else token}"
        url = "http://localhost/api/calls" + (f"/{session}" if session is not None else "")
        req = func.HttpRequest(method="POST", url=url, headers=h, body=raw,
                               route_params={"session": session} if session is not None else {})
        return await handler(req=req, client=binding)

    yield send
    runtime.reset()


def body_of(response: func.HttpResponse) -> Any:
    return json.loads(response.get_body()) if response.get_body() else None


def answers(server: LoopbackServer) -> list[Any]:
    return [r for r in server.graph_requests() if r.path.endswith("/answer")]


async def test_incoming_call_is_answered_inline(server: LoopbackServer, post: Post) -> None:
    response = await post(envelope(incoming_call("call-1")))
    assert response.status_code == 202
    [answer] = answers(server)
    assert answer.path == "/v1.0/communications/calls/call-1/answer"
    body = answer.json
    assert body["callbackUri"] == "https://bot.example.com/api/calls"
    assert body["acceptedModalities"] == ["audio"]
    media = body["mediaConfig"]
    assert media["@odata.type"] == "#microsoft.graph.serviceHostedMediaConfig"
    # the default flow's prompts are prefetched, served by the app itself, with content-hash versions
    uris = [m["uri"] for m in media["preFetchMedia"]]
    assert "https://bot.example.com/api/prompts/prompts/welcome.wav" in {u.split("?v=")[0] for u in uris}
    assert all("?v=" in u for u in uris)
    assert validate_request("POST", "/communications/calls/call-1/answer", body) == []


async def test_the_session_starts_before_the_answer(server: LoopbackServer, post: Post) -> None:
    await post(envelope(incoming_call("call-2")))
    paths = [r.path for r in server.requests if r.path.startswith(("/durabletask/", "/v1.0/"))]
    assert paths == ["/durabletask/orchestrators/call_session/call-2", "/v1.0/communications/calls/call-2/answer"]
    started = next(r for r in server.requests if r.path.startswith("/durabletask/orchestrators/")).json
    started = json.loads(started) if isinstance(started, str) else started  # the client JSON-encodes it twice
    assert started["call_id"] == "call-2" and started["flow"] == "main-menu"
    assert started["state"]["phase"] == "running"


async def test_duplicate_incoming_notification_answers_once(server: LoopbackServer, post: Post) -> None:
    first = await post(envelope(incoming_call("call-dup")))
    second = await post(envelope(incoming_call("call-dup")))
    assert (first.status_code, second.status_code) == (202, 202)
    assert len(answers(server)) == 1


async def test_graph_429_on_answer_is_retried_within_the_deadline(server: LoopbackServer, post: Post) -> None:
    count = {"n": 0}

    def throttle_once(_: Any) -> web.Response | None:
        count["n"] += 1
        return graph_error(429, "TooManyRequests", "throttled", retry_after="1") if count["n"] == 1 else None

    server.script("POST", "/answer", throttle_once)
    response = await post(envelope(incoming_call("call-429")))
    assert response.status_code == 202
    attempts = answers(server)
    assert len(attempts) == 2
    assert attempts[1].at - attempts[0].at >= 0.95


async def test_answer_failure_is_logged_not_500(server: LoopbackServer, post: Post,
                                                caplog: pytest.LogCaptureFixture) -> None:
    server.script("POST", "/answer", lambda r: graph_error(403, "Forbidden", "missing permission", request_id="r-9"))
    caplog.set_level(logging.INFO)
    response = await post(envelope(incoming_call("call-403")))
    assert response.status_code == 202
    [event] = [r for r in caplog.records if getattr(r, "event_name", None) == "call.action_failed"]
    assert (event.status, event.code, event.request_id, event.call_id) == (403, "Forbidden", "r-9", "call-403")


def write_policy(tmp_path: Path, text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "routing.yaml"
    path.write_text(text)
    monkeypatch.setenv("ROUTING_POLICY_PATH", str(path))


async def test_policy_rejects_anonymous_callers(server: LoopbackServer, post: Post, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    write_policy(tmp_path, "rules:\n  - name: no-anonymous\n    match: {caller: {anonymous: true}}\n"
                           "    action: reject\n    reason: forbidden\n", monkeypatch)
    anonymous = {"@odata.type": "#microsoft.graph.identitySet",
                 "encrypted": {"@odata.type": "#microsoft.graph.identity", "id": "opaque"}}
    response = await post(envelope(incoming_call("call-anon", source=anonymous), incoming_call("call-known")))
    assert response.status_code == 202
    paths = [(r.path, r.json) for r in server.graph_requests()]
    assert paths == [("/v1.0/communications/calls/call-anon/reject", {"reason": "forbidden"}),
                     ("/v1.0/communications/calls/call-known/answer", answers(server)[0].json)]


async def test_policy_redirects_by_number(server: LoopbackServer, post: Post, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    write_policy(tmp_path, "rules:\n  - name: overflow\n    match: {caller: {phone: '+1425555*'}}\n"
                           "    action: redirect\n    targets: ['+14255550111', 'user:agent-oid']\n"
                           "    timeout: 30\n", monkeypatch)
    await post(envelope(incoming_call("call-r")))
    [redirect] = server.graph_requests()
    assert redirect.path.endswith("/call-r/redirect")
    assert redirect.json == {"targets": [
        {"@odata.type": "#microsoft.graph.invitationParticipantInfo",
         "identity": {"phone": {"@odata.type": "#microsoft.graph.identity", "id": "+14255550111"}}},
        {"@odata.type": "#microsoft.graph.invitationParticipantInfo",
         "identity": {"user": {"@odata.type": "#microsoft.graph.identity", "id": "agent-oid"}}}], "timeout": 30}
    assert validate_request("POST", "/communications/calls/call-r/redirect", redirect.json) == []


RECORDING = {"inviteReasons": ["PolicyBasedRecording"], "policyIdentifier": "Test Policy",
             "mediaHostedRegion": "USEA"}


async def test_policy_recording_is_handed_off_not_answered(server: LoopbackServer, post: Post,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDIA_HANDOFF_TRANSPORT", "inprocess")
    notification = incoming_call("call-rec", bot_data=RECORDING)
    response = await post(envelope(notification))
    assert response.status_code == 202
    # Answered by the media VM, not here: the webhook only asks Graph whether the VM has (the stub says so).
    assert [(r.method, r.path) for r in server.graph_requests()] == [("GET", "/v1.0/communications/calls/call-rec")]
    transport = runtime.get().handoff
    assert isinstance(transport, InProcessTransport)
    message = await transport.receive(wait_seconds=1)
    assert message.call_id == "call-rec"
    assert message.tenant_id == TENANT_ID
    assert message.notification == notification
    assert message.decision["reason"] == "policy_recording"
    # The worker must answer by 3.25 s (5 s, less the 1 s margin, less 0.75 s for a reject if none does).
    assert (message.deadline - message.received_at).total_seconds() == pytest.approx(3.25, abs=0.01)
    assert (message.scenario_id, message.chain_id) == ("scenario-7", "chain-7")


async def test_handoff_without_a_transport_rejects_busy(server: LoopbackServer, post: Post) -> None:
    await post(envelope(incoming_call("call-rec", bot_data=RECORDING)))
    [reject] = server.graph_requests()
    assert (reject.path, reject.json) == ("/v1.0/communications/calls/call-rec/reject", {"reason": "busy"})


async def test_later_events_are_raised_on_the_calls_orchestration(server: LoopbackServer, post: Post) -> None:
    server.instances.update({"call-a", "call-b"})
    a1 = call_update("call-a", "established", mediaState={"audio": "active"})
    b1 = call_update("call-b", "terminating")
    a2 = {"changeType": "updated", "resourceUrl": "/communications/calls/call-a",
          "resourceData": {"@odata.type": "#microsoft.graph.call", "state": "established",
                           "toneInfo": {"tone": "tone2", "sequenceId": 1}}}
    response = await post(envelope(a1, b1, a2))
    assert response.status_code == 202
    raised = server.durable_requests()
    assert [r.path for r in raised] == ["/durabletask/instances/call-a/raiseEvent/graph_notification",
                                        "/durabletask/instances/call-b/raiseEvent/graph_notification"]
    # azure-functions-durable posts the event data JSON-encoded as a JSON string (its own wire format)
    assert json.loads(raised[0].json) == {"notifications": [a1, a2]}
    assert json.loads(raised[1].json) == {"notifications": [b1]}
    assert server.graph_requests() == []


async def test_a_second_calls_events_go_to_the_session_in_its_callback_path(server: LoopbackServer,
                                                                            post: Post) -> None:
    """A consultative transfer's second call reports on /api/calls/{caller's call id}."""
    server.instances.add("call-caller")
    update = call_update("call-second", "established", mediaState={"audio": "active"})
    response = await post(envelope(update), session="call-caller")
    assert response.status_code == 202
    [raised] = server.durable_requests()
    assert raised.path == "/durabletask/instances/call-caller/raiseEvent/graph_notification"
    assert json.loads(raised.json) == {"notifications": [update]}


@pytest.mark.parametrize("session", ["../x", "a b", "-leading", "x" * 65])
async def test_a_session_path_that_is_not_a_call_id_is_400(server: LoopbackServer, post: Post, session: str) -> None:
    response = await post(envelope(call_update("call-second", "established")), session=session)
    assert response.status_code == 400
    assert "session" in body_of(response)["reason"]
    assert server.durable_requests() == []


async def test_event_for_a_call_without_orchestration_is_dropped(server: LoopbackServer, post: Post,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    response = await post(envelope(call_update("call-orphan", "terminated",
                                               resultInfo={"code": 200, "subcode": 5001, "message": "ended"})))
    assert response.status_code == 202
    assert len(server.durable_requests()) == 1
    dropped = [r for r in caplog.records if "no orchestration runs this call" in r.getMessage()]
    assert dropped and dropped[0].call_id == "call-orphan"
    [ended] = [r for r in caplog.records if getattr(r, "event_name", None) == "call.terminated"]
    assert (ended.code, ended.subcode) == (200, 5001)


async def test_participant_joining_gets_a_joining_response(server: LoopbackServer, post: Post) -> None:
    joining = {"changeType": "created", "resourceUrl": "/communications/calls/call-rec",
               "resourceData": {"@odata.type": "#microsoft.graph.participantJoiningNotification",
                                "call": {"@odata.type": "#microsoft.graph.call", "id": "call-rec"}}}
    response = await post(envelope(joining))
    assert response.status_code == 200
    assert body_of(response) == {"@odata.type": "#microsoft.graph.inviteNewBotResponse",
                                 "inviteUri": "https://bot.example.com/api/calls"}


@pytest.mark.parametrize(("token", "status", "error"), [
    (None, 401, "unauthorized"),
    ("garbage", 401, "unauthorized"),
])
async def test_unauthenticated_requests(server: LoopbackServer, post: Post, token: str | None, status: int,
                                        error: str) -> None:
    response = await post(envelope(incoming_call("call-x")), token=token)
    assert response.status_code == status
    assert body_of(response)["error"] == error
    assert server.graph_requests() == []


async def test_forged_notification_changes_nothing(server: LoopbackServer, post: Post, signer: Signer) -> None:
    server.instances.add("call-1")
    forged = Signer(kid=signer.kid).token()
    for body in (envelope(incoming_call("call-1")), envelope(call_update("call-1", "terminated"))):
        response = await post(body, token=forged)
        assert response.status_code == 401
        assert body_of(response) == {"error": "unauthorized", "reason": "token signature is invalid"}
    assert server.graph_requests() == []
    assert server.durable_requests() == []


async def test_tenant_not_allowed_is_403(server: LoopbackServer, post: Post, signer: Signer) -> None:
    response = await post(envelope(incoming_call("call-t", tenant=OTHER_TENANT)), token=signer.token(tid=OTHER_TENANT))
    assert response.status_code == 403
    assert body_of(response)["error"] == "forbidden"
    assert server.graph_requests() == []


@pytest.mark.parametrize(("body", "reason"), [
    (b"{not json", "body is not JSON"),
    (b"[]", "JSON object"),
    (b'{"value": {}}', "'value' must be a list"),
    (json.dumps({"value": [{"changeType": "updated"}]}).encode(), "neither resourceUrl nor resource"),
])
async def test_malformed_bodies_are_400_with_a_reason(server: LoopbackServer, post: Post, body: bytes,
                                                      reason: str) -> None:
    response = await post(body)
    assert response.status_code == 400
    assert body_of(response)["error"] == "bad_request"
    assert reason in body_of(response)["reason"]


async def test_a_bad_notification_does_not_cost_the_rest_of_its_batch(server: LoopbackServer, post: Post,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    """Graph's documented incoming call (call-answer.md) beside a notification with no resourceUrl: the call
    is answered, the bad one is logged with its reason, and the answer is still a 2xx so Graph resends nothing."""
    incoming = example(graph_examples.ANSWER_INCOMING)["value"][0]
    broken = {"@odata.type": "#microsoft.graph.commsNotification", "changeType": "updated"}
    response = await post(json.dumps({"@odata.type": "#microsoft.graph.commsNotifications",
                                      "value": [broken, incoming]}).encode())
    assert response.status_code == 202
    assert body_of(response) == {"status": "accepted", "events": 1,
                                 "rejected": [{"index": 0, "reason": "value[0] has neither resourceUrl nor resource"}]}
    [answer] = answers(server)
    assert answer.path == "/v1.0/communications/calls/57DAB8B1894C409AB240BD8BEAE78896/answer"
    [logged] = [r for r in caplog.records if r.name == "calling.webhook" and "notification ignored" in r.getMessage()]
    assert logged.levelno == logging.WARNING
    assert "value[0] has neither resourceUrl nor resource" in logged.getMessage()


async def test_a_batch_with_nothing_usable_is_400_naming_every_problem(server: LoopbackServer, post: Post) -> None:
    response = await post(json.dumps({"value": [{"changeType": "updated"}, "updated"]}).encode())
    assert response.status_code == 400
    reason = body_of(response)["reason"]
    assert "value[0] has neither resourceUrl nor resource" in reason
    assert "value[1] must be an object" in reason
    assert server.graph_requests() == []


async def test_legacy_format_gets_204(server: LoopbackServer, post: Post) -> None:
    response = await post({"id": "x", "callState": "incoming", "participants": []})
    assert response.status_code == 204
    assert response.get_body() == b""


async def test_oversized_body_is_413(server: LoopbackServer, post: Post, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEBHOOK_MAX_BODY_BYTES", "1024")
    response = await post(envelope(*[incoming_call(f"c{i}") for i in range(5)]))
    assert response.status_code == 413
    assert body_of(response)["error"] == "payload_too_large"
    assert server.graph_requests() == []


async def test_not_configured_is_503_and_names_the_setting_in_the_log(post: Post, monkeypatch: pytest.MonkeyPatch,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.delenv("BOT_APP_ID")
    response = await post(envelope(incoming_call()))
    assert response.status_code == 503
    assert body_of(response)["error"] == "not_configured"
    assert "BOT_APP_ID is not set" in caplog.text


async def test_unexpected_failure_is_a_json_500(post: Post, monkeypatch: pytest.MonkeyPatch) -> None:
    async def boom(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("bug")

    monkeypatch.setattr(runtime.get().webhook, "handle", boom)
    response = await post(envelope(incoming_call()))
    assert response.status_code == 500
    assert body_of(response) == {"error": "internal", "reason": "unexpected error; see the logs"}
    assert b"Traceback" not in response.get_body()


async def test_milestones_carry_correlation_ids(server: LoopbackServer, post: Post,
                                                caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    await post(envelope(incoming_call("call-m")))
    events = {r.event_name: r for r in caplog.records if getattr(r, "event_name", None)}
    assert {"call.incoming", "call.answered"} <= events.keys()
    answered = events["call.answered"]
    assert (answered.call_id, answered.scenario_id, answered.chain_id, answered.tenant_id) == (
        "call-m", "scenario-7", "chain-7", TENANT_ID)
    assert answered.flow == "main-menu"
    assert 0 < answered.latency_ms < 15000
    assert getattr(answered, "microsoft.custom_event.name") == "call.answered"
    assert events["call.incoming"].caller == "+1425555****"


async def test_a_call_whose_flow_cannot_run_is_reported_rejected_not_answered(
        server: LoopbackServer, post: Post, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("DEFAULT_FLOW", "no-such-flow")
    runtime.reset()
    caplog.set_level(logging.INFO)
    await post(envelope(incoming_call("call-nf")))
    [reject] = server.graph_requests()
    assert (reject.path, reject.json) == ("/v1.0/communications/calls/call-nf/reject", {"reason": "busy"})
    events = [r.event_name for r in caplog.records if getattr(r, "event_name", None)]
    assert events == ["call.incoming", "call.flow_unavailable", "call.rejected"]


@pytest.mark.parametrize("call_id", ["call 1", "call%00", "call\ud800x", "call\U0001f4de", "a" * 65])
async def test_a_call_id_graph_would_never_send_reaches_neither_graph_nor_durable(
        server: LoopbackServer, post: Post, call_id: str) -> None:
    notification = incoming_call("call-ok")
    notification["resourceUrl"] = f"/communications/calls/{call_id}"
    notification["resourceData"]["id"] = call_id
    body = json.dumps({"value": [notification]}).encode("utf-8", "surrogatepass")
    response = await post(body)
    assert response.status_code == 400
    assert "is not a Graph call id" in body_of(response)["reason"]
    assert server.graph_requests() == [] and server.durable_requests() == []


def test_a_caller_id_cannot_forge_a_log_line() -> None:
    from calling.identities import Party
    from calling.webhook import mask

    assert mask(Party("user", "abc\nINFO forged line\ud800")) == "abc\\nINFO forged line\\ud800"
    assert mask(Party("phone", "+14255550123")) == "+1425555****"
    assert mask(Party("user", "6e1c7b52-3d4f-4a8e-9b21-0c5d7e8f9a10")) == "6e1c7b52-3d4f-4a8e-9b21-0c5d7e8f9a10"



def _still_ringing(server: LoopbackServer, call_id: str) -> None:
    server.script("GET", f"/communications/calls/{call_id}", lambda r: web.json_response(
        {"@odata.type": "#microsoft.graph.call", "id": call_id, "state": "incoming"}))


async def test_a_hand_off_no_worker_answers_is_rejected_inside_its_deadline(
        server: LoopbackServer, post: Post, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDIA_HANDOFF_TRANSPORT", "inprocess")  # nobody takes from it
    _still_ringing(server, "call-lonely")
    started = time.monotonic()
    await post(envelope(incoming_call("call-lonely", bot_data=RECORDING)))
    took = time.monotonic() - started
    methods = [(r.method, r.path.rsplit("/", 1)[-1]) for r in server.graph_requests()]
    assert methods[-1] == ("POST", "reject") and set(methods[:-1]) == {("GET", "call-lonely")}
    assert server.graph_requests()[-1].json == {"reason": "busy"}
    assert len(methods) - 1 == 8  # looks at 0.1, 0.3, 0.5 s, then each 0.5 s until 3.25 s in, then the reject
    assert took < 5  # rejected inside Graph's 5 s policy-recording window


async def test_a_non_recording_hand_off_no_worker_answers_takes_the_fallback_flow(
        server: LoopbackServer, post: Post, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MEDIA_HANDOFF_TRANSPORT", "inprocess")
    monkeypatch.setenv("MEDIA_FALLBACK_FLOW", "main-menu")
    write_policy(tmp_path, "rules:\n  - name: media\n    match: {caller: {phone: ['+1425555*']}}\n"
                           "    action: handoff\n    reason: transcription\n"
                           "default: {action: answer, flow: main-menu}\n",
                 monkeypatch)
    _still_ringing(server, "call-fb")
    await post(envelope(incoming_call("call-fb")))
    [answer] = answers(server)
    assert answer.path == "/v1.0/communications/calls/call-fb/answer"
    assert answer.json["mediaConfig"]["@odata.type"] == "#microsoft.graph.serviceHostedMediaConfig"
    assert [r.path for r in server.durable_requests()] == ["/durabletask/orchestrators/call_session/call-fb"]
    transport = runtime.get().handoff
    assert isinstance(transport, InProcessTransport)
    message = await transport.receive(wait_seconds=1)  # what no worker took: a worker had 6 s of Graph's 15
    assert (message.deadline - message.received_at).total_seconds() == pytest.approx(6, abs=0.01)


class _RefusingTransport:
    """A hand-off transport that fails as Service Bus can: unreachable, or too late to send."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    async def send(self, message: Any) -> None:
        raise self.error


@pytest.mark.parametrize("error", [HandoffFailed("Service Bus unreachable"), HandoffExpired("past its deadline")],
                         ids=["failed", "expired"])
async def test_a_hand_off_that_cannot_be_sent_is_rejected_at_once(
        server: LoopbackServer, post: Post, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
        error: Exception) -> None:
    monkeypatch.setenv("MEDIA_HANDOFF_TRANSPORT", "inprocess")
    caplog.set_level(logging.INFO)
    runtime.get().webhook._handoff = _RefusingTransport(error)  # type: ignore[assignment]
    await post(envelope(incoming_call("call-nosend", bot_data=RECORDING)))
    assert [(r.method, r.path, r.json) for r in server.graph_requests()] == [
        ("POST", "/v1.0/communications/calls/call-nosend/reject", {"reason": "busy"})]  # no looks: nothing was sent
    [unanswered] = [r for r in caplog.records if getattr(r, "event_name", None) == "call.handoff_unanswered"]
    assert "sent" in unanswered.getMessage()
