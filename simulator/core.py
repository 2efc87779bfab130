"""The simulated Teams calling platform: calls, their state machine, media, transfers, and the callers.

Graph's side (what the bot asks for, `graph_*` methods, driven by `simulator.graph_api`) and the Teams
side (what callers and called parties do: `dial`, `press`, `speak`, `hang_up`, and the `Directory`)
meet here. Every state change becomes a notification in the outbox, posted to the bot in Graph's shape.
Result codes follow ../shared/reference/graph-calling.md section 5; where the docs are silent the choice
is listed in docs/local-development.md ("Simulator assumptions").
"""

from __future__ import annotations

import asyncio
import functools
import logging
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

import aiohttp

from simulator import speech
from simulator.calls import (
    Conversation,
    Heard,
    Leg,
    MediaOp,
    Participant,
    Recording,
    RecordingStatusChange,
    SimCall,
    new_id,
)
from simulator.clock import Clock
from simulator.delivery import Outbox
from simulator.directory import NO_ANSWER_AFTER, Directory, identity_of, target_of
from simulator.faults import Faults
from simulator.media import PromptLibrary, tone_wav
from simulator.media_link import MediaLink, SentFrame
from simulator.signing import Signer
from simulator.speech import Say, Utterance
from simulator.transcript import Transcript

log = logging.getLogger("simulator")

ANSWER_DEADLINE = 15.0
POLICY_RECORDING_DEADLINE = 5.0
KEEPALIVE_LIMIT = 45 * 60.0
BEEP_SECONDS = 0.5
TONE_NAMES = {**{str(d): f"tone{d}" for d in range(10)}, "*": "star", "#": "pound",
              "A": "a", "B": "b", "C": "c", "D": "d"}

OK = {"code": 200, "subcode": 0, "message": "Action completed successfully."}
CANCELLED = {"code": 400, "subcode": 8508, "message": "Action failed, the operation was cancelled."}
MAX_DURATION = {"code": 200, "subcode": 8515, "message": "Action completed, max record duration reached."}
TRANSFERRED = {"code": 0, "subcode": 7015, "message": "GracefulTransferCompleted"}
KEEPALIVE_TIMEOUT = {"code": 408, "subcode": 8537, "message": "Keep Alive timeout"}
#: App-hosted media (docs/local-development.md, "Simulator assumptions"). The media service cannot reach the
#: bot's media session as the call is set up: the call goes from establishing to terminated this long after
#: the attempt, with Graph's documented 500/1005 (comms-samples issues show establishing → terminated
#: "within a couple of seconds" for app-hosted media that cannot be negotiated).
MEDIA_SETUP_FAILED_AFTER = 2.0
MEDIA_UNREACHABLE = {"code": 500, "subcode": 1005, "message": "Server encountered connectivity error with Bot's "
                     "media. Check media connectivity between Bot and Microsoft."}
#: The bot's media connection dropped mid-call and the bot did not hang up: its leg ends this long after,
#: 410/301005 (as policy-recording bots report when removed mid-call). 30 s is ICE's consent-freshness
#: expiry (RFC 7675); Teams does not document its own figure.
MEDIA_LOSS_TIMEOUT = 30.0
MEDIA_LOST = {"code": 410, "subcode": 301005, "message": "Media connectivity failure."}
#: A policy-recording bot that has had the call's media this long without setting any recording status is
#: noted as a violation (Graph: no recording or persisting of media before updateRecordingStatus(recording)
#: succeeded). The simulator's own bound, not a Teams one; Teams does not end the call for it.
RECORDING_STATUS_WITHIN = 5.0
ENDED_BY_BOT = {"code": 200, "subcode": 7000, "message": "The call was ended by the application."}
ENDED_BY_PSTN = {"code": 200, "subcode": 540000, "message": "Call ended by PSTN user."}
ENDED_BY_PEER = {"code": 200, "subcode": 4521, "message": "The conversation was ended by the other participant."}
#: Outcomes of ringing a party, as the call (or operation) ends. Only 408/10057 and 480/10076 are in
#: Graph's table; decline and busy follow SIP (603, 486) and are marked as assumptions in the docs.
RING_FAILURES: dict[str, dict[str, Any]] = {
    "no_answer": {"code": 408, "subcode": 10057, "message": "No signaling from callee endpoints (no answer)."},
    "decline": {"code": 603, "subcode": 0, "message": "The callee declined the call."},
    "busy": {"code": 486, "subcode": 0, "message": "The callee is busy."},
    "fail": {"code": 480, "subcode": 10076, "message": "The callee could not be reached."},
}


