"""The media worker: takes app-hosted calls off the hand-off inbox, answers them itself, runs their media.

One process per media VM, asyncio throughout:
- `run()` takes hand-offs only while it has room (`capacity`), drops those already past their deadline,
  creates the call's media session *before* answering (its configuration is the answer's blob), and
  answers with its own callback URL, so the call's notifications come here, and `participantCapacity`
  for policy recording. The webhook watches Graph for that answer and rejects the call if none comes in
  time (calling/webhook.py), so a worker that is full, gone or slow never leaves a caller ringing.
- `handle()` is its notification endpoint (mediavm/server.py serves it): the same intake as the Functions
  webhook (calling/intake.py: size, authentication, parsing), then each call's events go to its `WorkerCall`.
- each call has a media pump (the session's frames to the call's application), a keepAlive every 15
  minutes, and its end (terminated, 404, media lost): the application closes and the session is disposed.
- `drain()` stops taking calls and lets live ones finish up to `drain_seconds`, then ends them.
What runs on a call is a `CallApp` (mediavm/compliance.py: policy-based recording).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from calling import telemetry
from calling.errors import GraphError
from calling.events import (
    CallStateChanged,
    IncomingCall,
    ParticipantJoining,
    ParticipantState,
    ParticipantsUpdated,
    ResultInfo,
)
from calling.handoff import HandoffInbox, HandoffMessage, Taken
from calling.intake import WebhookResponse, take_in
from calling.notifications import NotificationError, parse_notification
from mediavm.config import WorkerSettings
from mediavm.engine import AudioFrame, MediaEngine, MediaSession

if TYPE_CHECKING:
    from calling.auth import NotificationAuthenticator
    from calling.graph import CallControl

log = logging.getLogger("mediavm.worker")

KEEPALIVE_EVERY = timedelta(minutes=15)
#: Leave Graph this much of the answer window for the request itself.
ANSWER_MARGIN = timedelta(seconds=0.5)
#: After a call ends, how long (wall seconds) its media may go on delivering what it already carried.
MEDIA_FLUSH_SECONDS = 1.0
#: When a call's media stops, how long the worker waits for Graph to say the call ended before it takes the
#: media for lost (the recording then says `failed`).
MEDIA_END_GRACE_SECONDS = 2.0
#: After the inbox fails (Service Bus unreachable), how long before the worker tries again.
TAKE_RETRY_SECONDS = 2.0


@contextlib.asynccontextmanager
async def _idle() -> AsyncIterator[None]:
    yield


class CallControlSource(Protocol):
    def for_tenant(self, tenant_id: str | None = None) -> CallControl: ...


class CallApp(Protocol):
    """What runs on a worker's call (compliance recording first)."""

    async def on_audio(self, tick: list[AudioFrame]) -> None:
        """One 20 ms tick of received audio: each active speaker's unmixed frame."""

    def on_roster(self, participants: Sequence[ParticipantState]) -> None:
        """The call's roster, as Graph last sent it."""

    async def media_lost(self) -> None:
        """The media stopped while the call is still up."""

    async def close(self, *, complete: bool, reason: str | None = None) -> None:
        """The call ended (`complete`) or the worker let go of it before its end (`reason` says why)."""


#: Builds the application of a handed-off call before the worker answers it; None: this worker runs nothing
#: for such a call, so it does not answer it (the webhook, seeing no answer, falls back or rejects).
AppFactory = Callable[["CallControl", HandoffMessage, IncomingCall], "CallApp | None"]


@dataclass
class WorkerCall:
    """One call this worker answered."""

    call_id: str
    tenant_id: str
    control: CallControl
    session: MediaSession
    app: CallApp
    incoming: IncomingCall
    joined: int = 1  # participants of the recording group this answer holds (participantCapacity)
    ticks: int = 0  # 20 ms ticks of media received
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    ended: asyncio.Event = field(default_factory=asyncio.Event)


