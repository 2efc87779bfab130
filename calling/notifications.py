"""Graph's commsNotifications envelope into an ordered list of typed call events.

Shapes follow docs/graph notes (batches; `resourceUrl` or the legacy `resource`, with or without its
leading slash; one entity, a list or nothing in `resourceData`; changeType and values in any case).
Anything the envelope does not promise is tolerated. A notification missing what it does promise is
left out of the batch with its reason (`Batch.rejected`), so one bad entry does not cost the others;
only a body with nothing usable in it is a NotificationError (the webhook answers 400).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from calling.events import (
    TONE_KEYS,
    CallEvent,
    CallStateChanged,
    ContentSharingUpdated,
    IncomingCall,
    OperationCompleted,
    ParticipantJoining,
    ParticipantState,
    ParticipantsUpdated,
    ResultInfo,
    ToneReceived,
    UnknownEvent,
)
from calling.identities import parse_identity_set
from calling.ids import is_graph_id

# A resourceUrl names its call as `communications/calls/{id}` or `app/calls/{id}` (a path, a relative path, an
# absolute URL): the id is the whole segment after the path's only `calls` segment (see _call_id).
_CALL_PARENTS = frozenset({"communications", "app"})
_OPERATION = re.compile(r"/operations/([^/?#]+)", re.IGNORECASE)
_CONTENT_SHARING = re.compile(r"/contentsharingsessions/([^/?#]+)", re.IGNORECASE)
# Keys only the old (BotBuilder / Skype) calling format has at its top level.
_LEGACY_KEYS = frozenset({"callState", "conversationResult", "appState", "presentedModalityTypes", "links"})
# Graph's spellings; a value that matches one case-insensitively ("Terminated") is normalised to it,
# any other value is kept exactly as sent.
_STATES = {s.lower(): s for s in (
    "incoming", "establishing", "ringing", "established", "hold", "transferring", "transferAccepted",
    "redirecting", "terminating", "terminated", "unknownFutureValue")}
_STATUSES = {s.lower(): s for s in ("notStarted", "running", "completed", "failed")}
_REASONS_SHOWN = 5  # a 400's reason names this many bad notifications, then counts the rest
#: Levels of objects and lists in one notification (the notification itself is one); Graph's go about eight deep.
#: Past this, what the body parser could still read would recurse past Python's limit further on (the hand-off
#: message, the session's history), so such a notification is refused where it enters.
MAX_NESTING = 64
#: A batch keeps this many rejected notifications with their reasons and counts the rest: a body of 4 MiB can hold
#: two million bad entries, and a reason kept, logged and answered for each cost 400 MB, 28 s and a 136 MB answer.
REJECTED_KEPT = 20


class NotificationError(ValueError):
    """The body, or one notification in it, is not what Graph's envelope promises; the message says why."""


class LegacyNotificationError(NotificationError):
    """The body is in the old calling format. Answering 204 makes the platform resend it in Graph format."""


@dataclass(frozen=True)
class Rejected:
    """A notification of the batch that could not be read: its index in `value`, and why."""

    index: int
    reason: str


@dataclass(frozen=True)
class Batch:
    """A parsed body: the events of every readable notification, in batch order, and the ones left out: the first
    REJECTED_KEPT of them with their reasons in `rejected`, and how many there were in all."""

    events: list[CallEvent]
    rejected: list[Rejected] = field(default_factory=list)
    rejected_total: int = 0


def parse_body(body: bytes) -> Batch:
    """Parse a webhook POST body. Events come out in the order Graph put them in the batch."""
    try:
        payload = json.loads(body)
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, an integer past the digit limit
        raise NotificationError(f"body is not JSON: {exc}") from None
    except RecursionError:
        raise NotificationError("body is nested too deeply") from None
    return parse_envelope(payload)


