"""The Service Bus hand-off transport (calling/servicebus.py), without a namespace: no emulator runs here and
there is no network to Azure.

The messages are the SDK's own types: `ServiceBusMessage` built by the code under test, and on the receiving
side `ServiceBusReceivedMessage` decoded from the AMQP bytes the SDK's pure-Python stack encodes for it, so
session id, message id, time to live, content type, properties and body make a real wire round trip. Only
the SDK's client, sender and receiver are replaced, by `FakeQueue` below: the few methods the code calls,
raising the SDK's own exceptions, and keeping the queue's semantics that matter (sessions locked by one
receiver at a time, duplicate detection by message id, peek-lock settlement).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import OrderedDict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from azure.servicebus import NEXT_AVAILABLE_SESSION, ServiceBusMessage, ServiceBusReceivedMessage, ServiceBusReceiveMode
from azure.servicebus._pyamqp._decode import decode_payload
from azure.servicebus._pyamqp._encode import encode_payload
from azure.servicebus._transport._pyamqp_transport import PyamqpTransport
from azure.servicebus.aio._transport._pyamqp_transport_async import PyamqpTransportAsync
from azure.servicebus.exceptions import (
    OperationTimeoutError,
    ServiceBusAuthenticationError,
    ServiceBusAuthorizationError,
    SessionLockLostError,
)

from calling import servicebus as sb
from calling.config import DEFAULT_HANDOFF_QUEUE, ConfigError, Settings
from calling.handoff import HandoffExpired, HandoffFailed, HandoffMessage, deadline_for
from tests.stubs import APP_ID, TENANT_ID, incoming_call

NOW = datetime(2026, 12, 3, 9, 30, tzinfo=UTC)
NAMESPACE = "sb-test.servicebus.windows.net"


def handoff(call_id: str = "call-1", *, policy_recording: bool = True, received_at: datetime = NOW,
            chain_id: str | None = "ch-1") -> HandoffMessage:
    return HandoffMessage(call_id=call_id, tenant_id=TENANT_ID, notification=incoming_call(call_id),
                          decision={"action": "handoff", "reason": "policy_recording", "rule": None},
                          deadline=deadline_for(received_at, policy_recording=policy_recording),
                          received_at=received_at, scenario_id="s-1", chain_id=chain_id)


def at(seconds: float) -> datetime:
    return NOW + timedelta(seconds=seconds)


# --- the fake: one session-enabled queue with duplicate detection, behind the SDK's client ----------------

class FakeQueue:
    """What the namespace holds. Messages are kept as the AMQP bytes the SDK encodes, per session, in order."""

    def __init__(self) -> None:
        self.sessions: OrderedDict[str, list[bytes]] = OrderedDict()
        self.seen_ids: set[str] = set()
        self.locked: set[str] = set()
        self.completed: list[ServiceBusReceivedMessage] = []
        self.abandoned: list[ServiceBusReceivedMessage] = []
        self.dead_lettered: list[tuple[ServiceBusReceivedMessage, str | None, str | None]] = []
        self.senders: list[FakeSender] = []
        self.receivers: list[FakeReceiver] = []
        self.send_delay = 0.0
        self.send_honours_timeout = True  # the SDK does; False plays one that overruns it
        self.send_error: Exception | None = None
        self.receive_error: Exception | None = None
        self.settle_error: Exception | None = None
        self.sending = 0
        self.most_sending_at_once = 0

    def put(self, message: ServiceBusMessage) -> None:
        """The broker accepting a message: dropped if its id was seen (duplicate detection), else queued."""
        if message.message_id in self.seen_ids:
            return
        self.seen_ids.add(str(message.message_id))
        wire = bytes(encode_payload(bytearray(), PyamqpTransport.to_outgoing_amqp_message(message.raw_amqp_message)))
        self.sessions.setdefault(str(message.session_id), []).append(wire)

    def pending(self) -> int:
        return sum(len(m) for m in self.sessions.values())

    def open_receivers(self) -> list[FakeReceiver]:
        return [r for r in self.receivers if not r.closed]


class FakeClient:
    """azure.servicebus.aio.ServiceBusClient, as far as calling/servicebus.py uses it."""

    def __init__(self, queue: FakeQueue) -> None:
        self.queue = queue
        self.closed = False

    def get_queue_sender(self, queue_name: str) -> FakeSender:
        assert queue_name == DEFAULT_HANDOFF_QUEUE
        sender = FakeSender(self.queue)
        self.queue.senders.append(sender)
        return sender

    def get_queue_receiver(self, queue_name: str, *, session_id: Any = None,
                           max_wait_time: float | None = None) -> FakeReceiver:
        assert queue_name == DEFAULT_HANDOFF_QUEUE
        receiver = FakeReceiver(self.queue, session_id, max_wait_time)
        self.queue.receivers.append(receiver)
        return receiver

    async def close(self) -> None:
        self.closed = True


class FakeSender:
    def __init__(self, queue: FakeQueue) -> None:
        self.queue = queue
        self.timeouts: list[float | None] = []
        self.closed = False

    async def send_messages(self, message: ServiceBusMessage, *,
                            timeout: float | None = None) -> None:  # noqa: ASYNC109 (the SDK's signature)
        assert isinstance(message, ServiceBusMessage)
        assert not self.closed, "sent on a closed sender"
        self.timeouts.append(timeout)
        q = self.queue
        q.sending += 1
        q.most_sending_at_once = max(q.most_sending_at_once, q.sending)
        try:
            if q.send_delay:
                if q.send_honours_timeout and timeout is not None and q.send_delay > timeout:
                    await asyncio.sleep(timeout)
                    raise OperationTimeoutError(message="Send operation timed out")
                await asyncio.sleep(q.send_delay)
            if q.send_error is not None:
                raise q.send_error
            q.put(message)
        finally:
            q.sending -= 1

    async def close(self) -> None:
        self.closed = True


class FakeReceiver:
    """A session receiver: NEXT_AVAILABLE_SESSION locks the first session nobody holds, on the first receive."""

    def __init__(self, queue: FakeQueue, session_id: Any, max_wait_time: float | None) -> None:
        assert session_id is NEXT_AVAILABLE_SESSION
        self.queue = queue
        self.max_wait_time = max_wait_time
        self.session: str | None = None
        self.in_flight: list[tuple[ServiceBusReceivedMessage, bytes]] = []
        self.closed = False

    async def receive_messages(self, max_message_count: int | None = 1,
                               max_wait_time: float | None = None) -> list[ServiceBusReceivedMessage]:
        assert not self.closed
        if self.queue.receive_error is not None:
            raise self.queue.receive_error
        if self.session is None:
            free = [s for s, m in self.queue.sessions.items() if m and s not in self.queue.locked]
            if not free:  # as the SDK does once the receiver's max_wait_time is up
                await asyncio.sleep(self.max_wait_time or 0)
                raise OperationTimeoutError(message="Timed out waiting for the AMQP link to open.")
            self.session = free[0]
            self.queue.locked.add(self.session)
        waiting = self.queue.sessions[self.session]
        if not waiting:
            return []
        wire = waiting.pop(0)
        received = ServiceBusReceivedMessage(decode_payload(memoryview(wire)),
                                             receive_mode=ServiceBusReceiveMode.PEEK_LOCK, receiver=self,
                                             amqp_transport=PyamqpTransportAsync)
        self.in_flight.append((received, wire))
        return [received]

    def _settle(self, message: ServiceBusReceivedMessage) -> bytes:
        assert not self.closed, "settled on a closed receiver"
        if self.queue.settle_error is not None:
            raise self.queue.settle_error
        for i, (held, wire) in enumerate(self.in_flight):
            if held is message:
                del self.in_flight[i]
                return wire
        raise AssertionError("settled a message this receiver does not hold")

    async def complete_message(self, message: ServiceBusReceivedMessage) -> None:
        self._settle(message)
        self.queue.completed.append(message)

    async def abandon_message(self, message: ServiceBusReceivedMessage) -> None:
        wire = self._settle(message)
        assert self.session is not None
        self.queue.sessions[self.session].insert(0, wire)
        self.queue.abandoned.append(message)

    async def dead_letter_message(self, message: ServiceBusReceivedMessage, reason: str | None = None,
                                  error_description: str | None = None) -> None:
        self._settle(message)
        self.queue.dead_lettered.append((message, reason, error_description))

    async def close(self) -> None:
        """Closing releases the session lock; what it held unsettled goes back to the session."""
        self.closed = True
        if self.session is not None:
            self.queue.sessions[self.session][:0] = [wire for _, wire in self.in_flight]
            self.in_flight.clear()
            self.queue.locked.discard(self.session)


class FakeCredential:
    def __init__(self) -> None:
        self.closed = False

    async def close(self) -> None:
        self.closed = True


@pytest.fixture
def queue() -> FakeQueue:
    return FakeQueue()


SENT_AT = at(0.1)


def sender_for(queue: FakeQueue, *, now: datetime = SENT_AT, send_timeout: float = sb.SEND_TIMEOUT_SECONDS,
               credential: Any = None) -> sb.ServiceBusHandoffSender:
    return sb.ServiceBusHandoffSender(FakeClient(queue), DEFAULT_HANDOFF_QUEUE, send_timeout=send_timeout,
                                      now=lambda: now, credential=credential)


def inbox_for(queue: FakeQueue, credential: Any = None) -> sb.ServiceBusHandoffInbox:
    return sb.ServiceBusHandoffInbox(FakeClient(queue), DEFAULT_HANDOFF_QUEUE, credential=credential)


# --- the message, on the SDK's own types ------------------------------------------------------------------

def test_the_message_is_the_contract_on_a_real_servicebus_message() -> None:
    original = handoff()
    message = sb.servicebus_message(original, at(1))
    assert isinstance(message, ServiceBusMessage)
    assert message.session_id == "call-1"
    assert message.message_id == "call-1:incoming_call" == original.message_id
    assert message.content_type == "application/json"
    assert message.subject == "incoming_call"
    assert message.correlation_id == "ch-1"
    assert message.application_properties == {"kind": "incoming_call", "version": 1, "scenario_id": "s-1",
                                              "chain_id": "ch-1"}
    assert HandoffMessage.from_json(b"".join(message.body)) == original


async def test_the_message_survives_the_wire_round_trip(queue: FakeQueue) -> None:
    original = handoff()
    await sender_for(queue, now=at(1)).send(original)
    receiver = FakeClient(queue).get_queue_receiver(DEFAULT_HANDOFF_QUEUE, session_id=NEXT_AVAILABLE_SESSION)
    [received] = await receiver.receive_messages()
    assert (received.session_id, received.message_id, received.content_type) == (
        "call-1", "call-1:incoming_call", "application/json")
    assert received.time_to_live == timedelta(seconds=4)
    assert received.application_properties is not None
    assert received.application_properties[b"kind"] == b"incoming_call"
    assert received.application_properties[b"version"] == 1
    assert HandoffMessage.from_json(str(received)) == original


def test_optional_correlation_ids_are_left_out() -> None:
    message = sb.servicebus_message(HandoffMessage(
        call_id="call-2", tenant_id=TENANT_ID, notification=incoming_call("call-2"), decision={"action": "handoff"},
        deadline=at(15), received_at=NOW), at(0))
    assert message.correlation_id is None
    assert message.application_properties == {"kind": "incoming_call", "version": 1}


@pytest.mark.parametrize(("sent_at", "ttl"), [
    (0.0, 5),     # all of the policy-recording window
    (1.0, 4),
    (1.2, 4),     # 3.8 s left: whole seconds, rounded up (the SDK would truncate to 3)
    (2.5, 3),
    (3.5, 2),     # 1.5 s left: the floor
    (4.6, 2),     # 0.4 s left: the floor, never 0 (which the SDK would send as no TTL: the queue's minute)
    (4.999, 2),
])
def test_time_to_live_is_what_is_left_of_the_deadline(sent_at: float, ttl: int) -> None:
    message = sb.servicebus_message(handoff(), at(sent_at))
    assert message.time_to_live == timedelta(seconds=ttl)


def test_time_to_live_of_an_ordinary_hand_off_follows_its_15_s_deadline() -> None:
    assert sb.servicebus_message(handoff(policy_recording=False), at(2.5)).time_to_live == timedelta(seconds=13)


@pytest.mark.parametrize("late", [5.0, 5.001, 60.0])
async def test_a_hand_off_past_its_deadline_is_not_sent(queue: FakeQueue, late: float) -> None:
    with pytest.raises(HandoffExpired, match="past its deadline"):
        await sender_for(queue, now=at(late)).send(handoff())
    assert queue.pending() == 0
    assert not queue.senders, "no link is opened for a hand-off that cannot be sent"


async def test_a_re_sent_hand_off_has_the_same_message_id_and_reaches_the_queue_once(queue: FakeQueue) -> None:
    sender = sender_for(queue)
    first, again, other = handoff("call-1"), handoff("call-1", received_at=at(0.05)), handoff("call-2")
    assert sb.servicebus_message(first, at(1)).message_id == sb.servicebus_message(again, at(1)).message_id
    for message in (first, again, other):
        await sender.send(message)
    assert {s: len(m) for s, m in queue.sessions.items()} == {"call-1": 1, "call-2": 1}


# --- sending: one link, bounded time ----------------------------------------------------------------------

async def test_one_link_serves_every_hand_off_and_sends_take_turns(queue: FakeQueue) -> None:
    queue.send_delay = 0.02
    sender = sender_for(queue)
    await asyncio.gather(*(sender.send(handoff(f"call-{i}")) for i in range(5)))
    assert len(queue.senders) == 1
    assert queue.pending() == 5
    assert queue.most_sending_at_once == 1  # the SDK's sender is not coroutine-safe


async def test_a_slow_send_times_out_so_the_webhook_can_still_reject(queue: FakeQueue) -> None:
    queue.send_delay = 30.0
    sender = sender_for(queue, send_timeout=0.2)
    started = time.monotonic()
    with pytest.raises(HandoffFailed, match=r"did not accept the hand-off of call call-1 within 0\.2 s") as info:
        await sender.send(handoff())
    assert time.monotonic() - started < 1.0
    assert isinstance(info.value.__cause__, OperationTimeoutError)
    assert not isinstance(info.value, HandoffExpired)
    assert queue.senders[0].timeouts == [pytest.approx(0.2, abs=0.05)]
    assert queue.pending() == 0


async def test_a_send_that_overruns_its_timeout_is_cut_off_and_its_link_replaced(queue: FakeQueue) -> None:
    queue.send_delay, queue.send_honours_timeout = 30.0, False
    sender = sender_for(queue, send_timeout=0.2)
    started = time.monotonic()
    with pytest.raises(HandoffFailed, match="did not accept"):
        await sender.send(handoff("call-1"))
    assert time.monotonic() - started < 0.2 + sb.SEND_BACKSTOP_SECONDS + 0.5
    queue.send_delay = 0.0
    await sender.send(handoff("call-2"))
    assert len(queue.senders) == 2 and queue.senders[0].closed and not queue.senders[1].closed
    assert list(queue.sessions) == ["call-2"]


async def test_the_send_never_waits_past_the_deadline(queue: FakeQueue) -> None:
    await sender_for(queue, now=at(4.7)).send(handoff())  # 0.3 s left of the 5 s window
    assert queue.senders[0].timeouts[0] is not None and 0 < queue.senders[0].timeouts[0] <= 0.3


async def test_waiting_for_a_turn_counts_against_the_timeout(queue: FakeQueue) -> None:
    queue.send_delay, queue.send_honours_timeout = 0.4, False  # a slow send (within the backstop) holds the link
    sender = sender_for(queue, send_timeout=0.2)
    slow = asyncio.create_task(sender.send(handoff("call-1")))
    await asyncio.sleep(0.01)
    started = time.monotonic()
    with pytest.raises(HandoffFailed, match=r"waited 0\.2 s for the Service Bus sender"):
        await sender.send(handoff("call-2"))
    assert time.monotonic() - started < 0.35
    await slow
    assert list(queue.sessions) == ["call-1"]


@pytest.mark.parametrize("error", [ServiceBusAuthorizationError(message="Unauthorized access. 'Send' claim(s) "
                                                                       "are required to perform this operation."),
                                   ServiceBusAuthenticationError(message="no token")])
async def test_service_bus_refusing_the_send_raises_handoff_failed(queue: FakeQueue, error: Exception) -> None:
    queue.send_error = error
    with pytest.raises(HandoffFailed, match="Service Bus refused the hand-off of call call-1") as info:
        await sender_for(queue).send(handoff())
    assert info.value.__cause__ is error
    assert "'Send' claim" in str(info.value) or "no token" in str(info.value)


async def test_closing_the_sender_closes_link_client_and_credential(queue: FakeQueue) -> None:
    credential = FakeCredential()
    client = FakeClient(queue)
    sender = sb.ServiceBusHandoffSender(client, DEFAULT_HANDOFF_QUEUE, credential=credential,
                                        now=lambda: at(0.1))
    await sender.send(handoff())
    await sender.close()
    assert queue.senders[0].closed and client.closed and credential.closed


# --- taking: sessions, settlement, dead letters -----------------------------------------------------------

async def test_take_returns_none_when_no_session_is_available(queue: FakeQueue) -> None:
    inbox = inbox_for(queue)
    started = time.monotonic()
    assert await inbox.take(0.1) is None
    assert time.monotonic() - started < 1.0
    assert queue.receivers and not queue.open_receivers()


async def test_a_taken_hand_off_is_the_one_sent_and_done_completes_it(queue: FakeQueue) -> None:
    original = handoff()
    await sender_for(queue).send(original)
    inbox = inbox_for(queue)
    taken = await inbox.take(1.0)
    assert taken is not None
    assert taken.message == original
    assert queue.open_receivers(), "the session stays locked while the worker answers"
    await taken.done()
    assert [m.message_id for m in queue.completed] == ["call-1:incoming_call"]
    assert queue.pending() == 0 and not queue.open_receivers() and not queue.locked
    assert await inbox.take(0.1) is None


async def test_release_gives_the_hand_off_to_another_worker(queue: FakeQueue) -> None:
    await sender_for(queue).send(handoff())
    full, free = inbox_for(queue), inbox_for(queue)
    taken = await full.take(1.0)
    assert taken is not None
    await taken.release()
    assert [m.message_id for m in queue.abandoned] == ["call-1:incoming_call"]
    assert not queue.completed and not queue.open_receivers()
    again = await free.take(1.0)
    assert again is not None and again.message == taken.message
    await again.done()
    assert [m.message_id for m in queue.completed] == ["call-1:incoming_call"]


async def test_a_call_held_by_one_worker_is_not_given_to_another(queue: FakeQueue) -> None:
    sender = sender_for(queue)
    await sender.send(handoff("call-1"))
    await sender.send(handoff("call-2"))
    first = await inbox_for(queue).take(1.0)
    second = await inbox_for(queue).take(1.0)
    assert first is not None and second is not None
    assert {first.message.call_id, second.message.call_id} == {"call-1", "call-2"}
    assert await inbox_for(queue).take(0.1) is None


async def test_a_malformed_message_is_dead_lettered_and_the_worker_goes_on(queue: FakeQueue) -> None:
    queue.put(ServiceBusMessage("this is not JSON", session_id="bad-call", message_id="bad-call:incoming_call"))
    wrong_version = json.loads(handoff("old-call").to_json()) | {"version": 2}
    queue.put(ServiceBusMessage(json.dumps(wrong_version), session_id="old-call", message_id="old-call:incoming_call"))
    await sender_for(queue).send(handoff("call-1"))
    taken = await inbox_for(queue).take(2.0)
    assert taken is not None and taken.message.call_id == "call-1"
    reasons = [(m.message_id, reason, description) for m, reason, description in queue.dead_lettered]
    assert [r[:2] for r in reasons] == [("bad-call:incoming_call", sb.MALFORMED_REASON),
                                        ("old-call:incoming_call", sb.MALFORMED_REASON)]
    assert "not JSON" in str(reasons[0][2]) and "unsupported hand-off contract version 2" in str(reasons[1][2])
    assert queue.open_receivers() == [queue.receivers[-1]], "only the taken call's session is still locked"


async def test_a_malformed_message_alone_leaves_take_with_nothing(queue: FakeQueue) -> None:
    queue.put(ServiceBusMessage(b"\xff\xfe", session_id="bad-call", message_id="bad-call:incoming_call"))
    assert await inbox_for(queue).take(0.3) is None
    assert len(queue.dead_lettered) == 1 and queue.pending() == 0 and not queue.open_receivers()


async def test_a_lost_session_lock_on_done_is_logged_not_raised(queue: FakeQueue,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    await sender_for(queue).send(handoff())
    taken = await inbox_for(queue).take(1.0)
    assert taken is not None
    queue.settle_error = SessionLockLostError(message="The session lock has expired")
    await taken.done()
    assert "completing the hand-off call-1:incoming_call failed" in caplog.text
    assert not queue.open_receivers()
    assert queue.pending() == 1, "unsettled, it goes back to the queue for the next worker (who drops it late)"


async def test_take_raises_handoff_failed_when_service_bus_refuses(queue: FakeQueue) -> None:
    queue.receive_error = ServiceBusAuthorizationError(message="'Listen' claim(s) are required")
    with pytest.raises(HandoffFailed, match="'Listen' claim") as info:
        await inbox_for(queue).take(0.5)
    assert info.value.__cause__ is queue.receive_error
    assert not queue.open_receivers()


async def test_closing_the_inbox_returns_unsettled_hand_offs(queue: FakeQueue) -> None:
    await sender_for(queue).send(handoff())
    credential = FakeCredential()
    inbox = inbox_for(queue, credential)
    assert await inbox.take(1.0) is not None
    await inbox.close()
    assert not queue.open_receivers() and queue.pending() == 1 and credential.closed


# --- settings and wiring ----------------------------------------------------------------------------------

BASE = {"BOT_APP_ID": APP_ID, "BOT_TENANT_ID": TENANT_ID, "BOT_PUBLIC_URL": "https://bot.example.com",
        "BOT_MANAGED_IDENTITY_CLIENT_ID": "22222222-3333-4444-5555-666666666666"}


def problems(env: dict[str, str]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        Settings.from_env(env)
    return info.value.problems


def test_servicebus_settings() -> None:
    s = Settings.from_env({**BASE, "MEDIA_HANDOFF_TRANSPORT": "servicebus",
                           "SERVICEBUS_NAMESPACE": " SB-Abc.servicebus.windows.net "})
    assert (s.handoff_transport, s.servicebus_namespace, s.handoff_queue) == (
        "servicebus", "sb-abc.servicebus.windows.net", "media-handoff")
    other = Settings.from_env({**BASE, "MEDIA_HANDOFF_TRANSPORT": "servicebus", "MEDIA_HANDOFF_QUEUE": "calls/handoff",
                               "SERVICEBUS_NAMESPACE": "sb-abc.servicebus.chinacloudapi.cn"})
    assert (other.servicebus_namespace, other.handoff_queue) == ("sb-abc.servicebus.chinacloudapi.cn", "calls/handoff")


@pytest.mark.parametrize(("extra", "message"), [
    ({}, "MEDIA_HANDOFF_TRANSPORT=servicebus needs SERVICEBUS_NAMESPACE"),
    ({"SERVICEBUS_NAMESPACE": "sb-abc123"},
     "SERVICEBUS_NAMESPACE must be fully qualified: 'sb-abc123' is only the namespace's name; use "
     "sb-abc123.servicebus.windows.net"),
    ({"SERVICEBUS_NAMESPACE": "sb://sb-abc.servicebus.windows.net/"}, "without scheme, port or path"),
    ({"SERVICEBUS_NAMESPACE": "sb-abc.servicebus.windows.net:5671"}, "without scheme, port or path"),
    ({"SERVICEBUS_NAMESPACE": "sb_abc.servicebus..net"}, "must be a fully qualified host name"),
    ({"MEDIA_HANDOFF_QUEUE": "-handoff", "SERVICEBUS_NAMESPACE": "sb-abc.servicebus.windows.net"},
     "MEDIA_HANDOFF_QUEUE must be a Service Bus queue name"),
    ({"MEDIA_HANDOFF_QUEUE": "hand off", "SERVICEBUS_NAMESPACE": "sb-abc.servicebus.windows.net"},
     "MEDIA_HANDOFF_QUEUE must be a Service Bus queue name"),
])
def test_invalid_servicebus_settings_name_the_setting(extra: dict[str, str], message: str) -> None:
    found = problems({**BASE, "MEDIA_HANDOFF_TRANSPORT": "servicebus", **extra})
    assert any(message in p for p in found), found


def test_a_connection_string_is_refused_and_never_echoed() -> None:
    key = "c2VjcmV0LWtleS1ub3QtcmVhbA=="
    for value in (f"Endpoint=sb://sb-abc.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey={key}",
                  f"SharedAccessSignature sr=sb-abc&sig={key}&se=1&skn=send"):
        found = problems({**BASE, "MEDIA_HANDOFF_TRANSPORT": "servicebus", "SERVICEBUS_NAMESPACE": value})
        assert any("not a connection string or SAS token" in p for p in found), found
        assert key not in " ".join(found)


def test_the_transport_kinds_are_listed_in_the_error() -> None:
    found = problems({**BASE, "MEDIA_HANDOFF_TRANSPORT": "amqp"})
    assert any("MEDIA_HANDOFF_TRANSPORT must be one of none, inprocess, servicebus, got 'amqp'" in p for p in found)


def test_the_runtime_builds_the_servicebus_sender_with_the_managed_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    from azure.identity.aio import ManagedIdentityCredential

    from functions import runtime

    monkeypatch.chdir(Path(__file__).resolve().parents[1])  # FLOWS_DIR is relative to the app root
    built = runtime.build({**BASE, "MEDIA_HANDOFF_TRANSPORT": "servicebus",
                           "SERVICEBUS_NAMESPACE": NAMESPACE})
    sender = built.handoff
    assert isinstance(sender, sb.ServiceBusHandoffSender)
    client = sender._client
    assert getattr(client, "fully_qualified_namespace", None) == NAMESPACE
    assert sender._queue == DEFAULT_HANDOFF_QUEUE
    assert isinstance(sender._credential, ManagedIdentityCredential)
    assert runtime.build(BASE).handoff is None


def test_the_servicebus_credential_follows_the_storage_credential() -> None:
    from azure.identity.aio import DefaultAzureCredential, ManagedIdentityCredential

    from calling.credentials import servicebus_credential

    assert isinstance(servicebus_credential(Settings.from_env(BASE)), ManagedIdentityCredential)
    developer = {**{k: v for k, v in BASE.items() if k != "BOT_MANAGED_IDENTITY_CLIENT_ID"},
                 "BOT_CLIENT_SECRET": "dev-only"}
    assert isinstance(servicebus_credential(Settings.from_env(developer)), DefaultAzureCredential)
