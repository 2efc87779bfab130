"""Consultative transfer: the bot rings the target on a call of its own, then hands the caller over.

Graph has no "consult" action. The bot places a second call to the target whose notifications come
back on `/api/calls/{caller's call id}` (so the webhook raises them on the caller's session), and when
the target answers, transfers the caller's call with `replacesCallId` = that second call: the target
talks to the caller and both bot legs end (AppTransferred). If the target declines, is busy or doesn't
answer within the flow's ring timeout, the bot ends its second call and the caller never left the flow.

The engine sees one Transfer and one TransferOutcome, as for a blind transfer; this module holds the
steps in between, so the orchestration only carries them out.

Placing the second call is not blindly retried: Graph has no idempotency key for createCall, and a call
it created although its answer was lost (a 5xx, a timeout) rings the target as surely as a new one. So an
uncertain placement leaves the consult PLACING with no call id; the first unknown call that writes to the
session is taken as it (`adopt`), and only after PLACE_LOOK without one is the call placed again, once.
Any other call that writes to the session while still up (an extra copy) is hung up (`strays_to_end`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from calling.events import CallStateChanged
from calling.flows import events as e
from calling.notifications import NotificationError, notification_call_id, parse_notification

#: The session timer that ends the ringing when the target doesn't answer in the flow's ring_timeout.
RING_TIMER = "consult"
#: The session timer after which a placement Graph may or may not have carried out is tried again.
PLACE_TIMER = "consult:placing"
PLACE_LOOK = timedelta(seconds=10)
MAX_PLACEMENTS = 2
#: Stages of the second call.
PLACING, RINGING, HANDING_OVER = "placing", "ringing", "handing_over"
_LIVE = frozenset({"incoming", "establishing", "ringing", "established", "hold", "transferring"})


@dataclass(frozen=True)
class Consult:
    """The bot's second call for the engine's transfer `ref`."""

    ref: str
    target: str
    call_id: str  # "" while PLACING
    stage: str = RINGING
    ring_timeout: int = 0  # the flow's, for placing it again
    placements: int = 1

    def to_json(self) -> dict[str, Any]:
        return {"ref": self.ref, "target": self.target, "call_id": self.call_id, "stage": self.stage,
                "ring_timeout": self.ring_timeout, "placements": self.placements}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Consult:
        return cls(str(data["ref"]), str(data["target"]), str(data["call_id"]), str(data.get("stage") or RINGING),
                   int(data.get("ring_timeout") or 0), int(data.get("placements") or 1))

    def command(self) -> dict[str, Any]:
        """The engine's Transfer again, for placing the second call once more."""
        return {"type": "Transfer", "ref": self.ref, "target": self.target, "mode": "consultative",
                "ring_timeout": self.ring_timeout}


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
    """The call a raw notification is about, read as the webhook read it when it delivered it here."""
    return notification_call_id(notification) or ""


def split(notifications: Iterable[Mapping[str, Any]], own_call_id: str, consult: Consult | None
          ) -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]], list[Mapping[str, Any]]]:
    """(the caller's call's notifications, the current second call's, any other call's), each in order.

    The others are never the caller's own: most are a second call the session is done with (its
    `terminating` and `terminated` after the bot hung it up on a ring timeout); taken for the caller's, they
    would end the caller's session while the caller is still on the line.
    """
    mine: list[Mapping[str, Any]] = []
    second: list[Mapping[str, Any]] = []
    others: list[Mapping[str, Any]] = []
    for raw in notifications:
        about = call_id_of(raw)
        if about in ("", own_call_id):
            mine.append(raw)
        elif consult is not None and consult.call_id and about == consult.call_id:
            second.append(raw)
        else:
            others.append(raw)
    return mine, second, others


def adopt(consult: Consult, others: list[Mapping[str, Any]], known: Iterable[str]
          ) -> tuple[Consult, list[Mapping[str, Any]], list[Mapping[str, Any]]]:
    """While PLACING, the first call the session never had (`known`: every second call it has had) that
    writes while still up is the one Graph created although its answer was lost: (the consult with that id,
    its notifications, the rest). An earlier second call's `terminating` is not it."""
    if consult.stage != PLACING:
        return consult, [], others
    seen = set(known)
    found = next((call_id_of(n) for n in others if call_id_of(n) not in seen and _state_of(n) in _LIVE), None)
    if found is None:
        return consult, [], others
    adopted = replace(consult, call_id=found, stage=RINGING)
    return adopted, [n for n in others if call_id_of(n) == found], [n for n in others if call_id_of(n) != found]


def _state_of(notification: Mapping[str, Any]) -> str:
    data = notification.get("resourceData")
    return str(data.get("state") or "").lower() if isinstance(data, Mapping) else ""


def strays_to_end(others: Iterable[Mapping[str, Any]], ended: Iterable[str]) -> list[str]:
    """Calls that are neither the caller's nor the current second call, still up: extra copies of a second
    call (placed again after a lost answer) to hang up, each once. Ended ones need nothing."""
    done = set(ended)
    found: list[str] = []
    for raw in others:
        about = call_id_of(raw)
        if about and about not in done and about not in found and _state_of(raw) in _LIVE:
            found.append(about)
    return found


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
    """The flow's ring timeout passed with the target still ringing (or the call never known): give up."""
    if consult.stage == PLACING:
        return Step(None, outcome=e.TransferOutcome(at=at, ref=consult.ref, outcome="no_answer", code=408,
                                                    subcode=None))
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
