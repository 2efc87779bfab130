"""What the engine asks the orchestration to do. Each maps to one Graph action or one Durable timer.

`ref`s are unique within a call (`play-12`, `timer-13`): the orchestration sends them as Graph's
clientContext (at most 256 characters) or keeps them beside its timers, and hands them back in the
matching completion event. Prompts are keys relative to the flows folder (`prompts/welcome.wav`);
`calling.flows.prompts` turns them into Graph prompts with deterministic resource ids.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from calling.flows.codec import from_json, to_json

Fact = str | int | float | bool | None


@dataclass(frozen=True, kw_only=True)
class Command:
    """Base of every command; `command_to_json` names the subclass in `type`."""


@dataclass(frozen=True, kw_only=True)
class Play(Command):
    """playPrompt: the prompts in order; completion comes back as PromptFinished/PromptFailed(ref)."""

    ref: str
    prompts: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class SubscribeTones(Command):
    """subscribeToTone, once per call, before the first menu: keys then arrive as Tone events."""

    ref: str


@dataclass(frozen=True, kw_only=True)
class CancelMedia(Command):
    """cancelMediaProcessing: stop the prompt or recording that is running (a key barged in)."""

    ref: str


@dataclass(frozen=True, kw_only=True)
class StartTimer(Command):
    """A Durable timer; TimerFired(ref) after `seconds` unless cancelled first."""

    ref: str
    seconds: float


@dataclass(frozen=True, kw_only=True)
class CancelTimer(Command):
    ref: str


@dataclass(frozen=True, kw_only=True)
class Record(Command):
    """recordResponse; completion comes back as RecordFinished(ref)."""

    ref: str
    prompt: str | None
    beep: bool
    max_duration: int
    initial_silence_timeout: int
    max_silence_timeout: int
    stop_tones: tuple[str, ...]
    mailbox: str


@dataclass(frozen=True, kw_only=True)
class SaveRecording(Command):
    """Download the recording with its access token (soon: Graph discards it) and store it with these facts."""

    ref: str
    mailbox: str
    location: str
    token: str = field(repr=False)
    duration: float | None
    caller: str
    called: str
    at: str
    flow: str
    node: str


@dataclass(frozen=True, kw_only=True)
class Transfer(Command):
    """Transfer to `target` (`user:`, `+E164`, `instance:`). `blind`: Graph's transfer at once.
    `consultative`: call the target first, give up after `ring_timeout` s, then transfer with
    replacesCallId. The result comes back as TransferOutcome(ref). `queue`: a queue's ring of an agent
    (the line's name), placed only while the caller is still on the line."""

    ref: str
    target: str
    mode: str
    ring_timeout: int
    queue: str = ""


@dataclass(frozen=True, kw_only=True)
class QueueJoin(Command):
    """Take a place at the back of the line `queue` (calling/queues.py); QueueReply(ref) follows. The
    place is kept for at most `hold` seconds, so a session that never leaves cannot block the line."""

    ref: str
    queue: str
    max_callers: int
    hold: int
    agents: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class QueueOffer(Command):
    """Ask the line for an agent to ring, saying the ring of `rung` (if any) ended unanswered; QueueReply(ref)
    follows, with an agent when it is this caller's turn."""

    ref: str
    queue: str
    agents: tuple[str, ...]
    routing: str
    rounds: int
    ring_timeout: int
    rung: str = ""


@dataclass(frozen=True, kw_only=True)
class QueueLeave(Command):
    """Leave the line; `answered_by` took the call and is not offered another for `wrap_up` seconds."""

    ref: str
    queue: str
    answered_by: str = ""
    wrap_up: int = 0


@dataclass(frozen=True, kw_only=True)
class Redirect(Command):
    """redirect (a call not answered yet): ring `targets` at once; `timeout` None means Graph's default."""

    ref: str
    targets: tuple[str, ...]
    timeout: int | None


@dataclass(frozen=True, kw_only=True)
class Invite(Command):
    """participants/invite into this group call or meeting; InviteOutcome(ref) follows."""

    ref: str
    targets: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class HandOff(Command):
    """Send the call to app-hosted media (the hand-off message); the flow is over for the bot."""

    reason: str


@dataclass(frozen=True, kw_only=True)
class HangUp(Command):
    """End the call (before it is answered: reject it)."""

    reason: str


@dataclass(frozen=True, kw_only=True)
class Milestone(Command):
    """A telemetry event for the calls pipeline (`calling.telemetry.emit(name, **facts)`)."""

    name: str
    facts: Mapping[str, Fact]


COMMAND_TYPES: dict[str, type[Command]] = {cls.__name__: cls for cls in (
    Play, SubscribeTones, CancelMedia, StartTimer, CancelTimer, Record, SaveRecording, Transfer, QueueJoin,
    QueueOffer, QueueLeave, Redirect, Invite, HandOff, HangUp, Milestone)}
QUEUE = (QueueJoin, QueueOffer, QueueLeave)  # carried out by the queue's Durable entity, not by Graph
LEAVING = (Transfer, Redirect, HandOff, HangUp)  # commands after which the bot may be out of the call


def command_to_json(command: Command) -> dict[str, Any]:
    return to_json(command)


def command_from_json(data: Any) -> Command:
    return from_json(data, COMMAND_TYPES)
