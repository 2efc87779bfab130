"""Outbound calls end to end: the function app's outbound endpoints on the local host place calls and join
meetings through the real Graph client at the simulator, and the call_session orchestration runs the flow
(issue 3's PSTN scenarios: outgoing bot to PSTN; the bot joins a scheduled meeting then invites PSTN; a P2P
call then invites a PSTN number or a Teams user). Virtual time: each call takes milliseconds."""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from calling.flows.harness import write_flows
from simulator.clock import DEFAULT_EPOCH
from simulator.faults import GraphFault
from simulator.harness import DEFAULT_INSTANCE_ID, Simulation

ROOT = Path(__file__).resolve().parent.parent
CALLEE = "+14255550100"
DIAL_IN = "+14255550133"
ADELE = "6e1c7b52-3d4f-4a8e-9b21-0c5d7e8f9a10"
ORGANIZER = "0c1d2e3f-4a5b-4c6d-8e7f-8091a2b3c4d5"
THREAD = "19:meeting_NjQ1YzA@thread.v2"
JOIN_URL = ("https://teams.microsoft.com/l/meetup-join/19%3ameeting_NjQ1YzA%40thread.v2/0?context="
            "%7b%22Tid%22%3a%227e7a7e7a-0000-4000-8000-000000007e7a%22%2c%22Oid%22%3a%22" + ORGANIZER + "%22%7d")

#: Test flows, not product samples: the meeting and P2P invite scenarios need an `invite` node.
TEST_FLOWS = {
    "conference.yaml": f"""version: 1
name: conference
nodes:
  add-dial-in:
    type: invite
    targets: ["{DIAL_IN}"]
    next: announce
    failed: bye
  announce:
    type: play
    prompt: prompts/connecting.wav
    next: bye
  bye:
    type: hangup
""",
    "add-party.yaml": f"""version: 1
name: add-party
nodes:
  welcome:
    type: play
    prompt: prompts/welcome.wav
    next: invite
  invite:
    type: invite
    targets: ["{DIAL_IN}", "user:{ADELE}"]
    next: connected
    failed: bye
  connected:
    type: play
    prompt: prompts/connecting.wav
    next: bye
  bye:
    type: hangup
""",
}


@pytest.fixture
def flows_dir(tmp_path: Path) -> Path:
    """The product's flows and prompts plus the test flows, in a folder of the test's own."""
    folder = tmp_path / "flows"
    shutil.copytree(ROOT / "flows", folder)
    return write_flows(folder, TEST_FLOWS)


@pytest.fixture
def sim(flows_dir: Path) -> Iterator[Simulation]:
    with Simulation(settings={"FLOWS_DIR": str(flows_dir), "BOT_INSTANCE_ID": DEFAULT_INSTANCE_ID}) as simulation:
        yield simulation


def place(sim: Simulation, body: Mapping[str, Any], path: str = "/api/outbound/calls") -> str:
    status, answer = sim.http("POST", path, body)
    assert status == 202, answer
    assert answer["statusUri"] == f"{sim.bot.url}/api/outbound/calls/{answer['callId']}"
    return str(answer["callId"])


def session(sim: Simulation, call_id: str) -> dict[str, Any]:
    status, body = sim.http("GET", f"/api/outbound/calls/{call_id}")
    assert status == 200, body
    return dict(body)


def wait_for_session_end(sim: Simulation, call_id: str) -> dict[str, Any]:
    for _ in range(50):
        body = session(sim, call_id)
        if body["runtimeStatus"] != "Running":
            return body
        sim.wait(1)
    raise AssertionError(f"the session of {call_id} did not end: {body}")


def test_outgoing_bot_to_pstn_runs_the_reminder_flow(sim: Simulation) -> None:
    sim.callee(CALLEE, "answer", after=4)
    call_id = place(sim, {"to": CALLEE, "flow": "reminder"})
    call = sim.expect_call(to=CALLEE)
    assert call.id == call_id
    placed = call.call.source["identity"]["applicationInstance"]["id"]
    assert placed == DEFAULT_INSTANCE_ID
    call.expect_prompt("reminder-message")
    call.expect_prompt("reminder-options", to_the_end=False)
    call.press("1")
    call.expect_prompt("appointment-confirmed")
    call.expect_ended(code=200, subcode=7000)  # the bot hung up
    assert [h.name for h in call.heard] == ["reminder-message", "reminder-options", "appointment-confirmed"]
    ended = wait_for_session_end(sim, call_id)
    assert ended["runtimeStatus"] == "Completed"
    assert ended["output"] == {"node": "hang-up-confirmed", "left": "hangup"}
    assert ended["customStatus"] == {"node": "hang-up-confirmed", "phase": "ended", "flow": "reminder.yaml"}
    status, body = sim.http("GET", f"/api/outbound/calls/{call_id}?transcript=true")
    assert status == 200
    events = [line["event"] for line in body["transcript"]]
    assert events[-3:] == ["call terminating", "call terminated (200/7000 The call was ended by the application.)",
                           "session completed"]
    assert "hang up (confirmed)" in events


