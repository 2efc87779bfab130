"""The app-hosted hand-off: how the webhook gives a call to the media VM, which answers it itself.

App-hosted media needs Microsoft's .NET media library (Windows only) to produce the answer's media
blob, so the Functions app cannot answer those calls. It sends a `HandoffMessage` instead, inside the
same webhook request, and the VM answers with its blob and its own per-instance callback URI.

Contract (version 1), designed for an Azure Service Bus session-enabled queue:
- `call_id` is the session id (one VM takes all messages of a call, in order) and, with `kind`, the
  message id (duplicate detection drops a re-sent incoming notification).
- `deadline` is the absolute UTC time by which a worker's answer must reach Graph: the webhook's take-back
  time, inside Graph's own window (`deadline_for`: 15 s after the notification, 5 s for policy recording).
  A worker that dequeues a message past it drops it: the webhook has rejected the call or answered it.
- `notification` is the commsNotification exactly as received, so the VM parses it with the same core.
- Readers reject unknown major versions and ignore unknown fields (minor additions stay compatible).
"""

from __future__ import annotations

import asyncio
import json
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

CONTRACT_VERSION = 1
ANSWER_DEADLINE = timedelta(seconds=15)
POLICY_RECORDING_DEADLINE = timedelta(seconds=5)


class HandoffError(ValueError):
    """A message that does not follow the contract."""


class HandoffFailed(Exception):
    """The transport could not send (or take) a hand-off: the queue was unreachable, refused it, or did not
    answer in time. The transport's own error is the cause (`__cause__`). A webhook that gets it from `send`
    knows no worker will see the call."""


class HandoffExpired(HandoffFailed):
    """The hand-off's deadline passed before it was sent, so it was not sent: no worker may answer it now (the
    webhook takes the call back)."""


@dataclass(frozen=True)
class HandoffMessage:
    call_id: str
    tenant_id: str
    notification: Mapping[str, Any]
    decision: Mapping[str, Any]
    deadline: datetime
    received_at: datetime
    scenario_id: str | None = None
    chain_id: str | None = None
    kind: str = "incoming_call"
    version: int = CONTRACT_VERSION
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def message_id(self) -> str:
        """Stable per call and kind: the queue's duplicate detection key."""
        return f"{self.call_id}:{self.kind}"

    @property
    def session_id(self) -> str:
        return self.call_id

    def expired(self, now: datetime | None = None) -> bool:
        return (now or datetime.now(UTC)) >= self.deadline

    def to_json(self) -> str:
        body = asdict(self)
        body["deadline"] = self.deadline.isoformat()
        body["received_at"] = self.received_at.isoformat()
        extra = body.pop("extra")
        return json.dumps({**extra, **body}, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> HandoffMessage:
        try:
            data = json.loads(text)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise HandoffError(f"hand-off message is not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise HandoffError("hand-off message must be a JSON object")
        version = data.get("version")
        if version != CONTRACT_VERSION:
            raise HandoffError(f"unsupported hand-off contract version {version!r} (this reader: 1)")
        known = {"call_id", "tenant_id", "notification", "decision", "deadline", "received_at",
                 "scenario_id", "chain_id", "kind", "version"}
        missing = sorted(k for k in ("call_id", "tenant_id", "notification", "decision", "deadline",
                                     "received_at") if not data.get(k))
        if missing:
            raise HandoffError(f"hand-off message lacks {', '.join(missing)}")
        try:
            deadline = _utc(data["deadline"])
            received = _utc(data["received_at"])
        except ValueError as exc:
            raise HandoffError(f"hand-off times must be ISO 8601 with a zone: {exc}") from None
        return cls(
            call_id=str(data["call_id"]), tenant_id=str(data["tenant_id"]),
            notification=data["notification"], decision=data["decision"],
            deadline=deadline, received_at=received,
            scenario_id=data.get("scenario_id"), chain_id=data.get("chain_id"),
            kind=str(data.get("kind", "incoming_call")), version=CONTRACT_VERSION,
            extra={k: v for k, v in data.items() if k not in known},
        )


def _utc(value: Any) -> datetime:
    parsed = datetime.fromisoformat(str(value))
    if parsed.tzinfo is None:
        raise ValueError(f"{value!r} has no time zone")
    return parsed.astimezone(UTC)


def deadline_for(received_at: datetime, *, policy_recording: bool) -> datetime:
    """Graph's own window for the answer: 15 s after the notification, 5 s for a policy-recording invite."""
    return received_at + (POLICY_RECORDING_DEADLINE if policy_recording else ANSWER_DEADLINE)


class HandoffTransport(Protocol):
    """Delivers hand-offs to the media side. `send` returns once the message is durably accepted."""

    async def send(self, message: HandoffMessage) -> None: ...


class Taken(Protocol):
    """A hand-off a media worker took: it settles it once it has answered the call, or given up on it."""

    message: HandoffMessage

    async def done(self) -> None:
        """Settle it: answered, dropped as expired, or refused for good. No other worker will see it."""

    async def release(self) -> None:
        """Give it back: another worker may take it (this one is full or shutting down)."""


class HandoffInbox(Protocol):
    """Where a media worker takes hand-offs from, only while it has room for another call."""

    async def take(self, wait_seconds: float) -> Taken | None:
        """The next hand-off, or None if none came within `wait_seconds`."""

    async def close(self) -> None: ...


class InProcessTransport:
    """A queue in this process: for the local host, tests, and a media worker run beside the app.

    Keeps the Service Bus semantics that matter: messages with an already-seen message id are dropped
    (duplicate detection), and the receiver gets each message as JSON, as it would off the wire.
    """

    def __init__(self, dedupe_window: int = 10_000) -> None:
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._window = dedupe_window

    async def send(self, message: HandoffMessage) -> None:
        if message.message_id in self._seen:
            return
        self._seen[message.message_id] = None
        if len(self._seen) > self._window:
            self._seen.popitem(last=False)
        await self._queue.put(message.to_json())

    async def receive(self, wait_seconds: float | None = None) -> HandoffMessage:
        text = await asyncio.wait_for(self._queue.get(), wait_seconds)
        return HandoffMessage.from_json(text)

    async def take(self, wait_seconds: float) -> Taken | None:
        """The HandoffInbox side: a worker in this process takes the next hand-off."""
        try:
            text = await asyncio.wait_for(self._queue.get(), wait_seconds)
        except TimeoutError:
            return None
        return _InProcessTaken(HandoffMessage.from_json(text), self)

    async def close(self) -> None:
        return None

    def pending(self) -> int:
        return self._queue.qsize()


class _InProcessTaken:
    def __init__(self, message: HandoffMessage, transport: InProcessTransport) -> None:
        self.message = message
        self._transport = transport

    async def done(self) -> None:
        return None

    async def release(self) -> None:
        await self._transport._queue.put(self.message.to_json())
