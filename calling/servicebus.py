"""The Azure Service Bus hand-off transport (calling/handoff.py): the webhook sends, the media workers take.

The queue (infra/modules/servicebus.bicep) is session-enabled with duplicate detection: a hand-off's session
id is its call id, so one worker takes everything about a call, and its message id (`<call id>:<kind>`)
drops a hand-off Graph's re-sent notification would repeat. Identity only: the client signs in to the
namespace with an azure-identity credential (the Function App's or the media VM's managed identity, a
developer's `az login`); the namespace allows no keys, so there is no connection string anywhere.

- `ServiceBusHandoffSender` (the webhook's `HandoffTransport`): one client and one sender link per process,
  opened on the first hand-off and kept, so later ones pay no connection or token. A send is bounded
  (`SEND_TIMEOUT_SECONDS`, never past the hand-off's deadline) and raises `HandoffFailed` when Service Bus
  is slow, unreachable or refuses; a hand-off already past its deadline is not sent (`HandoffExpired`).
- `ServiceBusHandoffInbox` (a media worker's `HandoffInbox`): takes the next available session, returns its
  message as a `Taken` (done: complete; release: abandon, so another worker takes it), and dead-letters a
  message that does not follow the contract.

azure-servicebus is imported here, at the top: import this module only where the transport is built
(functions/runtime.py does on the first request with MEDIA_HANDOFF_TRANSPORT=servicebus), never on the
path of `import function_app` (tests/test_cold_start.py).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import AzureError
from azure.servicebus import NEXT_AVAILABLE_SESSION, ServiceBusMessage, ServiceBusReceivedMessage
from azure.servicebus.aio import ServiceBusClient
from azure.servicebus.amqp import AmqpMessageBodyType
from azure.servicebus.exceptions import MessageAlreadySettled, OperationTimeoutError, SessionCannotBeLockedError

from calling.handoff import (
    HandoffError,
    HandoffExpired,
    HandoffFailed,
    HandoffInbox,
    HandoffMessage,
    HandoffTransport,
    Taken,
)

log = logging.getLogger("calling.servicebus")

#: The longest a send may take. Policy recording leaves 5 s from the notification: after a send that gave
#: up, the webhook still has time to act on the call (reject it) before Graph's deadline.
SEND_TIMEOUT_SECONDS = 2.0
#: Past the SDK's own timeout, how long before the send is cancelled anyway (and its link replaced).
SEND_BACKSTOP_SECONDS = 0.5
#: The shortest time to live. The SDK keeps whole seconds only (0.4 s would become no TTL at all: the queue's
#: minute), so what is left is rounded up; and it writes an absolute expiry from this clock truncated to the
#: second, which a 1 s TTL could reach as the message is enqueued. The worker drops a message past its
#: deadline whatever TTL it has left.
MIN_TIME_TO_LIVE_SECONDS = 2
#: The shortest wait for a session: azure-servicebus refuses a wait of 0.
MIN_WAIT_SECONDS = 0.1
#: Dead-letter reason of a message that does not follow the hand-off contract.
MALFORMED_REASON = "malformed_handoff"
CLOSE_TIMEOUT_SECONDS = 5.0


# The few methods of the SDK's async client, sender and receiver this module calls: azure.servicebus.aio's
# classes satisfy them, and the tests' fakes implement exactly these.

class SenderLink(Protocol):
    async def send_messages(self, message: ServiceBusMessage, *,
                            timeout: float | None = None) -> None: ...  # noqa: ASYNC109 (the SDK's signature)

    async def close(self) -> None: ...


class SenderClient(Protocol):
    def get_queue_sender(self, queue_name: str) -> SenderLink: ...

    async def close(self) -> None: ...


class SessionReceiver(Protocol):
    async def receive_messages(self, max_message_count: int | None = 1,
                               max_wait_time: float | None = None) -> list[ServiceBusReceivedMessage]: ...

    async def complete_message(self, message: ServiceBusReceivedMessage) -> None: ...

    async def abandon_message(self, message: ServiceBusReceivedMessage) -> None: ...

    async def dead_letter_message(self, message: ServiceBusReceivedMessage, reason: str | None = None,
                                  error_description: str | None = None) -> None: ...

    async def close(self) -> None: ...


class ReceiverClient(Protocol):
    def get_queue_receiver(self, queue_name: str, *, session_id: Any = None,
                           max_wait_time: float | None = None) -> SessionReceiver: ...

    async def close(self) -> None: ...


def _utcnow() -> datetime:
    return datetime.now(UTC)


def servicebus_message(message: HandoffMessage, now: datetime) -> ServiceBusMessage:
    """The hand-off as a Service Bus message: its JSON, session = call id, message id = the duplicate detection
    key, and a time to live of what is left before its deadline (whole seconds, rounded up, at least
    MIN_TIME_TO_LIVE_SECONDS). Raises HandoffExpired when the deadline has passed: nobody could answer it."""
    left = (message.deadline - now).total_seconds()
    if left <= 0:
        raise HandoffExpired(f"the hand-off of call {message.call_id} is {-left:.1f} s past its deadline "
                             f"({message.deadline.isoformat()}): not sent")
    properties: dict[str | bytes, Any] = {"kind": message.kind, "version": message.version}
    if message.scenario_id is not None:
        properties["scenario_id"] = message.scenario_id
    if message.chain_id is not None:
        properties["chain_id"] = message.chain_id
    return ServiceBusMessage(
        message.to_json(),
        session_id=message.session_id,
        message_id=message.message_id,
        time_to_live=timedelta(seconds=max(MIN_TIME_TO_LIVE_SECONDS, math.ceil(left))),
        content_type="application/json",
        subject=message.kind,
        correlation_id=message.chain_id,
        application_properties=properties,
    )


async def _close_quietly(link: Any, what: str) -> None:
    try:
        async with asyncio.timeout(CLOSE_TIMEOUT_SECONDS):
            await link.close()
    except Exception as exc:  # closing must never hide the outcome it follows
        log.warning("closing the Service Bus %s failed: %r", what, exc)


class ServiceBusHandoffSender:
    """The webhook's HandoffTransport over the Service Bus queue: one client and one sender link per process.

    The SDK's senders are not coroutine-safe, so sends from concurrent requests take turns on the one link
    (milliseconds each); the wait for a turn counts against the send's timeout.
    """

    def __init__(self, client: SenderClient, queue: str, *, credential: AsyncTokenCredential | None = None,
                 send_timeout: float = SEND_TIMEOUT_SECONDS, now: Callable[[], datetime] = _utcnow) -> None:
        self._client = client
        self._queue = queue
        self._credential = credential
        self._send_timeout = send_timeout
        self._now = now
        self._sender: SenderLink | None = None
        self._turn = asyncio.Lock()
        self._closing: set[asyncio.Task[None]] = set()

    @classmethod
    def connect(cls, namespace: str, queue: str, credential: AsyncTokenCredential, *,
                send_timeout: float = SEND_TIMEOUT_SECONDS,
                now: Callable[[], datetime] = _utcnow) -> ServiceBusHandoffSender:
        """A sender for `queue` in the fully qualified `namespace`. Nothing connects until the first send; the
        sender owns `credential` and closes it with itself."""
        return cls(ServiceBusClient(namespace, credential), queue, credential=credential, send_timeout=send_timeout,
                   now=now)

    async def send(self, message: HandoffMessage) -> None:
        """Returns once Service Bus has accepted the hand-off. Raises HandoffExpired (past its deadline: not
        sent) or HandoffFailed (not accepted within the timeout, or refused: the SDK's error is the cause)."""
        now = self._now()
        outgoing = servicebus_message(message, now)
        budget = min(self._send_timeout, (message.deadline - now).total_seconds())
        loop = asyncio.get_running_loop()
        give_up = loop.time() + budget
        try:
            await asyncio.wait_for(self._turn.acquire(), budget)
        except TimeoutError:
            raise HandoffFailed(f"the hand-off of call {message.call_id} waited {budget:.1f} s for the Service Bus "
                                "sender (other hand-offs were sending): not sent") from None
        try:
            left = give_up - loop.time()
            if left <= 0:
                raise HandoffFailed(f"the hand-off of call {message.call_id} waited {budget:.1f} s for the Service "
                                    "Bus sender: not sent")
            sender = self._link()
            try:
                async with asyncio.timeout(left + SEND_BACKSTOP_SECONDS):
                    await sender.send_messages(outgoing, timeout=left)
            except TimeoutError as exc:  # the SDK overran its own timeout: the link is in an unknown state
                self._replace(sender)
                raise HandoffFailed(f"Service Bus did not accept the hand-off of call {message.call_id} within "
                                    f"{budget:.1f} s") from exc
            except OperationTimeoutError as exc:
                raise HandoffFailed(f"Service Bus did not accept the hand-off of call {message.call_id} within "
                                    f"{budget:.1f} s: {exc}") from exc
            except AzureError as exc:  # ServiceBusError, or the credential's ClientAuthenticationError
                raise HandoffFailed(f"Service Bus refused the hand-off of call {message.call_id}: "
                                    f"{type(exc).__name__}: {exc}") from exc
        finally:
            self._turn.release()

    def _link(self) -> SenderLink:
        if self._sender is None:
            self._sender = self._client.get_queue_sender(queue_name=self._queue)
        return self._sender

    def _replace(self, sender: SenderLink) -> None:
        """Drop a link a cancelled send left behind: the next send opens a new one. It is closed in the
        background, as closing it may hang as well."""
        if self._sender is sender:
            self._sender = None
        task = asyncio.get_running_loop().create_task(_close_quietly(sender, "sender"))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        if self._sender is not None:
            await _close_quietly(self._sender, "sender")
            self._sender = None
        if self._closing:
            await asyncio.gather(*self._closing)
        await _close_quietly(self._client, "client")
        if self._credential is not None:
            await _close_quietly(self._credential, "credential")


class ServiceBusHandoffInbox:
    """A media worker's HandoffInbox over the Service Bus queue: each `take` locks the next available session
    (a call) on its own receiver, which its Taken closes once settled."""

    def __init__(self, client: ReceiverClient, queue: str, *, credential: AsyncTokenCredential | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._client = client
        self._queue = queue
        self._credential = credential
        self._clock = clock
        self._open: set[_ServiceBusTaken] = set()

    @classmethod
    def connect(cls, namespace: str, queue: str, credential: AsyncTokenCredential) -> ServiceBusHandoffInbox:
        """An inbox on `queue` in the fully qualified `namespace`; it owns `credential` and closes it."""
        return cls(ServiceBusClient(namespace, credential), queue, credential=credential)

    async def take(self, wait_seconds: float) -> Taken | None:
        """The next hand-off, or None when no session (no call) was available within `wait_seconds`.
        Raises HandoffFailed when Service Bus cannot be used (refused, unreachable): the SDK's error is the
        cause. A message that does not follow the contract is dead-lettered and the wait goes on."""
        give_up = self._clock() + max(wait_seconds, MIN_WAIT_SECONDS)
        while (left := give_up - self._clock()) > 0:
            left = max(left, MIN_WAIT_SECONDS)
            receiver = self._client.get_queue_receiver(self._queue, session_id=NEXT_AVAILABLE_SESSION,
                                                       max_wait_time=left)
            try:
                received = await receiver.receive_messages(max_message_count=1, max_wait_time=left)
            except (OperationTimeoutError, SessionCannotBeLockedError):
                # No session within the wait (or another worker locked it first): nothing to take.
                await _close_quietly(receiver, "session receiver")
                return None
            except AzureError as exc:
                await _close_quietly(receiver, "session receiver")
                raise HandoffFailed(f"taking a hand-off from Service Bus failed: {type(exc).__name__}: {exc}") \
                    from exc
            except BaseException:
                await _close_quietly(receiver, "session receiver")
                raise
            if not received:  # a session whose message went (expired, settled) before this receive
                await _close_quietly(receiver, "session receiver")
                return None
            taken = await self._read(receiver, received[0])
            if taken is not None:
                return taken
        return None

    async def _read(self, receiver: SessionReceiver, received: ServiceBusReceivedMessage) -> Taken | None:
        try:
            message = HandoffMessage.from_json(_body(received))
        except HandoffError as exc:
            log.error("hand-off message %s (session %s) does not follow the contract, dead-lettered: %s",
                      received.message_id, received.session_id, exc)
            try:
                await receiver.dead_letter_message(received, reason=MALFORMED_REASON, error_description=str(exc)[:1000])
            except (AzureError, MessageAlreadySettled) as failed:
                log.warning("dead-lettering the malformed hand-off %s failed: %r", received.message_id, failed)
            await _close_quietly(receiver, "session receiver")
            return None
        taken = _ServiceBusTaken(message, receiver, received, self._open)
        self._open.add(taken)
        return taken

    async def close(self) -> None:
        """Closes every session receiver still open (their messages go back to the queue), the client, and the
        credential."""
        for taken in list(self._open):
            await taken.close()
        await _close_quietly(self._client, "client")
        if self._credential is not None:
            await _close_quietly(self._credential, "credential")


def _body(received: ServiceBusReceivedMessage) -> str | bytes:
    """The message's payload: AMQP data sections (what ServiceBusMessage sends), or a string/bytes value."""
    if received.body_type == AmqpMessageBodyType.DATA:
        return b"".join(received.body)
    body = received.body
    if received.body_type == AmqpMessageBodyType.VALUE and isinstance(body, str | bytes):
        return body
    raise HandoffError(f"hand-off message body must be JSON text, got an AMQP {received.body_type.value} body")


class _ServiceBusTaken:
    """A hand-off on its locked session. Settling it (once) closes the session receiver, releasing the session.

    A settlement that fails (the session lock lost, the connection gone) is logged, not raised: the message
    comes back to the queue, and the worker that takes it next finds it past its deadline (a lost lock frees
    it only after the queue's 30 s lock, longer than any deadline) or the call answered (Graph refuses a
    second answer).
    """

    def __init__(self, message: HandoffMessage, receiver: SessionReceiver, received: ServiceBusReceivedMessage,
                 registry: set[_ServiceBusTaken]) -> None:
        self.message = message
        self._receiver = receiver
        self._received = received
        self._registry = registry
        self._settled = False

    async def done(self) -> None:
        await self._settle(self._receiver.complete_message, "completing")

    async def release(self) -> None:
        await self._settle(self._receiver.abandon_message, "abandoning")

    async def _settle(self, how: Callable[[ServiceBusReceivedMessage], Awaitable[None]], what: str) -> None:
        if self._settled:
            return
        self._settled = True
        try:
            await how(self._received)
        except (AzureError, MessageAlreadySettled) as exc:
            log.warning("%s the hand-off %s failed (it returns to the queue): %r", what, self._received.message_id,
                        exc)
        finally:
            await self.close()

    async def close(self) -> None:
        self._registry.discard(self)
        await _close_quietly(self._receiver, "session receiver")


def _conforms(sender: ServiceBusHandoffSender, inbox: ServiceBusHandoffInbox) -> tuple[HandoffTransport, HandoffInbox]:
    """Never called: mypy checks here that both implement their protocols."""
    return sender, inbox