class GraphHttpError(Exception):
    """A request Graph refuses: status, Graph error code, message (see simulator.graph_api for the shape)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass
class Bot:
    """The bot as Teams knows it: its app, tenant, calling webhook, and resource accounts with numbers."""

    app_id: str
    tenant_id: str
    webhook_url: str = ""
    #: Phone number -> application instance (resource account) object id.
    numbers: dict[str, str] = field(default_factory=dict)
    display_name: str = "Calling bot"

    def instance_for(self, number: str) -> str | None:
        return self.numbers.get(number)


@dataclass
class Meeting:
    """A scheduled meeting the bot can join, and who is in it."""

    thread_id: str
    organizer: str
    attendees: list[str] = field(default_factory=list)


class Simulator:
    def __init__(self, *, clock: Clock, bot: Bot, directory: Directory | None = None,
                 faults: Faults | None = None, prompts: PromptLibrary | None = None,
                 establish_after: float = 0.2, tone_gap: float = 0.25, signer: Signer | None = None,
                 media_service: bool = False) -> None:
        self.clock = clock
        self.bot = bot
        self.directory = directory or Directory()
        self.faults = faults or Faults()
        self.prompts = prompts or PromptLibrary()
        self.signer = signer or Signer()
        self.establish_after = establish_after
        self.tone_gap = tone_gap
        self.calls: dict[str, SimCall] = {}
        self.meetings: dict[str, Meeting] = {}
        self.recordings: dict[str, tuple[SimCall, Recording]] = {}
        self.url = ""
        self._session: aiohttp.ClientSession | None = None
        self.outbox = Outbox(self)
        self.listeners: list[Callable[[SimCall], None]] = []
        #: Play the Teams media service for app-hosted calls (simulator/media_link.py): connect to the loopback
        #: media session an answer's blob names, fail any other blob. Off: app-hosted media is accepted and
        #: never connected (the Graph-shape tests drive the bare Simulator this way); the harness turns it on.
        self.media_service = media_service
        #: Bot workers that died (`kill_worker`), by the host:port of their callback: nothing is posted there.
        self.dead_workers: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    # -- lifecycle ------------------------------------------------------------------------------

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        return self._session

    async def close(self) -> None:
        for call in self.calls.values():
            self._cancel_timers(call)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for call in self.calls.values():
            if call.media is not None:
                await call.media.aclose()
        await self.outbox.close()
        if self._session is not None:
            await self._session.close()

    def now(self) -> float:
        return self.clock.elapsed()

    def note(self, call: SimCall, summary: str, direction: str = "sim", **detail: Any) -> None:
        call.transcript.add(self.now(), direction, summary, **detail)  # type: ignore[arg-type]
        self.clock.changed()

    # -- the Teams side: callers ------------------------------------------------------------------

    def dial(self, *, source: str, to: str | None = None, tenant_id: str | None = None,
             display_name: str | None = None, policy_recording: bool = False,
             observed: str | None = None, bot_data: dict[str, Any] | None = None, others: Sequence[str] = (),
             speech: Mapping[str, Sequence[Say]] | None = None, webhook: str | None = None) -> SimCall:
        """A caller rings the bot: an incoming-call notification, and Graph's answer deadline starts.

        `to`: the bot's phone number, `instance:<id>`, or None/`app` for the bot's app id (a Teams
        user calling the bot directly).

        With `policy_recording`, `source` is a Teams user under a recording policy, in a call of their own
        with `others` (a Conversation), and Teams invites the bot to record it: tokenMeetingInfo,
        incomingContext (the observed participant is the source's), botData, a 5 s answer deadline; the
        bot's leg is a group call with roster notifications. `speech`: what each party says, by target
        (each `Say`'s `at` counts from now). `webhook`: where Teams posts the call (default: the bot's calling
        webhook), for a test that plays the whole bot itself.
        """
        tenant = tenant_id or self.bot.tenant_id
        target_identity = self._bot_target(to, tenant)
        conversation = None
        if policy_recording:
            conversation = Conversation(new_id(), source, self.now(), webhook=webhook or self.bot.webhook_url)
            for party in dict.fromkeys([source, *others]):
                name = display_name if party == source else None
                self._enter_party(conversation, party, identity_of(party, tenant_id=tenant, display_name=name))
                conversation.present.append(party)
        elif others:
            raise ValueError("`others` are the parties of a policy-recorded call: give policy_recording=True")
        source_identity = identity_of(source, tenant_id=tenant, display_name=display_name)
        call = SimCall(
            id=new_id(), tenant_id=tenant, direction="incoming",
            source={"@odata.type": "#microsoft.graph.participantInfo",
                    "id": conversation.parties[source].id if conversation is not None else new_id(),
                    "identity": source_identity, "endpointType": "default", "region": "amer",
                    "languageId": "en-US"},
            targets=[{"@odata.type": "#microsoft.graph.invitationParticipantInfo", "id": new_id(),
                      "identity": target_identity, "endpointType": "default"}],
            callback_uri=webhook or self.bot.webhook_url, remote=source)
        call.transcript = Transcript(call.id, f"{source} calls {to or 'the bot'}")
        if conversation is not None:
            self._record(call, conversation, observed or source, bot_data=bot_data,
                         other=next((o for o in others if o != source), None))
        self.calls[call.id] = call
        what = f" (policy recording{', with ' + ', '.join(others) if others else ''})" if policy_recording else ""
        self.note(call, f"{source} dials {to or 'the bot'}{what}", "caller")
        for who, says in (speech or {}).items():
            for say in says:
                self.say(call, who, say)
        self.outbox.post(call, "created", call.to_json(), "incoming")
        deadline = POLICY_RECORDING_DEADLINE if policy_recording else ANSWER_DEADLINE
        call.timers["answer"] = self.clock.call_later(deadline, lambda: self._not_answered(call, deadline))
        return call

    def _enter_party(self, conversation: Conversation, target: str, identity: dict[str, Any]) -> Participant:
        """A party of the people's call: one participant id and media source id for every bot leg."""
        party = conversation.parties.get(target)
        if party is None:
            party = Participant(new_id(), identity, source_id=conversation.next_source_id())
            conversation.parties[target] = party
        return party

    def _record(self, call: SimCall, conversation: Conversation, observed: str, *,
                bot_data: dict[str, Any] | None, other: str | None) -> None:
        """Make `call` a policy-recording leg of `conversation`, recording `observed` (the policy user)."""
        call.kind = "group"  # the bot joins the people's call with its join token: a group call for it
        call.conversation = conversation
        conversation.legs.append(call)
        call.speech = conversation.speech
        call.recorded_users = [observed]
        party = conversation.parties.get(observed)
        call.meeting_info = {"@odata.type": "#microsoft.graph.tokenMeetingInfo", "token": secrets.token_hex(16)}
        call.incoming_context = {"@odata.type": "#microsoft.graph.incomingContext",
                                 "sourceParticipantId": call.source["id"],
                                 "observedParticipantId": party.id if party is not None else new_id()}
        data: dict[str, Any] = {
            "mediaHostedRegion": "USEA", "inviteReasons": ["PolicyBasedRecording"],
            "policyIdentifier": "Compliance recording",
            "user": {"id": observed.partition(":")[2] or observed, "participationMethod": "caller",
                     "clientLocation": "US"}}
        other_party = conversation.parties.get(other or "")
        if other is not None and other.startswith("user:") and other_party is not None:
            data["otherSideUser"] = {"id": other.partition(":")[2], "participantId": other_party.id,
                                     "tenantId": call.tenant_id, "participationMethod": "callee",
                                     "clientLocation": "US"}
        call.application_metadata = {"botData": bot_data or data}

    def _policy_leg(self, origin: SimCall, target: str, joining: dict[str, Any], callback_uri: str,
                    why: str) -> SimCall:
        """Teams invites a (new) recording bot for `target` into `origin`'s people's call: a new incoming call."""
        conversation = origin.conversation
        call = SimCall(id=str(joining.get("id") or new_id()), tenant_id=origin.tenant_id, direction="incoming",
                       source=dict(joining.get("source") or {}), targets=list(origin.targets),
                       callback_uri=callback_uri, remote=target)
        call.transcript = Transcript(call.id, f"{target} joins recorded call {origin.id[:8]} ({why})")
        if conversation is not None:
            self._record(call, conversation, target, bot_data=None, other=None)
        self.calls[call.id] = call
        self.note(call, f"{target} joins a policy-recorded call: Teams invites a recording bot at "
                  f"{callback_uri} ({why})", "caller")
        self.outbox.post(call, "created", call.to_json(), "incoming")
        call.timers["answer"] = self.clock.call_later(
            POLICY_RECORDING_DEADLINE, lambda: self._not_answered(call, POLICY_RECORDING_DEADLINE))
        return call

    def _bot_target(self, to: str | None, tenant: str) -> dict[str, Any]:
        if to is None or to == "app":
            return identity_of(f"app:{self.bot.app_id}", display_name=self.bot.display_name)
        if to.startswith("+"):
            instance = self.bot.instance_for(to)
            if instance is None:
                raise ValueError(f"{to} is not one of the bot's numbers ({', '.join(self.bot.numbers) or 'none'})")
            return identity_of(f"instance:{instance}", tenant_id=tenant)
        return identity_of(to, tenant_id=tenant)

    def _not_answered(self, call: SimCall, deadline: float) -> None:
        if call.decided is None and not call.ended:
            self.note(call, f"the bot did not answer, reject or redirect within {deadline:g} s: Teams drops the call")
            self._terminate(call, {"code": 408, "subcode": 0,
                                   "message": f"The application did not respond within {deadline:g} s."},
                            notify=False)

    def press(self, call: SimCall, digits: str) -> None:
        """The caller presses keys; each reaches the bot only if it subscribed to tones."""
        for index, digit in enumerate(digits):
            key = digit.upper()
            if key not in TONE_NAMES:
                raise ValueError(f"{digit!r} is not a key on a phone (0-9, *, #, A-D)")
            self.clock.call_later(index * self.tone_gap, functools.partial(self._tone, call, key))

    def _tone(self, call: SimCall, digit: str) -> None:
        if call.ended or call.state not in ("established", "transferring"):
            self.note(call, f"caller presses {digit} (the call is {call.state}: nothing happens)", "caller")
            return
        call.tones_received.append(digit)
        op = call.current_media
        stop_tones = op.body.get("stopTones") or [] if op is not None else []
        if op is not None and op.kind == "record" and op.capture_from is not None and digit in stop_tones:
            self.note(call, f"caller presses {digit} (a stop tone: the recording ends)", "caller")
            self._finish_record(call, op, "stopToneDetected")
            return
        if not call.tones_subscribed:
            self.note(call, f"caller presses {digit} (not delivered: the bot has not subscribed to tones)", "caller")
            return
        call.tone_sequence += 1
        self.note(call, f"caller presses {digit}", "caller")
        resource = {"@odata.type": "#microsoft.graph.call", "id": call.id, "state": call.state,
                    "toneInfo": {"@odata.type": "#microsoft.graph.toneInfo", "sequenceId": call.tone_sequence,
                                 "tone": TONE_NAMES[digit]}}
        self.outbox.post(call, "updated", resource, "tone")

    def speak(self, call: SimCall, seconds: float | None) -> None:
        """How long the caller talks into the next recording (None: silence)."""
        call.speech_seconds = seconds

    def hang_up(self, call: SimCall) -> None:
        """The caller hangs up. In a policy-recorded call the recorded user hangs up: the people's call ends,
        and with it every recording bot's leg (even after a bot's own leg ended: the people's call goes on
        without it until then)."""
        conversation = call.conversation
        if conversation is not None:
            if conversation.ended:
                return
            self.note(call, "caller hangs up" + (" (the people's call ends)" if call.ended else ""), "caller")
            for leg in conversation.legs:
                self._flush_media(leg)
            conversation.ended_at = self.now()
            for leg in conversation.legs:
                self._terminate(leg, ENDED_BY_PSTN if leg.remote.startswith("+") else ENDED_BY_PEER)
            return
        if call.ended:
            return
        self.note(call, "caller hangs up", "caller")
        self._terminate(call, ENDED_BY_PSTN if call.remote.startswith("+") else ENDED_BY_PEER)

    def participant_joining(self, call: SimCall, participant: str, *,
                            speech: Sequence[Say] = ()) -> None:
        """Another Teams user under the recording policy joins the recorded call. While the bot's leg has room
        (its answer's participantCapacity; no capacity given: always), the bot gets a
        participantJoiningNotification and its HTTP response decides: acceptJoinResponse adds the joiner to
        this leg's roster and media, rejectJoinResponse leaves them out of it, inviteNewBotResponse has Teams
        invite the bot at `inviteUri` with a new incoming call. A full leg: the new incoming call goes to the
        bot's webhook at once. `speech` (its `at` counting from now): what the joiner says."""
        conversation = call.conversation
        identity = identity_of(participant, tenant_id=call.tenant_id)
        joiner = (self._enter_party(conversation, participant, identity) if conversation is not None
                  else Participant(new_id(), identity))
        for say in speech:
            self.say(call, participant, say, present=False)
        joining_call = {**call.to_json(), "id": new_id(), "state": "incoming"}
        joining_call["source"] = {"@odata.type": "#microsoft.graph.participantInfo", "id": joiner.id,
                                  "identity": identity}
        joining_call["incomingContext"] = {"@odata.type": "#microsoft.graph.incomingContext",
                                           "sourceParticipantId": joiner.id, "observedParticipantId": joiner.id}
        metadata = call.application_metadata or {}
        if isinstance(metadata.get("botData"), dict):
            bot_data = dict(metadata["botData"])
            bot_data["user"] = {**bot_data.get("user", {}), "id": participant.partition(":")[2] or participant,
                                "participationMethod": "callee"}
            bot_data.pop("otherSideUser", None)
            joining_call["applicationMetadata"] = {"botData": bot_data}
        capacity = call.participant_capacity
        if capacity is not None and call.decided == "answer" and len(call.recorded_users) >= capacity:
            self.note(call, f"{participant} joins the recorded group; this leg is full (participantCapacity "
                      f"{capacity}): Teams sends a new incoming call instead", "caller")
            webhook = conversation.webhook if conversation is not None else self.bot.webhook_url
            self._policy_leg(call, participant, joining_call, webhook, "capacity reached")
            return
        self.note(call, f"{participant} joins the recorded group: participantJoining", "to-bot")
        self.outbox.post(call, "created", {"@odata.type": "#microsoft.graph.participantJoiningNotification",
                                           "call": joining_call}, "joining", log_summary=False,
                         on_response=functools.partial(self._join_answered, call, participant, joiner, joining_call))

    def _join_answered(self, call: SimCall, target: str, joiner: Participant, joining: dict[str, Any],
                       status: int, body: Any) -> None:
        """Teams honours the bot's participantJoiningResponse (the HTTP response to the joining notification)."""
        kind = ""
        if 200 <= status < 300 and isinstance(body, dict):
            kind = str(body.get("@odata.type", "")).rsplit(".", 1)[-1]
        if kind == "acceptJoinResponse":
            if call.ended:
                self.note(call, f"the bot accepts {target}, but its leg has ended")
                return
            call.recorded_users.append(target)
            self.note(call, f"the bot accepts {target} into the recorded call")
            if call.conversation is None:
                self._admit(call, joiner, target)
            else:
                self._join_conversation(call.conversation, target)
        elif kind == "rejectJoinResponse":
            self.note(call, f"the bot rejects {target} ({body.get('reason') or 'none'}): this leg does not "
                      "record them")
        elif kind == "inviteNewBotResponse" and isinstance(body.get("inviteUri"), str) and body["inviteUri"]:
            self.note(call, f"the bot asks Teams to invite a new bot for {target} at {body['inviteUri']}")
            self._policy_leg(call, target, joining, body["inviteUri"], "inviteNewBot")
        else:
            self.note(call, f"no participantJoiningResponse from the bot: {target} is not added to the "
                      "recorded call")

    def _join_conversation(self, conversation: Conversation, target: str) -> None:
        """`target` is in the people's call from now: every established bot leg hears it and lists it."""
        if target in conversation.present or conversation.ended:
            return
        conversation.present.append(target)
        party = conversation.parties[target]
        for leg in conversation.legs:
            if not leg.ended and leg.answered_at is not None:
                self._admit(leg, party, target)

    def _admit(self, call: SimCall, participant: Participant, target: str) -> None:
        self._flush_media(call)
        joined = call.add_participant(participant)
        self.note(call, f"{target} joins the call (media source {joined.source_id})", "caller")
        self._roster(call)

    # -- what people say -----------------------------------------------------------------------------

    def say(self, call: SimCall, who: str, what: Say, *, present: bool = True) -> Utterance:
        """`who` says `what`, `what.at` seconds from now. In a policy-recorded call `who` must be one of its
        parties (`present=False`: or one not yet in it, a joiner)."""
        conversation = call.conversation
        if conversation is not None and who not in (conversation.present if present else conversation.parties):
            raise ValueError(f"{who} is not in the recorded call ({', '.join(conversation.present)})")
        self._flush_media(call)
        said = Utterance.place(what, self.now())
        call.speech.setdefault(who, []).append(said)
        self.clock.call_later(max(said.start / speech.SAMPLE_RATE - self.now(), 0.0),
                              functools.partial(self._speech_began, call, who, said))
        return said

    def stop_speaking(self, call: SimCall, who: str) -> None:
        """`who` falls silent now: whatever they were saying, or were going to, is cut."""
        self._flush_media(call)
        at = speech.samples(self.now())
        plan = call.speech.get(who, [])
        was = speech.speaking(plan, at)
        call.speech[who] = [kept for item in plan if (kept := item.cut(at)) is not None]
        if was is not None:
            self.note(call, f"{who} falls silent", "caller")

    def _speech_began(self, call: SimCall, who: str, said: Utterance) -> None:
        if said not in call.speech.get(who, []):
            return  # cut before it began
        legs = call.conversation.legs if call.conversation is not None else [call]
        for leg in legs:
            party = next((p for p in leg.participants.values() if target_of(p.identity) == who), None)
            if party is None and leg.conversation is not None:
                party = leg.conversation.parties.get(who) if who in leg.conversation.present else None
            if leg.ended or party is None:
                continue
            self.note(leg, f"{who} says {said.say.describe()} (media source {party.source_id})", "caller")

    # -- notifications ---------------------------------------------------------------------------

    def _state(self, call: SimCall, state: str, *, change: str = "updated", **extra: Any) -> None:
        call.state = state
        resource = call.to_json()
        resource.update(extra)
        self.outbox.post(call, change, resource, state)
        for listener in self.listeners:
            listener(call)

    def _operation_done(self, call: SimCall, op: dict[str, Any]) -> None:
        call.operations[op["id"]] = op
        if not call.ended:
            self.outbox.post(call, "deleted", op, _op_label(op), operation_id=op["id"])

    def _roster(self, call: SimCall) -> None:
        if call.kind != "p2p" and not call.ended:
            self.outbox.post(call, "updated", [p.to_json() for p in call.participants.values()], "participants",
                             suffix="/participants")

    def _terminate(self, call: SimCall, result: dict[str, Any], *, notify: bool = True,
                   reason: str | None = None) -> None:
        if call.ended:
            return
        if call.media is not None:
            call.media.close()
        self._cancel_timers(call)
        for op in [call.current_media, *call.media_queue]:
            if op is not None:
                op.status = "failed"
        call.current_media = None
        call.media_queue.clear()
        for heard in call.heard:
            if heard.outcome == "playing":
                heard.outcome, heard.ended_at = "cut off", self.now()
        for leg in call.legs:
            if leg.outcome == "ringing":
                leg.outcome, leg.ended_at = "abandoned", self.now()
        call.result_info = {"@odata.type": "#microsoft.graph.resultInfo", **result}
        call.termination_reason = reason
        call.ended_at = self.now()
        call.audio = "inactive"
        if notify:
            self._state(call, "terminated", change="deleted")
        else:
            call.state = "terminated"
        self.note(call, f"call ended: {result['code']}/{result['subcode']} {result['message']}")
        if call.media is not None and call.media.started_at is not None:
            link = call.media
            self.note(call, f"media ended: {link.ticks} ticks ({link.frames} speaker frames) sent, "
                      f"{len(link.sent)} frames from the bot" + (f", {link.dropped} ticks dropped" if link.dropped
                                                                else ""))
        if call.conversation is not None and not call.conversation.ended:
            self.note(call, "the people's call goes on without this recording bot")

    def _cancel_timers(self, call: SimCall) -> None:
        for timer in call.timers.values():
            timer.cancel()
        call.timers.clear()
        if call.current_media is not None and call.current_media.timer is not None:
            call.current_media.timer.cancel()

    # -- Graph's side: what the bot asks for ------------------------------------------------------

    def call_for(self, call_id: str, *, live: bool = True) -> SimCall:
        call = self.calls.get(call_id)
        if call is None or (live and call.ended):
            raise GraphHttpError(404, "itemNotFound", f"Call {call_id} was not found (or has ended).")
        return call

    def graph_answer(self, call: SimCall, body: dict[str, Any]) -> None:
        self._decide(call, "answer")
        call.media_config = body.get("mediaConfig")
        call.callback_uri = body.get("callbackUri") or call.callback_uri
        call.requested_modalities = body.get("acceptedModalities") or ["audio"]
        capacity = body.get("participantCapacity")
        call.participant_capacity = capacity if isinstance(capacity, int) else None
        prefetch = (call.media_config or {}).get("preFetchMedia") or []
        details = [text for text, shown in (("app-hosted media", _app_blob(call) is not None),
                                            (f"participantCapacity {capacity}", capacity is not None),
                                            (f"prefetching {len(prefetch)} prompt(s)", bool(prefetch))) if shown]
        self.note(call, "bot answers" + (f" ({', '.join(details)})" if details else ""), "from-bot")
        self.clock.call_later(self.establish_after, lambda: self._establishing(call))

    def _establishing(self, call: SimCall) -> None:
        if call.ended:
            return
        self._state(call, "establishing")

        def connected() -> None:
            self.clock.call_later(self.establish_after, lambda: self._established(call))

        self._connect_media(call, connected)

    def _established(self, call: SimCall) -> None:
        if call.ended or (call.media is not None and call.media.state == "failed"):
            return
        call.audio = "active"
        call.answered_at = self.now()
        bot = Participant(call.my_participant_id, identity_of(f"app:{self.bot.app_id}",
                                                             display_name=self.bot.display_name))
        call.add_participant(bot)
        conversation = call.conversation
        if conversation is not None:
            # the policy users this leg records join the people's call with it (a joiner Teams invited it for)
            for target in call.recorded_users:
                self._join_conversation(conversation, target)
            for target in conversation.present:
                call.add_participant(conversation.parties[target])
        else:
            call.add_participant(Participant(new_id(), identity_of(call.remote, tenant_id=call.tenant_id)))
        self._state(call, "established")
        self._roster(call)
        self._keepalive(call)
        self._begin_media(call)

    # -- app-hosted media: the simulator plays the Teams media service (simulator/media_link.py) ------------

    def _connect_media(self, call: SimCall, then: Callable[[], None]) -> None:
        """Connect to the bot's media session (app-hosted media), then `then()`; without app-hosted media, or
        with the media service off, `then()` at once. A failed connection fails the call."""
        blob = _app_blob(call)
        if blob is None or not self.media_service:
            then()
            return
        link = MediaLink(blob, clock=self.clock, speakers=functools.partial(self._speakers, call),
                         on_lost=functools.partial(self._media_lost, call),
                         on_sent=functools.partial(self._media_sent, call))
        call.media = link
        self.clock.enter()

        async def connect() -> None:
            try:
                failure = await link.connect()
                if call.ended:
                    link.close()
                elif failure is not None:
                    self._media_failed(call, failure)
                else:
                    self.note(call, f"media connected: the media service reached the bot's media session at "
                              f"{link.address}")
                    then()
            finally:
                self.clock.leave()

        task = asyncio.get_running_loop().create_task(connect())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _media_failed(self, call: SimCall, why: str) -> None:
        if call.ended or "media-failed" in call.timers:
            return
        self.note(call, f"media failed: {why}; Teams cannot reach the bot's media and ends the call in "
                  f"{MEDIA_SETUP_FAILED_AFTER:g} s")
        call.timers["media-failed"] = self.clock.call_later(
            MEDIA_SETUP_FAILED_AFTER, lambda: self._terminate(call, MEDIA_UNREACHABLE))

    def _begin_media(self, call: SimCall) -> None:
        """The call is established: media flows (a tick every 20 ms), and a recording bot's clock starts."""
        link = call.media
        if link is None or link.state == "failed":
            return
        link.start()
        sources = ", ".join(f"{'the bot' if p.id == call.my_participant_id else target_of(p.identity)} {p.source_id}"
                            for p in call.participants.values())
        self.note(call, f"media streaming: a tick every 20 ms with each speaker's frame (media source ids: "
                  f"{sources})")
        if call.conversation is not None:
            call.timers["recording-status"] = self.clock.call_later(
                RECORDING_STATUS_WITHIN, functools.partial(self._check_recording_status, call))

    def _check_recording_status(self, call: SimCall) -> None:
        if call.ended or call.recording_log:
            return
        why = (f"the bot has had the call's media for {RECORDING_STATUS_WITHIN:g} s and set no recording status: "
               "Graph forbids recording or keeping media before updateRecordingStatus(recording) has succeeded")
        call.violations.append(why)
        self.note(call, f"violation: {why}")

    def _speakers(self, call: SimCall, sample: int) -> list[tuple[int, bytes]]:
        """The unmixed frame of every participant speaking in the 20 ms from `sample` (not the bot, not the
        muted), with their media source ids."""
        found = []
        for participant in call.participants.values():
            if participant.id == call.my_participant_id or participant.is_muted:
                continue
            plan = call.speech.get(target_of(participant.identity))
            pcm = speech.frame(plan, sample) if plan else None
            if pcm is not None:
                found.append((participant.source_id, pcm))
        return found

    def _flush_media(self, call: SimCall) -> None:
        """Send every tick already due, before something changes what the next ticks carry."""
        for leg in call.conversation.legs if call.conversation is not None else [call]:
            if leg.media is not None:
                leg.media.catch_up()

    def _media_sent(self, call: SimCall, frame: SentFrame) -> None:
        if call.media is not None and len(call.media.sent) == 1:
            self.note(call, "media: the bot sends audio", "from-bot")
        self.clock.changed()

    def _media_lost(self, call: SimCall, why: str) -> None:
        """The bot's media connection ended while its call is up: Teams ends the bot's leg after a while."""
        if call.ended or "media-lost" in call.timers:
            return
        if call.media is None or call.media.started_at is None:
            self._media_failed(call, why)
            return
        self.note(call, f"media lost: {why}; Teams ends the bot's leg in {MEDIA_LOSS_TIMEOUT:g} s unless the bot "
                  "hangs up")
        call.timers["media-lost"] = self.clock.call_later(MEDIA_LOSS_TIMEOUT,
                                                          lambda: self._terminate(call, MEDIA_LOST))

    def kill_worker(self, call: SimCall) -> list[SimCall]:
        """The bot's worker serving `call` dies: every media connection it held drops (no BYE) and its
        callback (the host:port of `call`'s callbackUri) stops answering. The calls it served, for each of
        which Teams ends the bot's leg MEDIA_LOSS_TIMEOUT later; the people's calls go on."""
        return self.kill_worker_at(call.callback_uri)

    def kill_worker_at(self, url: str) -> list[SimCall]:
        """The bot's worker at `url` (any URL on its host:port) dies, as in `kill_worker`."""
        worker = _worker_of(url)
        self.dead_workers.add(worker)
        served = [c for c in self.calls.values() if not c.ended and _worker_of(c.callback_uri) == worker]
        for other in served:
            self.note(other, f"the bot's worker at {worker} dies: its media connection drops and its callback "
                      "stops answering")
            link = other.media
            if link is not None and link.state in ("connected", "streaming"):
                link.drop("the bot's worker died")
                self._media_lost(other, "the bot's worker died")
        return served

    def _keepalive(self, call: SimCall) -> None:
        old = call.timers.get("keepalive")
        if old is not None:
            old.cancel()

        def expire() -> None:
            self.note(call, "no keepAlive for 45 minutes")
            self._terminate(call, KEEPALIVE_TIMEOUT)

        call.timers["keepalive"] = self.clock.call_later(KEEPALIVE_LIMIT, expire)

    def graph_reject(self, call: SimCall, body: dict[str, Any]) -> None:
        self._decide(call, "reject")
        reason = body.get("reason") or "none"
        self.note(call, f"bot rejects the call (reason {reason})", "from-bot")
        self._cancel_timers(call)
        call.state, call.ended_at = "terminated", self.now()
        call.result_info = {"@odata.type": "#microsoft.graph.resultInfo", "code": 603 if reason != "busy" else 486,
                            "subcode": 0, "message": f"Rejected by the application ({reason})."}
        self.outbox.post(call, "deleted", {"@odata.type": "#microsoft.graph.call",
                                           "@odata.id": f"/communications/calls/{call.id}"}, "terminated")

    def graph_redirect(self, call: SimCall, body: dict[str, Any]) -> None:
        self._decide(call, "redirect")
        targets = [target_of(t.get("identity")) for t in body.get("targets") or []]
        timeout = float(body.get("timeout") or (55 if len(targets) == 1 else 60))
        leg = Leg("redirect", targets, self.now(), detail={"timeout": timeout})
        call.legs.append(leg)
        self.note(call, f"bot redirects the call to {', '.join(targets)} (ring {timeout:g} s)", "from-bot")
        self._state(call, "redirecting")

        def done(winner: str | None, outcome: str) -> None:
            self._leg_done(call, leg, winner, outcome)
            if winner is not None:
                self._terminate(call, {"code": 200, "subcode": 0, "message": f"Redirected to {winner}."},
                                reason="Redirected")
            else:
                self._terminate(call, RING_FAILURES[outcome])

        self._ring(call, targets, timeout, done)

    def _decide(self, call: SimCall, decision: str) -> None:
        if call.direction != "incoming" or call.state != "incoming" or call.decided is not None:
            raise GraphHttpError(400, "invalidRequest",
                                 f"Cannot {decision} call {call.id}: it is {call.decided or call.state}, "
                                 "not an unanswered incoming call.")
        call.decided = decision
        timer = call.timers.pop("answer", None)
        if timer is not None:
            timer.cancel()

    def _ring(self, call: SimCall, targets: list[str], timeout: float | None,
              done: Callable[[str | None, str], None]) -> None:
        """Ring every target at once (simulring); the first to answer wins, else the worst outcome."""
        behaviours = {t: self.directory.behaviour(t) for t in targets}
        limit = timeout if timeout is not None else float("inf")
        answers = sorted((b.after, t) for t, b in behaviours.items() if b.outcome == "answer" and b.after <= limit)
        if answers:
            after, winner = answers[0]
            self._later(call, after, lambda: done(winner, "answer"))
            return
        failures = [(b.after if b.outcome != "no_answer" else min(b.after or NO_ANSWER_AFTER, limit), b.outcome)
                    for b in behaviours.values()]
        if any(outcome in ("no_answer", "answer") for _, outcome in failures):
            after = min(limit, max(a for a, _ in failures))
            self._later(call, after, lambda: done(None, "no_answer"))
            return
        after, outcome = max(failures) if failures else (0.0, "fail")
        self._later(call, after, lambda: done(None, outcome))

    def _later(self, call: SimCall, delay: float, action: Callable[[], None]) -> None:
        key = f"t{len(call.timers)}-{new_id()[:8]}"

        def run() -> None:
            call.timers.pop(key, None)
            action()

        call.timers[key] = self.clock.call_later(delay, run)

    def _leg_done(self, call: SimCall, leg: Leg, winner: str | None, outcome: str) -> None:
        leg.outcome = "answered" if winner else {"decline": "declined", "fail": "failed"}.get(outcome, outcome)
        leg.connected_to, leg.ended_at = winner, self.now()
        text = f"{winner} answers" if winner else f"{', '.join(leg.targets)}: {leg.outcome.replace('_', ' ')}"
        self.note(call, f"{leg.kind}: {text} after {leg.ended_at - leg.started_at:g} s")

    def graph_transfer(self, call: SimCall, body: dict[str, Any]) -> None:
        self._live(call, "transfer")
        target_info = body.get("transferTarget") or {}
        target = target_of(target_info.get("identity"))
        replaces = target_info.get("replacesCallId")
        leg = Leg("transfer", [target], self.now(), detail={"mode": "consultative" if replaces else "blind"})
        call.legs.append(leg)
        self.note(call, f"bot transfers the caller to {target}" + (" (consultative)" if replaces else ""), "from-bot")
        if replaces:
            self._consultative(call, leg, target, replaces)
            return
        self._state(call, "transferring")

        def done(winner: str | None, outcome: str) -> None:
            if call.ended:
                return
            self._leg_done(call, leg, winner, outcome)
            if winner is not None:
                self._state(call, "transferAccepted")
                self._terminate(call, TRANSFERRED)
            else:
                failure = RING_FAILURES[outcome]
                self._state(call, "established", resultInfo={
                    "@odata.type": "#microsoft.graph.resultInfo", "code": 500, "subcode": 7000,
                    "message": f"Transfer failed: {failure['message']}"})

        self._ring(call, [target], None, done)

    def _consultative(self, call: SimCall, leg: Leg, target: str, replaces: str) -> None:
        consult = self.calls.get(replaces)
        self._state(call, "transferring")
        if consult is None or consult.state != "established" or consult.remote != target:
            self._leg_done(call, leg, None, "fail")
            self._state(call, "established", resultInfo={
                "@odata.type": "#microsoft.graph.resultInfo", "code": 500, "subcode": 7700,
                "message": f"Consultative transfer failed: call {replaces} is not an established call with {target}."},
                replacesContext=replaces)
            return
        self._leg_done(call, leg, target, "answer")
        self._state(call, "transferAccepted")
        self._terminate(call, TRANSFERRED, reason="AppTransferred")
        self._terminate(consult, TRANSFERRED, reason="AppTransferred")

    def _live(self, call: SimCall, action: str, *, media: bool = False) -> None:
        if call.state not in ("established", "transferring"):
            raise GraphHttpError(400, "invalidRequest", f"Cannot {action}: call {call.id} is {call.state}.")
        if media and not call.service_hosted:
            raise GraphHttpError(400, "invalidRequest",
                                 f"{action} needs service-hosted media; call {call.id} uses app-hosted media.")

    def _operation(self, call: SimCall, kind: str, body: dict[str, Any], status: str = "running",
                   **extra: Any) -> dict[str, Any]:
        op = {"@odata.type": f"#microsoft.graph.{kind}", "id": new_id(),
              "clientContext": body.get("clientContext"), "status": status, **extra}
        if status == "completed":
            op["resultInfo"] = {"@odata.type": "#microsoft.graph.resultInfo", **OK}
        call.operations[op["id"]] = op
        return op

    def graph_play_prompt(self, call: SimCall, body: dict[str, Any]) -> dict[str, Any]:
        self._live(call, "playPrompt", media=True)
        op = self._operation(call, "playPromptOperation", body)
        call.media_queue.append(MediaOp(op["id"], "play", body.get("clientContext"), body.get("prompts") or [], body))
        names = ", ".join(_prompt_name(p) for p in body.get("prompts") or [])
        self.note(call, f"bot plays {names}", "from-bot", operation=op["id"])
        self._pump(call)
        return op

    def graph_record(self, call: SimCall, body: dict[str, Any]) -> dict[str, Any]:
        self._live(call, "recordResponse", media=True)
        op = self._operation(call, "recordOperation", body)
        media = MediaOp(op["id"], "record", body.get("clientContext"), body.get("prompts") or [], body)
        if body.get("bargeInAllowed"):
            for queued in [call.current_media, *call.media_queue]:
                if queued is not None:
                    self._cancel_op(call, queued)
            call.current_media = None
            call.media_queue.clear()
        call.media_queue.append(media)
        self.note(call, "bot starts a recording", "from-bot", operation=op["id"])
        self._pump(call)
        return op

    def _pump(self, call: SimCall) -> None:
        if call.current_media is not None or not call.media_queue or call.ended:
            return
        op = call.media_queue.popleft()
        call.current_media = op
        op.started_at = self.now()
        self.clock.enter()

        async def start() -> None:
            try:
                await self._start_media(call, op)
            finally:
                self.clock.leave()

        asyncio.get_running_loop().create_task(start())

    async def _start_media(self, call: SimCall, op: MediaOp) -> None:
        total = 0.0
        for prompt in op.prompts:
            uri = (prompt.get("mediaInfo") or {}).get("uri", "")
            audio = await self.prompts.measure(uri, self.session)
            if call.current_media is not op:
                return
            if audio.seconds is None:
                self.note(call, f"prompt failed: {audio.problem}")
                call.heard.append(Heard(_prompt_name(prompt), uri, self.now() + total, 0.0, self.now(), "failed"))
                self._complete(call, op, "failed", {"code": 500, "subcode": 0,
                                                    "message": f"Failed to play the prompt: {audio.problem}"})
                return
            call.heard.append(Heard(_prompt_name(prompt), uri, self.now() + total, audio.seconds))
            total += audio.seconds
        if op.kind == "play":
            op.timer = self.clock.call_later(total, lambda: self._complete(call, op, "completed", OK))
            return
        if op.body.get("playBeep", True):
            total += BEEP_SECONDS
        op.timer = self.clock.call_later(total, lambda: self._capture(call, op))

    def _capture(self, call: SimCall, op: MediaOp) -> None:
        """The beep has sounded: the caller speaks (or not) and one of the record limits ends it."""
        op.capture_from = self.now()
        self._mark_heard(call, op, "completed")
        body = op.body
        initial = float(body.get("initialSilenceTimeoutInSeconds") or 5)
        trailing = float(body.get("maxSilenceTimeoutInSeconds") or 5)
        longest = float(body.get("maxRecordDurationInSeconds") or 5)
        speech = call.speech_seconds
        call.speech_seconds = None
        if speech is None or speech <= 0:
            delay, reason = initial, "initialSilenceTimeout"
        elif speech + trailing >= longest:
            delay, reason = longest, "maxRecordDurationReached"
        else:
            delay, reason = speech + trailing, "maxSilenceTimeout"
        self.note(call, "caller stays silent" if not speech else f"caller speaks for {speech:g} s", "caller")
        op.timer = self.clock.call_later(delay, lambda: self._finish_record(call, op, reason))

    def _finish_record(self, call: SimCall, op: MediaOp, reason: str) -> None:
        if call.current_media is not op or op.capture_from is None:
            return
        if op.timer is not None:
            op.timer.cancel()
        seconds = round(self.now() - op.capture_from, 3)
        recording = Recording(new_id(), seconds, secrets.token_urlsafe(24), reason)
        call.recordings.append(recording)
        self.recordings[recording.id] = (call, recording)
        result = MAX_DURATION if reason == "maxRecordDurationReached" else OK
        self.note(call, f"recording {recording.id[:8]} captured: {seconds:g} s ({reason})")
        self._complete(call, op, "completed", result, recordingLocation=f"{self.url}/recordings/{recording.id}",
                       recordingAccessToken=recording.access_token, completionReason=reason)

    def recording_audio(self, recording: Recording) -> bytes:
        if not recording.data:
            recording.data = tone_wav(recording.seconds)
        return recording.data

    def _mark_heard(self, call: SimCall, op: MediaOp, outcome: str) -> None:
        uris = {(p.get("mediaInfo") or {}).get("uri") for p in op.prompts}
        for heard in call.heard:
            if heard.outcome == "playing" and heard.uri in uris and (op.started_at or 0) <= heard.started_at:
                finished = heard.started_at + heard.seconds
                if outcome == "completed" or finished <= self.now():
                    heard.outcome, heard.ended_at = "completed", min(finished, self.now())
                else:
                    heard.outcome, heard.ended_at = outcome, self.now()

    def _complete(self, call: SimCall, op: MediaOp, status: str, result: dict[str, Any], **extra: Any) -> None:
        if call.current_media is not op or call.ended:
            return
        op.status = status
        self._mark_heard(call, op, "completed" if status == "completed" else "failed")
        kind = "playPromptOperation" if op.kind == "play" else "recordOperation"
        payload = {"@odata.type": f"#microsoft.graph.{kind}", "id": op.id, "clientContext": op.client_context,
                   "status": status, "resultInfo": {"@odata.type": "#microsoft.graph.resultInfo", **result}, **extra}
        call.current_media = None
        self._operation_done(call, payload)
        self._pump(call)

    def _cancel_op(self, call: SimCall, op: MediaOp) -> None:
        if op.timer is not None:
            op.timer.cancel()
        op.status = "failed"
        self._mark_heard(call, op, "cancelled")
        kind = "playPromptOperation" if op.kind == "play" else "recordOperation"
        payload: dict[str, Any] = {"@odata.type": f"#microsoft.graph.{kind}", "id": op.id,
                                   "clientContext": op.client_context, "status": "failed",
                                   "resultInfo": {"@odata.type": "#microsoft.graph.resultInfo", **CANCELLED}}
        if op.kind == "record":
            payload.update(recordingLocation="", recordingAccessToken="", completionReason="operationCanceled")
        self._operation_done(call, payload)

    def graph_cancel_media(self, call: SimCall, body: dict[str, Any]) -> dict[str, Any]:
        self._live(call, "cancelMediaProcessing", media=True)
        cancelled = [op for op in [call.current_media, *call.media_queue] if op is not None]
        call.current_media = None
        call.media_queue.clear()
        self.note(call, f"bot cancels media processing ({len(cancelled)} operation(s))", "from-bot")
        for op in cancelled:
            self._cancel_op(call, op)
        return self._operation(call, "cancelMediaProcessingOperation", body, "completed")

    def graph_subscribe_to_tone(self, call: SimCall, body: dict[str, Any]) -> dict[str, Any]:
        self._live(call, "subscribeToTone", media=True)
        call.tones_subscribed = True
        self.note(call, "bot subscribes to tones", "from-bot")
        return self._operation(call, "subscribeToToneOperation", body, "completed")

    def graph_send_dtmf(self, call: SimCall, body: dict[str, Any]) -> dict[str, Any]:
        self._live(call, "sendDtmfTones")
        tones = body.get("tones") or []
        delay_ms = body.get("delayBetweenTonesMs")
        gap = 0.5 if delay_ms is None else delay_ms / 1000
        op = self._operation(call, "sendDtmfTonesOperation", body)
        self.note(call, f"bot sends tones {' '.join(tones)}", "from-bot")

        def done() -> None:
            payload = {**op, "status": "completed", "completionReason": "completedSuccessfully",
                       "resultInfo": {"@odata.type": "#microsoft.graph.resultInfo", **OK}}
            self._operation_done(call, payload)

        self._later(call, gap * max(len(tones), 1), done)
        return op

    def graph_keep_alive(self, call: SimCall) -> None:
        self._keepalive(call)
        self.note(call, "bot keeps the call alive", "from-bot")

    def graph_mute(self, call: SimCall, body: dict[str, Any], *, muted: bool,
                   participant_id: str | None = None) -> dict[str, Any]:
        self._live(call, "mute" if muted else "unmute")
        pid = participant_id or call.my_participant_id
        participant = call.participants.get(pid)
        if participant is None:
            raise GraphHttpError(404, "itemNotFound", f"Participant {pid} is not in call {call.id}.")
        self._flush_media(call)
        participant.is_muted = muted
        who = "itself" if pid == call.my_participant_id else target_of(participant.identity)
        self.note(call, f"bot {'mutes' if muted else 'unmutes'} {who}", "from-bot")
        self._roster(call)
        kind = "muteParticipantOperation" if muted else "unmuteParticipantOperation"
        return self._operation(call, kind, body, "completed")

    def graph_invite(self, call: SimCall, body: dict[str, Any]) -> dict[str, Any]:
        self._live(call, "invite")
        infos = body.get("participants") or []
        targets = [target_of(p.get("identity")) for p in infos]
        op = self._operation(call, "inviteParticipantsOperation", body, participants=infos)
        leg = Leg("invite", targets, self.now())
        call.legs.append(leg)
        self.note(call, f"bot invites {', '.join(targets)}", "from-bot", operation=op["id"])
        if call.kind == "p2p":
            call.kind = "group"  # inviting into a peer-to-peer call escalates it to a group call

        def done(winner: str | None, outcome: str) -> None:
            if call.ended:
                return
            self._leg_done(call, leg, winner, outcome)
            if winner is not None:
                self._flush_media(call)
                for target in targets:
                    call.add_participant(Participant(new_id(), identity_of(target, tenant_id=call.tenant_id)))
                self._roster(call)
                for info in infos:
                    replaced = self.calls.get(str(info.get("replacesCallId") or ""))
                    if replaced is not None and not replaced.ended:
                        self._terminate(replaced, {"code": 200, "subcode": 0,
                                                   "message": f"Moved into call {call.id}."}, reason="AppTransferred")
                self._operation_done(call, {**op, "status": "completed",
                                            "resultInfo": {"@odata.type": "#microsoft.graph.resultInfo", **OK}})
            else:
                self._operation_done(call, {**op, "status": "failed", "resultInfo": {
                    "@odata.type": "#microsoft.graph.resultInfo", **RING_FAILURES[outcome]}})

        self._ring(call, targets, None, done)
        return op

    def graph_remove_participant(self, call: SimCall, participant_id: str) -> None:
        self._flush_media(call)
        participant = call.participants.pop(participant_id, None)
        if participant is None:
            raise GraphHttpError(404, "itemNotFound", f"Participant {participant_id} is not in call {call.id}.")
        self.note(call, f"bot removes {target_of(participant.identity)}", "from-bot")
        self._roster(call)
        if call.kind == "p2p" or len(call.participants) <= 1:
            self._terminate(call, {"code": 200, "subcode": 5010, "message": "Only one participant remained."})

    def graph_update_recording_status(self, call: SimCall, body: dict[str, Any]) -> dict[str, Any]:
        self._live(call, "updateRecordingStatus")
        status = body.get("status")
        bot = call.participants.get(call.my_participant_id)
        if bot is not None:
            bot.recording_status = status
        call.recording_log.append(RecordingStatusChange(self.now(), str(status)))
        media = call.media
        since = (f" ({self.now() - media.started_at:.3f} s after its media started)"
                 if media is not None and media.started_at is not None else "")
        self.note(call, f"bot sets its recording status to {status}{since}", "from-bot")
        self._roster(call)
        return self._operation(call, "updateRecordingStatusOperation", body, "completed")

    def graph_hang_up(self, call: SimCall) -> None:
        self.note(call, "bot hangs up", "from-bot")
        self._state(call, "terminating")
        self._terminate(call, ENDED_BY_BOT)

    def graph_create_call(self, body: dict[str, Any]) -> SimCall:
        """The bot places a call: peer-to-peer to a user or number, a group call, or a meeting join."""
        targets = body.get("targets") or []
        source = body.get("source") or {"@odata.type": "#microsoft.graph.participantInfo",
                                        "identity": identity_of(f"app:{self.bot.app_id}",
                                                                display_name=self.bot.display_name)}
        tenant = body.get("tenantId") or self.bot.tenant_id
        target_names = [target_of(t.get("identity")) for t in targets]
        from_instance = "applicationInstance" in (source.get("identity") or {})
        if any(t.startswith("+") for t in target_names) and not from_instance:
            raise GraphHttpError(400, "invalidRequest", "Calling a phone number needs source.identity."
                                 "applicationInstance: a resource account with a number linked to this app.")
        meeting = body.get("meetingInfo")
        kind: Literal["p2p", "group", "meeting"] = (
            "meeting" if meeting is not None else ("group" if len(targets) > 1 else "p2p"))
        remote = target_names[0] if targets else (self._meeting_key(body) or "meeting")
        call = SimCall(id=new_id(), tenant_id=tenant, direction="outgoing", source=source, targets=targets,
                       callback_uri=body.get("callbackUri") or self.bot.webhook_url, remote=remote, kind=kind,
                       state="establishing", media_config=body.get("mediaConfig"),
                       chat_info=body.get("chatInfo"), meeting_info=meeting,
                       requested_modalities=body.get("requestedModalities") or ["audio"])
        call.transcript = Transcript(call.id, f"the bot calls {remote}")
        self.calls[call.id] = call
        self.note(call, f"bot places a {kind} call to {remote}", "from-bot")
        bot = Participant(call.my_participant_id, identity_of(f"app:{self.bot.app_id}",
                                                             display_name=self.bot.display_name))
        call.add_participant(bot)
        self._later(call, 0, lambda: None if call.ended else self._state(call, "establishing"))
        self._connect_media(call, lambda: None)  # app-hosted media: set up while the call is placed
        if kind == "meeting":
            self._later(call, self.establish_after, lambda: self._join_meeting(call, body))
            return call
        leg = Leg("outbound", target_names, self.now())
        call.legs.append(leg)

        def done(winner: str | None, outcome: str) -> None:
            self._leg_done(call, leg, winner, outcome)
            if winner is None:
                self._terminate(call, RING_FAILURES[outcome])
                return
            if call.media is not None and call.media.state == "failed":
                return  # the media failure ends the call
            for name in target_names if kind == "group" else [winner]:
                call.add_participant(Participant(new_id(), identity_of(name, tenant_id=tenant)))
            call.remote = winner
            call.audio, call.answered_at = "active", self.now()
            self._state(call, "established")
            self._roster(call)
            self._keepalive(call)
            self._begin_media(call)

        self._ring(call, target_names, None, done)
        return call

    def _meeting_key(self, body: dict[str, Any]) -> str | None:
        chat = body.get("chatInfo") or {}
        meeting = body.get("meetingInfo") or {}
        return chat.get("threadId") or meeting.get("joinMeetingId")

    def _join_meeting(self, call: SimCall, body: dict[str, Any]) -> None:
        key = self._meeting_key(body)
        meeting = self.meetings.get(key or "")
        if meeting is None:
            self._terminate(call, {"code": 404, "subcode": 0, "message": f"Meeting {key} was not found."})
            return
        if call.media is not None and call.media.state == "failed":
            return  # the media failure ends the call
        for person in [meeting.organizer, *meeting.attendees]:
            call.add_participant(Participant(new_id(), identity_of(person, tenant_id=call.tenant_id)))
        call.audio, call.answered_at = "active", self.now()
        self.note(call, f"bot joins the meeting ({1 + len(meeting.attendees)} people in it)")
        self._state(call, "established")
        self._roster(call)
        self._keepalive(call)
        self._begin_media(call)


def _app_blob(call: SimCall) -> str | None:
    """The blob of an appHostedMediaConfig; None for any other media config."""
    config = call.media_config or {}
    if not str(config.get("@odata.type", "")).endswith("appHostedMediaConfig"):
        return None
    return str(config.get("blob") or "")


def _worker_of(uri: str) -> str:
    """The host:port a callback URI reaches: one bot worker."""
    return urlsplit(uri).netloc or uri


def _prompt_name(prompt: dict[str, Any]) -> str:
    uri = str((prompt.get("mediaInfo") or {}).get("uri", ""))
    name = uri.rsplit("/", 1)[-1].split("?", 1)[0]
    return name.rsplit(".", 1)[0] if name else "(no uri)"


def _op_label(op: dict[str, Any]) -> str:
    kind = str(op.get("@odata.type", "")).rsplit(".", 1)[-1]
    return kind.removesuffix("Operation")
