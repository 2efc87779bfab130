"""Idempotency-Key for the outbound endpoints: a retried POST gets the first answer back, never a second call.

The semantics are the IETF draft "The Idempotency-Key HTTP Header Field" (draft-ietf-httpapi-idempotency-key-
header), as Stripe and others implement it:

- The first request with a key is processed; its answer is recorded against key -> (fingerprint of the request,
  answer). The fingerprint is the endpoint and the JSON body (key order and whitespace do not matter).
- A retry with the same key and the same request gets the recorded answer again (`Idempotent-Replayed: true`),
  whatever it was: 202 with the same callId, or the same error. Nothing is asked of Graph.
- The same key with a different request is 422 (the draft's status for a key reused with another payload; 409
  stays what the draft makes it, "the first request is still running, retry unchanged").
- A retry while the first request still runs is 409 with `Retry-After` (the draft: MUST be a conflict; waiting
  would hold an instance and the caller's connection for as long as the first request takes).
- Keys expire `IDEMPOTENCY_KEY_TTL_HOURS` (default 24) after their first request; then the key is new again.

What is not recorded, so that a retry with the same key is processed afresh: answers that say nothing happened
and a retry may succeed (`Answer.retryable`: a 400, or Graph throttled/unavailable). Everything else is, because
a call may have rung: a placed call, a session that could not start (the call rang and was hung up), a Graph
failure without a clear answer (a timeout may have created the call), an unexpected error.

Failures of the store never place a call blindly:

- The store cannot be reached (or holds something unreadable) before the call: 503 `idempotency_unavailable`
  with `Retry-After`, nothing placed. Placing without the reservation would break the promise the key asks for.
- The call was placed but its answer could not be recorded: the caller still gets the real answer; the key
  stays reserved, so a retry gets 409 `idempotency_key_in_use` while the first request could still be running
  (`IN_FLIGHT_LIMIT`, host.json's functionTimeout), then 409 `idempotency_outcome_unknown` until the key
  expires. It never places a second call: the first may have rung someone.
- A reservation whose answer was lost on the way back (the SDK retried the create) is recognised by its token.

Stores: `BlobKeyStore` (Blob Storage with the app's identity: Azure, Azurite locally) keeps keys across Function
instances: the reservation is a create with `If-None-Match: *`, the answer an update with `If-Match` on the
reservation's ETag. `MemoryKeyStore` is one process's, for local development and tests. azure-storage-blob is
imported where it is used, never with the app (cold start).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from calling import telemetry

log = logging.getLogger("calling.idempotency")

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_LENGTH = 255
DEFAULT_TTL = timedelta(hours=24)
#: How long a reservation without an answer may belong to a request still running: host.json's functionTimeout,
#: after which the host has ended the invocation (tests/test_idempotency.py keeps the two equal).
IN_FLIGHT_LIMIT = timedelta(minutes=10)
#: Retry-After (seconds) for a retry while the first request runs: placing a call takes a second or two.
IN_FLIGHT_RETRY_AFTER = 2
#: Retry-After (seconds) when the store cannot be reached.
UNAVAILABLE_RETRY_AFTER = 5
RECORD_VERSION = 1

#: A bare key (Stripe style): visible ASCII without quotes, commas, backslashes or spaces.
_BARE_KEY = re.compile(r'^[!#-+\--\[\]-~]+$')


class KeyRefused(ValueError):
    """The Idempotency-Key header is malformed; the message says how (a 400 reason)."""


class StoreUnavailable(Exception):
    """The key store failed: unreachable, refused, or holding something unreadable."""


@dataclass(frozen=True)
class Answer:
    """An HTTP answer of an outbound endpoint: what is sent, recorded and replayed.

    `retryable`: nothing happened (the request was refused before any call, or Graph refused it as throttled or
    unavailable), so a retry with the same key is processed afresh instead of getting this answer back.
    """

    status: int
    body: Mapping[str, Any] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    retryable: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, "body": None if self.body is None else dict(self.body),
                "headers": dict(self.headers)}

    @classmethod
    def from_json(cls, data: Any) -> Answer:
        if not isinstance(data, Mapping) or not isinstance(data.get("status"), int):
            raise ValueError("answer must be an object with an integer status")
        body, headers = data.get("body"), data.get("headers") or {}
        if body is not None and not isinstance(body, Mapping):
            raise ValueError("answer body must be an object or null")
        if not isinstance(headers, Mapping) or not all(isinstance(v, str) for v in headers.values()):
            raise ValueError("answer headers must map names to strings")
        return cls(data["status"], body, {str(k): v for k, v in headers.items()})


@dataclass(frozen=True)
class Record:
    """What the store keeps per key: the first request's fingerprint, and its answer once it has one."""

    fingerprint: str
    token: str  # names the request that reserved the key (its own reservation, seen again after a lost answer)
    created: datetime
    expires: datetime
    answer: Answer | None = None
    finished: datetime | None = None

    def expired(self, now: datetime) -> bool:
        return now >= self.expires

    def to_json(self) -> bytes:
        return json.dumps({
            "version": RECORD_VERSION, "state": "pending" if self.answer is None else "done",
            "fingerprint": self.fingerprint, "token": self.token, "created": self.created.isoformat(),
            "expires": self.expires.isoformat(), "finished": self.finished.isoformat() if self.finished else None,
            "answer": self.answer.to_json() if self.answer is not None else None,
        }, separators=(",", ":")).encode("utf-8")

    @classmethod
    def from_json(cls, raw: bytes) -> Record:
        """Raises ValueError for anything that is not a record this code wrote."""
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"not a JSON record: {exc}") from None
        if not isinstance(data, Mapping) or data.get("version") != RECORD_VERSION:
            raise ValueError(f"not an idempotency record of version {RECORD_VERSION}")
        try:
            created, expires = _time(data["created"]), _time(data["expires"])
            finished = _time(data["finished"]) if data.get("finished") else None
            fingerprint, token = data["fingerprint"], data["token"]
        except (KeyError, TypeError) as exc:
            raise ValueError(f"idempotency record lacks {exc}") from None
        if not isinstance(fingerprint, str) or not isinstance(token, str):
            raise ValueError("idempotency record's fingerprint and token must be strings")
        answer = Answer.from_json(data["answer"]) if data.get("answer") is not None else None
        return cls(fingerprint, token, created, expires, answer, finished)


