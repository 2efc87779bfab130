"""The engine's queue commands as operations on a line (calling/queues.py), and the line's replies as events.

The orchestration sends these to the line's Durable entity (orchestrations/queue_entity.py); the flow
harness applies them to a `Line` in memory. Both go through here, so they cannot disagree.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from calling import queues
from calling.flows import commands as c
from calling.flows import events as e

#: Characters of a queue's name kept in its entity key (the instance id, `@queue_line@<tenant>:<name>`,
#: stays far below Durable's 256).
MAX_KEY_NAME = 100


def operation(command: c.Command, call_id: str, now: datetime) -> tuple[str, dict[str, Any]]:
    """The line operation and its input for a QueueJoin, QueueOffer or QueueLeave command."""
    base: dict[str, Any] = {"call": call_id, "now": now.isoformat()}
    if isinstance(command, c.QueueJoin):
        return queues.JOIN, {**base, "max_callers": command.max_callers, "hold": command.hold,
                             "agents": list(command.agents)}
    if isinstance(command, c.QueueOffer):
        return queues.OFFER, {**base, "agents": list(command.agents), "routing": command.routing,
                              "rounds": command.rounds, "ring": command.ring_timeout, "rung": command.rung}
    if isinstance(command, c.QueueLeave):
        return queues.LEAVE, {**base, "answered_by": command.answered_by, "wrap_up": command.wrap_up}
    raise TypeError(f"not a queue command: {type(command).__name__}")


def reply_event(command: c.Command, result: Any, at: datetime) -> e.QueueReply | None:
    """The engine event for the line's answer to `command` (None for a leave, which the engine does not await).
    Anything but a reply (no answer in time, an entity error) is `ok` false, `why` error."""
    if isinstance(command, c.QueueLeave) or not isinstance(command, c.QueueJoin | c.QueueOffer):
        return None
    if not isinstance(result, Mapping) or not isinstance(result.get("ok"), bool):
        return e.QueueReply(at=at, ref=command.ref, ok=False, why="error")
    position = result.get("position")
    return e.QueueReply(at=at, ref=command.ref, ok=result["ok"],
                        position=position if isinstance(position, int) and not isinstance(position, bool) else 0,
                        agent=str(result.get("agent") or ""), why=str(result.get("why") or ""))


def entity_key(tenant_id: str, queue: str) -> str:
    """The line's entity key: one line per tenant and queue name, readable in the portal. Azure Storage
    refuses / \\ # ? and control characters in instance ids: a name that needs changing, or that is long
    (a default name is the flow's and the node's), gets a digest of the original so two never share a line."""
    safe = "".join(ch if ch.isalnum() or ch in " ._:-" else "_" for ch in queue)
    if safe != queue or len(safe) > MAX_KEY_NAME:
        digest = hashlib.sha256(queue.encode("utf-8")).hexdigest()[:12]
        safe = f"{safe[:MAX_KEY_NAME - 13]}~{digest}"
    return f"{tenant_id or 'tenant'}:{safe}"
