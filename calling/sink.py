"""The `CallEventSink` boundary: where a call's session runs, and the Durable event that carries its notifications.

The webhook (calling/webhook.py) hands every later event of a call to a sink; the Functions adapter
(functions/calls.py) implements it by raising `NOTIFICATION_EVENT` on the call's orchestration, which waits
for it (orchestrations/). Both sides name the event from here, and this module imports nothing heavy, so
the app's trigger modules can use it at import time (cold start).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

# The external event name a call's orchestration waits for; its data is {"notifications": [...]}.
NOTIFICATION_EVENT = "graph_notification"


class CallEventSink(Protocol):
    """Where a call's session runs: started when the call is answered, then fed the call's notifications."""

    async def deliver(self, call_id: str, notifications: list[Mapping[str, Any]]) -> bool:
        """Returns False when no one runs that call (logged, dropped)."""

    async def start(self, call_id: str, session: Mapping[str, Any]) -> None:
        """Start the call's session (the `call_session` orchestration, instance id = call id)."""
