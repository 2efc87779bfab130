"""Fault injection: the ways real Graph misbehaves, on demand and counted.

Graph faults answer a request with an error (429 with Retry-After, 500, 503) or answer it slowly.
Notification faults duplicate, delay, reorder or drop what the simulator posts to the bot. Each rule
applies `times` times to what it matches, then is spent; the transcript notes every fault applied. With a
`rate` below 1 a rule applies to that share of what it matches, drawn from the seeded `Faults.rng`, so
a campaign of random faults replays the same way every time.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Literal

NotificationFaultKind = Literal["duplicate", "delay", "reorder", "drop"]
NOTIFICATION_FAULTS: tuple[NotificationFaultKind, ...] = ("duplicate", "delay", "reorder", "drop")
GRAPH_FAULT_STATUSES = (429, 500, 502, 503, 504)


@dataclass
class GraphFault:
    """Answer the `times` next requests for `action` (`answer`, `playPrompt`, `create`, `*`...) badly.

    `status` 0 means answer normally, only after `delay` seconds (wall time: the bot's own deadlines
    run on wall time). A 429/503 carries `Retry-After: retry_after` when set. `applied`: Graph carries the
    request out and only then answers with the error, as when its answer is lost on the way (a call that
    was created although the bot was told 500), so a blind retry does the work twice.
    """

    action: str
    status: int = 503
    times: int = 1
    retry_after: float | None = None
    delay: float = 0.0
    rate: float = 1.0  # the share of matching requests it applies to (drawn from Faults.rng)
    applied: bool = False

    def __post_init__(self) -> None:
        if self.applied and not self.status:
            raise ValueError("an applied fault needs an error status")
        if self.status and self.status not in GRAPH_FAULT_STATUSES:
            raise ValueError(f"fault status {self.status} is not one of {GRAPH_FAULT_STATUSES} (or 0 for slow)")
        if self.times < 1:
            raise ValueError("times must be at least 1")
        if not 0 < self.rate <= 1:
            raise ValueError("rate must be more than 0 and at most 1")


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
    rate: float = 1.0  # the share of matching notifications it applies to (drawn from Faults.rng)

    def __post_init__(self) -> None:
        if self.kind not in NOTIFICATION_FAULTS:
            raise ValueError(f"unknown notification fault {self.kind!r}; expected one of "
                             f"{', '.join(NOTIFICATION_FAULTS)}")
        if self.times < 1:
            raise ValueError("times must be at least 1")
        if not 0 < self.rate <= 1:
            raise ValueError("rate must be more than 0 and at most 1")


@dataclass
class Faults:
    graph: list[GraphFault] = field(default_factory=list)
    notifications: list[NotificationFault] = field(default_factory=list)
    #: Where rules with a rate below 1 draw; seed it for a campaign that replays exactly.
    rng: random.Random = field(default_factory=lambda: random.Random(0))  # noqa: S311 (fault injection, not secrets)

    def take_graph(self, action: str) -> GraphFault | None:
        for fault in self.graph:
            if fault.times > 0 and fault.action in (action, "*") and self._draw(fault.rate):
                fault.times -= 1
                return fault
        return None

    def take_notification(self, label: str) -> NotificationFault | None:
        for fault in self.notifications:
            if fault.times > 0 and fault.match in (label, "*") and self._draw(fault.rate):
                fault.times -= 1
                return fault
        return None

    def _draw(self, rate: float) -> bool:
        return rate >= 1 or self.rng.random() < rate
