"""Consultative transfer: the bot rings the target on a call of its own, then hands the caller over.

Graph has no "consult" action. The bot places a second call to the target whose notifications come
back on `/api/calls/{caller's call id}` (so the webhook raises them on the caller's session), and when
the target answers, transfers the caller's call with `replacesCallId` = that second call: the target
talks to the caller and both bot legs end (AppTransferred). If the target declines, is busy or doesn't
answer within the flow's ring timeout, the bot ends its second call and the caller never left the flow.

The engine sees one Transfer and one TransferOutcome, as for a blind transfer; this module holds the
steps in between, so the orchestration only carries them out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from calling.events import CallStateChanged
from calling.flows import events as e
from calling.notifications import NotificationError, parse_notification

#: The session timer that ends the ringing when the target doesn't answer in the flow's ring_timeout.
RING_TIMER = "consult"
#: Stages of the second call.
RINGING, HANDING_OVER = "ringing", "handing_over"


@dataclass(frozen=True)
class Consult:
    """The bot's second call for the engine's transfer `ref`."""

    ref: str
    target: str
    call_id: str
    stage: str = RINGING

    def to_json(self) -> dict[str, str]:
        return {"ref": self.ref, "target": self.target, "call_id": self.call_id, "stage": self.stage}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Consult:
        return cls(str(data["ref"]), str(data["target"]), str(data["call_id"]), str(data.get("stage") or RINGING))


@dataclass(frozen=True)
class Step:
    """What the session does next about the second call."""

    consult: Consult | None  # the second call as it is now; None once it is over
    hand_over: bool = False  # the target answered: transfer the caller with replacesCallId now
    hang_up: bool = False  # end the second call (the target is ringing or connected to the bot alone)
    outcome: e.TransferOutcome | None = None  # the engine's answer, when the consult alone decides it


def ring_outcome(code: int | None, subcode: int | None, message: str | None) -> str:
    """How ringing a transfer target ended: no_answer, declined or failed.

    A blind transfer fails as 500/7000 with the reason only in the message; the bot's own call to the
    target ends with the SIP-like code itself (408 no answer, 486 busy, 603 declined).
    """
    text = (message or "").lower()
    if code == 408 or "no answer" in text or "not answer" in text or "10057" in text or subcode == 10057:
        return "no_answer"
    if code in (486, 603) or "declin" in text or "busy" in text:
        return "declined"
    return "failed"


def call_id_of(notification: Mapping[str, Any]) -> str:
    """The call a raw notification is about, from resourceUrl (or legacy resource)."""
    path = str(notification.get("resourceUrl") or notification.get("resource") or "")
    parts = [p for p in path.split("/") if p]
    if "calls" in parts and parts.index("calls") + 1 < len(parts):
        return parts[parts.index("calls") + 1]
    return ""


def split(notifications: Iterable[Mapping[str, Any]], own_call_id: str, consult: Consult | None
          ) -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]]]:
    """(the caller's call's notifications, the current second call's), each in order.

    Anything else is about a second call the session is done with (its `terminating` and `terminated` come
    after the bot hung it up on a ring timeout) and is dropped: taken for the caller's own, it would end
    the caller's session while the caller is still on the line.
    """
    mine: list[Mapping[str, Any]] = []
    second: list[Mapping[str, Any]] = []
    for raw in notifications:
        about = call_id_of(raw)
        if about in ("", own_call_id):
            mine.append(raw)
        elif consult is not None and about == consult.call_id:
            second.append(raw)
    return mine, second


def on_notifications(consult: Consult, notifications: Iterable[Mapping[str, Any]], at: datetime) -> Step:
    """The second call changed state: hand over when the target answers, report when it ends unanswered."""
    for raw in notifications:
        try:
            events = parse_notification(raw)
        except NotificationError:
            continue
        for ev in events:
            if not isinstance(ev, CallStateChanged):
                continue
            if ev.is_terminated:
                if consult.stage == HANDING_OVER:
                    return Step(None)  # replaced by the transfer, or gone: the caller's call reports which
                ri = ev.result_info
                code = ri.code if ri else None
                subcode = ri.subcode if ri else None
                outcome = ring_outcome(code, subcode, ri.message if ri else None)
                return Step(None, outcome=e.TransferOutcome(at=at, ref=consult.ref, outcome=outcome, code=code,
                                                            subcode=subcode))
            if ev.state == "established" and consult.stage == RINGING:
                return Step(replace(consult, stage=HANDING_OVER), hand_over=True)
    return Step(consult)


def on_ring_timeout(consult: Consult, at: datetime) -> Step:
    """The flow's ring timeout passed with the target still ringing: give up."""
    if consult.stage != RINGING:
        return Step(consult)
    return Step(None, hang_up=True,
                outcome=e.TransferOutcome(at=at, ref=consult.ref, outcome="no_answer", code=408, subcode=None))


def on_engine(consult: Consult, awaiting: str, left: str) -> Step:
    """The engine moved on from the transfer (another outcome, the caller hung up): end the second call,
    unless the transfer completed, when Graph ends it itself."""
    if awaiting == consult.ref:
        return Step(consult)
    return Step(None, hang_up=left != "transfer")
