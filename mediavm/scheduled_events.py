"""Azure Scheduled Events: a media VM instance drains before the platform deletes, reboots or moves it.

A scale set instance learns of its own scale-in (the `Terminate` event of the scale set's terminate
notification, `scheduledEventsProfile.terminateNotificationProfile` in infra/modules/mediavm.bicep), of
platform or user maintenance (`Reboot`, `Redeploy`, `Freeze`) and of a Spot eviction (`Preempt`) from the
instance metadata service (IMDS) inside the VM:

    GET  http://169.254.169.254/metadata/scheduledevents?api-version=2020-07-01   (header Metadata: true)
    POST the same URL, body {"StartRequests": [{"EventId": "..."}]}: "I am ready, go ahead"

Microsoft's documentation ("Azure Metadata Service: Scheduled Events for Windows VMs", "Terminate
notification for Azure Virtual Machine Scale Set instances") says: poll about once a second; the first call
enables the service and may take up to two minutes; `DocumentIncarnation` changes whenever the events do;
events for every VM of the placement group reach every VM, so an event is ours only when its `Resources`
names this instance, whose name is IMDS's `compute.name` (`{scale-set-name}_{instance-id}` in a Uniform
scale set, not the computer name); approving an event lets it proceed for *every* VM it names; an event not
approved starts at its `NotBefore` anyway (a Terminate's is 5 to 15 minutes after the notice).

What the worker does (docs/media.md, "Operating the media VMs"):
- `Terminate`, `Preempt`, `Reboot`, `Redeploy` naming this instance: each ends this process's calls (the VM
  is deleted, or its memory is lost), so the service drains: it takes no more hand-offs, lets live calls end
  for the smaller of MEDIA_WORKER_DRAIN_SECONDS and the time left before `NotBefore` less a margin, hangs up
  the rest, approves the event (only one that names this instance alone) and exits. A worker restarted on an
  instance with such an event pending drains at once, before it takes a call.
- `Freeze` (a pause of seconds; memory and connections survive) and anything else: logged, nothing done.
- IMDS unreachable, slow or answering nonsense: logged, polled again with backoff; the worker goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import aiohttp

from calling import telemetry

if TYPE_CHECKING:
    from mediavm.config import WorkerSettings
    from mediavm.worker import MediaWorker

log = logging.getLogger("mediavm.scheduled_events")

IMDS_URL = "http://169.254.169.254"
EVENTS_PATH = "/metadata/scheduledevents"
EVENTS_API_VERSION = "2020-07-01"
COMPUTE_PATH = "/metadata/instance/compute"
COMPUTE_API_VERSION = "2021-02-01"
SETTING = "MEDIA_SCHEDULED_EVENTS"

#: Events that end this process's calls: the service drains and approves them.
DRAINING_EVENTS = frozenset({"Terminate", "Preempt", "Reboot", "Redeploy"})
#: Microsoft recommends polling once per second (some events give 30 s notice); IMDS allows 5 requests/s.
POLL_SECONDS = 1.0
#: The first request enables the service and may take up to two minutes.
FIRST_CALL_TIMEOUT_SECONDS = 150.0
#: Every later request.
CALL_TIMEOUT_SECONDS = 10.0
#: Backoff after IMDS failures: 1, 2, 4, ... seconds, at most this.
MAX_BACKOFF_SECONDS = 30.0
#: Failures in a row before `media.scheduled_events_unavailable` (once per outage).
UNAVAILABLE_AFTER = 3
#: The drain ends this long before `NotBefore`: hanging up what is left, closing its recordings (their last
#: commit), approving and exiting must fit in it.
DRAIN_MARGIN_SECONDS = 30.0
#: How long the service waits at start for the first look at the events (a restarted worker on an instance
#: being deleted must not take a call); the first call of a VM's life can take longer, it then goes on behind.
STARTUP_WAIT_SECONDS = 5.0
#: Attempts of each request made after the drain (the look before approving, the approval).
APPROVE_ATTEMPTS = 2


class ImdsError(Exception):
    """IMDS did not answer usefully (unreachable, timed out, an error status, or a body we cannot read)."""


@dataclass(frozen=True)
class ScheduledEvent:
    event_id: str
    event_type: str
    status: str
    resources: tuple[str, ...]
    not_before: datetime | None  # None once the event has started (IMDS sends "")
    resource_type: str = "VirtualMachine"
    description: str = ""
    source: str = ""
    duration_seconds: int | None = None  # -1 in the document: unknown

    @classmethod
    def parse(cls, raw: Any) -> ScheduledEvent:
        if not isinstance(raw, dict):
            raise ValueError(f"an event is not an object: {raw!r}")
        event_id, event_type = raw.get("EventId"), raw.get("EventType")
        if not isinstance(event_id, str) or not event_id or not isinstance(event_type, str) or not event_type:
            raise ValueError(f"an event without EventId or EventType: {raw!r}")
        resources = raw.get("Resources")
        resources = [] if resources is None else resources
        if not isinstance(resources, list) or not all(isinstance(r, str) for r in resources):
            raise ValueError(f"event {event_id}: Resources is not a list of names: {resources!r}")
        duration = raw.get("DurationInSeconds")
        return cls(event_id=event_id, event_type=event_type, status=str(raw.get("EventStatus") or ""),
                   resources=tuple(resources), not_before=parse_not_before(raw.get("NotBefore")),
                   resource_type=str(raw.get("ResourceType") or ""), description=str(raw.get("Description") or ""),
                   source=str(raw.get("EventSource") or ""),
                   duration_seconds=duration if isinstance(duration, int) and duration >= 0 else None)

    def names(self, instance: str) -> bool:
        return any(r.lower() == instance.lower() for r in self.resources)

    def only(self, instance: str) -> bool:
        """It names this instance and no other: approving it hurries nobody else's drain."""
        return len(self.resources) == 1 and self.names(instance)


