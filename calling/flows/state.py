"""Where a call is in its flow: a small, flat value that crosses continue-as-new as JSON.

Nothing in it grows with the call's length: no history, only the current node, what the engine is
waiting for (one prompt, one timer, one operation, each by ref), the menu's attempt and digits, the
sub-flow return points (bounded by the nesting depth) and counters. So a caller who loops a menu 500
times costs the same per step as on the first.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

STATE_VERSION = 1
PHASES = ("new", "running", "leaving", "ended")


@dataclass(frozen=True)
class State:
    phase: str = "new"  # new (before Started), running, leaving (ended or left the call), ended
    flow: str = ""  # current flow id (its path in the bundle)
    node: str = ""  # current node name
    stage: str = ""  # within the node: await_call, prompt, wait, input, op
    stack: tuple[tuple[str, str], ...] = ()  # sub-flow return points: (flow id, node to go on with)
    established: bool = False
    tones: bool = False  # subscribed to tones
    caller: str = ""
    called: str = ""
    now: str = ""  # ISO time of the latest event that carried one: the engine's clock
    seq: int = 0  # last ref number issued
    play: str = ""  # ref of the prompt awaited ("" none)
    timer: str = ""  # ref of the timer running
    op: str = ""  # ref of the operation awaited (record, transfer, invite, redirect)
    attempt: int = 0  # menu attempt, from 1
    digits: str = ""  # keys collected in this attempt
    since: str = ""  # when the awaited operation started (transfer ring time)
    tone_seq: int = -1  # highest tone sequenceId seen
    visits: int = 0  # nodes entered so far
    left: str = ""  # how the bot left the call: hangup, transfer, redirect, handoff
    # A queue node: the line joined ("" none), the caller's last known place, the agent ringing (or last
    # rung, until the line is told), when the wait ends, when the place was last said, and when what plays
    # should end. `attempt` counts music plays failed in a row.
    queued: str = ""
    position: int = 0
    agent: str = ""
    deadline: str = ""
    announced: str = ""
    playing_until: str = ""

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["stack"] = [list(frame) for frame in self.stack]
        return {"v": STATE_VERSION, **data}

    @classmethod
    def from_json(cls, data: Any) -> State:
        if not isinstance(data, dict) or data.get("v") != STATE_VERSION:
            raise ValueError(f"not a flow state of version {STATE_VERSION}")
        fields = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in fields}
        values["stack"] = tuple((str(a), str(b)) for a, b in data.get("stack", ()))
        state = cls(**values)
        if state.phase not in PHASES:
            raise ValueError(f"unknown phase {state.phase!r}")
        return state
