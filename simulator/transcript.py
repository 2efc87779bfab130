"""The timeline of a simulated call: every notification, every request, what the caller did and heard.

One list of entries per call, in the order things happened, on the simulation's clock. It reads as text in
a terminal (`render`) and as JSON (`to_json`) for tools and test failure reports.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Direction = Literal["to-bot", "from-bot", "caller", "sim"]

_ARROWS: dict[str, str] = {"to-bot": "→ bot ", "from-bot": "← bot ", "caller": "caller", "sim": "  sim "}


@dataclass(frozen=True)
class Entry:
    at: float
    direction: Direction
    summary: str
    detail: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"at": round(self.at, 3), "direction": self.direction, "summary": self.summary,
                **({"detail": self.detail} if self.detail else {})}


@dataclass
class Transcript:
    call_id: str
    title: str = ""
    entries: list[Entry] = field(default_factory=list)

    def add(self, at: float, direction: Direction, summary: str, **detail: Any) -> Entry:
        entry = Entry(at, direction, summary, detail)
        self.entries.append(entry)
        return entry

    def to_json(self) -> dict[str, Any]:
        return {"callId": self.call_id, "title": self.title, "entries": [e.to_json() for e in self.entries]}

    def render(self, *, color: bool = False) -> str:
        """One line per entry: seconds since the call began, who spoke, what happened."""
        lines = [f"call {self.call_id}" + (f"  ({self.title})" if self.title else "")]
        start = self.entries[0].at if self.entries else 0.0
        for entry in self.entries:
            arrow = _ARROWS[entry.direction]
            if color:
                arrow = _paint(entry.direction, arrow)
            lines.append(f"  {entry.at - start:8.3f}s  {arrow}  {entry.summary}")
        return "\n".join(lines)


def render_all(transcripts: list[Transcript], *, color: bool = False) -> str:
    return "\n\n".join(t.render(color=color) for t in transcripts)


_COLORS = {"to-bot": "36", "from-bot": "33", "caller": "32", "sim": "90"}


def _paint(direction: str, text: str) -> str:
    return f"\033[{_COLORS[direction]}m{text}\033[0m"