def test_a_pstn_callee_who_does_not_answer_ends_the_session(sim: Simulation) -> None:
    sim.callee(CALLEE, "no_answer", after=30)
    call_id = place(sim, {"to": CALLEE, "flow": "reminder"})
    call = sim.expect_call(to=CALLEE)
    call.expect_ended(code=408, subcode=10057)
    assert call.heard == []
    assert wait_for_session_end(sim, call_id)["runtimeStatus"] == "Completed"


def test_a_phone_target_without_any_instance_is_refused() -> None:
    with Simulation() as sim:
        status, body = sim.http("POST", "/api/outbound/calls", {"to": CALLEE, "flow": "reminder"})
        assert status == 400
        assert body == {"error": "bad_request", "reasons": [
            "calling a phone number needs an application instance (a resource account with a phone number): "
            "give from_instance, or set BOT_INSTANCE_ID"]}
        assert sim.calls() == []
        # With the instance in the request, the same call goes out.
        status, body = sim.http("POST", "/api/outbound/calls",
                                {"to": CALLEE, "flow": "reminder", "from_instance": sim.bot.instance_id})
        assert status == 202, body
        assert sim.expect_call(to=CALLEE).id == body["callId"]


@pytest.mark.parametrize(("join", "key"), [({"join_url": JOIN_URL}, THREAD),
                                            ({"meeting_id": "1234 5678 9012", "passcode": "Ab3dE"}, "123456789012")])
def test_the_bot_joins_a_scheduled_meeting_then_invites_pstn(sim: Simulation, join: Mapping[str, str],
                                                             key: str) -> None:
    sim.meeting(key, f"user:{ORGANIZER}", [f"user:{ADELE}"])
    sim.callee(DIAL_IN, "answer", after=5)
    call_id = place(sim, {**join, "flow": "conference"}, "/api/outbound/meetings")
    call = sim.expect_call(to=key)
    assert call.id == call_id and call.call.kind == "meeting"
    leg = call.expect_invite(to=DIAL_IN)
    assert leg.connected_to == DIAL_IN
    assert any(p.identity.get("phone", {}).get("id") == DIAL_IN for p in call.call.participants.values())
    call.expect_prompt("connecting")
    call.expect_ended()
    assert wait_for_session_end(sim, call_id)["output"]["left"] == "hangup"


def test_a_meeting_joined_by_its_id_that_does_not_exist_ends_the_session(sim: Simulation) -> None:
    call_id = place(sim, {"meeting_id": "123456789012", "passcode": "Ab3dE", "flow": "conference"},
                    "/api/outbound/meetings")
    call = sim.expect_call(to="123456789012")
    call.expect_ended(code=404)
    assert wait_for_session_end(sim, call_id)["runtimeStatus"] == "Completed"


@pytest.mark.parametrize("answering", [DIAL_IN, f"user:{ADELE}"])
def test_a_p2p_call_then_invites_a_pstn_number_or_a_teams_user(flows_dir: Path, answering: str) -> None:
    settings = {"FLOWS_DIR": str(flows_dir), "DEFAULT_FLOW": "add-party"}
    with Simulation(settings=settings) as sim:
        other = f"user:{ADELE}" if answering == DIAL_IN else DIAL_IN
        sim.callee(answering, "answer", after=2)
        sim.callee(other, "no_answer", after=30)
        call = sim.dial(from_user="2b7d9c41-8e5a-4f36-a1c2-3d4e5f607182", to="app")
        call.expect_answered()
        call.expect_prompt("welcome")
        leg = call.expect_invite(to=answering)
        assert leg.connected_to == answering
        call.expect_prompt("connecting")
        call.expect_ended()


