"""Every Graph call action, as one async `CallControl` over msgraph-sdk.

Request bodies are msgraph-sdk models (enums as enum members, identities through `Party`), so they
serialise to exactly what Graph's HTTP docs show; tests check each against the official OpenAPI schema.
Responses are read as JSON rather than SDK models so that values the SDK does not know are kept.
Arguments outside Graph's documented limits raise ValueError before any request is sent.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
from azure.core.exceptions import AzureError
from kiota_abstractions.api_error import APIError
from kiota_abstractions.request_information import RequestInformation
from msgraph.generated.communications.calls.item.answer.answer_post_request_body import AnswerPostRequestBody
from msgraph.generated.communications.calls.item.cancel_media_processing.cancel_media_processing_post_request_body import (  # noqa: E501
    CancelMediaProcessingPostRequestBody,
)
from msgraph.generated.communications.calls.item.change_screen_sharing_role.change_screen_sharing_role_post_request_body import (  # noqa: E501
    ChangeScreenSharingRolePostRequestBody,
)
from msgraph.generated.communications.calls.item.mute.mute_post_request_body import MutePostRequestBody
from msgraph.generated.communications.calls.item.participants.invite.invite_post_request_body import (
    InvitePostRequestBody,
)
from msgraph.generated.communications.calls.item.participants.item.mute.mute_post_request_body import (
    MutePostRequestBody as ParticipantMutePostRequestBody,
)
from msgraph.generated.communications.calls.item.play_prompt.play_prompt_post_request_body import (
    PlayPromptPostRequestBody,
)
from msgraph.generated.communications.calls.item.record_response.record_response_post_request_body import (
    RecordResponsePostRequestBody,
)
from msgraph.generated.communications.calls.item.redirect.redirect_post_request_body import (
    RedirectPostRequestBody,
)
from msgraph.generated.communications.calls.item.reject.reject_post_request_body import RejectPostRequestBody
from msgraph.generated.communications.calls.item.send_dtmf_tones.send_dtmf_tones_post_request_body import (
    SendDtmfTonesPostRequestBody,
)
from msgraph.generated.communications.calls.item.subscribe_to_tone.subscribe_to_tone_post_request_body import (
    SubscribeToTonePostRequestBody,
)
from msgraph.generated.communications.calls.item.transfer.transfer_post_request_body import (
    TransferPostRequestBody,
)
from msgraph.generated.communications.calls.item.unmute.unmute_post_request_body import UnmutePostRequestBody
from msgraph.generated.communications.calls.item.update_recording_status.update_recording_status_post_request_body import (  # noqa: E501
    UpdateRecordingStatusPostRequestBody,
)
from msgraph.generated.models.app_hosted_media_config import AppHostedMediaConfig
from msgraph.generated.models.call import Call
from msgraph.generated.models.call_direction import CallDirection
from msgraph.generated.models.chat_info import ChatInfo
from msgraph.generated.models.identity import Identity as GraphIdentity
from msgraph.generated.models.identity_set import IdentitySet
from msgraph.generated.models.incoming_call_options import IncomingCallOptions
from msgraph.generated.models.invitation_participant_info import InvitationParticipantInfo
from msgraph.generated.models.join_meeting_id_meeting_info import JoinMeetingIdMeetingInfo
from msgraph.generated.models.media_config import MediaConfig
from msgraph.generated.models.media_info import MediaInfo
from msgraph.generated.models.media_prompt import MediaPrompt
from msgraph.generated.models.modality import Modality
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.generated.models.organizer_meeting_info import OrganizerMeetingInfo
from msgraph.generated.models.outgoing_call_options import OutgoingCallOptions
from msgraph.generated.models.participant_info import ParticipantInfo
from msgraph.generated.models.recording_status import RecordingStatus
from msgraph.generated.models.reject_reason import RejectReason
from msgraph.generated.models.screen_sharing_role import ScreenSharingRole
from msgraph.generated.models.service_hosted_media_config import ServiceHostedMediaConfig
from msgraph.generated.models.tone import Tone
from msgraph.graph_service_client import GraphServiceClient

from calling.config import is_loopback_url
from calling.errors import GraphError
from calling.events import ParticipantState, ResultInfo
from calling.identities import MeetingId, MeetingJoin, Party, parse_join_url
from calling.ids import check_graph_id
from calling.notifications import parse_operation_status, parse_participant, parse_result_info
from calling.retry import RetryBudget

ModalityName = Literal["audio", "video", "videoBasedScreenSharing"]
RejectReasonName = Literal["none", "busy", "forbidden"]
RecordingStatusName = Literal["notRecording", "recording", "failed"]

_ERRORS: dict[str, Any] = {"XXX": ODataError}
_KEYS = "0123456789*#ABCD"
_TONES = {**{str(d): Tone(f"tone{d}") for d in range(10)}, "*": Tone.Star, "#": Tone.Pound,
          "A": Tone.A, "B": Tone.B, "C": Tone.C, "D": Tone.D}
MAX_CLIENT_CONTEXT = 256
#: What createCall retries on: only a throttled request is sure not to have placed the call.
THROTTLED = frozenset({429})


def prompt_resource_id(uri: str) -> str:
    """The media cache key for a prompt: stable for a URI, so preFetchMedia and playPrompt agree."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, uri))


