"""Typed call events: what a Graph notification means, with the raw notification kept beside it.

Values are kept as Graph sent them (state `ringing`, new result codes, unknown tones): the SDK models
turn values they do not know into None, which is how calls get stuck. `raw` is the commsNotification
entry the event came from, so any consumer can re-read a field this module does not type.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from calling.identities import Party

POLICY_RECORDING_REASON = "PolicyBasedRecording"

# Graph's tone names to the key a caller pressed.
TONE_KEYS = {**{f"tone{d}": str(d) for d in range(10)}, "star": "*", "pound": "#",
             "a": "A", "b": "B", "c": "C", "d": "D", "flash": "flash"}


@dataclass(frozen=True)
class ResultInfo:
    """Graph's outcome triple. Codes arrive as numbers or strings; both become int (None if absent)."""

    code: int | None
    subcode: int | None
    message: str | None

    @property
    def ok(self) -> bool:
        return self.code is not None and (200 <= self.code < 300 or self.code == 0)

    def __str__(self) -> str:
        return f"{self.code}/{self.subcode} {self.message or ''}".strip()


@dataclass(frozen=True)
class CallEvent:
    """Fields every event has. `call_id` comes from resourceUrl (or the legacy `resource`)."""

    call_id: str
    change_type: str
    resource_url: str
    raw: Mapping[str, Any] = field(compare=False, repr=False)


@dataclass(frozen=True)
class IncomingCall(CallEvent):
    """A new call for the bot (changeType created, state incoming): answer, reject or redirect it."""

    source: Party
    targets: tuple[Party, ...]
    tenant_id: str | None
    direction: str | None
    callback_uri: str | None
    call_chain_id: str | None
    my_participant_id: str | None
    source_participant_id: str | None
    requested_modalities: tuple[str, ...]
    chat_info: Mapping[str, Any] | None
    meeting_info: Mapping[str, Any] | None
    incoming_context: Mapping[str, Any] | None
    bot_data: Mapping[str, Any] | None

    @property
    def invite_reasons(self) -> tuple[str, ...]:
        reasons = (self.bot_data or {}).get("inviteReasons") or ()
        return tuple(str(r) for r in reasons) if isinstance(reasons, list) else ()

    @property
    def is_policy_recording(self) -> bool:
        """Compliance recording invite: must be answered within 5 s, and only by app-hosted media."""
        return POLICY_RECORDING_REASON in self.invite_reasons

    @property
    def is_transfer(self) -> bool:
        return bool((self.incoming_context or {}).get("transferor"))


@dataclass(frozen=True)
class CallStateChanged(CallEvent):
    """The call moved: establishing, established, transferring, terminating, terminated (or any new state).

    A `deleted` call notification without a state (as a rejected call sends) is reported as `terminated`.
    """

    state: str
    media_state: Mapping[str, str]
    result_info: ResultInfo | None
    termination_reason: str | None

    @property
    def audio_active(self) -> bool:
        return self.media_state.get("audio") == "active"

    @property
    def is_terminated(self) -> bool:
        return self.state == "terminated"


@dataclass(frozen=True)
class ToneReceived(CallEvent):
    """A DTMF key (after subscribeToTone). Deduplicate by `sequence_id`: toneInfo can repeat."""

    tone: str
    key: str
    sequence_id: int | None
    state: str | None


# completionReason values that mean the operation failed, whatever its status. Graph's enums (lower-cased):
# playPromptCompletionReason and sendDtmfCompletionReason are unknown, completedSuccessfully,
# mediaOperationCanceled; recordCompletionReason is operationCanceled, stopToneDetected,
# maxRecordDurationReached, initialSilenceTimeout, maxSilenceTimeout (the normal ends of a recording),
# playPromptFailed, playBeepFailed, mediaReceiveTimeout, unspecifiedError.
FAILED_COMPLETION_REASONS = frozenset({
    "unknown", "mediaoperationcanceled", "operationcanceled", "playpromptfailed", "playbeepfailed",
    "mediareceivetimeout", "unspecifiederror"})


@dataclass(frozen=True)
class OperationCompleted(CallEvent):
    """A media or participant operation finished (or failed). `client_context` echoes the request's."""

    operation_id: str | None
    operation_type: str
    status: str | None
    client_context: str | None
    result_info: ResultInfo | None
    completion_reason: str | None
    recording_location: str | None
    recording_access_token: str | None = field(repr=False)

    @property
    def succeeded(self) -> bool:
        """Completed, and neither its completionReason nor its resultInfo (code >= 400) says it failed.

        Graph reports some failures as `completed`: call-senddtmftones.md shows `completed` with
        `mediaOperationCanceled` and with `unknown` as its error cases. A recording that stopped on a stop
        tone, on silence or at its maximum duration (200/8515) did what was asked.
        """
        if (self.status or "").lower() != "completed":
            return False
        if (self.completion_reason or "").lower() in FAILED_COMPLETION_REASONS:
            return False
        code = self.result_info.code if self.result_info else None
        return code is None or code < 400


@dataclass(frozen=True)
class ParticipantState:
    """One roster entry."""

    participant_id: str | None
    party: Party
    is_muted: bool | None
    is_in_lobby: bool | None
    recording_status: str | None
    raw: Mapping[str, Any] = field(compare=False, repr=False)


@dataclass(frozen=True)
class ParticipantsUpdated(CallEvent):
    """The roster of a group call or meeting (the whole list, unless delta rosters are enabled)."""

    participants: tuple[ParticipantState, ...]


@dataclass(frozen=True)
class ParticipantJoining(CallEvent):
    """Policy recording: another participant of an answered recording group joins.

    The bot must answer in the HTTP response with a participantJoiningResponse.
    """

    joining_call: Mapping[str, Any]


@dataclass(frozen=True)
class ContentSharingUpdated(CallEvent):
    """Screen sharing sessions started, changed or ended (when content-sharing notifications are on)."""

    session_ids: tuple[str, ...]


@dataclass(frozen=True)
class UnknownEvent(CallEvent):
    """A notification this version does not type. Kept and logged, never an error."""

    resource_type: str | None