class MediaWorker:
    def __init__(self, settings: WorkerSettings, *, engine: MediaEngine, inbox: HandoffInbox,
                 calls: CallControlSource, authenticator: NotificationAuthenticator, app: AppFactory,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC),
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 busy: Callable[[], AbstractAsyncContextManager[None]] = _idle) -> None:
        """`sleep` and `busy`: the local host's virtual clock in tests (work in a busy scope holds time still)."""
        self.settings = settings
        self._engine = engine
        self._inbox = inbox
        self._calls = calls
        self._auth = authenticator
        self._app = app
        self._now = now
        self._clock = clock
        self._sleep = sleep
        self._busy = busy
        self.live: dict[str, WorkerCall] = {}
        self._room = asyncio.Event()
        self._room.set()
        self.draining = False
        self.taken = 0
        self.dropped = 0  # hand-offs already past their deadline
        self.failed = 0  # hand-offs it could not answer
        self.unsupported = 0  # hand-offs for which it runs nothing (see AppFactory)
        self.take_errors = 0  # failures to take from the inbox in a row (the queue unreachable)

    # --- taking calls -------------------------------------------------------------------------------

    async def run(self) -> None:
        """Take hand-offs until drained."""
        await self._engine.start()
        while not self.draining:
            if len(self.live) >= self.settings.capacity:
                self._room.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._room.wait(), 1.0)
                continue
            try:
                taken = await self._inbox.take(1.0)
            except Exception as exc:  # the queue is unreachable for now: keep trying, never stop taking calls
                self.take_errors += 1
                log.exception("taking a hand-off failed (%d in a row); trying again in %g s", self.take_errors,
                              TAKE_RETRY_SECONDS)
                telemetry.emit("media.take_failed", error=type(exc).__name__, in_a_row=self.take_errors)
                await asyncio.sleep(TAKE_RETRY_SECONDS)
                continue
            self.take_errors = 0
            if taken is None:
                continue
            if self.draining:
                await taken.release()
                break
            async with self._busy():
                try:
                    await self._take(taken)
                except Exception:
                    log.exception("hand-off of call %s could not be handled", taken.message.call_id)
                    self.failed += 1
                    with contextlib.suppress(Exception):
                        await taken.done()  # settled: its deadline is seconds away, another worker would be late

    async def _take(self, taken: Taken) -> None:
        message = taken.message
        now = self._now()
        if message.expired(now + ANSWER_MARGIN):  # too late to answer before the webhook takes the call back
            log.warning("hand-off of call %s is past its deadline: dropped (Graph has moved on)", message.call_id)
            self.dropped += 1
            await taken.done()
            return
        try:
            events = parse_notification(message.notification)
        except NotificationError as exc:
            log.error("hand-off of call %s holds no readable notification: %s", message.call_id, exc)
            self.failed += 1
            await taken.done()
            return
        incoming = next((e for e in events if isinstance(e, IncomingCall)), None)
        if incoming is None:
            self.failed += 1
            await taken.done()
            return
        with telemetry.correlation(call_id=message.call_id, tenant_id=message.tenant_id,
                                   scenario_id=message.scenario_id, chain_id=message.chain_id):
            answered = await self._answer(message, incoming, now)
        await taken.done()
        if answered:
            self.taken += 1

    async def _answer(self, message: HandoffMessage, incoming: IncomingCall, now: datetime) -> bool:
        from calling.graph import AppHostedMedia

        control = self._calls.for_tenant(message.tenant_id)
        app = self._app(control, message, incoming)
        if app is None:
            log.warning("hand-off of call %s (%s): this worker runs nothing for it; not answered", message.call_id,
                        message.decision.get("reason", "?"))
            telemetry.emit("media.handoff_unsupported", reason=str(message.decision.get("reason", "")) or None)
            self.unsupported += 1
            return False
        session = await self._engine.create_session(message.call_id)
        deadline = self._clock() + max(0.0, (message.deadline - now - ANSWER_MARGIN).total_seconds())
        capacity = self.settings.participant_capacity if incoming.is_policy_recording else None
        try:
            await control.answer(message.call_id, media=AppHostedMedia(session.configuration()),
                                 callback_uri=self.settings.callback_uri, participant_capacity=capacity,
                                 deadline=deadline)
        except GraphError as exc:
            log.error("answering handed-off call %s failed: %s", message.call_id, exc)
            telemetry.emit("media.answer_failed", status=exc.status, code=exc.code, error=exc.message)
            self.failed += 1
            await session.close()
            return False
        call = WorkerCall(message.call_id, message.tenant_id, control, session, app, incoming)
        self.live[call.call_id] = call
        call.tasks = [asyncio.create_task(self._pump(call)), asyncio.create_task(self._keep_alive(call))]
        telemetry.emit("media.answered", policy_recording=incoming.is_policy_recording or None,
                       latency_ms=round((self._now() - message.received_at).total_seconds() * 1000, 1))
        return True

    # --- a call's life ------------------------------------------------------------------------------

    async def _pump(self, call: WorkerCall) -> None:
        """The session's frames to the call's application, until the media ends."""
        try:
            async for tick in call.session.frames():
                call.ticks += 1
                async with self._busy():
                    await call.app.on_audio(tick)
        except Exception:
            log.exception("the media pump of call %s failed", call.call_id)
        if not call.ended.is_set():
            # The media of a call that ends stops about when Graph says it ended: wait a little for that word.
            ended = asyncio.create_task(call.ended.wait())
            grace = asyncio.ensure_future(self._sleep(MEDIA_END_GRACE_SECONDS))
            await asyncio.wait({ended, grace}, return_when=asyncio.FIRST_COMPLETED)
            for task in (ended, grace):
                task.cancel()
        if not call.ended.is_set():  # the media is gone, the call is not
            log.warning("call %s: its media stopped while the call is up", call.call_id)
            async with self._busy():
                await call.app.media_lost()

    async def _keep_alive(self, call: WorkerCall) -> None:
        """Every 15 minutes while the call lasts (Graph ends a call without one for 45); cancelled at its end."""
        while not call.ended.is_set():
            await self._sleep(KEEPALIVE_EVERY.total_seconds())
            async with self._busy():
                try:
                    await call.control.keep_alive(call.call_id)
                except GraphError as exc:
                    if exc.status == 404:  # Graph no longer has the call: whatever said so was lost
                        await self._end(call, complete=True, reason="call gone")
                        return
                    log.warning("keepAlive for call %s failed: %s", call.call_id, exc)

    async def _end(self, call: WorkerCall, *, complete: bool, reason: str, result: ResultInfo | None = None) -> None:
        if call.ended.is_set():
            return
        call.ended.set()
        self.live.pop(call.call_id, None)
        self._room.set()
        pump = call.tasks[0] if call.tasks else None
        if complete and call.ticks and pump is not None and pump is not asyncio.current_task() and not pump.done():
            # Graph's terminated notification can overtake the call's last media: let the pump take what the
            # media already delivered (it ends when the media connection does) for a bounded time. A call
            # whose media never flowed has nothing to wait for.
            done, _ = await asyncio.wait({pump}, timeout=MEDIA_FLUSH_SECONDS)
            if not done:
                log.warning("call %s: its media did not end within %g s of the call; the rest is not kept",
                            call.call_id, MEDIA_FLUSH_SECONDS)
        await call.session.close()
        for task in call.tasks:
            if task is not asyncio.current_task():
                task.cancel()
        try:
            await call.app.close(complete=complete, reason=None if complete else reason)
        except Exception:
            log.exception("closing call %s's application failed", call.call_id)
        forget = getattr(self._engine, "forget", None)
        if callable(forget):
            forget(call.call_id)
        with telemetry.correlation(call_id=call.call_id, tenant_id=call.tenant_id):
            telemetry.emit("media.call_ended", reason=reason, complete=complete,
                           code=result.code if result is not None else None,
                           subcode=result.subcode if result is not None else None)

    # --- notifications ------------------------------------------------------------------------------

    async def handle(self, headers: Mapping[str, str], body: bytes) -> WebhookResponse:
        """One POST from Graph to this worker's callback: its calls' notifications."""
        async with self._busy():
            return await self._handle({k.lower(): v for k, v in headers.items()}, body)

    async def _handle(self, h: Mapping[str, str], body: bytes) -> WebhookResponse:
        taken = await take_in(h, body, authenticator=self._auth, max_body_bytes=self.settings.app.max_body_bytes)
        if isinstance(taken, WebhookResponse):
            return taken
        joining: dict[str, Any] | None = None
        for event in taken.batch.events:
            call = self.live.get(event.call_id)
            if isinstance(event, ParticipantJoining):
                with telemetry.correlation(call_id=event.call_id, tenant_id=call.tenant_id if call else None):
                    joining = self._joining(call)
            elif call is None:
                continue  # a call this worker does not (or no longer) hold: late, harmless
            elif isinstance(event, ParticipantsUpdated):
                call.app.on_roster(event.participants)
            elif isinstance(event, CallStateChanged) and event.is_terminated:
                await self._end(call, complete=True, reason=event.termination_reason or "terminated",
                                result=event.result_info)
        if joining is not None:
            return WebhookResponse(200, joining)
        return taken.accepted(WebhookResponse(202, {"status": "accepted", "events": len(taken.batch.events)}))

    def _joining(self, call: WorkerCall | None) -> dict[str, Any]:
        """Another participant of a recording group joins: this answer takes it while it has room; beyond
        that the join goes to the app's webhook as a new call (another worker records it)."""
        if call is not None and call.joined < self.settings.participant_capacity:
            call.joined += 1
            telemetry.emit("media.participant_joining", action="accept")
            return {"@odata.type": "#microsoft.graph.acceptJoinResponse"}
        telemetry.emit("media.participant_joining", action="invite_new_bot")
        return {"@odata.type": "#microsoft.graph.inviteNewBotResponse", "inviteUri": self.settings.app.callback_uri}

    # --- shutting down ------------------------------------------------------------------------------

    async def drain(self, seconds: float | None = None) -> None:
        """Take no more calls; let live calls end for up to `seconds` (default drain_seconds), then end them."""
        self.draining = True
        self._room.set()
        limit = self.settings.drain_seconds if seconds is None else seconds
        waits = [asyncio.create_task(call.ended.wait()) for call in self.live.values()]
        if waits:
            await asyncio.wait(waits, timeout=limit)
        for call in list(self.live.values()):
            log.warning("call %s still up after the drain: ending it", call.call_id)
            with contextlib.suppress(GraphError):
                await call.control.hang_up(call.call_id)
            await self._end(call, complete=False, reason="the media worker shut down before the call ended")
        for wait in waits:
            wait.cancel()
        await self._inbox.close()
        await self._engine.stop()

    def health(self) -> dict[str, Any]:
        return {"status": "draining" if self.draining else "ok", "capacity": self.settings.capacity,
                "live": len(self.live), "free": max(0, self.settings.capacity - len(self.live)),
                "taken": self.taken, "dropped": self.dropped, "failed": self.failed, "unsupported": self.unsupported,
                "take_errors": self.take_errors,
                "engine": dict(self._engine.health())}