def parse_envelope(payload: Any) -> Batch:
    """Each notification on its own: a bad one is rejected with its reason, the others still count.

    Raises NotificationError when the body is no envelope or every notification in it is bad.
    """
    if not isinstance(payload, Mapping):
        raise NotificationError("body must be a JSON object (a commsNotifications envelope)")
    if "value" not in payload:
        if _LEGACY_KEYS & payload.keys():
            raise LegacyNotificationError("legacy calling notification format")
        raise NotificationError("envelope has no 'value' list of notifications")
    items = payload["value"]
    if not isinstance(items, list):
        raise NotificationError("'value' must be a list of notifications")
    events: list[CallEvent] = []
    rejected: list[Rejected] = []
    total = 0
    for index, item in enumerate(items):
        try:
            events.extend(parse_notification(item, where=f"value[{index}]"))
        except NotificationError as exc:
            total += 1
            if len(rejected) < REJECTED_KEPT:
                rejected.append(Rejected(index, str(exc)))
    if total and total == len(items):
        raise NotificationError(_nothing_usable(rejected, total))
    return Batch(events, rejected, total)


def _nothing_usable(rejected: list[Rejected], total: int) -> str:
    if total == 1:
        return rejected[0].reason
    shown = "; ".join(r.reason for r in rejected[:_REASONS_SHOWN])
    more = total - _REASONS_SHOWN
    return f"no notification in the batch can be read: {shown}" + (f" (and {more} more)" if more > 0 else "")


def parse_notification(item: Any, *, where: str = "notification") -> list[CallEvent]:
    """One commsNotification into its events (a call update with a keypress and a state gives two)."""
    if not isinstance(item, Mapping):
        raise NotificationError(f"{where} must be an object")
    if _nested_deeper_than(item, MAX_NESTING):
        raise NotificationError(f"{where} is nested too deeply (more than {MAX_NESTING} levels)")
    change = item.get("changeType")
    if not isinstance(change, str) or not change:
        raise NotificationError(f"{where}.changeType must be a non-empty string")
    url = item.get("resourceUrl") or item.get("resource")
    if not isinstance(url, str) or not url:
        raise NotificationError(f"{where} has neither resourceUrl nor resource")
    data = item.get("resourceData")
    if data is not None and not isinstance(data, Mapping | list):
        raise NotificationError(f"{where}.resourceData must be an object or a list")
    if isinstance(data, list) and not all(isinstance(e, Mapping) for e in data):
        raise NotificationError(f"{where}.resourceData list must hold objects")

    change = change.lower()
    call_id = _call_id(url, data)
    if call_id is None:
        raise NotificationError(f"{where}: cannot tell the call id from resourceUrl {url[:200]!r}")
    if not is_graph_id(call_id):  # it would become a Graph URL path and a Durable instance id
        raise NotificationError(f"{where}: {call_id[:130]!r} in resourceUrl is not a Graph call id")
    base: dict[str, Any] = {"call_id": call_id, "change_type": change, "resource_url": url, "raw": item}
    lowered = url.lower()

    if isinstance(data, list):
        if lowered.rstrip("/").endswith("/participants"):
            return [ParticipantsUpdated(**base, participants=tuple(parse_participant(p) for p in data))]
        if "/contentsharingsessions" in lowered:
            return [ContentSharingUpdated(**base, session_ids=tuple(str(s.get("id", "")) for s in data))]
        return [UnknownEvent(**base, resource_type=_odata_type(data[0]) if data else None)]

    entity: Mapping[str, Any] = data or {}
    kind = _odata_type(entity) or ""
    if kind == "call" or (not kind and _url_call_id(url) and lowered.rstrip("/").endswith(call_id.lower())):
        return _call_events(base, change, entity)
    if kind.endswith("operation") or "/operations/" in lowered:
        return [_operation(base, entity, url)]
    if kind == "participantjoiningnotification":
        joining = entity.get("call")
        return [ParticipantJoining(**base, joining_call=joining if isinstance(joining, Mapping) else {})]
    if kind == "participant":
        return [ParticipantsUpdated(**base, participants=(parse_participant(entity),))]
    if kind == "contentsharingsession" or "/contentsharingsessions" in lowered:
        # Graph's documented content-sharing notifications have no resourceData: the id is in the URL.
        session = entity.get("id")
        if session in (None, "") and (match := _CONTENT_SHARING.search(url)):
            session = match.group(1)
        return [ContentSharingUpdated(**base, session_ids=() if session in (None, "") else (str(session),))]
    return [UnknownEvent(**base, resource_type=_odata_type(entity))]