@dataclass(frozen=True)
class Prompt:
    """A WAV prompt (mono, 16-bit, 16 kHz) at a URI Graph can fetch."""

    uri: str
    resource_id: str = ""

    def __post_init__(self) -> None:
        if not (self.uri.startswith("https://") or (self.uri.startswith("http://") and is_loopback_url(self.uri))):
            raise ValueError(f"prompt URI must be https (Graph fetches it), got {self.uri!r}")
        if not self.resource_id:
            object.__setattr__(self, "resource_id", prompt_resource_id(self.uri))

    def media_info(self) -> MediaInfo:
        return MediaInfo(odata_type="#microsoft.graph.mediaInfo", uri=self.uri, resource_id=self.resource_id)


@dataclass(frozen=True)
class ServiceHostedMedia:
    """Graph plays and records: IVR calls. `prefetch` lets Graph cache prompts before the first play."""

    prefetch: tuple[Prompt, ...] = ()

    def config(self) -> MediaConfig:
        return ServiceHostedMediaConfig(pre_fetch_media=[p.media_info() for p in self.prefetch] or None)


@dataclass(frozen=True)
class AppHostedMedia:
    """The bot's own media stack (the Windows media VM) produced `blob` for this call."""

    blob: str

    def __post_init__(self) -> None:
        if not self.blob:
            raise ValueError("app-hosted media needs the media session configuration blob")

    def config(self) -> MediaConfig:
        return AppHostedMediaConfig(blob=self.blob)


Media = ServiceHostedMedia | AppHostedMedia