def _time(value: Any) -> datetime:
    if not isinstance(value, str):
        raise ValueError(f"not a time: {value!r}")
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError(f"time without a zone: {value!r}")
    return parsed


# --- the request side --------------------------------------------------------------------------------------


def parse_key(raw: str | None) -> str | None:
    """The key of an `Idempotency-Key` header, or None without one.

    The draft makes the value a Structured Field String (`"8e03978e-..."`, RFC 8941); Stripe and most clients
    send it bare. Both are accepted and name the same key. Raises KeyRefused for anything else, including two
    keys (the draft forbids more than one field; a proxy joins them with a comma).
    """
    if raw is None:
        return None
    text = raw.strip(" \t")
    if not text:
        raise KeyRefused(f"{HEADER} is empty: send a unique key, such as a UUID")
    if text.startswith('"'):
        key, rest = _sf_string(text)
        if rest.strip(" \t"):
            raise KeyRefused(f"{HEADER} holds more than one key, or text after its closing quote: send one key")
        if not key:
            raise KeyRefused(f"{HEADER} is empty: send a unique key, such as a UUID")
    elif "," in text:
        raise KeyRefused(f"{HEADER} holds more than one key: send one key per request")
    elif not _BARE_KEY.match(text):
        raise KeyRefused(f"{HEADER} must be printable ASCII: a quoted string (\"...\") or a key without spaces, "
                         "quotes, commas or backslashes")
    else:
        key = text
    if len(key) > MAX_KEY_LENGTH:
        raise KeyRefused(f"{HEADER} is longer than {MAX_KEY_LENGTH} characters")
    return key


def _sf_string(text: str) -> tuple[str, str]:
    """RFC 8941 sf-string: printable ASCII between quotes, `\\"` and `\\\\` the only escapes."""
    out: list[str] = []
    index = 1
    while index < len(text):
        char = text[index]
        if char == "\\":
            if index + 1 >= len(text) or text[index + 1] not in '"\\':
                raise KeyRefused(f'{HEADER}: inside quotes only \\" and \\\\ may be escaped')
            out.append(text[index + 1])
            index += 2
            continue
        if char == '"':
            return "".join(out), text[index + 1:]
        if not " " <= char <= "~":
            raise KeyRefused(f"{HEADER} must be printable ASCII")
        out.append(char)
        index += 1
    raise KeyRefused(f'{HEADER} starts with a quote but does not end with one')


def fingerprint(route: str, data: Any) -> str:
    """The request a key was first used for: its endpoint and its JSON body, canonical (sorted keys, no spaces)."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(f"{route}\n{text}".encode()).hexdigest()


def key_name(key: str) -> str:
    """Where a key is stored: its SHA-256, so no client-chosen text becomes a blob path."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest() + ".json"