def test_status_then_hang_up_through_the_endpoint(sim: Simulation) -> None:
    call_id = place(sim, {"to": f"user:{ADELE}", "flow": "reminder", "subject": "Your appointment"})
    call = sim.expect_call(to=f"user:{ADELE}")
    call.expect_prompt("reminder-message", to_the_end=False)
    running = session(sim, call_id)
    assert running["runtimeStatus"] == "Running"
    assert running["customStatus"]["node"] == "message" and running["customStatus"]["phase"] == "running"
    assert running["createdTime"] and running["lastUpdatedTime"] and running["output"] is None
    assert "transcript" not in running
    status, body = sim.http("GET", f"/api/outbound/calls/{call_id}?transcript=true")
    assert status == 200
    assert [line["event"] for line in body["transcript"]] == [
        "session started", "call establishing", "call established", "play prompts/reminder-message.wav"]
    answered = DEFAULT_EPOCH + timedelta(seconds=3)  # the user answered after 3 s of ringing (virtual time)
    assert body["transcript"][2]["at"] == answered.strftime("%Y-%m-%dT%H:%M:%SZ")
    status, body = sim.http("DELETE", f"/api/outbound/calls/{call_id}")
    assert (status, body) == (204, None)
    call.expect_ended(code=200, subcode=7000)
    assert wait_for_session_end(sim, call_id)["runtimeStatus"] == "Completed"
    status, body = sim.http("DELETE", f"/api/outbound/calls/{call_id}")
    assert status == 404 and body["error"] == "not_found"


def test_unknown_calls(sim: Simulation) -> None:
    status, body = sim.http("GET", "/api/outbound/calls/491f0b00-ffff-4e1c-9d0e-3c1b2a3f4e5d")
    assert status == 404 and body["error"] == "not_found"
    status, body = sim.http("DELETE", "/api/outbound/calls/491f0b00-ffff-4e1c-9d0e-3c1b2a3f4e5d")
    assert status == 404 and body["error"] == "not_found"
    status, body = sim.http("GET", "/api/outbound/calls/a%20b")
    assert status == 400 and body["reasons"] == ["not a call id: 'a b'"]


@pytest.mark.parametrize(("path", "body", "reasons"), [
    ("/api/outbound/calls", {"to": CALLEE, "flow": "no-such-flow"},
     ["flow 'no-such-flow' does not exist (no no-such-flow.yaml in the flows folder)"]),
    ("/api/outbound/calls", {"to": "0800 123", "flow": "reminder", "when": "now"},
     ["unknown key 'when' (expected: to, flow, from_instance, subject)",
      "to must be a phone number (+E164) or user:<Entra object id>, got '0800 123'"]),
    ("/api/outbound/meetings", {"join_url": "https://teams.microsoft.com/meet/123", "flow": "conference"},
     ["join_url: join URL has no /l/meetup-join/<thread>/<message> part; short links cannot be joined directly: "
      "use the meeting's joinMeetingId and passcode"]),
    ("/api/outbound/meetings", {"flow": "conference"},
     ["join_url (the meeting's https://teams.microsoft.com/l/meetup-join/... link) or meeting_id (its numeric join "
      "id, with passcode) is required"]),
])
def test_bad_requests_are_400s_with_reasons(sim: Simulation, path: str, body: Mapping[str, Any],
                                            reasons: list[str]) -> None:
    status, answer = sim.http("POST", path, body)
    assert (status, answer) == (400, {"error": "bad_request", "reasons": reasons})
    assert sim.calls() == []


def test_a_body_that_is_not_json_is_a_400_not_a_traceback(sim: Simulation) -> None:
    import aiohttp

    async def send() -> tuple[int, Any]:
        async with aiohttp.ClientSession() as client, client.post(
                f"{sim.bot.url}/api/outbound/calls", data=b"{to: +1425}",
                headers={"Content-Type": "application/json"}) as response:
            return response.status, await response.json(content_type=None)

    status, body = sim._run(send())
    assert status == 400
    assert body == {"error": "bad_request", "reasons": [
        "body is not JSON: Expecting property name enclosed in double quotes at line 1 column 2"]}


def test_graph_refusing_the_call_is_a_502_with_graphs_error(sim: Simulation) -> None:
    from simulator.faults import GraphFault

    sim.fault(GraphFault("create", 500))
    status, body = sim.http("POST", "/api/outbound/calls", {"to": CALLEE, "flow": "reminder"})
    assert status == 502 and body["error"] == "graph_error"
    assert body["graph"]["action"] == "createCall" and body["graph"]["status"] == 500
    assert body["graph"]["request_id"] and body["graph"]["client_request_id"]
    assert sim.calls() == []


