"""`queue_line`: the Durable entity holding one call queue's line (calling/queues.py), one per tenant and queue.

Every call waiting in a flow's `queue` node talks to it (orchestrations/session_loop.py): a Durable entity
runs one operation at a time, so two callers never take the same agent or the same place. Its key is
calling.flows.queueing.entity_key(tenant, queue name).
"""

from __future__ import annotations

import logging

import azure.durable_functions as df

bp = df.Blueprint()

ENTITY = "queue_line"
log = logging.getLogger("orchestrations.queue_line")


@bp.entity_trigger(context_name="context", entity_name=ENTITY)
def queue_line(context: df.DurableEntityContext) -> None:
    from calling.queues import Line, QueueInputError

    line = Line.from_json(context.get_state(lambda: None))
    try:
        reply = line.apply(context.operation_name, context.get_input())
    except QueueInputError as exc:  # nothing changed; the caller's session reads this as no answer
        log.error("queue %s: %s", context.entity_key, exc)
        context.set_result({"ok": None, "why": "bad_input", "error": str(exc)[:300]})
        return
    context.set_state(line.to_json())
    context.set_result(reply)