# --- the decisions -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    """This request holds the key: `etag` is the version of the reservation it wrote."""

    name: str
    etag: str


class KeyStore(Protocol):
    async def claim(self, name: str, record: Record, now: datetime) -> Claim | Record:
        """Reserve `name` with `record` if it is free or expired (Claim); otherwise the record that holds it.

        Atomic across everyone sharing the store. Raises StoreUnavailable.
        """

    async def finish(self, claim: Claim, record: Record) -> None:
        """Replace the reservation with the record of its answer. Raises StoreUnavailable."""

    async def release(self, claim: Claim) -> None:
        """Drop the reservation: the key is free again. Raises StoreUnavailable."""


async def run(store: KeyStore, key: str, request: str, attempt: Callable[[], Awaitable[Answer]], *,
              now: Callable[[], datetime], ttl: timedelta = DEFAULT_TTL) -> Answer:
    """Answer a request carrying an Idempotency-Key: `attempt` runs at most once per key and fingerprint."""
    started = now()
    mine = Record(request, uuid.uuid4().hex, started, started + ttl)
    try:
        claimed = await store.claim(key_name(key), mine, started)
    except Exception as exc:  # StoreUnavailable, or a bug: either way, fail closed (no call)
        _store_failed("claim", exc)
        return Answer(503, {"error": "idempotency_unavailable",
                            "reason": f"the {HEADER} store cannot be reached, so no call was placed (without the "
                                      "key's record a retry could ring twice); retry later, or send the request "
                                      f"without {HEADER}"},
                      {"Retry-After": str(UNAVAILABLE_RETRY_AFTER)})
    if isinstance(claimed, Record):
        answer = answer_for(claimed, request, started)
        if REPLAYED_HEADER in answer.headers:
            telemetry.emit("call.place_replayed", status=answer.status)
        return answer
    answer = await attempt()
    try:
        if answer.retryable:
            await store.release(claimed)
        else:
            await store.finish(claimed, replace(mine, answer=answer, finished=now()))
    except Exception as exc:  # the answer stands: it says what happened (a call may have been placed)
        _store_failed("finish", exc, status=answer.status)
    return answer


def answer_for(record: Record, request: str, now: datetime) -> Answer:
    """A later request with a key that is taken: the recorded answer, or why there is none."""
    if record.fingerprint != request:
        return Answer(422, {"error": "idempotency_key_reused",
                            "reason": f"this {HEADER} was first used for a different request (another body or "
                                      "endpoint); a key names one request: send a new key for a new request"})
    if record.answer is not None:
        return replace(record.answer, headers={**record.answer.headers, REPLAYED_HEADER: "true"})
    if now - record.created < IN_FLIGHT_LIMIT:
        return Answer(409, {"error": "idempotency_key_in_use",
                            "reason": f"the first request with this {HEADER} is still being processed; retry in "
                                      f"{IN_FLIGHT_RETRY_AFTER} s to get its answer"},
                      {"Retry-After": str(IN_FLIGHT_RETRY_AFTER)})
    return Answer(409, {"error": "idempotency_outcome_unknown",
                        "reason": f"the first request with this {HEADER} (at {record.created.isoformat()}) ended "
                                  "without recording its answer, and it may have placed a call, so this key places "
                                  "none; check for the call (event call.placed) before sending a new key. The key "
                                  f"expires at {record.expires.isoformat()}"})


def _store_failed(stage: str, exc: Exception, *, status: int | None = None) -> None:
    trace = not isinstance(exc, StoreUnavailable)  # anything else is a bug: keep its stack
    if stage == "claim":
        log.error("the Idempotency-Key store failed, so no call is placed: %s", exc, exc_info=trace)
    else:
        log.error("the answer (%s) was given but not recorded in the Idempotency-Key store; a retry with this key "
                  "gets 409 and places no call: %s", status, exc, exc_info=trace)
    telemetry.emit("call.idempotency_failed", stage=stage, status=status, error=str(exc)[:300])


# --- stores ------------------------------------------------------------------------------------------------


