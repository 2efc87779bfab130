"""The media worker (mediavm/worker.py) against the loopback Graph stub: what it answers, what it takes and
leaves, how it serves its calls' notifications, and how it drains. Media through the loopback engine."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from calling.auth import NotificationAuthenticator, SigningKeys
from calling.events import IncomingCall, ParticipantState
from calling.graph import CallControl
from calling.handoff import HandoffMessage, InProcessTransport
from mediavm import wire
from mediavm.config import WorkerSettings
from mediavm.engine import FRAME_BYTES, AudioFrame
from mediavm.loopback import LoopbackEngine
from mediavm.worker import MediaWorker
from tests.stubs import APP_ID, TENANT_ID, LoopbackServer, Signer, call_update, envelope, incoming_call

RECORDING = {"inviteReasons": ["PolicyBasedRecording"], "policyIdentifier": "Test Policy"}


@dataclass
class App:
    """A CallApp that keeps what the worker hands it."""

    ticks: list[list[AudioFrame]] = field(default_factory=list)
    rosters: list[Sequence[ParticipantState]] = field(default_factory=list)
    lost: int = 0
    closed: list[bool] = field(default_factory=list)
    reasons: list[str | None] = field(default_factory=list)

    async def on_audio(self, tick: list[AudioFrame]) -> None:
        self.ticks.append(tick)

    def on_roster(self, participants: Sequence[ParticipantState]) -> None:
        self.rosters.append(participants)

    async def media_lost(self) -> None:
        self.lost += 1

    async def close(self, *, complete: bool, reason: str | None = None) -> None:
        self.closed.append(complete)
        self.reasons.append(reason)


class Calls:
    def __init__(self, control: CallControl) -> None:
        self.control = control

    def for_tenant(self, tenant_id: str | None = None) -> CallControl:
        return self.control


@pytest.fixture
async def setup(server: LoopbackServer, control: CallControl, monkeypatch: pytest.MonkeyPatch
                ) -> AsyncIterator[tuple[MediaWorker, InProcessTransport, dict[str, App]]]:
    env = {"BOT_APP_ID": APP_ID, "BOT_TENANT_ID": TENANT_ID, "BOT_PUBLIC_URL": "https://bot.example.com",
           "GRAPH_BASE_URL": server.graph_url, "CALLING_OPENID_CONFIG_URL": server.openid_url,
           "MEDIA_WORKER_PUBLIC_URL": "https://vm-3.media.example.com:7003", "MEDIA_WORKER_CAPACITY": "2",
           "MEDIA_PARTICIPANT_CAPACITY": "2"}
    settings = WorkerSettings.from_env(env)
    inbox = InProcessTransport()
    apps: dict[str, App] = {}

    def app(control: CallControl, message: HandoffMessage, incoming: IncomingCall) -> App | None:
        if message.decision.get("reason") == "unsupported":
            return None  # the worker runs nothing for such a call
        return apps.setdefault(message.call_id, App())

    auth = NotificationAuthenticator(app_id=APP_ID, allowed_tenants=frozenset({TENANT_ID}),
                                     keys=SigningKeys(server.openid_url))
    worker = MediaWorker(settings, engine=LoopbackEngine(), inbox=inbox, calls=Calls(control), authenticator=auth,
                         app=app)
    task = asyncio.create_task(worker.run())
    yield worker, inbox, apps
    await worker.drain(0)
    task.cancel()


def handoff(call_id: str, *, seconds: float = 5.0, recording: bool = True,
            reason: str = "policy_recording") -> HandoffMessage:
    now = datetime.now(UTC)
    return HandoffMessage(call_id=call_id, tenant_id=TENANT_ID,
                          notification=incoming_call(call_id, bot_data=RECORDING if recording else None),
                          decision={"action": "handoff", "reason": reason, "rule": "policy-recording"},
                          deadline=now + timedelta(seconds=seconds), received_at=now)


async def until(condition: Any, seconds: float = 5.0) -> None:
    for _ in range(int(seconds / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not reached")


def answers(server: LoopbackServer) -> list[Any]:
    return [r for r in server.graph_requests() if r.path.endswith("/answer")]


async def test_it_answers_with_its_media_sessions_blob_and_its_own_callback(
        server: LoopbackServer, setup: tuple[MediaWorker, InProcessTransport, dict[str, App]]) -> None:
    worker, inbox, _ = setup
    await inbox.send(handoff("call-a"))
    await until(lambda: answers(server))
    [answer] = answers(server)
    assert answer.path == "/v1.0/communications/calls/call-a/answer"
    body = answer.json
    assert body["callbackUri"] == "https://vm-3.media.example.com:7003/api/calls"
    assert body["mediaConfig"]["@odata.type"] == "#microsoft.graph.appHostedMediaConfig"
    assert wire.read_blob(body["mediaConfig"]["blob"])["session"] == "call-a"
    assert body["participantCapacity"] == 2
    assert worker.health()["live"] == 1


async def test_a_hand_off_past_its_deadline_is_dropped_unanswered(
        server: LoopbackServer, setup: tuple[MediaWorker, InProcessTransport, dict[str, App]]) -> None:
    worker, inbox, _ = setup
    await inbox.send(handoff("call-late", seconds=-1))
    await until(lambda: worker.dropped == 1)
    assert answers(server) == []


async def test_a_hand_off_it_runs_nothing_for_is_left_unanswered(
        server: LoopbackServer, setup: tuple[MediaWorker, InProcessTransport, dict[str, App]]) -> None:
    worker, inbox, apps = setup
    await inbox.send(handoff("call-other", recording=False, reason="unsupported"))
    await until(lambda: worker.unsupported == 1)
    assert answers(server) == [] and worker.live == {} and apps == {}
    assert worker.health()["unsupported"] == 1


async def test_a_full_worker_takes_nothing_more(
        server: LoopbackServer, setup: tuple[MediaWorker, InProcessTransport, dict[str, App]]) -> None:
    worker, inbox, _ = setup
    for n in range(3):
        await inbox.send(handoff(f"call-{n}"))
    await until(lambda: len(answers(server)) == 2)
    await asyncio.sleep(0.3)
    assert len(answers(server)) == 2 and inbox.pending() == 1  # the third waits for another worker, or room
    assert worker.health()["free"] == 0


async def test_media_reaches_the_calls_app_and_its_end_closes_it(
        server: LoopbackServer, signer: Signer, setup: tuple[MediaWorker, InProcessTransport, dict[str, App]]) -> None:
    worker, inbox, apps = setup
    await inbox.send(handoff("call-m"))
    await until(lambda: answers(server))
    blob = wire.read_blob(answers(server)[0].json["mediaConfig"]["blob"])
    _, writer = await asyncio.open_connection(blob["host"], blob["port"])
    writer.write(wire.hello(blob["session"], blob["token"]))
    writer.write(wire.audio(0, [(5, b"\x07\x00" * (FRAME_BYTES // 2))]))
    await writer.drain()
    await until(lambda: apps.get("call-m") and apps["call-m"].ticks)
    assert apps["call-m"].ticks[0][0].source_id == 5
    ended = envelope(call_update("call-m", "terminated"))
    response = await worker.handle({"Authorization": f"Bearer {signer.token()}"}, ended)
    assert response.status == 202
    assert apps["call-m"].closed == [True] and "call-m" not in worker.live
    writer.close()


async def test_its_endpoint_authenticates_like_the_webhook(
        setup: tuple[MediaWorker, InProcessTransport, dict[str, App]]) -> None:
    worker, _, _ = setup
    response = await worker.handle({}, envelope(call_update("call-x", "terminated")))
    assert response.status == 401 and response.body == {"error": "unauthorized",
                                                        "reason": "missing Authorization header"}
    bad = await worker.handle({"Authorization": "Bearer x"}, b"{}")
    assert bad.status == 401


async def test_recording_group_joins_are_taken_up_to_the_participant_capacity(
        server: LoopbackServer, signer: Signer, setup: tuple[MediaWorker, InProcessTransport, dict[str, App]]) -> None:
    worker, inbox, _ = setup
    await inbox.send(handoff("call-j"))
    await until(lambda: answers(server))
    joining = {"@odata.type": "#microsoft.graph.commsNotification", "changeType": "created",
               "resourceUrl": "/communications/calls/call-j",
               "resourceData": {"@odata.type": "#microsoft.graph.participantJoiningNotification",
                                "call": {"@odata.type": "#microsoft.graph.call", "id": "call-j"}}}
    headers = {"Authorization": f"Bearer {signer.token()}"}
    first = await worker.handle(headers, json.dumps({"value": [joining]}).encode())
    second = await worker.handle(headers, json.dumps({"value": [joining]}).encode())
    assert (first.status, first.body) == (200, {"@odata.type": "#microsoft.graph.acceptJoinResponse"})
    assert second.body == {"@odata.type": "#microsoft.graph.inviteNewBotResponse",
                           "inviteUri": "https://bot.example.com/api/calls"}


async def test_draining_stops_taking_and_ends_what_outlives_the_limit(
        server: LoopbackServer, setup: tuple[MediaWorker, InProcessTransport, dict[str, App]]) -> None:
    worker, inbox, apps = setup
    await inbox.send(handoff("call-d"))
    await until(lambda: answers(server))
    await worker.drain(0.05)
    assert worker.health()["status"] == "draining"
    assert apps["call-d"].closed == [False]  # let go of before its end: the recording is partial
    assert apps["call-d"].reasons == ["the media worker shut down before the call ended"]
    hang_ups = [r for r in server.graph_requests() if r.method == "DELETE"]
    assert [r.path for r in hang_ups] == ["/v1.0/communications/calls/call-d"]
    await inbox.send(handoff("call-after"))
    await asyncio.sleep(0.2)
    assert len(answers(server)) == 1


class FlakyInbox:
    """An inbox whose first `failures` takes raise, as Service Bus does while it is unreachable."""

    def __init__(self, inner: InProcessTransport, failures: int) -> None:
        self.inner = inner
        self.failures = failures

    async def take(self, wait_seconds: float) -> Any:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("the namespace is unreachable")
        return await self.inner.take(wait_seconds)

    async def close(self) -> None:
        await self.inner.close()


async def test_an_unreachable_queue_does_not_stop_the_worker_taking_calls(
        server: LoopbackServer, control: CallControl, monkeypatch: pytest.MonkeyPatch) -> None:
    from mediavm import worker as module

    monkeypatch.setattr(module, "TAKE_RETRY_SECONDS", 0.01)
    env = {"BOT_APP_ID": APP_ID, "BOT_TENANT_ID": TENANT_ID, "BOT_PUBLIC_URL": "https://bot.example.com",
           "GRAPH_BASE_URL": server.graph_url, "CALLING_OPENID_CONFIG_URL": server.openid_url,
           "MEDIA_WORKER_PUBLIC_URL": "https://vm-1.media.example.com:7001"}
    transport = InProcessTransport()
    inbox = FlakyInbox(transport, failures=3)
    auth = NotificationAuthenticator(app_id=APP_ID, allowed_tenants=frozenset({TENANT_ID}),
                                     keys=SigningKeys(server.openid_url))
    worker = MediaWorker(WorkerSettings.from_env(env), engine=LoopbackEngine(), inbox=inbox, calls=Calls(control),
                         authenticator=auth, app=lambda control, message, incoming: App())
    task = asyncio.create_task(worker.run())
    try:
        await until(lambda: inbox.failures == 0)
        await transport.send(handoff("call-after-outage"))
        await until(lambda: answers(server))
        assert [a.path for a in answers(server)] == ["/v1.0/communications/calls/call-after-outage/answer"]
        assert worker.health()["take_errors"] == 0 and worker.health()["status"] == "ok"
        assert not task.done()
    finally:
        await worker.drain(0)
        task.cancel()
