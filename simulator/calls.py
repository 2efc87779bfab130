"""A simulated call as Graph holds it: state, media, participants, operations; and what its caller lived.

Pure data plus the Graph JSON views of it. The rules that move a call between states live in
`simulator.core`, which owns the clock and the notification outbox.
"""

from __future__ import annotations

import itertools
import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from simulator.clock import TimerHandle
from simulator.directory import target_of
from simulator.speech import Utterance
from simulator.transcript import Transcript

if TYPE_CHECKING:
    from simulator.media_link import MediaLink

#: Graph's callState values this simulator moves through.
STATES = ("incoming", "establishing", "established", "transferring", "transferAccepted", "redirecting",
          "terminating", "terminated")


def new_id() -> str:
    return str(uuid.uuid4())


@dataclass
class Participant:
    id: str
    identity: dict[str, Any]
    is_muted: bool = False
    is_in_lobby: bool = False
    recording_status: str | None = None
    #: The participant's media source id (MSI): stable for the call, the roster's mediaStreams[].sourceId and
    #: the id its unmixed audio frames carry. 0 until the participant joins a call (`SimCall.add_participant`).
    source_id: int = 0

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "@odata.type": "#microsoft.graph.participant",
            "id": self.id,
            "info": {"@odata.type": "#microsoft.graph.participantInfo", "identity": self.identity,
                     "endpointType": "default", "languageId": "en-US", "region": "amer"},
            "mediaStreams": [{"@odata.type": "#microsoft.graph.mediaStream", "mediaType": "audio",
                              "sourceId": str(self.source_id), "direction": "sendReceive",
                              "serverMuted": False}],
            "isMuted": self.is_muted,
            "isInLobby": self.is_in_lobby,
        }
        if self.recording_status is not None:
            body["recordingInfo"] = {"@odata.type": "#microsoft.graph.recordingInfo",
                                     "recordingStatus": self.recording_status}
        return body


@dataclass
class MediaOp:
    """A queued playPrompt or recordResponse: media operations run one at a time, in order."""

    id: str
    kind: Literal["play", "record"]
    client_context: str | None
    prompts: list[dict[str, Any]]
    body: dict[str, Any]
    status: str = "running"
    timer: TimerHandle | None = None
    started_at: float | None = None
    #: For a record: the beep and prompt are done, the caller's speech is being captured from here.
    capture_from: float | None = None


@dataclass
class Heard:
    """A prompt as the caller heard it."""

    name: str
    uri: str
    started_at: float
    seconds: float
    ended_at: float | None = None
    outcome: str = "playing"  # playing | completed | cancelled | failed

    def state(self, now: float) -> str:
        """Its outcome at `now`: one of several prompts in a playPrompt is over when its own length has
        passed, though `outcome` changes only when the operation ends."""
        if self.outcome == "playing" and self.started_at + self.seconds <= now:
            return "completed"
        return self.outcome


@dataclass
class Recording:
    id: str
    seconds: float
    access_token: str
    completion_reason: str
    data: bytes = b""
    downloaded: int = 0


@dataclass
class Leg:
    """Something the bot did with the caller: a transfer, a redirect or an invite, and how it went."""

    kind: Literal["transfer", "redirect", "invite", "outbound"]
    targets: list[str]
    started_at: float
    outcome: str = "ringing"  # ringing | answered | declined | busy | no_answer | failed
    connected_to: str | None = None
    ended_at: float | None = None
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RecordingStatusChange:
    """A recording status the bot set (updateRecordingStatus), and when (simulation seconds)."""

    at: float
    status: str


@dataclass
class Conversation:
    """The people's own call that a policy-recording bot is invited into: a Teams user under a recording policy
    and the parties they talk to, and what each of them says. It goes on whether or not a bot's leg does; each
    bot leg (a SimCall) sees the same participant ids and media source ids."""

    id: str
    #: The Teams user under the recording policy (target syntax, `user:<id>`).
    recorded: str
    started_at: float
    #: Everyone Teams knows in it, by target: those present, and joiners waiting for a recording bot.
    parties: dict[str, Participant] = field(default_factory=dict)
    #: Who is in the call now (every established bot leg hears and lists them), in the order they joined.
    present: list[str] = field(default_factory=list)
    #: What each party says, by target.
    speech: dict[str, list[Utterance]] = field(default_factory=dict)
    legs: list[SimCall] = field(default_factory=list)
    ended_at: float | None = None
    #: Where Teams invites the policy's recording bot (its calling webhook).
    webhook: str = ""
    _sources: Iterator[int] = field(default_factory=lambda: itertools.count(1), repr=False)

    @property
    def ended(self) -> bool:
        return self.ended_at is not None

    def next_source_id(self) -> int:
        return next(self._sources)


