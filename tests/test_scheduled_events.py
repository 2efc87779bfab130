"""Scheduled Events (mediavm/scheduled_events.py) against a stand-in for the instance metadata service on
loopback, with the real MediaWorker (in-process inbox, loopback engine, the Graph stub): a Terminate for this
instance drains it (no hand-off taken, live calls let end) and is approved only after the drain; other
instances' events and a Freeze are ignored; IMDS failing or hanging is retried while the worker goes on; a
repeated document is not handled twice; and `python -m mediavm`'s serve() ends after the drain."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from calling.auth import NotificationAuthenticator, SigningKeys
from calling.graph import CallControl
from calling.handoff import HandoffMessage, InProcessTransport
from mediavm import __main__ as service
from mediavm import scheduled_events as se
from mediavm.config import WorkerSettings
from mediavm.loopback import LoopbackEngine
from mediavm.worker import MediaWorker
from tests.stubs import APP_ID, TENANT_ID, LoopbackServer, Signer, call_update, envelope, incoming_call
from tests.test_media_worker import App, Calls, answers, handoff, until

ME = "vmss-media-abc123_3"
OTHER = "vmss-media-abc123_7"


def not_before(seconds: float) -> str:
    """NotBefore as IMDS writes it (RFC 1123, GMT)."""
    return format_datetime(datetime.now(UTC) + timedelta(seconds=seconds), usegmt=True)


def event(event_id: str, event_type: str = "Terminate", resources: tuple[str, ...] = (ME,), *,
          status: str = "Scheduled", starts_in: float | None = 900, source: str = "Platform") -> dict[str, Any]:
    return {"EventId": event_id, "EventType": event_type, "ResourceType": "VirtualMachine",
            "Resources": list(resources), "EventStatus": status,
            "NotBefore": not_before(starts_in) if starts_in is not None else "",
            "Description": "", "EventSource": source, "DurationInSeconds": -1}


@dataclass
class Seen:
    method: str
    path: str
    body: Any
    at: float = field(default_factory=time.monotonic)


class Imds:
    """The instance metadata service's two endpoints, as the docs describe them: `Metadata: true` required
    (400 otherwise), an api-version, the document served until replaced, StartRequests recorded."""

    def __init__(self) -> None:
        self.document: dict[str, Any] = {"DocumentIncarnation": 1, "Events": []}
        self.name = ME
        self.failures: list[int | float] = []  # next answers to the events GET: a status, or seconds to hang
        self.requests: list[Seen] = []
        self.on_approve: Callable[[Any], None] = lambda body: None
        self._runner: web.AppRunner | None = None
        self.url = ""

    def events(self, *events: dict[str, Any]) -> None:
        self.document = {"DocumentIncarnation": self.document["DocumentIncarnation"] + 1, "Events": list(events)}

    @property
    def approvals(self) -> list[Any]:
        return [r.body for r in self.requests if r.method == "POST"]

    def gets(self) -> int:
        return sum(1 for r in self.requests if r.method == "GET" and r.path == se.EVENTS_PATH)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.json() if request.can_read_body else None
        self.requests.append(Seen(request.method, request.path, body))
        if request.headers.get("Metadata") != "true" or "api-version" not in request.query:
            return web.json_response({"error": "Bad request"}, status=400)
        if request.path == se.COMPUTE_PATH:
            return web.json_response({"name": self.name, "osProfile": {"computerName": "media000003"}})
        if request.path != se.EVENTS_PATH:
            return web.Response(status=404)
        assert request.query["api-version"] == se.EVENTS_API_VERSION
        if request.method == "POST":
            self.on_approve(body)
            return web.Response(status=200)
        if self.failures:
            failure = self.failures.pop(0)
            if isinstance(failure, float):
                await asyncio.sleep(failure)
            else:
                return web.Response(status=failure, text="Internal Server Error")
        return web.json_response(self.document)

    async def start(self) -> Imds:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        assert site._server is not None
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[attr-defined]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture
async def imds() -> AsyncIterator[Imds]:
    stub = await Imds().start()
    yield stub
    await stub.stop()


@dataclass
class Rig:
    worker: MediaWorker
    inbox: InProcessTransport
    apps: dict[str, App]
    watcher: se.ScheduledEventsWatcher
    stop: asyncio.Event
    client: se.MetadataClient


@pytest.fixture
async def rig(server: LoopbackServer, control: CallControl, imds: Imds) -> AsyncIterator[Rig]:
    """A worker taking hand-offs, and a watcher polling the stub IMDS every 20 ms, as serve() wires them."""
    env = {"BOT_APP_ID": APP_ID, "BOT_TENANT_ID": TENANT_ID, "BOT_PUBLIC_URL": "https://bot.example.com",
           "GRAPH_BASE_URL": server.graph_url, "CALLING_OPENID_CONFIG_URL": server.openid_url,
           "MEDIA_WORKER_PUBLIC_URL": "https://vm-3.media.example.com:7003", "MEDIA_WORKER_CAPACITY": "4"}
    apps: dict[str, App] = {}
    inbox = InProcessTransport()
    auth = NotificationAuthenticator(app_id=APP_ID, allowed_tenants=frozenset({TENANT_ID}),
                                     keys=SigningKeys(server.openid_url))
    worker = MediaWorker(WorkerSettings.from_env(env), engine=LoopbackEngine(), inbox=inbox, calls=Calls(control),
                         authenticator=auth, app=lambda control, message, incoming: apps.setdefault(message.call_id,
                                                                                                    App()))
    stop = asyncio.Event()
    client = se.MetadataClient(imds.url)
    watcher = se.ScheduledEventsWatcher(client, on_drain=stop.set, live=lambda: len(worker.live),
                                        poll_seconds=0.02, first_timeout=0.3, timeout=0.3, max_backoff=0.05,
                                        drain_limit=900)
    taking = asyncio.create_task(worker.run())
    watching = asyncio.create_task(watcher.run())
    yield Rig(worker, inbox, apps, watcher, stop, client)
    watching.cancel()
    await worker.drain(0)
    taking.cancel()
    await client.close()


def emitted(caplog: pytest.LogCaptureFixture, name: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "microsoft.custom_event.name", None) == name]


async def test_a_terminate_for_this_instance_drains_then_approves(
        rig: Rig, imds: Imds, server: LoopbackServer, signer: Signer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    await rig.inbox.send(handoff("call-live"))
    await until(lambda: answers(server))
    at_approval: list[tuple[int, bool]] = []
    imds.on_approve = lambda body: at_approval.append((len(rig.worker.live), rig.worker.draining))

    imds.events(event("terminate-1"))
    await asyncio.wait_for(rig.stop.wait(), 5)
    seconds = rig.watcher.drain_seconds(900)
    assert 860 < seconds <= 870  # NotBefore (15 minutes) less the 30 s margin, below MEDIA_WORKER_DRAIN_SECONDS
    assert rig.watcher.drain_seconds(120) == 120  # a shorter configured drain wins
    drain = asyncio.create_task(rig.worker.drain(seconds))  # what serve() does once `stop` is set
    await asyncio.sleep(0.05)

    await rig.inbox.send(handoff("call-after"))  # draining: no new hand-off is taken
    await asyncio.sleep(0.3)
    assert [a.path for a in answers(server)] == ["/v1.0/communications/calls/call-live/answer"]
    assert imds.approvals == []  # not while a call is up

    ended = await rig.worker.handle({"Authorization": f"Bearer {signer.token()}"},
                                    envelope(call_update("call-live", "terminated")))
    assert ended.status == 202
    await asyncio.wait_for(drain, 5)
    assert rig.apps["call-live"].closed == [True]  # it ended on its own: the recording is complete
    assert not [r for r in server.graph_requests() if r.method == "DELETE"]  # nothing was hung up

    assert await rig.watcher.approve() == ["terminate-1"]
    assert imds.approvals == [{"StartRequests": [{"EventId": "terminate-1"}]}]
    assert at_approval == [(0, True)]
    [seen] = emitted(caplog, "media.scheduled_event")
    assert (seen.event_type, seen.action, seen.instance) == ("Terminate", "drain", ME)  # type: ignore[attr-defined]
    [draining] = emitted(caplog, "media.draining")
    assert draining.live == 1 and draining.why == "scheduled_event"  # type: ignore[attr-defined]
    assert emitted(caplog, "media.scheduled_event_approved")


async def test_a_call_outliving_the_notice_is_hung_up_before_the_approval(
        rig: Rig, imds: Imds, server: LoopbackServer) -> None:
    await rig.inbox.send(handoff("call-long"))
    await until(lambda: answers(server))
    imds.events(event("terminate-2", starts_in=30.5))  # 30 s margin: half a second for the calls
    await asyncio.wait_for(rig.stop.wait(), 5)
    await asyncio.wait_for(rig.worker.drain(rig.watcher.drain_seconds(900)), 5)
    assert rig.apps["call-long"].closed == [False]
    assert rig.apps["call-long"].reasons == ["the media worker shut down before the call ended"]
    [hang_up] = [r for r in server.graph_requests() if r.method == "DELETE"]
    await rig.watcher.approve()
    [approval] = [r for r in imds.requests if r.method == "POST"]
    assert hang_up.at < approval.at


async def test_another_instances_event_and_a_freeze_are_ignored(
        rig: Rig, imds: Imds, server: LoopbackServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    imds.events(event("other-terminate", resources=(OTHER,)), event("freeze-1", "Freeze", (ME, OTHER)))
    looks = rig.watcher.looks
    await until(lambda: rig.watcher.looks > looks + 5)
    assert not rig.stop.is_set() and rig.watcher.pending == ()
    await rig.inbox.send(handoff("call-still-taken"))
    await until(lambda: answers(server))
    assert imds.approvals == []
    [seen] = emitted(caplog, "media.scheduled_event")  # only the freeze names this instance
    assert (seen.event_id, seen.action) == ("freeze-1", "none")  # type: ignore[attr-defined]


async def test_imds_failing_or_hanging_is_retried_and_the_worker_goes_on(
        rig: Rig, imds: Imds, server: LoopbackServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    looks = rig.watcher.looks
    imds.failures = [500, 500, 1.0, 503, 1.0]  # errors, and answers slower than the watcher's 0.3 s timeout
    await rig.inbox.send(handoff("call-during-outage"))
    await until(lambda: answers(server))
    await until(lambda: not imds.failures, seconds=10)
    looks = rig.watcher.looks
    await until(lambda: rig.watcher.looks > looks + 1, seconds=10)  # past the last hang: answering again
    assert rig.watcher.failures == 0 and not rig.stop.is_set()
    [unavailable] = emitted(caplog, "media.scheduled_events_unavailable")  # once per outage, at 3 in a row
    assert unavailable.in_a_row == 3  # type: ignore[attr-defined]
    assert any("IMDS failed (5 in a row)" in r.getMessage() for r in caplog.records)
    imds.events(event("terminate-after-outage"))  # it still sees what comes after
    await asyncio.wait_for(rig.stop.wait(), 5)


async def test_a_repeated_document_is_not_handled_again(rig: Rig, imds: Imds,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    imds.events(event("freeze-2", "Freeze"))
    looks = rig.watcher.looks
    await until(lambda: rig.watcher.looks > looks + 5)  # the same incarnation, read again and again
    # a new incarnation with the same event (now started) and another instance's: nothing new for this one
    imds.events(event("freeze-2", "Freeze", status="Started", starts_in=None), event("x", resources=(OTHER,)))
    looks = rig.watcher.looks
    await until(lambda: rig.watcher.looks > looks + 5)
    assert len(emitted(caplog, "media.scheduled_event")) == 1
    assert rig.watcher.incarnation == imds.document["DocumentIncarnation"]


async def test_an_event_shared_with_other_instances_drains_but_is_not_approved(
        rig: Rig, imds: Imds, caplog: pytest.LogCaptureFixture) -> None:
    """Approving lets an event proceed for every VM it names, before their own drains end."""
    caplog.set_level(logging.INFO)
    imds.events(event("reboot-1", "Reboot", (ME, OTHER)))
    await asyncio.wait_for(rig.stop.wait(), 5)
    await rig.worker.drain(rig.watcher.drain_seconds(900))
    assert await rig.watcher.approve() == []
    assert imds.approvals == []
    [skipped] = emitted(caplog, "media.scheduled_event_not_approved")
    assert skipped.why == "shared"  # type: ignore[attr-defined]


async def test_an_event_gone_by_the_end_of_the_drain_is_not_approved(rig: Rig, imds: Imds) -> None:
    imds.events(event("redeploy-1", "Redeploy"))
    await asyncio.wait_for(rig.stop.wait(), 5)
    imds.events()  # cancelled by the platform
    await rig.worker.drain(rig.watcher.drain_seconds(900))
    assert await rig.watcher.approve() == []
    assert imds.approvals == []


async def test_an_event_already_started_allows_no_drain_time(rig: Rig, imds: Imds) -> None:
    imds.events(event("preempt-1", "Preempt", status="Started", starts_in=None))
    await asyncio.wait_for(rig.stop.wait(), 5)
    assert rig.watcher.drain_seconds(900) == 0


async def test_a_worker_started_on_an_instance_being_deleted_drains_before_taking(
        server: LoopbackServer, imds: Imds, tmp_path: Path) -> None:
    imds.events(event("terminate-3", status="Started", starts_in=None))
    settings = service.check(service_env(server, tmp_path))
    worker = MediaWorker(settings, engine=LoopbackEngine(), inbox=InProcessTransport(), calls=None,  # type: ignore[arg-type]
                         authenticator=None, app=lambda *_: None)  # type: ignore[arg-type]
    stop = asyncio.Event()
    watch = await se.watch(worker, settings, stop, {se.SETTING: imds.url})
    assert stop.is_set()  # serve() drains before its first take
    await watch.finish()
    assert imds.approvals == [{"StartRequests": [{"EventId": "terminate-3"}]}]


def service_env(server: LoopbackServer, tmp_path: Path, **more: str) -> dict[str, str]:
    port = _free_port()
    return {"BOT_APP_ID": APP_ID, "BOT_TENANT_ID": TENANT_ID, "BOT_PUBLIC_URL": "https://bot.example.com",
            "GRAPH_BASE_URL": server.graph_url, "CALLING_OPENID_CONFIG_URL": server.openid_url,
            "MEDIA_WORKER_PUBLIC_URL": f"http://127.0.0.1:{port}", "MEDIA_WORKER_LISTEN": f"127.0.0.1:{port}",
            "MEDIA_HANDOFF_TRANSPORT": "servicebus", "SERVICEBUS_NAMESPACE": "sb-test.servicebus.windows.net",
            "RECORDINGS_DIR": str(tmp_path / "recordings"), **more}


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def test_serve_ends_after_the_drain_and_approves_the_terminate(
        server: LoopbackServer, imds: Imds, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """`python -m mediavm` with MEDIA_SCHEDULED_EVENTS pointing at the stand-in: a scale-in ends the service
    without a signal, the call it held hung up at NotBefore less the margin, then the event approved."""
    caplog.set_level(logging.INFO)
    monkeypatch.setenv(se.SETTING, imds.url)
    settings = service.check(service_env(server, tmp_path))
    inbox = InProcessTransport()
    run = asyncio.create_task(service.serve(settings, None, inbox=inbox))
    now = datetime.now(UTC)
    await inbox.send(HandoffMessage(call_id="call-svc", tenant_id=TENANT_ID,
                                    notification=incoming_call("call-svc", bot_data={
                                        "inviteReasons": ["PolicyBasedRecording"], "policyIdentifier": "P"}),
                                    decision={"action": "handoff", "reason": "policy_recording"},
                                    deadline=now + timedelta(seconds=5), received_at=now))
    await until(lambda: answers(server))
    imds.events(event("terminate-svc", starts_in=31))
    await asyncio.wait_for(run, 15)  # ended by the event, not by a signal
    [hang_up] = [r for r in server.graph_requests() if r.method == "DELETE"]
    [approval] = [r for r in imds.requests if r.method == "POST"]
    assert approval.body == {"StartRequests": [{"EventId": "terminate-svc"}]}
    assert hang_up.at < approval.at
    [stopped] = emitted(caplog, "media.stopped")
    assert (stopped.why, stopped.event_type, stopped.approved) == ("scheduled_event", "Terminate", 1)  # type: ignore[attr-defined]


# --- the document and the setting -----------------------------------------------------------------------

def test_the_documents_example_parses() -> None:
    """Microsoft's example (a Freeze seen by two VMs of a live migration), and its started form."""
    document = se.EventsDocument.parse({
        "DocumentIncarnation": 2,
        "Events": [{"EventId": "C7061BAC-AFDC-4513-B24B-AA5F13A16123", "EventStatus": "Scheduled",
                    "EventType": "Freeze", "ResourceType": "VirtualMachine", "Resources": ["WestNO_0", "WestNO_1"],
                    "NotBefore": "Mon, 11 Apr 2022 22:26:58 GMT",
                    "Description": "Virtual machine is being paused because of a memory-preserving Live Migration "
                                   "operation.", "EventSource": "Platform", "DurationInSeconds": 5}]})
    [freeze] = document.events
    assert freeze.not_before == datetime(2022, 4, 11, 22, 26, 58, tzinfo=UTC)
    assert freeze.names("westno_1") and not freeze.only("WestNO_0") and freeze.duration_seconds == 5
    started = se.ScheduledEvent.parse({**event("e", starts_in=None), "DurationInSeconds": -1})
    assert started.not_before is None and started.duration_seconds is None
    assert se.EventsDocument.parse({"DocumentIncarnation": 1, "Events": []}).events == ()


@pytest.mark.parametrize("body", [[], {"Events": []}, {"DocumentIncarnation": 1, "Events": {}},
                                  {"DocumentIncarnation": 1, "Events": [{"EventType": "Reboot"}]},
                                  {"DocumentIncarnation": 1, "Events": [{**event("e"), "NotBefore": "soon"}]}])
def test_a_document_it_cannot_read_is_refused(body: Any) -> None:
    with pytest.raises(ValueError):
        se.EventsDocument.parse(body)


def test_the_setting() -> None:
    assert se.imds_url({}, "windows") == (se.IMDS_URL, [])  # on a media VM in Azure by default
    assert se.imds_url({}, "loopback") == (None, [])
    assert se.imds_url({se.SETTING: "off"}, "windows") == (None, [])
    assert se.imds_url({se.SETTING: "on"}, "loopback") == (se.IMDS_URL, [])
    assert se.imds_url({se.SETTING: "http://127.0.0.1:8123/"}, "loopback") == ("http://127.0.0.1:8123", [])
    url, problems = se.imds_url({se.SETTING: "https://example.com"}, "windows")
    assert url is None and problems and se.SETTING in problems[0]
    assert se.check({se.SETTING: "maybe"})