async def test_the_outbound_routes_need_a_function_key_the_webhook_does_not() -> None:
    import aiohttp

    import function_app
    from devhost import DevHost
    from functions import runtime
    from simulator.clock import VirtualClock

    runtime.reset()
    try:
        async with DevHost(function_app.app, clock=VirtualClock(), function_keys={"default": "k-123"}) as host, \
                aiohttp.ClientSession() as http:
            for method, path in (("POST", "/api/outbound/calls"), ("POST", "/api/outbound/meetings"),
                                 ("GET", "/api/outbound/calls/c1"), ("DELETE", "/api/outbound/calls/c1")):
                async with http.request(method, f"{host.url}{path}", json={}) as refused:
                    assert refused.status == 401, (method, path)
                async with http.request(method, f"{host.url}{path}", json={},
                                        headers={"x-functions-key": "k-123"}) as let_in:
                    assert let_in.status == 503  # past the key; this process has no bot settings
                    assert (await let_in.json())["error"] == "not_configured"
            async with http.post(f"{host.url}/api/calls", data=b"{}") as webhook:
                assert webhook.status != 401  # Graph sends no function key; its JWT is the authentication
    finally:
        runtime.reset()


# --- Idempotency-Key: a retried POST rings once ---------------------------------------------------------

KEY = "3f9d2c4e-8b1a-4c6d-9e0f-1a2b3c4d5e6f"


def post(sim: Simulation, path: str, body: Mapping[str, Any],
         key: str | None = None) -> tuple[int, Any, dict[str, str]]:
    """POST with the answer's headers too (sim.http keeps only the status and body)."""
    return sim._run(_send(sim, path, body, key))


async def _send(sim: Simulation, path: str, body: Mapping[str, Any], key: str | None,
                after: float = 0.0) -> tuple[int, Any, dict[str, str]]:
    import asyncio

    import aiohttp

    await asyncio.sleep(after)
    headers = {"Idempotency-Key": key} if key is not None else {}
    async with sim.clock.busy(), aiohttp.ClientSession() as client, client.post(
            f"{sim.bot.url}{path}", json=body, headers=headers) as response:
        return response.status, await response.json(content_type=None), dict(response.headers)


@pytest.mark.parametrize(("path", "body"), [
    ("/api/outbound/calls", {"to": CALLEE, "flow": "reminder"}),
    ("/api/outbound/meetings", {"meeting_id": "123456789012", "passcode": "Ab3dE", "flow": "conference"}),
])
def test_a_retried_post_with_the_same_idempotency_key_rings_once(sim: Simulation, path: str,
                                                                 body: Mapping[str, Any]) -> None:
    sim.callee(CALLEE, "answer", after=4)
    status, first, headers = post(sim, path, body, KEY)
    assert status == 202, first
    assert headers["Location"] == first["statusUri"] and "Idempotent-Replayed" not in headers
    status, again, replay_headers = post(sim, path, body, f'"{KEY}"')  # the draft's quoted form: the same key
    assert (status, again) == (202, first)
    assert replay_headers["Location"] == first["statusUri"] and replay_headers["Idempotent-Replayed"] == "true"
    assert [c.id for c in sim.calls()] == [first["callId"]]  # Graph created one call
    assert session(sim, first["callId"])["runtimeStatus"] in ("Running", "Completed")


def test_the_same_key_with_another_body_is_422_and_rings_nobody_else(sim: Simulation) -> None:
    status, first, _ = post(sim, "/api/outbound/calls", {"to": CALLEE, "flow": "reminder"}, KEY)
    assert status == 202
    status, body, _ = post(sim, "/api/outbound/calls", {"to": DIAL_IN, "flow": "reminder"}, KEY)
    assert status == 422 and body["error"] == "idempotency_key_reused"
    status, body, _ = post(sim, "/api/outbound/meetings", {"join_url": JOIN_URL, "flow": "conference"}, KEY)
    assert status == 422
    assert [c.id for c in sim.calls()] == [first["callId"]]


def test_without_the_header_each_post_still_places_a_call(sim: Simulation) -> None:
    first, second = (post(sim, "/api/outbound/calls", {"to": CALLEE, "flow": "reminder"}) for _ in range(2))
    assert (first[0], second[0]) == (202, 202) and first[1]["callId"] != second[1]["callId"]
    assert len(sim.calls()) == 2