@dataclass(frozen=True)
class EventsDocument:
    incarnation: int
    events: tuple[ScheduledEvent, ...]

    @classmethod
    def parse(cls, body: Any) -> EventsDocument:
        if not isinstance(body, dict):
            raise ValueError(f"the scheduled events document is not an object: {body!r}"[:300])
        incarnation = body.get("DocumentIncarnation")
        if isinstance(incarnation, bool) or not isinstance(incarnation, int | str):
            raise ValueError(f"DocumentIncarnation is missing or not a number: {incarnation!r}")
        events = body.get("Events")
        events = [] if events is None else events
        if not isinstance(events, list):
            raise ValueError(f"Events is not a list: {events!r}"[:300])
        return cls(int(incarnation), tuple(ScheduledEvent.parse(e) for e in events))


def parse_not_before(value: Any) -> datetime | None:
    """`NotBefore` is an RFC 1123 time ("Mon, 19 Sep 2016 18:29:47 GMT"), or "" once the event started."""
    if not value:
        return None
    try:
        when = parsedate_to_datetime(str(value))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"NotBefore is not an RFC 1123 time: {value!r}") from exc
    return when if when.tzinfo else when.replace(tzinfo=UTC)


# --- IMDS -----------------------------------------------------------------------------------------------


class MetadataClient:
    """The two IMDS endpoints the watcher needs. Direct HTTP to IMDS: aiohttp uses no proxy unless told to
    (`trust_env`), and IMDS must never be reached through one."""

    def __init__(self, base_url: str = IMDS_URL) -> None:
        self.base_url = base_url.rstrip("/")
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(headers={"Metadata": "true"})
        return self._session

    async def _request(self, method: str, path: str, api_version: str, seconds: float,
                       body: Any = None) -> Any:
        url = f"{self.base_url}{path}"
        try:
            async with self._http().request(method, url, params={"api-version": api_version}, json=body,
                                            timeout=aiohttp.ClientTimeout(total=seconds)) as response:
                text = await response.text()
                if response.status != 200:
                    raise ImdsError(f"{method} {path}: HTTP {response.status} {text[:200]}")
                if method == "POST":
                    return None
                return await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:  # ImdsError is none of these
            raise ImdsError(f"{method} {path}: {type(exc).__name__}: {exc}") from exc

    async def instance_name(self, seconds: float = CALL_TIMEOUT_SECONDS) -> str:
        """This VM's name as scheduled events name it in `Resources` (IMDS `compute.name`)."""
        compute = await self._request("GET", COMPUTE_PATH, COMPUTE_API_VERSION, seconds)
        name = compute.get("name") if isinstance(compute, dict) else None
        if not isinstance(name, str) or not name:
            raise ImdsError(f"the instance metadata has no compute name: {compute!r}"[:300])
        return name

    async def events(self, seconds: float = CALL_TIMEOUT_SECONDS) -> EventsDocument:
        body = await self._request("GET", EVENTS_PATH, EVENTS_API_VERSION, seconds)
        try:
            return EventsDocument.parse(body)
        except ValueError as exc:
            raise ImdsError(str(exc)) from exc

    async def approve(self, event_ids: Sequence[str], seconds: float = CALL_TIMEOUT_SECONDS) -> None:
        """StartRequests: the platform may start these events now (IMDS answers 200 for a valid id)."""
        await self._request("POST", EVENTS_PATH, EVENTS_API_VERSION, seconds,
                            body={"StartRequests": [{"EventId": event_id} for event_id in event_ids]})

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


