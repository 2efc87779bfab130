"""Idempotency-Key on the outbound endpoints: a retried POST gets the first answer back and Graph sees one
createCall. The decisions run through calling/outbound.answer_place against the loopback Graph stub (what it
received is the evidence), and each key store is held to the same contract: the memory store and Blob
Storage on Azurite (atomic reservations, conditional updates)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from azure.storage.blob.aio import BlobServiceClient

from calling import idempotency, outbound
from calling.config import Settings
from calling.credentials import storage_credential
from calling.flows.harness import write_flows
from calling.graph import CallControl
from calling.idempotency import (
    IN_FLIGHT_LIMIT,
    Answer,
    BlobKeyStore,
    Claim,
    KeyRefused,
    KeyStore,
    MemoryKeyStore,
    Record,
    StoreUnavailable,
)
from calling.session import FlowLibrary
from tests.azurite import azurite
from tests.stubs import APP_ID, LoopbackServer, graph_error
from tests.test_outbound import FLOWS, INSTANCE, JOIN_URL, NOW, Sink

ROOT = Path(__file__).resolve().parent.parent
KEY = "8e03978e-40d5-43e8-bc93-6894a57f9324"
CALL = {"to": "+14255550100", "flow": "greet"}
SETTINGS = Settings(bot_app_id="11111111-1111-4111-8111-111111111111",
                    bot_tenant_id="22222222-2222-4222-8222-222222222222",
                    allowed_tenants=frozenset({"22222222-2222-4222-8222-222222222222"}),
                    public_url="https://bot.example.com")


# --- the header ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "key"), [
    (KEY, KEY),
    (f'"{KEY}"', KEY),  # the draft's sf-string
    (f'  "{KEY}"  ', KEY),
    ('"a \\"quoted\\" key, with a comma"', 'a "quoted" key, with a comma'),
    ("order-1234_retry~1", "order-1234_retry~1"),
    ("k" * 255, "k" * 255),
    (None, None),
])
def test_a_key_is_bare_or_a_quoted_string(raw: str | None, key: str | None) -> None:
    assert idempotency.parse_key(raw) == key


@pytest.mark.parametrize(("raw", "reason"), [
    ("", "Idempotency-Key is empty"),
    ('""', "Idempotency-Key is empty"),
    ('"abc', "starts with a quote but does not end with one"),
    ('"a", "b"', "more than one key"),
    ("a, b", "more than one key"),
    ("two words", "must be printable ASCII"),
    ("clé", "must be printable ASCII"),
    ('"clé"', "must be printable ASCII"),
    ('"a\\nb"', 'only \\" and \\\\ may be escaped'),
    ("k" * 256, "longer than 255 characters"),
])
def test_a_malformed_key_is_refused_with_the_reason(raw: str, reason: str) -> None:
    with pytest.raises(KeyRefused) as info:
        idempotency.parse_key(raw)
    assert reason in str(info.value)


def test_the_fingerprint_is_the_endpoint_and_the_json_not_its_spelling() -> None:
    same = idempotency.fingerprint("outbound/calls", json.loads('{ "flow": "greet",\n "to": "+14255550100" }'))
    assert same == idempotency.fingerprint("outbound/calls", CALL)
    assert same != idempotency.fingerprint("outbound/meetings", CALL)
    assert same != idempotency.fingerprint("outbound/calls", {**CALL, "subject": "x"})


def test_a_key_is_stored_under_its_hash_not_its_text() -> None:
    name = idempotency.key_name("../../etc/passwd")
    assert name.endswith(".json") and len(name) == 64 + 5 and "/" not in name and "." not in name[:-5]


def test_the_in_flight_limit_is_the_function_timeout() -> None:
    """A reservation without an answer stops counting as in flight when the host has ended its invocation."""
    hours, minutes, seconds = map(int, json.loads((ROOT / "host.json").read_text())["functionTimeout"].split(":"))
    assert timedelta(hours=hours, minutes=minutes, seconds=seconds) == IN_FLIGHT_LIMIT


# --- the decisions, against the Graph stub ----------------------------------------------------------------


class Clock:
    def __init__(self, at: datetime = NOW) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


class Bot:
    """The outbound POST as functions/outbound.py runs it: answer_place with the real place() and Graph client."""

    def __init__(self, server: LoopbackServer, control: CallControl, flows: FlowLibrary, keys: KeyStore, *,
                 sink: Sink | None = None, ttl: timedelta = idempotency.DEFAULT_TTL) -> None:
        self.server, self.control, self.flows, self.keys, self.ttl = server, control, flows, keys, ttl
        self.sink = sink or Sink()
        self.clock = Clock()

    async def post(self, body: Any, key: str | None = None, route: str = "outbound/calls") -> Answer:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()

        def parse(data: Any) -> outbound.Outbound:
            if route == "outbound/meetings":
                return outbound.parse_join_meeting(data, flows=self.flows)
            return outbound.parse_place_call(data, flows=self.flows, default_instance=INSTANCE)

        return await outbound.answer_place(
            raw, key, route=route, parse=parse,
            place=lambda request: outbound.place(request, control=self.control, flows=self.flows, sink=self.sink,
                                                 now=self.clock(), app_id=APP_ID),
            status_url=lambda call_id: f"https://bot.example.com/api/outbound/calls/{call_id}", keys=self.keys,
            now=self.clock, key_ttl=self.ttl)

    def creates(self) -> int:
        """createCall requests Graph received."""
        return sum(1 for r in self.server.graph_requests()
                   if r.method == "POST" and r.path.rstrip("/").endswith("/communications/calls"))


@pytest.fixture
def flows(tmp_path: Path) -> FlowLibrary:
    write_flows(tmp_path, FLOWS)
    return FlowLibrary(tmp_path, "https://bot.example.com/api/prompts")


@pytest.fixture
def bot(server: LoopbackServer, control: CallControl, flows: FlowLibrary) -> Bot:
    return Bot(server, control, flows, MemoryKeyStore())


def replayed(answer: Answer) -> bool:
    return answer.headers.get("Idempotent-Replayed") == "true"


async def test_without_a_key_every_post_places_a_call(bot: Bot) -> None:
    first, second = await bot.post(CALL), await bot.post(CALL)
    assert (first.status, second.status) == (202, 202)
    assert first.body and second.body and first.body["callId"] != second.body["callId"]
    assert bot.creates() == 2
    assert not replayed(first) and not replayed(second)


async def test_a_retry_with_the_same_key_gets_the_same_202_and_graph_sees_one_call(bot: Bot) -> None:
    first = await bot.post(CALL, KEY)
    assert first.status == 202 and first.body is not None
    assert first.headers == {"Location": first.body["statusUri"]}
    retry = await bot.post(b'{"flow":"greet",   "to":"+14255550100"}', f'"{KEY}"')  # same request, other spelling
    assert (retry.status, retry.body) == (202, first.body)
    assert retry.headers == {"Location": first.body["statusUri"], "Idempotent-Replayed": "true"}
    assert bot.creates() == 1
    assert list(bot.sink.started) == [first.body["callId"]]  # one session too


async def test_the_same_key_with_another_body_is_422_and_places_nothing(bot: Bot) -> None:
    await bot.post(CALL, KEY)
    other = await bot.post({**CALL, "to": "+14255550111"}, KEY)
    assert other.status == 422 and other.body is not None
    assert other.body["error"] == "idempotency_key_reused"
    assert "first used for a different request" in other.body["reason"]
    meeting = await bot.post({"join_url": JOIN_URL, "flow": "greet"}, KEY, route="outbound/meetings")
    assert meeting.status == 422
    assert bot.creates() == 1


async def test_a_retry_while_the_first_is_placing_is_409_with_retry_after(bot: Bot) -> None:
    bot.server.delays["/communications/calls"] = 0.5  # Graph takes its time creating the call

    async def retry_soon() -> Answer:
        await asyncio.sleep(0.2)
        return await bot.post(CALL, KEY)

    first, early = await asyncio.gather(bot.post(CALL, KEY), retry_soon())
    assert first.status == 202
    assert early.status == 409 and early.body is not None and early.body["error"] == "idempotency_key_in_use"
    assert early.headers == {"Retry-After": "2"}
    later = await bot.post(CALL, KEY)
    assert (later.status, later.body) == (202, first.body) and replayed(later)
    assert bot.creates() == 1


async def test_a_bad_request_is_not_recorded_so_the_corrected_one_can_use_the_key(bot: Bot) -> None:
    bad = await bot.post({**CALL, "flow": "nope"}, KEY)
    assert bad.status == 400 and bad.body is not None and bad.body["error"] == "bad_request"
    fixed = await bot.post(CALL, KEY)
    assert fixed.status == 202 and not replayed(fixed)
    assert bot.creates() == 1


async def test_a_retry_is_matched_before_its_body_is_checked(server: LoopbackServer, control: CallControl,
                                                             flows: FlowLibrary, tmp_path: Path) -> None:
    """A deploy removed the flow between the request and its retry: the retry still learns its call."""
    keys = MemoryKeyStore()
    first = await Bot(server, control, flows, keys).post(CALL, KEY)
    (tmp_path / "after-deploy").mkdir()
    after = Bot(server, control, FlowLibrary(tmp_path / "after-deploy", "https://bot.example.com/api/prompts"), keys)
    retry = await after.post(CALL, KEY)
    assert (retry.status, retry.body) == (202, first.body) and replayed(retry)
    assert (await after.post(CALL, "a-new-request")).status == 400  # a new request is checked
    assert after.creates() == 1


async def test_a_bad_key_and_a_bad_body_are_named_together_and_nothing_is_placed(bot: Bot) -> None:
    answer = await bot.post(b"{to: 1}", "a, b")
    assert (answer.status, answer.body) == (400, {"error": "bad_request", "reasons": [
        "body is not JSON: Expecting property name enclosed in double quotes at line 1 column 2",
        "Idempotency-Key holds more than one key: send one key per request"]})
    assert bot.creates() == 0


async def test_a_flow_that_decided_not_to_call_is_replayed_as_not_placed(bot: Bot) -> None:
    bot.clock.at = datetime(2026, 3, 4, 4, 0, tzinfo=UTC)  # the evening: the office flow hangs up first
    office = {**CALL, "flow": "office"}
    first = await bot.post(office, KEY)
    assert first.status == 409 and first.body is not None and first.body["error"] == "not_placed"
    bot.clock.at += timedelta(hours=12)  # the office is open now, but the key's request was answered
    retry = await bot.post(office, KEY)
    assert (retry.status, retry.body) == (409, first.body) and replayed(retry)
    assert bot.creates() == 0


async def test_graph_throttling_places_nothing_so_a_retry_with_the_key_places_the_call(bot: Bot) -> None:
    throttled = [True]
    bot.server.script("POST", "/communications/calls", lambda r: graph_error(429, "TooManyRequests", "slow down",
                                                                              retry_after="0")
                      if throttled[0] else None)
    first = await bot.post(CALL, KEY)
    assert first.status == 503 and first.body is not None and first.body["error"] == "graph_error"
    refused = bot.creates()
    throttled[0] = False
    retry = await bot.post(CALL, KEY)
    assert retry.status == 202 and not replayed(retry)
    assert bot.creates() == refused + 1


async def test_a_graph_failure_that_may_have_created_the_call_is_replayed_not_retried(bot: Bot) -> None:
    bot.server.script("POST", "/communications/calls", lambda r: graph_error(500, "InternalServerError", "oops"))
    first = await bot.post(CALL, KEY)
    assert first.status == 502 and first.body is not None and first.body["graph"]["status"] == 500
    retry = await bot.post(CALL, KEY)
    assert (retry.status, retry.body) == (502, first.body) and replayed(retry)
    assert bot.creates() == 1


async def test_a_call_whose_session_did_not_start_is_replayed_not_rung_again(
        server: LoopbackServer, control: CallControl, flows: FlowLibrary) -> None:
    bot = Bot(server, control, flows, MemoryKeyStore(), sink=Sink(fail=True))
    first = await bot.post(CALL, KEY)
    assert first.status == 503 and first.body is not None and first.body["error"] == "session_not_started"
    retry = await bot.post(CALL, KEY)
    assert (retry.status, retry.body) == (503, first.body) and replayed(retry)
    assert bot.creates() == 1  # the callee's phone rang once, and was hung up once
    assert [r.method for r in server.graph_requests()] == ["POST", "DELETE"]


async def test_keys_expire_after_their_lifetime(server: LoopbackServer, control: CallControl,
                                                flows: FlowLibrary) -> None:
    bot = Bot(server, control, flows, MemoryKeyStore(), ttl=timedelta(hours=1))
    first = await bot.post(CALL, KEY)
    bot.clock.at += timedelta(minutes=59)
    assert replayed(await bot.post(CALL, KEY))
    bot.clock.at += timedelta(minutes=2)
    again = await bot.post(CALL, KEY)
    assert again.status == 202 and not replayed(again)
    assert again.body and first.body and again.body["callId"] != first.body["callId"]
    assert bot.creates() == 2


class AnswersNotRecorded(MemoryKeyStore):
    """A store that reserves keys but fails to record answers (the storage account failing mid-request, or a bug)."""

    def __init__(self, failure: Exception) -> None:
        super().__init__()
        self.failure = failure

    async def finish(self, claim: Claim, record: Record) -> None:
        raise self.failure


class ClaimsFail(MemoryKeyStore):
    async def claim(self, name: str, record: Record, now: datetime) -> Claim | Record:
        raise RuntimeError("a bug in the store")


@pytest.mark.parametrize("failure", [StoreUnavailable("the storage account answered 500"), RuntimeError("a bug")])
async def test_an_answer_that_could_not_be_recorded_never_leads_to_a_second_call(
        server: LoopbackServer, control: CallControl, flows: FlowLibrary, failure: Exception) -> None:
    bot = Bot(server, control, flows, AnswersNotRecorded(failure))
    first = await bot.post(CALL, KEY)
    assert first.status == 202  # the caller still gets the truth
    soon = await bot.post(CALL, KEY)  # the first request could still be running, for all a retry can tell
    assert soon.status == 409 and soon.body is not None and soon.body["error"] == "idempotency_key_in_use"
    bot.clock.at += IN_FLIGHT_LIMIT
    late = await bot.post(CALL, KEY)
    assert late.status == 409 and late.body is not None and late.body["error"] == "idempotency_outcome_unknown"
    assert "may have placed a call" in late.body["reason"] and "Retry-After" not in late.headers
    assert bot.creates() == 1
    bot.clock.at = NOW + idempotency.DEFAULT_TTL  # the key has expired: a new request
    assert (await bot.post(CALL, KEY)).status == 202
    assert bot.creates() == 2


async def test_a_key_store_that_cannot_be_reached_places_no_call(server: LoopbackServer, control: CallControl,
                                                                 flows: FlowLibrary) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/devstoreaccount1/idempotency"
    bot = Bot(server, control, flows, BlobKeyStore(url, storage_credential(url, SETTINGS)))
    answer = await bot.post(CALL, KEY)
    assert answer.status == 503 and answer.body is not None and answer.body["error"] == "idempotency_unavailable"
    assert answer.headers == {"Retry-After": "5"}
    assert bot.creates() == 0
    assert (await bot.post(CALL)).status == 202  # without the header the store is not involved


async def test_a_store_that_fails_unexpectedly_places_no_call(server: LoopbackServer, control: CallControl,
                                                              flows: FlowLibrary) -> None:
    bot = Bot(server, control, flows, ClaimsFail())
    answer = await bot.post(CALL, KEY)
    assert answer.status == 503 and answer.body is not None and answer.body["error"] == "idempotency_unavailable"
    assert bot.creates() == 0


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- the stores: one contract, in memory and in Blob Storage (Azurite) -----------------------------------


@pytest.fixture(scope="module")
def account() -> Iterator[str]:
    with azurite() as url:
        yield url


@pytest.fixture
async def container(account: str) -> AsyncIterator[str]:
    """A fresh container per test: `<account>/<name>`."""
    import uuid

    name = f"keys-{uuid.uuid4().hex[:12]}"
    async with BlobServiceClient(account, credential=storage_credential(account, SETTINGS)) as client:
        await client.create_container(name)
    yield f"{account}/{name}"


@pytest.fixture(params=["memory", "blob"])
def store(request: pytest.FixtureRequest) -> KeyStore:
    if request.param == "memory":
        return MemoryKeyStore()
    url: str = request.getfixturevalue("container")
    return BlobKeyStore(url, storage_credential(url, SETTINGS))


def record(fingerprint: str = "sha256:a", *, at: datetime = NOW, ttl: timedelta = timedelta(hours=24),
           token: str | None = None) -> Record:
    return Record(fingerprint, token or fingerprint + at.isoformat(), at, at + ttl)


async def test_a_key_is_held_by_one_request_until_it_is_released(store: KeyStore) -> None:
    mine = record()
    claim = await store.claim("k.json", mine, NOW)
    assert isinstance(claim, Claim)
    held = await store.claim("k.json", record("sha256:b"), NOW)
    assert held == mine and held.answer is None
    await store.release(claim)
    assert isinstance(await store.claim("k.json", record("sha256:b"), NOW), Claim)


async def test_a_finished_key_keeps_its_answer(store: KeyStore) -> None:
    mine = record()
    claim = await store.claim("k.json", mine, NOW)
    assert isinstance(claim, Claim)
    answer = Answer(202, {"callId": "c-1", "statusUri": "https://bot/c-1"}, {"Location": "https://bot/c-1"})
    done = Record(mine.fingerprint, mine.token, mine.created, mine.expires, answer, NOW + timedelta(seconds=2))
    await store.finish(claim, done)
    assert await store.claim("k.json", record("sha256:b"), NOW + timedelta(hours=1)) == done


async def test_an_expired_key_is_taken_over_and_the_old_holder_cannot_record(store: KeyStore) -> None:
    old = await store.claim("k.json", record(ttl=timedelta(hours=1)), NOW)
    assert isinstance(old, Claim)
    later = NOW + timedelta(hours=2)
    new = await store.claim("k.json", record("sha256:b", at=later), later)
    assert isinstance(new, Claim)
    with pytest.raises(StoreUnavailable):
        await store.finish(old, record(ttl=timedelta(hours=1)))
    assert await store.claim("k.json", record("sha256:c", at=later), later) == record("sha256:b", at=later)


async def test_concurrent_requests_with_one_key_reserve_it_once(store: KeyStore) -> None:
    results = await asyncio.gather(*(store.claim("k.json", record(f"sha256:{i}"), NOW) for i in range(8)))
    winners = [r for r in results if isinstance(r, Claim)]
    assert len(winners) == 1
    held = {r.fingerprint for r in results if isinstance(r, Record)}
    assert len(held) == 1 and len(results) - len(winners) == 7


async def test_a_blob_reservation_seen_again_is_still_its_own(container: str) -> None:
    """The SDK retries a create whose answer was lost; the retry finds the blob and must know it is its own."""
    store = BlobKeyStore(container, storage_credential(container, SETTINGS))
    mine = record(token="t-1")
    assert isinstance(await store.claim("k.json", mine, NOW), Claim)
    again = await store.claim("k.json", mine, NOW)
    assert isinstance(again, Claim)
    await store.finish(again, Record(mine.fingerprint, mine.token, NOW, mine.expires, Answer(202, {"callId": "c"})))


async def test_blob_records_are_json_under_the_keys_hash(container: str, server: LoopbackServer,
                                                         control: CallControl, flows: FlowLibrary) -> None:
    bot = Bot(server, control, flows, BlobKeyStore(container, storage_credential(container, SETTINGS)))
    first = await bot.post(CALL, KEY)
    retry = await bot.post(CALL, KEY)
    assert (retry.status, retry.body) == (202, first.body) and replayed(retry)
    assert bot.creates() == 1
    account, name = container.rsplit("/", 1)
    async with BlobServiceClient(account, credential=storage_credential(account, SETTINGS)) as client:
        blobs = [b async for b in client.get_container_client(name).list_blobs()]
        assert [b.name for b in blobs] == [idempotency.key_name(KEY)]
        assert blobs[0].content_settings.content_type == "application/json"
        stored = json.loads(await (await client.get_blob_client(name, blobs[0].name).download_blob()).readall())
    assert stored["state"] == "done" and stored["answer"]["status"] == 202
    assert stored["answer"]["body"] == first.body and KEY not in json.dumps(stored)


async def test_an_unreadable_blob_record_is_a_503_not_a_call(container: str, server: LoopbackServer,
                                                             control: CallControl, flows: FlowLibrary) -> None:
    account, name = container.rsplit("/", 1)
    async with BlobServiceClient(account, credential=storage_credential(account, SETTINGS)) as client:
        await client.get_blob_client(name, idempotency.key_name(KEY)).upload_blob(b"not a record")
    bot = Bot(server, control, flows, BlobKeyStore(container, storage_credential(container, SETTINGS)))
    answer = await bot.post(CALL, KEY)
    assert answer.status == 503 and answer.body is not None and answer.body["error"] == "idempotency_unavailable"
    assert bot.creates() == 0


async def test_a_missing_container_is_a_503_not_a_call(account: str, server: LoopbackServer, control: CallControl,
                                                       flows: FlowLibrary) -> None:
    url = f"{account}/no-such-container"
    bot = Bot(server, control, flows, BlobKeyStore(url, storage_credential(url, SETTINGS)))
    answer = await bot.post(CALL, KEY)
    assert answer.status == 503 and bot.creates() == 0


def test_records_round_trip_and_refuse_what_this_code_did_not_write() -> None:
    done = Record("sha256:a", "t", NOW, NOW + timedelta(hours=1), Answer(409, {"error": "not_placed"}), NOW)
    assert Record.from_json(done.to_json()) == done
    pending = record()
    assert Record.from_json(pending.to_json()) == pending
    for raw in (b"\xff", b"[]", b'{"version": 2}', b'{"version": 1, "fingerprint": "f"}',
                json.dumps({**json.loads(done.to_json()), "created": "2026-03-03T18:00:00"}).encode()):
        with pytest.raises(ValueError):
            Record.from_json(raw)



async def test_a_graph_503_on_create_is_replayed_too(bot: Bot) -> None:
    """Only a 429 is sure to have placed nothing; Graph may have placed a call it answered 503."""
    bot.server.script("POST", "/communications/calls", lambda r: graph_error(503, "ServiceUnavailable", "busy"))
    first = await bot.post(CALL, KEY)
    assert first.status == 502 and first.body is not None and first.body["graph"]["status"] == 503
    retry = await bot.post(CALL, KEY)
    assert (retry.status, retry.body) == (502, first.body) and replayed(retry)
    assert bot.creates() == 1  # and createCall itself was not retried on the 503 either
