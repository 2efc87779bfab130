"""The outbox: notifications posted to the bot's callbackUri exactly as Graph posts them.

Per call, in order, one POST at a time; what is queued together goes in one batched envelope
(`commsNotifications` with `value[]`). Each POST carries a fresh RS256 token from the simulator's signer
(aud = the bot's app id, iss = api.botframework.com, tid = the call's tenant), and the `resourceUrl` plus
the legacy `resource` path. Notification faults (duplicate, delay, reorder, drop) are applied here.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import aiohttp

from simulator.clock import HOLD_HEADER

if TYPE_CHECKING:
    from simulator.calls import SimCall
    from simulator.core import Simulator

log = logging.getLogger("simulator.delivery")

#: How many queued notifications of one call may share one POST.
BATCH_LIMIT = 10


@dataclass
class Pending:
    call: SimCall
    notification: dict[str, Any]
    label: str
    summary: str
    #: Posted on its own, never batched with what precedes it (a duplicate arrives as a second POST).
    alone: bool = False
    #: Hears the bot's HTTP response to it (status, body): a participantJoiningResponse. Such a notification
    #: goes in a POST of its own, so the response is its alone.
    on_response: Callable[[int, Any], None] | None = None
    #: Where it goes: the call's callback when it was raised (an answer can move the callback elsewhere).
    url: str = ""

    def __post_init__(self) -> None:
        self.url = self.url or self.call.callback_uri


@dataclass
class _Queue:
    items: deque[Pending] = field(default_factory=deque)
    held: list[Pending] = field(default_factory=list)
    sending: bool = False


class Outbox:
    def __init__(self, sim: Simulator) -> None:
        self._sim = sim
        #: One queue per call and callback: notifications to one endpoint go in order, one POST at a time, and
        #: a worker's are not held up behind a request the app's webhook still holds open (a hand-off).
        self._queues: dict[tuple[str, str], _Queue] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.posts = 0

    def post(self, call: SimCall, change: str, resource: Any, label: str, *, suffix: str = "",
             operation_id: str | None = None, log_summary: bool = True,
             on_response: Callable[[int, Any], None] | None = None) -> None:
        path = f"/operations/{operation_id}" if operation_id else suffix
        notification = {
            "@odata.type": "#microsoft.graph.commsNotification",
            "changeType": change,
            "resource": f"/app/calls/{call.id}{path}",
            "resourceUrl": f"/communications/calls/{call.id}{path}",
            "resourceData": resource,
        }
        pending = Pending(call, notification, label, _summary(label, resource) if log_summary else "",
                          alone=on_response is not None, on_response=on_response)
        fault = self._sim.faults.take_notification(label)
        queue = self._queues.setdefault((call.id, pending.url), _Queue())
        if fault is None:
            self._enqueue(queue, pending)
            return
        self._sim.note(call, f"fault: {fault.kind} the {label} notification"
                       + (f" by {fault.seconds:g} s" if fault.kind == "delay" else ""))
        if fault.kind == "drop":
            return
        if fault.kind == "duplicate":
            self._enqueue(queue, pending)
            self._enqueue(queue, Pending(call, notification, label, pending.summary, alone=True, url=pending.url))
        elif fault.kind == "delay":
            self._sim.clock.call_later(fault.seconds, lambda: self._enqueue(queue, pending))
        else:  # reorder: goes out right after the next notification of this call
            queue.held.append(pending)
            self._sim.clock.call_later(fault.seconds, lambda: self._release(queue))

    def _enqueue(self, queue: _Queue, pending: Pending) -> None:
        queue.items.append(pending)
        self._release(queue, only_if_followed=True)
        if not queue.sending:
            queue.sending = True
            self._sim.clock.enter()
            task = asyncio.get_running_loop().create_task(self._drain(queue))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _release(self, queue: _Queue, *, only_if_followed: bool = False) -> None:
        """Held (reordered) notifications go out behind whatever was queued after them."""
        if not queue.held or (only_if_followed and not queue.items):
            return
        held, queue.held = queue.held, []
        queue.items.extend(held)
        if not only_if_followed and not queue.sending:
            queue.sending = True
            self._sim.clock.enter()
            task = asyncio.get_running_loop().create_task(self._drain(queue))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _drain(self, queue: _Queue) -> None:
        try:
            await asyncio.sleep(0)  # let notifications raised in the same turn join this batch
            while queue.items:
                batch = [queue.items.popleft()]
                while (queue.items and len(batch) < BATCH_LIMIT and not queue.items[0].alone
                       and batch[0].on_response is None):
                    batch.append(queue.items.popleft())
                await self._send(batch)
        finally:
            queue.sending = False
            self._sim.clock.leave()

    def headers(self, tenant_id: str, chain_id: str) -> dict[str, str]:
        """The headers of one POST to the bot: a fresh RS256 token from the simulator's signer (aud = the bot's
        app id, iss = api.botframework.com, tid = `tenant_id`) and the platform's correlation headers."""
        token = self._sim.signer.token(aud=self._sim.bot.app_id, tid=tenant_id)
        return {"Authorization": f"Bearer {token}", "Content-Type": "application/json",
                "User-Agent": "Microsoft-Skype/3.0,(Calling/1.0) teams-calling-simulator",
                "X-Microsoft-Skype-Chain-ID": chain_id,
                "X-Microsoft-Skype-Message-ID": str(uuid.uuid4()),
                "Scenario-ID": str(uuid.uuid4())}

    async def _send(self, batch: list[Pending]) -> None:
        sim = self._sim
        call = batch[0].call
        body = json.dumps({"@odata.type": "#microsoft.graph.commsNotifications",
                           "value": [p.notification for p in batch]}).encode()
        headers = self.headers(call.tenant_id, call.chain_id)
        self.posts += 1
        marks = []
        for pending in batch:
            if pending.summary:
                call.transcript.add(sim.now(), "to-bot", pending.summary, label=pending.label)
                marks.append((len(call.transcript.entries) - 1, pending))
        # The drain's hold on the clock goes with the POST: a local host takes it over once its own busy scope has
        # begun, so a bot that waits on purpose while answering (a hand-off) lets virtual time pass.
        hold = sim.clock.hold()
        sim.clock.leave()
        headers[HOLD_HEADER] = hold
        try:
            url = batch[0].url
            if (urlsplit(url).netloc or url) in sim.dead_workers:
                raise ConnectionRefusedError("the bot's worker is gone")
            async with sim.session.post(url, data=body, headers=headers,
                                        timeout=aiohttp.ClientTimeout(total=30)) as response:
                status = response.status
                text = await response.text()
        except (aiohttp.ClientError, TimeoutError, ConnectionRefusedError) as exc:
            status, text = 0, f"{type(exc).__name__}: {exc}"
        finally:
            sim.clock.enter()
            sim.clock.release(hold)
        outcome = f"{status}" if status else f"not delivered ({text})"
        for index, pending in marks:
            entry = call.transcript.entries[index]
            call.transcript.entries[index] = type(entry)(entry.at, entry.direction, f"{pending.summary}  [{outcome}]",
                                                         entry.detail)
        sim.clock.changed()
        for pending in batch:
            if pending.label == "joining":
                response_body = _json_or_text(text)
                call.joining_responses.append({"status": status, "body": response_body})
                sim.note(call, f"bot answers the join: {status} {json.dumps(response_body)}", "from-bot")
            if pending.on_response is not None:
                pending.on_response(status, _json_or_text(text))
        if status >= 400 or status == 0:
            log.warning("the bot answered %s to a notification for call %s: %s", status or "nothing", call.id,
                        text[:300])

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


def _json_or_text(text: str) -> Any:
    try:
        return json.loads(text) if text else None
    except ValueError:
        return text


def _summary(label: str, resource: Any) -> str:
    if isinstance(resource, list):
        return f"roster: {len(resource)} participant(s)"
    if label == "incoming":
        return "incoming call"
    if label == "tone":
        tone = resource.get("toneInfo", {})
        return f"tone {tone.get('tone')} (sequence {tone.get('sequenceId')})"
    kind = str(resource.get("@odata.type", "")).rsplit(".", 1)[-1]
    if kind.endswith("Operation"):
        result = resource.get("resultInfo") or {}
        code = f" {result.get('code')}/{result.get('subcode')}" if result else ""
        reason = f" {resource['completionReason']}" if resource.get("completionReason") else ""
        return f"{kind} {resource.get('status')}{code}{reason}"
    state = resource.get("state", label)
    result = resource.get("resultInfo")
    if result:
        return f"call {state} {result.get('code')}/{result.get('subcode')} {result.get('message', '')}".rstrip()
    media = resource.get("mediaState", {}).get("audio")
    return f"call {state}" + (f" (audio {media})" if media and state == "established" else "")