# --- the watcher ----------------------------------------------------------------------------------------


class ScheduledEventsWatcher:
    """Polls this instance's scheduled events until one that ends its calls comes, then asks for the drain.

    `on_drain()` is called once, when such an event first shows (the service sets its stop flag); the service
    then drains for `drain_seconds(limit)` and calls `finish()`, which approves the event. It never raises: IMDS
    failures are logged and polled again with backoff.
    """

    def __init__(self, client: MetadataClient, *, on_drain: Callable[[], object], instance: str | None = None,
                 live: Callable[[], int] = lambda: 0, poll_seconds: float = POLL_SECONDS,
                 first_timeout: float = FIRST_CALL_TIMEOUT_SECONDS, timeout: float = CALL_TIMEOUT_SECONDS,
                 max_backoff: float = MAX_BACKOFF_SECONDS, margin_seconds: float = DRAIN_MARGIN_SECONDS,
                 drain_limit: float = math.inf, now: Callable[[], datetime] = lambda: datetime.now(UTC),
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self._client = client
        self._on_drain = on_drain
        self._live = live
        self.instance = instance
        self._poll = poll_seconds
        self._first_timeout = first_timeout
        self._timeout = timeout
        self._max_backoff = max_backoff
        self._margin = margin_seconds
        self._drain_limit = drain_limit
        self._now = now
        self._sleep = sleep
        self._answered_once = False
        self.incarnation: int | None = None
        self.looks = 0  # documents read
        self.failures = 0  # IMDS failures in a row
        self.handled: set[str] = set()  # event ids already considered: a new incarnation does not redo them
        self.pending: tuple[ScheduledEvent, ...] = ()  # the events the service drains for
        self.first_look = asyncio.Event()  # set after the first document (or failure), for the startup wait

    # -- polling

    async def run(self) -> None:
        """Poll until an event asks for the drain (or the task is cancelled)."""
        while not self.pending:
            try:
                answered = await self.look()
            except Exception as exc:  # never let the watcher die: a bug here must not stop the drain later
                await self._failed(exc)
                continue
            if answered and not self.pending:
                await self._sleep(self._poll)

    async def look(self) -> bool:
        """One poll: the instance's name (once), the document, and what it asks of this instance. False: IMDS
        failed (after the backoff wait)."""
        timeout = self._timeout if self._answered_once else self._first_timeout
        try:
            if self.instance is None:
                self.instance = await self._client.instance_name(timeout)
                log.info("scheduled events: this instance is %s", self.instance)
            document = await self._client.events(timeout)
        except ImdsError as exc:
            await self._failed(exc)
            return False
        self._answered_once = True
        if self.failures:
            log.info("scheduled events: IMDS answers again after %d failure(s)", self.failures)
            self.failures = 0
        self.looks += 1
        if document.incarnation != self.incarnation:
            self.incarnation = document.incarnation
            self._consider(document)
        self.first_look.set()
        return True

    async def _failed(self, exc: Exception) -> None:
        self.failures += 1
        self.first_look.set()
        wait = min(self._max_backoff, self._poll * 2 ** min(self.failures - 1, 16))
        if isinstance(exc, ImdsError):
            log.warning("scheduled events: IMDS failed (%d in a row): %s; trying again in %g s", self.failures, exc,
                        wait)
        else:
            log.exception("scheduled events: the watcher failed (%d in a row); trying again in %g s",
                          self.failures, wait)
        if self.failures == UNAVAILABLE_AFTER:
            telemetry.emit("media.scheduled_events_unavailable", error=str(exc)[:300], in_a_row=self.failures)
        await self._sleep(wait)

    def _consider(self, document: EventsDocument) -> None:
        assert self.instance is not None
        draining: list[ScheduledEvent] = []
        for event in document.events:
            if event.event_id in self.handled or not event.names(self.instance):
                continue  # seen already, or another VM's (events reach every VM of the placement group)
            self.handled.add(event.event_id)
            drain = event.event_type in DRAINING_EVENTS
            log.warning("scheduled event %s for this instance (%s): %s %s, not before %s, from %s: %s",
                        event.event_id, self.instance, event.event_type, event.status or "?",
                        event.not_before.isoformat() if event.not_before else "now", event.source or "?",
                        "draining" if drain else "nothing to do")
            telemetry.emit("media.scheduled_event", event_id=event.event_id, event_type=event.event_type,
                           event_status=event.status or None, event_source=event.source or None,
                           not_before=event.not_before.isoformat() if event.not_before else None,
                           duration_seconds=event.duration_seconds, instance=self.instance,
                           action="drain" if drain else "none")
            if drain:
                draining.append(event)
        if draining and not self.pending:
            self.pending = tuple(draining)
            seconds = self.drain_seconds(self._drain_limit)
            telemetry.emit("media.draining", why="scheduled_event", event_type=draining[0].event_type,
                           event_id=draining[0].event_id, instance=self.instance, live=self._live(),
                           seconds=round(seconds, 1))
            self._on_drain()

    # -- the drain

    def drain_seconds(self, limit: float) -> float:
        """How long live calls may go on: `limit` (MEDIA_WORKER_DRAIN_SECONDS), or less so that the drain ends
        DRAIN_MARGIN_SECONDS before the earliest `NotBefore` of the events drained for (0 once one started)."""
        if not self.pending:
            return limit
        starts = [e.not_before for e in self.pending]
        if any(s is None for s in starts):
            return 0.0
        earliest = min(s for s in starts if s is not None)
        return max(0.0, min(limit, (earliest - self._now()).total_seconds() - self._margin))

    async def approve(self) -> list[str]:
        """After the drain: approve the events drained for that are still pending and name this instance alone.

        Returns the ids approved. An event that also names other instances is left to its `NotBefore`, since
        approving it would let it proceed for them too, before their own drains end."""
        if not self.pending or self.instance is None:
            return []
        document: EventsDocument | None = None
        for _ in range(APPROVE_ATTEMPTS):
            try:
                document = await self._client.events(self._timeout)
                break
            except ImdsError as exc:
                log.warning("scheduled events: looking before the approval failed: %s", exc)
        current = {e.event_id: e for e in document.events} if document is not None else {}
        ids: list[str] = []
        for event in self.pending:
            now = current.get(event.event_id, event if document is None else None)
            if now is None:
                log.info("scheduled event %s (%s) is gone: nothing to approve", event.event_id, event.event_type)
                telemetry.emit("media.scheduled_event_not_approved", event_id=event.event_id,
                               event_type=event.event_type, why="gone")
            elif not now.only(self.instance):
                log.warning("scheduled event %s (%s) also names %s: not approving it (it would hurry their "
                            "drains); it starts at its NotBefore", event.event_id, event.event_type,
                            ", ".join(r for r in now.resources if r.lower() != self.instance.lower()))
                telemetry.emit("media.scheduled_event_not_approved", event_id=event.event_id,
                               event_type=event.event_type, why="shared")
            else:
                ids.append(event.event_id)
        if not ids:
            return []
        for attempt in range(1, APPROVE_ATTEMPTS + 1):
            try:
                await self._client.approve(ids, self._timeout)
            except ImdsError as exc:
                log.warning("scheduled events: approving %s failed (attempt %d): %s", ", ".join(ids), attempt, exc)
                continue
            log.info("scheduled events: approved %s: the platform may go ahead", ", ".join(ids))
            for event in self.pending:
                if event.event_id in ids:
                    telemetry.emit("media.scheduled_event_approved", event_id=event.event_id,
                                   event_type=event.event_type)
            return ids
        for event_id in ids:
            telemetry.emit("media.scheduled_event_not_approved", event_id=event_id,
                           event_type=next(e.event_type for e in self.pending if e.event_id == event_id),
                           why="failed")
        return []


# --- the service's hook ---------------------------------------------------------------------------------


def imds_url(env: Mapping[str, str], engine: str) -> tuple[str | None, list[str]]:
    """MEDIA_SCHEDULED_EVENTS: `on` (IMDS), `off`, or the base URL of a stand-in (loopback only).
    Unset: on with MEDIA_ENGINE=windows (a media VM in Azure), off otherwise. Returns (URL or None, problems)."""
    raw = env.get(SETTING, "").strip()
    if not raw:
        return (IMDS_URL if engine == "windows" else None), []
    if raw.lower() == "on":
        return IMDS_URL, []
    if raw.lower() == "off":
        return None, []
    parts = urlsplit(raw)
    if parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost", "::1", "169.254.169.254"):
        return raw.rstrip("/"), []
    return None, [f"{SETTING} must be on, off, or the http URL of an IMDS stand-in on loopback, got {raw!r}"]


def check(env: Mapping[str, str], engine: str = "loopback") -> list[str]:
    """The setting's problems, for the service's settings check."""
    return imds_url(env, engine)[1]


class Watch:
    """What `python -m mediavm` runs beside the worker (mediavm/__main__.py `serve`)."""

    def __init__(self, worker: MediaWorker, watcher: ScheduledEventsWatcher | None) -> None:
        self._worker = worker
        self.watcher = watcher
        self._task: asyncio.Task[None] | None = None
        self._client: MetadataClient | None = None

    def drain_seconds(self, limit: float) -> float:
        return self.watcher.drain_seconds(limit) if self.watcher is not None else limit

    async def finish(self) -> None:
        """After the drain: stop polling, approve the event drained for, say the service stopped."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        approved: list[str] = []
        pending = self.watcher.pending if self.watcher is not None else ()
        if self.watcher is not None and pending:
            approved = await self.watcher.approve()
        if self._client is not None:
            await self._client.close()
        telemetry.emit("media.stopped", why="scheduled_event" if pending else "stop",
                       event_type=pending[0].event_type if pending else None,
                       approved=len(approved) if pending else None, taken=self._worker.taken)


async def watch(worker: MediaWorker, settings: WorkerSettings, stop: asyncio.Event,
                env: Mapping[str, str]) -> Watch:
    """Start watching this instance's scheduled events (when MEDIA_SCHEDULED_EVENTS says so): an event that
    ends its calls sets `stop`. Waits up to STARTUP_WAIT_SECONDS for the first look, so that a worker restarted
    on an instance about to go drains before it takes a call."""
    url, problems = imds_url(env, settings.engine)
    for problem in problems:
        log.error("%s: scale-in and maintenance will not drain this worker", problem)
    if url is None:
        return Watch(worker, None)
    client = MetadataClient(url)
    watcher = ScheduledEventsWatcher(client, on_drain=stop.set, live=lambda: len(worker.live),
                                     drain_limit=settings.drain_seconds)
    result = Watch(worker, watcher)
    result._client = client
    result._task = asyncio.create_task(watcher.run())
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(watcher.first_look.wait(), STARTUP_WAIT_SECONDS)
    if not watcher.first_look.is_set():
        log.warning("scheduled events: no answer from IMDS within %g s (the first call may take two minutes); "
                    "taking calls, still watching", STARTUP_WAIT_SECONDS)
    log.info("watching scheduled events at %s", url)
    return result
