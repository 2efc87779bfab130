"""When a notification the session expects may never come: bounded waits, then Graph is asked.

Graph can lose, delay or refuse any notification and any request; the session must still end every call.
- Answered, but `established` never comes: ESTABLISH_WAIT after the session starts, it GETs the call. A
  call still `incoming` once Graph's answer window has passed was never answered (the answer failed or
  was lost): it is rejected. Before that the webhook may still be answering it (under load an answer can
  take seconds), so the session only waits.
- A prompt's, recording's or transfer's outcome never comes: when the engine's own guard timer fires, the
  session first GETs the operation (for a transfer, the call), so a finished recording is still saved. A
  recording is also looked at every RECORDING_POLL while it runs, since its guard is its maximum length.
- The flow hung up (or handed the call on) and `terminated` never comes: LEAVE_WAIT later it GETs the
  call and hangs up again, at most MAX_HANG_UPS times, then ends the session and says why. A call the
  flow is done with gets no keepAlive, so Graph ends it within 45 minutes even then.
- A consultative transfer's second call reaches its ring timeout: it is GET first, in case its
  `established` was lost.
What Graph answers becomes the notification it would have sent (`call_notifications`,
`operation_notifications`), which the session translates like any other: one parser decides what every
answer means. Pure; the orchestrator (orchestrations/session_loop.py) carries out what this decides.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from calling.notifications import parse_operation_status

ESTABLISH = "watch:established"
LEAVE = "watch:left"
#: A recording runs as long as the caller talks, so its guard is long: look this often while it runs, so a
#: lost completion does not keep a caller who has finished waiting in silence (the timer is `RECORDING:ref`).
RECORDING = "watch:recording"
RECORDING_POLL = timedelta(seconds=20)
#: An answered call is established within a second or two: after this long without a word, ask.
ESTABLISH_WAIT = timedelta(seconds=8)
#: Between later looks at a call still establishing (an outbound call's callee still ringing); it is hung up
#: after ESTABLISH_LOOKS looks, about two minutes.
ESTABLISH_AGAIN = timedelta(seconds=10)
ESTABLISH_LOOKS = 12
#: Graph's answer window: until it has passed, a call still `incoming` may be being answered right now.
ANSWER_WINDOW = timedelta(seconds=15)


def establish_waited(looks: int) -> timedelta:
    """How long after the session's start the `looks`-th look at an unestablished call happens."""
    return ESTABLISH_WAIT + (looks - 1) * ESTABLISH_AGAIN
LEAVE_WAIT = timedelta(seconds=15)
#: After a transfer the bot's leg ends when the target answers, which may take a while.
LEAVE_AFTER_TRANSFER = timedelta(seconds=120)
MAX_HANG_UPS = 3

#: Requests of the `call_action` activity that read Graph (calling/actions.py carries them out).
CALL_GET = "Call.Get"
OPERATION_GET = "Operation.Get"
CALL_REJECT = "Call.Reject"

_OPERATION_TYPES = {"play": "playPromptOperation", "record": "recordOperation",
                    "invite": "inviteParticipantsOperation"}


def call_request(call_id: str) -> dict[str, str]:
    return {"type": CALL_GET, "call_id": call_id}


def operation_request(operation_id: str) -> dict[str, str]:
    return {"type": OPERATION_GET, "operation_id": operation_id}


def reject_request() -> dict[str, str]:
    return {"type": CALL_REJECT}


def call_status(result: Mapping[str, Any]) -> str:
    """`gone` (404), the call's state as Graph spells it in lower case, or `unknown` (no answer from Graph)."""
    if result.get("gone"):
        return "gone"
    call = result.get("call")
    if result.get("ok") and isinstance(call, Mapping):
        return str(call.get("state") or "unknown").lower()
    return "unknown"


def call_notifications(call_id: str, result: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A GET of the call as the notification Graph would have posted; a call that is gone is terminated."""
    url = f"/communications/calls/{call_id}"
    status = call_status(result)
    if status == "gone":
        return [{"changeType": "deleted", "resourceUrl": url, "resourceData": {
            "@odata.type": "#microsoft.graph.call", "state": "terminated",
            "resultInfo": {"code": 404, "subcode": 0, "message": "The call is gone (found by asking Graph)."}}}]
    if status == "unknown":
        return []
    call = dict(result["call"])
    call.setdefault("@odata.type", "#microsoft.graph.call")
    return [{"changeType": "deleted" if status == "terminated" else "updated", "resourceUrl": url,
             "resourceData": call}]


def operation_notifications(call_id: str, operation_id: str, ref: str,
                            result: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A GET of an operation as its completion notification, once it has finished; nothing while it runs.

    `ref` is the engine's clientContext for it, filled in if Graph's answer leaves it out.
    """
    operation = result.get("operation")
    if not result.get("ok") or not isinstance(operation, Mapping):
        return []
    if parse_operation_status(operation.get("status")) not in ("completed", "failed"):
        return []
    data = {"clientContext": ref, **operation}
    kind = _OPERATION_TYPES.get(ref.split("-", 1)[0])
    if kind and not data.get("@odata.type"):
        data["@odata.type"] = f"#microsoft.graph.{kind}"
    return [{"changeType": "deleted", "resourceUrl": f"/communications/calls/{call_id}/operations/{operation_id}",
             "resourceData": data}]
