"""Fault injection: the ways real Graph misbehaves, on demand and counted.

Graph faults answer a request with an error (429 with Retry-After, 500, 503) or answer it slowly.
Notification faults duplicate, delay, reorder or drop what the simulator posts to the bot. Each rule
applies `times` times to what it matches, then is spent; the transcript notes every fault applied.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

NotificationFaultKind = Literal["duplicate", "delay", "reorder", "drop"]
NOTIFICATION_FAULTS: tuple[NotificationFaultKind, ...] = ("duplicate", "delay", "reorder", "drop")
GRAPH_FAULT_STATUSES = (429, 500, 502, 503, 504)


@dataclass
class GraphFault:
    """Answer the `times` next requests for `action` (`answer`, `playPrompt`, `create`, `*`...) badly.

    `status` 0 means answer normally, only after `delay` seconds (wall time: the bot's own deadlines
    run on wall time). A 429/503 carries `Retry-After: retry_after` when set.
    """

    action: str
    status: int = 503
    times: int = 1
    retry_after: float | None = None
    delay: float = 0.0

    def __post_init__(self) -> None:
        if self.status and self.status not in GRAPH_FAULT_STATUSES:
            raise ValueError(f"fault status {self.status} is not one of {GRAPH_FAULT_STATUSES} (or 0 for slow)")
        if self.times < 1:
            raise ValueError("times must be at least 1")


@dataclass
class NotificationFault:
    """Misdeliver the `times` next notifications labelled `match`.

    Labels: a call state (`incoming`, `establishing`, `established`, `transferring`, `terminated`...),
    `tone`, `participants`, `joining`, an operation type (`playPrompt`, `record`, `invite`...), or `*`.
    `delay` holds the notification back `seconds` of simulated time; `reorder` sends it after the next one.
    """

    match: str
    kind: NotificationFaultKind
    times: int = 1
    seconds: float = 5.0

    def __post_init__(self) -> None:
        if self.kind not in NOTIFICATION_FAULTS:
            raise ValueError(f"unknown notification fault {self.kind!r}; expected one of "
                             f"{', '.join(NOTIFICATION_FAULTS)}")
        if self.times < 1:
            raise ValueError("times must be at least 1")


@dataclass
class Faults:
    graph: list[GraphFault] = field(default_factory=list)
    notifications: list[NotificationFault] = field(default_factory=list)

    def take_graph(self, action: str) -> GraphFault | None:
        for fault in self.graph:
            if fault.times > 0 and fault.action in (action, "*"):
                fault.times -= 1
                return fault
        return None

    def take_notification(self, label: str) -> NotificationFault | None:
        for fault in self.notifications:
            if fault.times > 0 and fault.match in (label, "*"):
                fault.times -= 1
                return fault
        return None
