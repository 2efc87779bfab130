"""A simulated call as Graph holds it: state, media, participants, operations; and what its caller lived.

Pure data plus the Graph JSON views of it. The rules that move a call between states live in
`simulator.core`, which owns the clock and the notification outbox.
"""

from __future__ import annotations

import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

from simulator.clock import TimerHandle
from simulator.transcript import Transcript

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

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "@odata.type": "#microsoft.graph.participant",
            "id": self.id,
            "info": {"@odata.type": "#microsoft.graph.participantInfo", "identity": self.identity,
                     "endpointType": "default", "languageId": "en-US", "region": "amer"},
            "mediaStreams": [{"@odata.type": "#microsoft.graph.mediaStream", "mediaType": "audio",
                              "sourceId": "1", "direction": "sendReceive", "serverMuted": False}],
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