def test_a_retry_while_graph_is_still_creating_the_call_gets_409_then_the_answer(sim: Simulation) -> None:
    import asyncio

    from simulator.faults import GraphFault

    sim.fault(GraphFault("create", 0, delay=1.0))  # Graph answers the first createCall after a second
    body = {"to": CALLEE, "flow": "reminder"}

    async def both() -> list[tuple[int, Any, dict[str, str]]]:
        return await asyncio.gather(_send(sim, "/api/outbound/calls", body, KEY),
                                    _send(sim, "/api/outbound/calls", body, KEY, after=0.3))

    (status, first, _), (early, conflict, headers) = sim._run(both())
    assert status == 202
    assert early == 409 and conflict["error"] == "idempotency_key_in_use" and headers["Retry-After"] == "2"
    status, later, _ = post(sim, "/api/outbound/calls", body, KEY)
    assert (status, later) == (202, first)
    assert [c.id for c in sim.calls()] == [first["callId"]]


def test_a_key_store_that_cannot_be_reached_places_no_call(flows_dir: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = {"FLOWS_DIR": str(flows_dir), "BOT_INSTANCE_ID": DEFAULT_INSTANCE_ID,
                "IDEMPOTENCY_CONTAINER_URL": f"http://127.0.0.1:{port}/devstoreaccount1/idempotency"}
    with Simulation(settings=settings) as sim:
        status, body, headers = post(sim, "/api/outbound/calls", {"to": CALLEE, "flow": "reminder"}, KEY)
        assert status == 503 and body["error"] == "idempotency_unavailable" and headers["Retry-After"] == "5"
        assert sim.calls() == []
        status, body, _ = post(sim, "/api/outbound/calls", {"to": CALLEE, "flow": "reminder"})
        assert status == 202 and [c.id for c in sim.calls()] == [body["callId"]]


@pytest.fixture(scope="module")
def blob_account() -> Iterator[str]:
    from tests.azurite import azurite

    with azurite() as url:
        yield url


def test_keys_in_blob_storage_hold_across_function_instances(flows_dir: Path, blob_account: str) -> None:
    """The retry reaches another instance (a runtime built afresh, nothing in memory): Blob Storage remembers."""
    import asyncio

    from azure.storage.blob.aio import BlobServiceClient

    from calling.config import Settings
    from calling.credentials import storage_credential
    from functions import runtime

    key = storage_credential(blob_account, Settings(bot_app_id="", bot_tenant_id="", allowed_tenants=frozenset(),
                                                    public_url=""))  # Azurite's published development key

    async def make_container() -> None:
        async with BlobServiceClient(blob_account, credential=key) as client:
            await client.create_container("idempotency")

    asyncio.run(make_container())
    settings = {"FLOWS_DIR": str(flows_dir), "BOT_INSTANCE_ID": DEFAULT_INSTANCE_ID,
                "IDEMPOTENCY_CONTAINER_URL": f"{blob_account}/idempotency"}
    with Simulation(settings=settings) as sim:
        body = {"to": CALLEE, "flow": "reminder"}
        status, first, _ = post(sim, "/api/outbound/calls", body, KEY)
        assert status == 202
        runtime.reset(runtime.build(sim.env, now=sim.clock.now))  # another instance answers the retry
        status, again, headers = post(sim, "/api/outbound/calls", body, KEY)
        assert (status, again, headers["Idempotent-Replayed"]) == (202, first, "true")
        status, other, _ = post(sim, "/api/outbound/calls", {**body, "subject": "Again"}, KEY)
        assert status == 422 and other["error"] == "idempotency_key_reused"
        assert [c.id for c in sim.calls()] == [first["callId"]]


def test_a_call_graph_placed_although_it_answered_500_is_hung_up_when_answered(sim: Simulation) -> None:
    """No session ever starts for it (the POST answered 502): once the callee answers, the webhook finds an
    established call the bot placed that nobody runs, and hangs it up rather than leave the callee in silence."""
    sim.callee(CALLEE, "answer", after=3)
    sim.fault(GraphFault("create", 500, applied=True))
    status, body = sim.http("POST", "/api/outbound/calls", {"to": CALLEE, "flow": "reminder"},
                            headers={"Idempotency-Key": "once"})
    assert status == 502, body
    call = sim.expect_call(to=CALLEE)
    result = call.expect_ended(within=10)
    assert (result.get("code"), result.get("subcode")) == (200, 7000)  # ended by the bot
    assert call.heard == []
    again, replayed = sim.http("POST", "/api/outbound/calls", {"to": CALLEE, "flow": "reminder"},
                               headers={"Idempotency-Key": "once"})
    assert (again, replayed) == (502, body)  # the same answer: the callee is not rung a second time
    assert len([c for c in sim.simulator.calls.values() if c.direction == "outgoing"]) == 1