class MemoryKeyStore:
    """This process's keys: local development and tests. Function instances do not share it."""

    def __init__(self) -> None:
        self._records: dict[str, tuple[Record, str]] = {}
        self._lock = threading.Lock()
        self._version = 0

    async def claim(self, name: str, record: Record, now: datetime) -> Claim | Record:
        with self._lock:
            for stale in [n for n, (r, _) in self._records.items() if r.expired(now)]:
                del self._records[stale]
            held = self._records.get(name)
            if held is not None:
                return held[0]
            return Claim(name, self._put(name, record))

    async def finish(self, claim: Claim, record: Record) -> None:
        with self._lock:
            held = self._records.get(claim.name)
            if held is None or held[1] != claim.etag:
                raise StoreUnavailable("the reservation was replaced or dropped before its answer was recorded")
            self._put(claim.name, record)

    async def release(self, claim: Claim) -> None:
        with self._lock:
            held = self._records.get(claim.name)
            if held is not None and held[1] == claim.etag:
                del self._records[claim.name]

    def _put(self, name: str, record: Record) -> str:
        self._version += 1
        self._records[name] = (record, str(self._version))
        return str(self._version)


class BlobKeyStore:
    """Keys as small JSON blobs in a container (IDEMPOTENCY_CONTAINER_URL), written with the app's identity.

    Shared by every Function instance. Reserving is a create that fails when the blob exists (`If-None-Match:
    *`); an expired record is replaced only if it is still the version that was read (`If-Match`), and so is
    the reservation when its answer is recorded: two instances never both hold a key. Requests fail fast (3 s
    to connect, two retries a second apart) rather than the SDK's default minute of retries: the caller waits.
    """

    def __init__(self, container_url: str, credential: Any) -> None:
        self.container_url = container_url.rstrip("/")
        self._credential = credential

    @asynccontextmanager
    async def _container(self) -> AsyncIterator[Any]:
        from azure.storage.blob.aio import ContainerClient, LinearRetry

        # A client per operation, as for recordings: keyed requests are rare, and no pool outlives its loop.
        async with ContainerClient.from_container_url(
                self.container_url, credential=self._credential, connection_timeout=3, read_timeout=10,
                retry_policy=LinearRetry(backoff=1, retry_total=2, random_jitter_range=1)) as client:
            yield client

    async def claim(self, name: str, record: Record, now: datetime) -> Claim | Record:
        from azure.core import MatchConditions
        from azure.core.exceptions import AzureError, ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
        from azure.storage.blob import ContentSettings

        data, json_type = record.to_json(), ContentSettings(content_type="application/json")
        try:
            async with self._container() as container:
                blob = container.get_blob_client(name)
                for _ in range(3):  # a record that vanishes or changes between the reads: look again
                    try:
                        created = await blob.upload_blob(data, overwrite=False, content_settings=json_type)
                        return Claim(name, str(created["etag"]))
                    except ResourceExistsError:
                        pass  # the key is held: read what holds it, below
                    try:
                        download = await blob.download_blob()
                        held, etag = Record.from_json(await download.readall()), str(download.properties.etag)
                    except ResourceNotFoundError:
                        continue  # released meanwhile
                    if held.token == record.token:
                        return Claim(name, etag)  # our own create: the SDK retried it after a lost answer
                    if not held.expired(now):
                        return held
                    try:
                        replaced = await blob.upload_blob(data, overwrite=True, etag=etag,
                                                          match_condition=MatchConditions.IfNotModified,
                                                          content_settings=json_type)
                        return Claim(name, str(replaced["etag"]))
                    except (ResourceModifiedError, ResourceNotFoundError):
                        continue  # another request replaced it first
        except AzureError as exc:
            raise StoreUnavailable(_first_line(exc)) from exc
        except ValueError as exc:
            raise StoreUnavailable(f"the record of this key is unreadable: {exc}") from exc
        raise StoreUnavailable("the record of this key kept changing while it was read")

    async def finish(self, claim: Claim, record: Record) -> None:
        from azure.core import MatchConditions
        from azure.core.exceptions import AzureError
        from azure.storage.blob import ContentSettings

        try:
            async with self._container() as container:
                await container.get_blob_client(claim.name).upload_blob(
                    record.to_json(), overwrite=True, etag=claim.etag, match_condition=MatchConditions.IfNotModified,
                    content_settings=ContentSettings(content_type="application/json"))
        except AzureError as exc:
            raise StoreUnavailable(_first_line(exc)) from exc

    async def release(self, claim: Claim) -> None:
        from azure.core import MatchConditions
        from azure.core.exceptions import AzureError, ResourceModifiedError, ResourceNotFoundError

        try:
            async with self._container() as container:
                await container.get_blob_client(claim.name).delete_blob(
                    etag=claim.etag, match_condition=MatchConditions.IfNotModified)
        except (ResourceNotFoundError, ResourceModifiedError):
            return  # gone already, or no longer ours: nothing of ours to drop
        except AzureError as exc:
            raise StoreUnavailable(_first_line(exc)) from exc


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]