def _call_events(base: dict[str, Any], change: str, call: Mapping[str, Any]) -> list[CallEvent]:
    state = _canonical(call.get("state"), _STATES)
    if change == "created" and state in (None, "incoming"):
        return [_incoming(base, call)]
    events: list[CallEvent] = []
    tone = call.get("toneInfo")
    if isinstance(tone, Mapping) and tone.get("tone") is not None:
        raw_tone = str(tone["tone"])
        events.append(ToneReceived(
            **base,
            tone=raw_tone,
            key=TONE_KEYS.get(raw_tone.lower(), raw_tone),
            sequence_id=_int(tone.get("sequenceId")),
            state=state,
        ))
        if state == "established":
            return events  # a keypress on an established call is not a state change
    if state is None and change == "deleted":
        state = "terminated"
    if state is None and not events:
        # An update that carries neither a state nor a tone (a changed property we do not type).
        return [UnknownEvent(**base, resource_type="call")]
    if state is not None:
        media = call.get("mediaState")
        events.append(CallStateChanged(
            **base,
            state=state,
            media_state={str(k): str(v) for k, v in media.items() if not str(k).startswith("@")}
            if isinstance(media, Mapping) else {},
            result_info=_result_info(call.get("resultInfo")),
            termination_reason=_str(call.get("terminationReason")),
        ))
    return events


def _incoming(base: dict[str, Any], call: Mapping[str, Any]) -> IncomingCall:
    source = _mapping(call.get("source")) or {}
    raw_targets = call.get("targets")
    targets = raw_targets if isinstance(raw_targets, list) else []
    metadata = call.get("applicationMetadata")
    bot_data = metadata.get("botData") if isinstance(metadata, Mapping) else None
    modalities = call.get("requestedModalities")
    return IncomingCall(
        **base,
        source=parse_identity_set(source.get("identity")),
        targets=tuple(parse_identity_set(t.get("identity")) for t in targets if isinstance(t, Mapping)),
        tenant_id=_str(call.get("tenantId")),
        direction=_str(call.get("direction")),
        callback_uri=_str(call.get("callbackUri")),
        call_chain_id=_str(call.get("callChainId")),
        my_participant_id=_str(call.get("myParticipantId")),
        source_participant_id=_str(source.get("id")),
        requested_modalities=tuple(str(m) for m in modalities) if isinstance(modalities, list) else (),
        chat_info=_mapping(call.get("chatInfo")),
        meeting_info=_mapping(call.get("meetingInfo")),
        incoming_context=_mapping(call.get("incomingContext")),
        bot_data=_mapping(bot_data),
    )


def _operation(base: dict[str, Any], op: Mapping[str, Any], url: str) -> OperationCompleted:
    name = _odata_name(op) or "operation"
    match = _OPERATION.search(url)
    return OperationCompleted(
        **base,
        operation_id=_str(op.get("id")) or (match.group(1) if match else None),
        operation_type=name[: -len("Operation")] if name.endswith("Operation") else name,
        status=parse_operation_status(op.get("status")),
        client_context=_str(op.get("clientContext")),
        result_info=_result_info(op.get("resultInfo")),
        completion_reason=_str(op.get("completionReason")),
        recording_location=_str(op.get("recordingLocation")) or None,
        recording_access_token=_str(op.get("recordingAccessToken")) or None,
    )