@dataclass
class SimCall:
    id: str
    tenant_id: str
    direction: Literal["incoming", "outgoing"]
    source: dict[str, Any]
    targets: list[dict[str, Any]]
    callback_uri: str
    #: The human (or Teams client) on the far end: target syntax, e.g. `+14255550100`.
    remote: str
    kind: Literal["p2p", "group", "meeting"] = "p2p"
    state: str = "incoming"
    audio: str = "inactive"
    media_config: dict[str, Any] | None = None
    my_participant_id: str = field(default_factory=new_id)
    chain_id: str = field(default_factory=new_id)
    chat_info: dict[str, Any] | None = None
    meeting_info: dict[str, Any] | None = None
    incoming_context: dict[str, Any] | None = None
    application_metadata: dict[str, Any] | None = None
    requested_modalities: list[str] = field(default_factory=lambda: ["audio"])
    participants: dict[str, Participant] = field(default_factory=dict)
    operations: dict[str, dict[str, Any]] = field(default_factory=dict)
    media_queue: deque[MediaOp] = field(default_factory=deque)
    current_media: MediaOp | None = None
    tones_subscribed: bool = False
    tone_sequence: int = 0
    result_info: dict[str, Any] | None = None
    termination_reason: str | None = None
    timers: dict[str, TimerHandle] = field(default_factory=dict)
    transcript: Transcript = field(default_factory=lambda: Transcript(""))
    # What the caller lived, for expectations:
    answered_at: float | None = None
    ended_at: float | None = None
    heard: list[Heard] = field(default_factory=list)
    tones_received: list[str] = field(default_factory=list)
    recordings: list[Recording] = field(default_factory=list)
    legs: list[Leg] = field(default_factory=list)
    #: How long the caller speaks into the next recording (None: stays silent).
    speech_seconds: float | None = None
    joining_responses: list[dict[str, Any]] = field(default_factory=list)
    #: A pending (answer-deadline) decision has been made: answer, reject or redirect.
    decided: str | None = None
    #: App-hosted media: the simulator's connection to the bot's media session (None: service-hosted, or the
    #: simulator plays no media).
    media: MediaLink | None = None
    #: For a policy-recording leg: the people's call it records.
    conversation: Conversation | None = None
    #: What each participant says, by target (a policy-recording leg shares its conversation's).
    speech: dict[str, list[Utterance]] = field(default_factory=dict)
    #: The answer's participantCapacity (policy recording): how many policy users this leg takes.
    participant_capacity: int | None = None
    #: Policy users this leg records: the recorded user and every joiner it accepted.
    recorded_users: list[str] = field(default_factory=list)
    recording_log: list[RecordingStatusChange] = field(default_factory=list)
    #: Rules the bot broke that Teams does not enforce (noted in the transcript too).
    violations: list[str] = field(default_factory=list)
    _sources: Iterator[int] = field(default_factory=lambda: itertools.count(1), repr=False)

    def add_participant(self, participant: Participant) -> Participant:
        """Put a participant in the call, with a media source id of its own unless it has one; the one already
        there with that id if any."""
        if participant.id in self.participants:
            return self.participants[participant.id]
        if not participant.source_id:
            participant.source_id = (self.conversation.next_source_id() if self.conversation is not None
                                     else next(self._sources))
        self.participants[participant.id] = participant
        return participant

    def source_ids(self) -> dict[str, int]:
        """Each participant's media source id, by target."""
        return {target_of(p.identity): p.source_id for p in self.participants.values()}

    @property
    def ended(self) -> bool:
        return self.state == "terminated"

    @property
    def service_hosted(self) -> bool:
        config = self.media_config or {}
        return str(config.get("@odata.type", "")).endswith("serviceHostedMediaConfig")

    def to_json(self) -> dict[str, Any]:
        """The call resource, as GET /communications/calls/{id} and notifications show it."""
        body: dict[str, Any] = {
            "@odata.type": "#microsoft.graph.call",
            "id": self.id,
            "state": self.state,
            "direction": self.direction,
            "callbackUri": self.callback_uri,
            "callChainId": self.chain_id,
            "tenantId": self.tenant_id,
            "myParticipantId": self.my_participant_id,
            "source": self.source,
            "targets": self.targets,
            "requestedModalities": self.requested_modalities,
        }
        if self.state != "incoming":
            body["mediaState"] = {"@odata.type": "#microsoft.graph.callMediaState", "audio": self.audio}
        for key, value in (("chatInfo", self.chat_info), ("meetingInfo", self.meeting_info),
                           ("incomingContext", self.incoming_context),
                           ("applicationMetadata", self.application_metadata),
                           ("resultInfo", self.result_info), ("terminationReason", self.termination_reason)):
            if value is not None:
                body[key] = value
        return body