@dataclass(frozen=True)
class CallInfo:
    """A call as Graph returned it (create call, get call)."""

    id: str
    state: str | None
    direction: str | None
    my_participant_id: str | None
    media_state: Mapping[str, str]
    result_info: ResultInfo | None
    raw: Mapping[str, Any] = field(compare=False, repr=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CallInfo:
        media = data.get("mediaState")
        return cls(
            id=str(data.get("id", "")),
            state=_opt(data.get("state")),
            direction=_opt(data.get("direction")),
            my_participant_id=_opt(data.get("myParticipantId")),
            media_state={str(k): str(v) for k, v in media.items() if not str(k).startswith("@")}
            if isinstance(media, Mapping) else {},
            result_info=parse_result_info(data.get("resultInfo")),
            raw=data,
        )


@dataclass(frozen=True)
class Operation:
    """What an action returned: usually `running`; completion arrives later as a notification."""

    id: str | None
    type: str
    status: str | None
    client_context: str | None
    result_info: ResultInfo | None
    raw: Mapping[str, Any] = field(compare=False, repr=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None, default_type: str) -> Operation:
        data = data or {}
        kind = str(data.get("@odata.type") or "").rsplit(".", 1)[-1]
        return cls(
            id=_opt(data.get("id")),
            type=kind[: -len("Operation")] if kind.endswith("Operation") else (kind or default_type),
            status=parse_operation_status(data.get("status")),
            client_context=_opt(data.get("clientContext")),
            result_info=parse_result_info(data.get("resultInfo")),
            raw=data,
        )


class CallControl:
    """Graph call actions for one tenant. Build with `calling.graphclient.build_call_control`."""

    def __init__(self, client: GraphServiceClient, *, callback_uri: str, tenant_id: str, app_id: str,
                 http: httpx.AsyncClient | None = None) -> None:
        self._client = client
        self._calls = client.communications.calls
        self.callback_uri = callback_uri
        self.tenant_id = tenant_id
        self.app_id = app_id
        self._http = http

    # --- creating calls ---------------------------------------------------------------------------

    async def create_call(
        self,
        targets: Sequence[Party],
        *,
        source: Party | None = None,
        media: Media | None = None,
        modalities: Sequence[ModalityName] = ("audio",),
        subject: str | None = None,
        meeting: MeetingJoin | MeetingId | None = None,
        group: bool = False,
        content_sharing_notifications: bool = False,
        callback_uri: str | None = None,
    ) -> CallInfo:
        """POST /communications/calls. Prefer the helpers below; this is the shape they share."""
        if not targets and meeting is None:
            raise ValueError("a call needs at least one target, or a meeting to join")
        if group and not 1 <= len(targets) <= 5:
            raise ValueError(f"a group call takes 1 to 5 targets, got {len(targets)}")
        if not group and meeting is None and len(targets) != 1:
            raise ValueError(f"a peer-to-peer call takes exactly one target, got {len(targets)}")
        call = Call(
            odata_type="#microsoft.graph.call",
            callback_uri=self._callback(callback_uri),
            tenant_id=self.tenant_id,
            requested_modalities=_modalities(modalities),
            media_config=(media or ServiceHostedMedia()).config(),
            subject=subject,
            targets=[_invitation(t) for t in targets] or None,
            source=ParticipantInfo(identity=source.to_identity_set()) if source else None,
            direction=CallDirection.Outgoing if group else None,
            call_options=OutgoingCallOptions(is_content_sharing_notification_enabled=True)
            if content_sharing_notifications else None,
        )
        if isinstance(meeting, MeetingJoin):
            call.chat_info = ChatInfo(odata_type="#microsoft.graph.chatInfo", thread_id=meeting.thread_id,
                                      message_id=meeting.message_id,
                                      reply_chain_message_id=meeting.reply_chain_message_id)
            organizer = GraphIdentity(odata_type="#microsoft.graph.identity", id=meeting.organizer_id,
                                      additional_data={"tenantId": meeting.tenant_id})
            call.meeting_info = OrganizerMeetingInfo(organizer=IdentitySet(user=organizer))
        elif isinstance(meeting, MeetingId):
            call.meeting_info = JoinMeetingIdMeetingInfo(join_meeting_id=meeting.join_meeting_id,
                                                         passcode=meeting.passcode)
        data = await self._send("createCall", self._calls.to_post_request_information(call), retry_on=THROTTLED)
        return CallInfo.from_json(data or {})

    async def call_teams_user(self, user: Party, *, media: Media | None = None, subject: str | None = None,
                              modalities: Sequence[ModalityName] = ("audio",)) -> CallInfo:
        """Peer-to-peer call from the bot to a Teams user (Calls.Initiate.All)."""
        _kind(user, "user", "the callee")
        return await self.create_call([user], media=media, subject=subject, modalities=modalities)

    async def call_phone(self, number: Party, *, from_instance: Party, media: Media | None = None) -> CallInfo:
        """Call a PSTN number. Graph requires the bot's resource account (application instance) as source."""
        _kind(number, "phone", "the callee")
        _kind(from_instance, "applicationInstance", "the caller (source)")
        return await self.create_call([number], source=from_instance, media=media)

    async def create_group_call(self, targets: Sequence[Party], *, media: Media | None = None,
                                subject: str | None = None) -> CallInfo:
        """A group call with 1-5 Teams users (Calls.InitiateGroupCall.All)."""
        for target in targets:
            _kind(target, "user", "a group call target")
        source = Party("application", self.app_id)
        return await self.create_call(targets, source=source, media=media, subject=subject, group=True)

    async def join_meeting(self, meeting: str | MeetingJoin | MeetingId, *, media: Media | None = None,
                           content_sharing_notifications: bool = False) -> CallInfo:
        """Join a scheduled meeting from its join URL, or from joinMeetingId + passcode."""
        target = parse_join_url(meeting) if isinstance(meeting, str) else meeting
        return await self.create_call([], meeting=target, media=media,
                                      content_sharing_notifications=content_sharing_notifications)

    # --- incoming calls ---------------------------------------------------------------------------

    async def answer(
        self,
        call_id: str,
        *,
        media: Media | None = None,
        modalities: Sequence[ModalityName] = ("audio",),
        callback_uri: str | None = None,
        content_sharing_notifications: bool = False,
        participant_capacity: int | None = None,
        deadline: float | None = None,
    ) -> None:
        """Answer an incoming call. `deadline` (monotonic) bounds retries: 15 s after the notification."""
        if participant_capacity is not None and not 1 <= participant_capacity <= 200:
            raise ValueError(f"participantCapacity must be 1-200, got {participant_capacity}")
        body = AnswerPostRequestBody(
            callback_uri=self._callback(callback_uri),
            accepted_modalities=_modalities(modalities),
            media_config=(media or ServiceHostedMedia()).config(),
            call_options=IncomingCallOptions(is_content_sharing_notification_enabled=True)
            if content_sharing_notifications else None,
            participant_capacity=participant_capacity,
        )
        await self._send("answer", self._call(call_id).answer.to_post_request_information(body), deadline)

    async def reject(self, call_id: str, *, reason: RejectReasonName = "none", callback_uri: str | None = None,
                     deadline: float | None = None) -> None:
        body = RejectPostRequestBody(reason=RejectReason(_choice(reason, ("none", "busy", "forbidden"), "reason")),
                                     callback_uri=callback_uri)
        await self._send("reject", self._call(call_id).reject.to_post_request_information(body), deadline)

    async def redirect(self, call_id: str, targets: Sequence[Party], *, timeout: int | None = None,  # noqa: ASYNC109 (Graph's ring timeout, not an I/O timeout)
                       callback_uri: str | None = None, deadline: float | None = None) -> None:
        """Send an incoming call elsewhere; several targets ring at once (simultaneous ring, up to 25)."""
        if not 1 <= len(targets) <= 25:
            raise ValueError(f"redirect takes 1 to 25 targets, got {len(targets)}")
        if timeout is not None and not 15 <= timeout <= 90:
            raise ValueError(f"redirect timeout must be 15-90 seconds, got {timeout}")
        body = RedirectPostRequestBody(targets=[_invitation(t) for t in targets], timeout=timeout,
                                       callback_uri=callback_uri)
        await self._send("redirect", self._call(call_id).redirect.to_post_request_information(body), deadline)

    # --- media (service-hosted calls only) -------------------------------------------------------

    async def play_prompt(self, call_id: str, prompts: Sequence[Prompt], *,
                          client_context: str | None = None) -> Operation:
        if not 1 <= len(prompts) <= 20:
            raise ValueError(f"playPrompt takes 1 to 20 prompts, got {len(prompts)}")
        body = PlayPromptPostRequestBody(
            prompts=[MediaPrompt(media_info=p.media_info()) for p in prompts],
            client_context=_context(client_context),
        )
        return await self._operation("playPrompt", self._call(call_id).play_prompt.to_post_request_information(body))

    async def record_response(
        self,
        call_id: str,
        *,
        prompt: Prompt | None = None,
        barge_in_allowed: bool = False,
        initial_silence_timeout: int = 5,
        max_silence_timeout: int = 5,
        max_record_duration: int = 5,
        play_beep: bool = True,
        stop_tones: Sequence[str] = ("#",),
        client_context: str | None = None,
    ) -> Operation:
        """Record the caller (voicemail): up to 120 s; the recording is fetched with its access token."""
        for name, value in (("initial_silence_timeout", initial_silence_timeout),
                            ("max_silence_timeout", max_silence_timeout),
                            ("max_record_duration", max_record_duration)):
            if not 1 <= value <= 120:
                raise ValueError(f"{name} must be 1-120 seconds, got {value}")
        body = RecordResponsePostRequestBody(
            prompts=[MediaPrompt(media_info=prompt.media_info())] if prompt else None,
            barge_in_allowed=barge_in_allowed,
            initial_silence_timeout_in_seconds=initial_silence_timeout,
            max_silence_timeout_in_seconds=max_silence_timeout,
            max_record_duration_in_seconds=max_record_duration,
            play_beep=play_beep,
            stop_tones=[_key(t) for t in stop_tones],
            client_context=_context(client_context),
        )
        return await self._operation("record",
                                     self._call(call_id).record_response.to_post_request_information(body))

    async def cancel_media_processing(self, call_id: str, *, client_context: str | None = None) -> Operation:
        """Stop the playing prompt or recording and drop queued ones (tone subscription stays)."""
        body = CancelMediaProcessingPostRequestBody(client_context=_context(client_context))
        return await self._operation(
            "cancelMediaProcessing", self._call(call_id).cancel_media_processing.to_post_request_information(body))

    async def subscribe_to_tone(self, call_id: str, *, client_context: str | None = None) -> Operation:
        body = SubscribeToTonePostRequestBody(client_context=_context(client_context))
        return await self._operation(
            "subscribeToTone", self._call(call_id).subscribe_to_tone.to_post_request_information(body))

    async def send_dtmf_tones(self, call_id: str, tones: str, *, delay_between_tones_ms: int | None = None,
                              client_context: str | None = None) -> Operation:
        """Send keys (`0-9 * # A-D`) into the call, e.g. to drive another IVR."""
        if not tones:
            raise ValueError("tones must not be empty")
        if delay_between_tones_ms is not None and not 0 <= delay_between_tones_ms <= 5000:
            raise ValueError(f"delay_between_tones_ms must be 0-5000, got {delay_between_tones_ms}")
        body = SendDtmfTonesPostRequestBody(tones=[_TONES[_key(t)] for t in tones],
                                            delay_between_tones_ms=delay_between_tones_ms,
                                            client_context=_context(client_context))
        return await self._operation(
            "sendDtmfTones", self._call(call_id).send_dtmf_tones.to_post_request_information(body))

    # --- call control -----------------------------------------------------------------------------

    async def keep_alive(self, call_id: str) -> None:
        """Required at least every 45 minutes (Graph ends the call with 408/8537 otherwise)."""
        await self._send("keepAlive", self._call(call_id).keep_alive.to_post_request_information())

    async def transfer(self, call_id: str, target: Party, *, replaces_call_id: str | None = None,
                       transferee: Party | None = None, transferee_participant_id: str | None = None) -> None:
        """Blind transfer; consultative with `replaces_call_id` (the bot's call to the target).

        From a group call, name the participant to move (`transferee` + `transferee_participant_id`).
        To a phone number only when the bot answered as an application instance.
        """
        if (transferee is None) != (transferee_participant_id is None):
            raise ValueError("transferee and transferee_participant_id go together")
        invitation = _invitation(target, replaces_call_id=replaces_call_id)
        body = TransferPostRequestBody(
            transfer_target=invitation,
            transferee=ParticipantInfo(identity=transferee.to_identity_set(),
                                       participant_id=transferee_participant_id) if transferee else None,
        )
        await self._send("transfer", self._call(call_id).transfer.to_post_request_information(body))

    async def invite(self, call_id: str, participants: Sequence[Party], *, replaces_call_id: str | None = None,
                     client_context: str | None = None) -> Operation:
        """Invite 1-5 participants into a group call or meeting; `replaces_call_id` moves a P2P call in."""
        if not 1 <= len(participants) <= 5:
            raise ValueError(f"invite takes 1 to 5 participants, got {len(participants)}")
        body = InvitePostRequestBody(
            participants=[_invitation(p, replaces_call_id=replaces_call_id) for p in participants],
            client_context=_context(client_context),
        )
        return await self._operation(
            "inviteParticipants", self._call(call_id).participants.invite.to_post_request_information(body))

    async def mute(self, call_id: str, *, client_context: str | None = None) -> Operation:
        body = MutePostRequestBody(client_context=_context(client_context))
        return await self._operation("muteParticipant", self._call(call_id).mute.to_post_request_information(body))

    async def unmute(self, call_id: str, *, client_context: str | None = None) -> Operation:
        body = UnmutePostRequestBody(client_context=_context(client_context))
        return await self._operation("unmuteParticipant",
                                     self._call(call_id).unmute.to_post_request_information(body))

    async def mute_participant(self, call_id: str, participant_id: str, *,
                               client_context: str | None = None) -> Operation:
        body = ParticipantMutePostRequestBody(client_context=_context(client_context))
        builder = self._call(call_id).participants.by_participant_id(_id(participant_id, "participant id"))
        return await self._operation("muteParticipant", builder.mute.to_post_request_information(body))

    async def remove_participant(self, call_id: str, participant_id: str) -> None:
        builder = self._call(call_id).participants.by_participant_id(_id(participant_id, "participant id"))
        await self._send("removeParticipant", builder.to_delete_request_information())

    async def update_recording_status(self, call_id: str, status: RecordingStatusName, *,
                                      client_context: str | None = None) -> Operation:
        """Tell Teams the bot records (shows the banner). Required before keeping any media."""
        body = UpdateRecordingStatusPostRequestBody(
            status=RecordingStatus(_choice(status, ("notRecording", "recording", "failed"), "status")),
            client_context=_context(client_context),
        )
        return await self._operation(
            "updateRecordingStatus", self._call(call_id).update_recording_status.to_post_request_information(body))

    async def change_screen_sharing_role(self, call_id: str, role: Literal["viewer", "sharer"]) -> None:
        body = ChangeScreenSharingRolePostRequestBody(
            role=ScreenSharingRole(_choice(role, ("viewer", "sharer"), "role")))
        await self._send("changeScreenSharingRole",
                         self._call(call_id).change_screen_sharing_role.to_post_request_information(body))

    async def hang_up(self, call_id: str) -> None:
        """Leave the call (for a group call, only the bot's leg ends)."""
        await self._send("hangUp", self._call(call_id).to_delete_request_information())

    # --- reading ----------------------------------------------------------------------------------

    async def get_call(self, call_id: str) -> CallInfo:
        data = await self._send("getCall", self._call(call_id).to_get_request_information())
        return CallInfo.from_json(data or {})

    async def list_participants(self, call_id: str) -> list[ParticipantState]:
        data = await self._send("listParticipants", self._call(call_id).participants.to_get_request_information())
        items = (data or {}).get("value", [])
        return [parse_participant(p) for p in items if isinstance(p, Mapping)]

    async def get_operation(self, call_id: str, operation_id: str) -> Operation:
        builder = self._call(call_id).operations.by_comms_operation_id(_id(operation_id, "operation id"))
        data = await self._send("getOperation", builder.to_get_request_information())
        return Operation.from_json(data, "operation")

    async def download_recording(self, location: str, access_token: str, *, max_bytes: int = 64 * 1024 * 1024
                                 ) -> bytes:
        """Fetch a recordResponse recording (WAV) with its own access token, not the Graph token.

        Graph discards recordings soon after the call; download as soon as the operation completes.
        """
        if not location.startswith("https://") and not is_loopback_url(location):
            raise ValueError(f"recording location must be https, got {location!r}")
        if not access_token:
            raise ValueError("recording access token is empty")
        client = self._http or httpx.AsyncClient(timeout=httpx.Timeout(30, connect=5))
        try:
            async with client.stream("GET", location, headers={"Authorization": f"Bearer {access_token}"}) as resp:
                if resp.status_code != 200:
                    await resp.aread()
                    raise GraphError("downloadRecording", resp.status_code, None, resp.text[:200] or None,
                                     request_id=resp.headers.get("request-id"))
                chunks: list[bytes] = []
                size = 0
                async for chunk in resp.aiter_bytes():
                    size += len(chunk)
                    if size > max_bytes:
                        raise GraphError("downloadRecording", 200, "tooLarge",
                                         f"recording larger than {max_bytes} bytes")
                    chunks.append(chunk)
                return b"".join(chunks)
        except httpx.TransportError as exc:
            raise GraphError("downloadRecording", None, "transportError", str(exc)) from exc
        finally:
            if self._http is None:
                await client.aclose()

    # --- plumbing ---------------------------------------------------------------------------------

    def _call(self, call_id: str) -> Any:
        return self._calls.by_call_id(_id(call_id, "call id"))

    def _callback(self, explicit: str | None) -> str:
        return explicit or self.callback_uri

    async def _operation(self, action: str, request: RequestInformation) -> Operation:
        return Operation.from_json(await self._send(action, request), action)

    async def _send(self, action: str, request: RequestInformation,
                    deadline: float | None = None, *, retry_on: frozenset[int] | None = None) -> dict[str, Any] | None:
        if deadline is not None or retry_on is not None:
            request.add_request_options([RetryBudget(deadline, retry_on)])
        adapter: Any = self._client.request_adapter
        try:
            raw: bytes | None = await adapter.send_primitive_async(request, "bytes", _ERRORS)
        except APIError as exc:
            raise GraphError.from_sdk(action, exc) from exc
        except httpx.TransportError as exc:
            raise GraphError(action, None, "transportError", str(exc) or type(exc).__name__) from exc
        except AzureError as exc:  # the Graph token could not be obtained (credential, federation, network)
            raise GraphError(action, None, "authenticationFailed", str(exc).splitlines()[0] if str(exc) else
                             type(exc).__name__) from exc
        if not raw:
            return None
        try:
            data = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise GraphError(action, 200, "invalidResponse", f"response is not JSON: {exc}") from exc
        return data if isinstance(data, dict) else None


def _invitation(party: Party, *, replaces_call_id: str | None = None) -> InvitationParticipantInfo:
    return InvitationParticipantInfo(
        odata_type="#microsoft.graph.invitationParticipantInfo",
        identity=party.to_identity_set(),
        replaces_call_id=replaces_call_id,
    )


def _modalities(names: Sequence[str]) -> list[Modality]:
    if not names:
        raise ValueError("at least one modality is needed (audio)")
    allowed = ("audio", "video", "videoBasedScreenSharing")
    return [Modality(_choice(n, allowed, "modality")) for n in names]


def _choice(value: str, allowed: Sequence[str], what: str) -> str:
    if value not in allowed:
        raise ValueError(f"{what} must be one of {', '.join(allowed)}, got {value!r}")
    return value


def _context(value: str | None) -> str | None:
    if value is not None and len(value) > MAX_CLIENT_CONTEXT:
        raise ValueError(f"clientContext is at most {MAX_CLIENT_CONTEXT} characters, got {len(value)}")
    return value


def _key(tone: str) -> str:
    key = tone.upper()
    if len(key) != 1 or key not in _KEYS:
        raise ValueError(f"a tone is one of 0-9 * # A-D, got {tone!r}")
    return key


def _kind(party: Party, kind: str, what: str) -> None:
    if party.kind != kind:
        raise ValueError(f"{what} must be a {kind} identity, got {party.kind}")


def _id(value: str, what: str) -> str:
    return check_graph_id(value, what)


def _opt(value: Any) -> str | None:
    return None if value is None else str(value)
