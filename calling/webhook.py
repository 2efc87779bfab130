"""The notification webhook, without any web framework: size -> authenticate -> parse -> decide -> act.

Incoming calls are decided and acted on inside the request (Graph wants the answer within 15 s, 5 s for
policy recording; a queue hop or an idle Durable backend could not promise that). Every later event of
a call goes, in order, to one boundary: a `CallEventSink`, which the Functions adapter implements by
raising an event on the call's orchestration. The HTTP adapter in functions/ only translates.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from calling import telemetry
from calling.auth import Caller, NotificationAuthenticator
from calling.config import Settings
from calling.errors import GraphError
from calling.events import CallEvent, CallStateChanged, IncomingCall, ParticipantJoining
from calling.flows import commands as c
from calling.flows.events import party_fact
from calling.flows.prompts import prefetch
from calling.flows.snapshot import snapshot
from calling.handoff import HandoffExpired, HandoffFailed, HandoffMessage, HandoffTransport
from calling.identities import Party
from calling.ids import is_graph_id
from calling.intake import WebhookResponse, error, take_in
from calling.notifications import notification_call_id
from calling.routing import Answer, Decision, HandOff, Redirect, Reject, Router, parse_target
from calling.session import FlowLibrary, FlowNotFound, Session, open_call
from calling.sink import CallEventSink
from calling.yamlsource import SourceErrors

if TYPE_CHECKING:  # msgraph-sdk loads with the first Graph request, not with the app (cold start)
    from calling.graph import CallControl

log = logging.getLogger("calling.webhook")

SAFETY_MARGIN_SECONDS = 1.0  # leave Graph this much of the deadline for the request itself
#: How often the webhook asks Graph whether a media worker has answered a handed-off call, and how much of the
#: deadline it keeps for the reject (or fallback answer) when none has.
HANDOFF_LOOK = 0.5
HANDOFF_REJECT_TIME = 0.75
#: The first looks come sooner: a healthy worker answers within milliseconds to a few hundred, and Graph's
#: POST is held open until a look sees the answer.
HANDOFF_FIRST_LOOKS = (0.1, 0.2, 0.2)
#: How long a media worker has to answer a handed-off call (its message's deadline), within Graph's window:
#: a healthy worker answers within a second or two, and past this the webhook rejects the call or answers it
#: with the fallback flow while Graph's 15 s still leave time for that.
HANDOFF_PATIENCE = timedelta(seconds=6)


class CallControlSource(Protocol):
    def for_tenant(self, tenant_id: str | None = None) -> CallControl: ...


class RecentCalls:
    """Call ids this process has acted on lately: a duplicated incoming notification is acted on once.

    Per process and bounded; a duplicate that reaches another instance is answered there too and Graph
    refuses the second answer (the error is logged), so correctness never depends on this cache.
    """

    def __init__(self, ttl: float = 600.0, capacity: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl
        self._capacity = capacity
        self._clock = clock
        self._seen: OrderedDict[str, float] = OrderedDict()

    def first_time(self, call_id: str) -> bool:
        now = self._clock()
        while self._seen and (len(self._seen) >= self._capacity or next(iter(self._seen.values())) < now - self._ttl):
            self._seen.popitem(last=False)
        if call_id in self._seen:
            return False
        self._seen[call_id] = now
        return True


class Webhook:
    def __init__(
        self,
        *,
        settings: Settings,
        authenticator: NotificationAuthenticator,
        router: Router,
        calls: CallControlSource,
        handoff: HandoffTransport | None = None,
        flows: FlowLibrary | None = None,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._settings = settings
        self._sleep = sleep
        self._auth = authenticator
        self._router = router
        self._calls = calls
        self._handoff = handoff
        self._flows = flows
        self._clock = clock
        self._now = now
        self._recent = RecentCalls(clock=clock)

    async def handle(self, headers: Mapping[str, str], body: bytes, sink: CallEventSink | None = None,
                     *, session: str | None = None) -> WebhookResponse:
        """One POST from Graph. `session`: the call whose session owns these notifications, from the callback
        path `/api/calls/{session}` the bot gave a call of its own (a consultative transfer's second call)."""
        if session is not None and not is_graph_id(session):  # a Graph call id, hence a Durable instance id too
            return error(400, "bad_request", "the callback path's session must be a call id (letters, digits, -)")
        received = self._clock()
        received_at = self._now()
        h = {k.lower(): v for k, v in headers.items()}
        with telemetry.correlation(scenario_id=h.get("scenario-id"), chain_id=h.get("x-microsoft-skype-chain-id")), \
                telemetry.tracer.start_as_current_span("calls.notification") as span:
            response = await self._handle(h, body, sink, received, received_at, session)
            span.set_attribute("http.response.status_code", response.status)
            return response

    async def _handle(self, h: Mapping[str, str], body: bytes, sink: CallEventSink | None,
                      received: float, received_at: datetime, session: str | None) -> WebhookResponse:
        taken = await take_in(h, body, authenticator=self._auth, max_body_bytes=self._settings.max_body_bytes)
        if isinstance(taken, WebhookResponse):
            return taken
        with telemetry.correlation(tenant_id=taken.caller.tenant_id):
            response = await self._dispatch(taken.batch.events, taken.caller, sink, received, received_at, session)
            return taken.accepted(response)

    async def _dispatch(self, events: list[CallEvent], caller: Caller, sink: CallEventSink | None,
                        received: float, received_at: datetime, session: str | None) -> WebhookResponse:
        later: OrderedDict[str, list[Mapping[str, Any]]] = OrderedDict()
        joining: dict[str, Any] | None = None
        for event in events:
            with telemetry.correlation(call_id=event.call_id):
                if isinstance(event, IncomingCall):
                    await self._incoming(event, caller, received, received_at, sink)
                    continue
                if isinstance(event, ParticipantJoining):
                    joining = self._joining_response(event)
                    continue
                if isinstance(event, CallStateChanged) and event.is_terminated:
                    ri = event.result_info
                    telemetry.emit("call.terminated", code=ri.code if ri else None,
                                   subcode=ri.subcode if ri else None, result_message=ri.message if ri else None,
                                   termination_reason=event.termination_reason)
                batch = later.setdefault(session or event.call_id, [])
                if not batch or batch[-1] is not event.raw:
                    batch.append(event.raw)
        for call_id, notifications in later.items():
            with telemetry.correlation(call_id=call_id):
                await self._deliver(sink, call_id, notifications, caller)
        if joining is not None:
            return WebhookResponse(200, joining)
        return WebhookResponse(202, {"status": "accepted", "events": len(events)})

    async def _deliver(self, sink: CallEventSink | None, call_id: str,
                       notifications: list[Mapping[str, Any]], caller: Caller) -> None:
        if sink is None:
            log.info("no event sink: %d notification(s) for the call dropped", len(notifications))
            return
        try:
            delivered = await sink.deliver(call_id, notifications)
        except Exception:  # a sink failure must not turn into a 500: Graph does not resend notifications
            log.exception("delivering %d notification(s) failed", len(notifications))
            return
        if not delivered:
            log.info("no orchestration runs this call: %d notification(s) logged and dropped", len(notifications))
            for orphan in _orphans(notifications):
                await self._hang_up_orphan(caller, orphan)

    async def _hang_up_orphan(self, caller: Caller, call_id: str) -> None:
        """A call this bot placed is up with nobody running it: Graph created it although it answered the
        bot's request with an error, so no session ever started. Nobody would ever talk on it."""
        log.warning("call %s was placed by the bot and answered, but no session runs it: hanging it up", call_id)
        telemetry.emit("call.orphan_hung_up")
        try:
            await self._calls.for_tenant(caller.tenant_id).hang_up(call_id)
        except GraphError as exc:
            log.warning("hanging up the orphan call failed: %s", exc)

    async def _incoming(self, call: IncomingCall, caller: Caller, received: float, received_at: datetime,
                        sink: CallEventSink | None) -> None:
        if not self._recent.first_time(call.call_id):
            log.info("duplicate incoming-call notification ignored")
            return
        if call.tenant_id and call.tenant_id.lower() != caller.tenant_id:
            log.warning("call tenant %r differs from the token's; acting for the token's tenant", call.tenant_id[:100])
        telemetry.emit("call.incoming", caller_kind=call.source.kind, caller=mask(call.source),
                       target_kind=call.targets[0].kind if call.targets else None,
                       policy_recording=call.is_policy_recording or None)
        decision = self._router.decide(call)
        window = 5.0 if call.is_policy_recording else 15.0
        deadline = received + window - SAFETY_MARGIN_SECONDS
        control = self._calls.for_tenant(caller.tenant_id)
        try:
            done = await self._act(call, decision, control, caller, deadline, received, received_at, sink)
        except GraphError as exc:
            log.error("acting on the incoming call failed: %s", exc)
            telemetry.emit("call.action_failed", action=exc.action, rule=decision.rule, status=exc.status,
                           code=exc.code, error=exc.message, request_id=exc.request_id,
                           client_request_id=exc.client_request_id)
            return
        except Exception:  # one bad call must not lose the rest of the batch
            log.exception("acting on the incoming call failed unexpectedly")
            telemetry.emit("call.action_failed", action=type(decision).__name__.lower(), rule=decision.rule,
                           code="unexpected")
            return
        latency_ms = round((self._clock() - received) * 1000, 1)
        if isinstance(done, Answer):
            telemetry.emit("call.answered", flow=done.flow, rule=done.rule, latency_ms=latency_ms)
        elif isinstance(done, Reject):
            telemetry.emit("call.rejected", reason=done.reason, rule=done.rule, latency_ms=latency_ms)
        elif isinstance(done, Redirect):
            telemetry.emit("call.redirected", targets=len(done.targets), timeout=done.timeout,
                           rule=done.rule, latency_ms=latency_ms)
        elif isinstance(done, HandOff):
            telemetry.emit("call.handed_off", reason=done.reason, rule=done.rule, latency_ms=latency_ms)

    async def _act(self, call: IncomingCall, decision: Decision, control: CallControl, caller: Caller,
                   deadline: float, received: float, received_at: datetime,
                   sink: CallEventSink | None) -> Decision | None:
        """Perform the decision; what was actually done (a flow may reject or redirect instead of answering),
        or None when that is already reported (a hand-off with no transport)."""
        if isinstance(decision, Answer):
            if self._flows is None or sink is None:
                from calling.graph import ServiceHostedMedia

                await control.answer(call.call_id, media=ServiceHostedMedia(), deadline=deadline)
                return decision
            return await self._answer(call, decision, control, caller, deadline, received, received_at, sink,
                                      self._flows)
        if isinstance(decision, Reject):
            await control.reject(call.call_id, reason=decision.reason, deadline=deadline)  # type: ignore[arg-type]
        elif isinstance(decision, Redirect):
            await control.redirect(call.call_id, decision.targets, timeout=decision.timeout, deadline=deadline)
        elif isinstance(decision, HandOff):
            return await self._hand_off(call, decision, control, caller, deadline, received, received_at, sink)
        return decision

    async def _answer(self, call: IncomingCall, decision: Answer, control: CallControl, caller: Caller,
                      deadline: float, received: float, received_at: datetime, sink: CallEventSink,
                      flows: FlowLibrary) -> Decision | None:
        """Run the flow's first step before answering: it may redirect, reject or hand off instead.

        The session starts before the answer, so the call's first notifications find it running.
        """
        try:
            bundle = flows.bundle(decision.flow)
        except (FlowNotFound, SourceErrors) as exc:
            log.error("flow %r cannot run, rejecting the call busy: %s", decision.flow, exc)
            telemetry.emit("call.flow_unavailable", flow=decision.flow, rule=decision.rule, error=str(exc)[:500])
            await control.reject(call.call_id, reason="busy", deadline=deadline)
            return Reject("busy", decision.rule)
        target = call.targets[0] if call.targets else None
        opening = open_call(bundle, caller=party_fact(call.source.kind, call.source.id),
                            called=party_fact(target.kind, target.id) if target else "", at=received_at)
        leaving = opening.leaving
        if isinstance(leaving, c.Redirect):
            targets = tuple(parse_target(t) for t in leaving.targets)
            await control.redirect(call.call_id, list(targets), timeout=leaving.timeout, deadline=deadline)
            return Redirect(targets, leaving.timeout, decision.rule)
        if isinstance(leaving, c.HangUp):
            await control.reject(call.call_id, reason="none", deadline=deadline)
            return Reject("none", decision.rule)
        if isinstance(leaving, c.HandOff):
            return await self._hand_off(call, HandOff(reason=leaving.reason, rule=decision.rule), control, caller,
                                        deadline, received, received_at, sink)
        session = Session(call.call_id, caller.tenant_id, decision.flow, opening.state, list(opening.commands),
                          snapshot=snapshot(bundle))
        try:
            await sink.start(call.call_id, session.to_json())
        except Exception:
            log.exception("starting the call's session failed: rejecting it busy rather than answering to silence")
            await control.reject(call.call_id, reason="busy", deadline=deadline)
            return Reject("busy", decision.rule)
        media = prefetch(bundle, await flows.prompts_url())
        try:
            await control.answer(call.call_id, media=media, deadline=deadline)
        except GraphError as exc:
            if not _uncertain(exc):
                await self._reject_quietly(control, call.call_id, deadline)  # refused: the call still rings
                raise
            if self._clock() >= deadline:
                raise  # Graph may still be answering it: the session's look decides once the window has passed
            # A 5xx or no answer at all: Graph may not have got it, or may have answered and lost the reply.
            # Answering again is safe (Graph refuses a second answer) and serves the caller.
            log.warning("answering failed (%s); answering once more", exc)
            if not await self._answer_again(call.call_id, control, media, deadline):
                raise
        return decision

    async def _answer_again(self, call_id: str, control: CallControl, media: Any, deadline: float) -> bool:
        """Whether the call counts as answered after a second try. A second refusal (4xx) means the first
        answer most likely took (Graph refuses a second one) or the call is gone: nothing is rejected, and the
        session's bounded wait confirms either (calling/watch.py). Only a second 5xx rejects the call."""
        try:
            await control.answer(call_id, media=media, deadline=deadline)
        except GraphError as again:
            if _uncertain(again):
                await self._reject_quietly(control, call_id, deadline)
                return False
            log.warning("the second answer was refused (%s): the first most likely took", again)
        return True

    async def _reject_quietly(self, control: CallControl, call_id: str, deadline: float) -> None:
        for attempt in (1, 2):
            try:
                await control.reject(call_id, reason="busy", deadline=deadline)
                return
            except GraphError as exc:
                if attempt == 2 or not _uncertain(exc) or self._clock() >= deadline:
                    log.warning("rejecting the call after its failed answer failed too: %s", exc)
                    return

    async def _hand_off(self, call: IncomingCall, decision: HandOff, control: CallControl, caller: Caller,
                        deadline: float, received: float, received_at: datetime,
                        sink: CallEventSink | None = None) -> Decision | None:
        """Give the call to a media worker, then watch Graph for its answer: a worker that is full, gone or
        slow must not leave the caller ringing (docs/architecture.md, "Never left ringing")."""
        if self._handoff is None:
            log.error("the policy hands this call to app-hosted media, but MEDIA_HANDOFF_TRANSPORT is none: "
                      "rejecting it")
            telemetry.emit("call.handoff_unavailable", reason=decision.reason, rule=decision.rule)
            await control.reject(call.call_id, reason="busy", deadline=deadline)
            telemetry.emit("call.rejected", reason="busy", rule=decision.rule,
                           latency_ms=round((self._clock() - received) * 1000, 1))
            return None
        ids = telemetry.current_correlation()
        # When the webhook takes the call back if no worker has answered it: after a worker's fair chance, and
        # early enough for a reject or the fallback answer inside Graph's window (3.25 s for policy recording).
        take_back = min(received + HANDOFF_PATIENCE.total_seconds(), deadline - HANDOFF_REJECT_TIME)
        message = HandoffMessage(
            call_id=call.call_id,
            tenant_id=caller.tenant_id,
            notification=call.raw,
            decision={"action": "handoff", "reason": decision.reason, "rule": decision.rule},
            # A worker must answer by then: past it, the webhook takes the call back (below), so both never answer.
            deadline=received_at + timedelta(seconds=take_back - received),
            received_at=received_at,
            scenario_id=ids.get("scenario_id"),
            chain_id=ids.get("chain_id"),
        )
        try:
            await self._handoff.send(message)
        except Exception as exc:  # Service Bus unreachable, slow or refusing (HandoffFailed), too late, or a bug
            if isinstance(exc, HandoffFailed):  # HandoffExpired too: past the take-back time, Graph's is not yet
                log.error("sending the hand-off failed: %s", exc)
            else:
                log.exception("sending the hand-off failed unexpectedly")
            why = "the hand-off was not sent in time" if isinstance(exc, HandoffExpired) else \
                "the hand-off could not be sent"
            return await self._no_worker(call, decision, control, caller, deadline, received, received_at, sink, why)
        if await self._answered_by_a_worker(control, call.call_id, take_back):
            return decision
        return await self._no_worker(call, decision, control, caller, deadline, received, received_at, sink,
                                     "no media worker answered it in time")

    async def _answered_by_a_worker(self, control: CallControl, call_id: str, until: float) -> bool:
        """Whether the call left `incoming` by `until` (monotonic): Graph itself says a worker answered it,
        whatever became of the hand-off on the way."""
        for gap in _look_gaps(max(0.0, until - self._clock())):
            await self._sleep(gap)
            try:
                state = (await control.get_call(call_id)).state or ""
            except GraphError as exc:
                if exc.status == 404:
                    return True  # the call is gone: nothing left to answer or reject
                continue
            if state.lower() != "incoming":
                return True
        return False

    async def _no_worker(self, call: IncomingCall, decision: HandOff, control: CallControl, caller: Caller,
                         deadline: float, received: float, received_at: datetime, sink: CallEventSink | None,
                         why: str) -> Decision | None:
        """No worker took the call: answer a call that is not recorded with the fallback flow, if there is
        one; reject the rest busy (a service-hosted answer cannot record)."""
        fallback = self._settings.media_fallback_flow
        telemetry.emit("call.handoff_unanswered", reason=decision.reason, rule=decision.rule, why=why,
                       fallback=fallback if fallback and not call.is_policy_recording else None)
        if fallback and not call.is_policy_recording and sink is not None and self._flows is not None:
            log.warning("%s: answering the call with the fallback flow %r", why, fallback)
            return await self._answer(call, Answer(flow=fallback, rule=decision.rule), control, caller, deadline,
                                      received, received_at, sink, self._flows)
        log.error("%s: rejecting the call busy", why)
        await control.reject(call.call_id, reason="busy", deadline=deadline)
        return Reject("busy", decision.rule)

    def _joining_response(self, event: ParticipantJoining) -> dict[str, Any]:
        """A recording-group join reaching this app: re-send it as a new incoming call, which routes to media."""
        telemetry.emit("call.participant_joining", action="invite_new_bot")
        return {"@odata.type": "#microsoft.graph.inviteNewBotResponse", "inviteUri": self._settings.callback_uri}


def _orphans(notifications: list[Mapping[str, Any]]) -> list[str]:
    """Calls the bot placed (direction `outgoing`) that are established: someone answered them. A session
    starts within a second of placing a call, long before a callee answers, so such a call without one is an
    orphan of a placement whose answer was lost."""
    found: list[str] = []
    for raw in notifications:
        data = raw.get("resourceData")
        if not isinstance(data, Mapping) or str(data.get("direction") or "").lower() != "outgoing":
            continue
        if str(data.get("state") or "").lower() != "established":
            continue
        call_id = notification_call_id(raw)
        if call_id and is_graph_id(call_id) and call_id not in found:
            found.append(call_id)
    return found


def _uncertain(exc: GraphError) -> bool:
    """A failure after which Graph may or may not have done it: a 5xx, a timeout, no answer at all."""
    return exc.status is None or exc.status >= 500 or exc.status == 408


def mask(party: Party) -> str | None:
    """A caller for telemetry: a phone number loses its last four digits (PII); other ids are kept. Whatever
    is not plain printable ASCII is escaped, so a caller id cannot forge a log line or break a log handler."""
    shown = party.id
    if party.kind == "phone" and shown:
        shown = shown[:-4] + "****" if len(shown) > 6 else "****"
    if shown is not None and not (shown.isascii() and shown.isprintable()):
        shown = ascii(shown[:100])[1:-1]
    return shown


def _look_gaps(seconds: float) -> list[float]:
    """The waits before each look at a handed-off call within `seconds`: HANDOFF_FIRST_LOOKS, then every
    HANDOFF_LOOK; at least one look."""
    gaps: list[float] = []
    spent = 0.0
    for gap in (*HANDOFF_FIRST_LOOKS, *[HANDOFF_LOOK] * int(seconds / HANDOFF_LOOK + 1)):
        if spent + gap > seconds + 1e-9:
            break
        gaps.append(gap)
        spent += gap
    return gaps or [min(seconds, HANDOFF_FIRST_LOOKS[0])]