def parse_participant(p: Mapping[str, Any]) -> ParticipantState:
    """One roster entry (a participant resource)."""
    info = _mapping(p.get("info")) or {}
    recording = _mapping(p.get("recordingInfo")) or {}
    return ParticipantState(
        participant_id=_str(p.get("id")),
        party=parse_identity_set(info.get("identity")),
        is_muted=p.get("isMuted") if isinstance(p.get("isMuted"), bool) else None,
        is_in_lobby=p.get("isInLobby") if isinstance(p.get("isInLobby"), bool) else None,
        recording_status=_str(recording.get("recordingStatus")),
        raw=p,
    )


def parse_operation_status(value: Any) -> str | None:
    """An operationStatus as Graph's docs spell it (`Running` -> `running`), from a notification or an action's
    response alike, so callers compare against one spelling. A value Graph has not documented is kept."""
    return _canonical(value, _STATUSES)


def parse_result_info(value: Any) -> ResultInfo | None:
    """resultInfo with code/subcode as numbers or strings, spelt `subcode` or `subCode`."""
    return _result_info(value)


def _result_info(value: Any) -> ResultInfo | None:
    if not isinstance(value, Mapping):
        return None
    sub = value.get("subcode", value.get("subCode"))
    return ResultInfo(code=_int(value.get("code")), subcode=_int(sub), message=_str(value.get("message")))


def _call_id(url: str, data: Any) -> str | None:
    """The call a notification is about: named by its resourceUrl, or (a URL with no `calls` in it) by its call
    entity's id. None when the URL names none, or more than one."""
    named = _url_call_id(url)
    if named is not None or any(s.lower() == "calls" for s in url.split("/")):
        return named or None
    if isinstance(data, Mapping) and _odata_type(data) == "call" and data.get("id"):
        return str(data["id"])
    return None


def notification_call_id(notification: Mapping[str, Any]) -> str | None:
    """The call a raw notification's resourceUrl (or legacy resource) names, as the parser reads it."""
    url = notification.get("resourceUrl") or notification.get("resource")
    return _url_call_id(url) if isinstance(url, str) else None


def _url_call_id(url: str) -> str | None:
    """The path segment after the URL's only `calls` segment (any case), when that follows `communications` or
    `app`: the whole segment up to the next `/`, so a query or fragment in it is refused with the id.

    The call's session reads a notification's call the same way (the segment after the first `calls`), so what the
    webhook delivers to one call's session is never taken there for another call's (calling/consult.py)."""
    segments = url.split("/")
    named = [i for i, segment in enumerate(segments) if segment.lower() == "calls"]
    if len(named) != 1 or named[0] == 0 or named[0] + 1 == len(segments):
        return None
    at = named[0]
    return segments[at + 1] or None if segments[at - 1].lower() in _CALL_PARENTS else None


def _nested_deeper_than(value: Any, limit: int) -> bool:
    """Whether objects and lists in `value` nest more than `limit` levels (`value` itself is one); no recursion."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        children = item.values() if isinstance(item, Mapping) else item
        stack.extend((child, depth + 1) for child in children if isinstance(child, Mapping | list))
    return False


def _odata_name(entity: Mapping[str, Any]) -> str | None:
    """`#microsoft.graph.playPromptOperation` -> `playPromptOperation`."""
    kind = entity.get("@odata.type")
    if not isinstance(kind, str) or not kind:
        return None
    return kind.rsplit(".", 1)[-1].lstrip("#")


def _odata_type(entity: Mapping[str, Any]) -> str | None:
    """The type name lower-cased, for dispatch that ignores case."""
    name = _odata_name(entity)
    return name.lower() if name else None


def _canonical(value: Any, known: Mapping[str, str]) -> str | None:
    if value is None:
        return None
    text = str(value)
    return known.get(text.lower(), text)


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return None
    return None


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def _mapping(value: Any) -> Mapping[str, Any] | None:
    return value if isinstance(value, Mapping) else None
