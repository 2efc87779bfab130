"""What happens to a call, as the engine hears it: the orchestration turns Graph notifications and its
own timers into these.

Every event may carry `at`, the time it happened (timezone-aware). It is the engine's only clock:
business hours and time conditions are judged at the time of the event that reached them, so a
replayed orchestration decides exactly as the first run did. Completions carry the `ref` of the
command they answer; an event whose ref is not the one awaited is stale and ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from calling.flows.codec import from_json, to_json

TRANSFER_OUTCOMES = ("completed", "no_answer", "declined", "failed")


@dataclass(frozen=True, kw_only=True)
class Event:
    at: datetime | None = None

    def __post_init__(self) -> None:
        if self.at is not None and self.at.utcoffset() is None:
            raise ValueError("event times must be timezone-aware (UTC)")


@dataclass(frozen=True, kw_only=True)
class Started(Event):
    """The flow begins for a call. `caller` and `called` are call facts in target syntax: `+E164`,
    `user:<id>`, `instance:<id>`, `app:<id>` or `anonymous` (see `party_fact`)."""

    at: datetime
    caller: str = ""
    called: str = ""
    established: bool = False  # the call is already established (media can start at once)


@dataclass(frozen=True, kw_only=True)
class CallEstablished(Event):
    """The call is established with audio: media commands may now run."""


@dataclass(frozen=True, kw_only=True)
class PromptFinished(Event):
    ref: str


@dataclass(frozen=True, kw_only=True)
class PromptFailed(Event):
    ref: str
    code: int | None = None
    subcode: int | None = None


@dataclass(frozen=True, kw_only=True)
class Tone(Event):
    """A key the caller pressed: `0`-`9`, `*`, `#` (Graph's tone0..tone9, star, pound). `sequence` is
    Graph's toneInfo.sequenceId; a repeated or older one is ignored."""

    key: str
    sequence: int | None = None


@dataclass(frozen=True, kw_only=True)
class TimerFired(Event):
    ref: str


@dataclass(frozen=True, kw_only=True)
class TransferOutcome(Event):
    """How a transfer ended: completed (the caller is with the target), no_answer, declined, failed."""

    ref: str
    outcome: str
    code: int | None = None
    subcode: int | None = None


@dataclass(frozen=True, kw_only=True)
class QueueReply(Event):
    """The line's answer to QueueJoin/QueueOffer (calling/queues.py `reply`): `ok`, the caller's `position`,
    an `agent` to ring or "", and `why` (overflow, wait, exhausted, not_waiting; error: no answer came)."""

    ref: str
    ok: bool = True
    position: int = 0
    agent: str = ""
    why: str = ""


@dataclass(frozen=True, kw_only=True)
class RecordFinished(Event):
    """A recording finished (`ok`) with its location, access token and duration, or failed."""

    ref: str
    ok: bool = True
    location: str = ""
    token: str = ""
    duration: float | None = None
    code: int | None = None
    subcode: int | None = None


@dataclass(frozen=True, kw_only=True)
class Redirected(Event):
    ref: str
    ok: bool = True
    code: int | None = None
    subcode: int | None = None


@dataclass(frozen=True, kw_only=True)
class InviteOutcome(Event):
    ref: str
    ok: bool = True
    code: int | None = None
    subcode: int | None = None


@dataclass(frozen=True, kw_only=True)
class CallEnded(Event):
    """The call is over (terminated), whoever ended it."""

    code: int | None = None
    subcode: int | None = None
    reason: str = ""


EVENT_TYPES: dict[str, type[Event]] = {cls.__name__: cls for cls in (
    Started, CallEstablished, PromptFinished, PromptFailed, Tone, TimerFired, TransferOutcome, QueueReply,
    RecordFinished, Redirected, InviteOutcome, CallEnded)}


def event_to_json(event: Event) -> dict[str, Any]:
    return to_json(event)


def event_from_json(data: Any) -> Event:
    return from_json(data, EVENT_TYPES)


def party_fact(kind: str, ident: str | None) -> str:
    """A caller or callee identity as a call fact, in the flows' target syntax (what conditions match)."""
    if kind == "phone":
        return ident if ident and ident.lower() != "anonymous" else "anonymous"
    prefix = {"user": "user", "applicationInstance": "instance", "application": "app"}.get(kind)
    if not ident or kind in ("encrypted", "none"):
        return "anonymous"
    return f"{prefix or kind}:{ident}"
