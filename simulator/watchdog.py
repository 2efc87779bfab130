"""The rule every call keeps, whatever its flow and whatever Graph did: nobody is left in silence.

- An answered call that is still up has a running session, or the bot has asked Graph to hang it up.
  (A bot-placed second call of a consultative transfer belongs to the session in its callback path.)
- A session never outlives its call by more than GRACE seconds; a session for a call the simulator never
  had (a forged or fuzzed id) ends within GRACE of its start.
- A session never fails: a failed orchestration left its call to chance.
`check` reads what the simulator saw and what the local host runs. `Simulation` runs it when it closes: after
SETTLE seconds more of the calls as they are, and again once every caller still on the line has hung up
and GRACE seconds have passed, so every test on the simulator checks it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from simulator.calls import SimCall

#: How long the watchdog lets calls go on before it looks: zombies often appear only as a flow ends.
SETTLE = 60.0
#: How long a session may outlive its call.
GRACE = 300.0
ORCHESTRATOR = "call_session"


@dataclass(frozen=True)
class Violation:
    call_id: str
    rule: str
    detail: str

    def __str__(self) -> str:
        return f"{self.call_id}: {self.rule}: {self.detail}"


def session_of(call: SimCall) -> str:
    """The session a call's notifications go to: its own, or the one in its callback path."""
    path = call.callback_uri.split("?", 1)[0].rstrip("/")
    head, _, last = path.rpartition("/")
    return last if head.endswith("/api/calls") else call.id


def _asked_to_hang_up(call: SimCall) -> bool:
    return any((e.direction == "from-bot" and e.summary.startswith("bot hangs up")) or
               (e.direction == "sim" and e.summary.startswith("fault: hangUp")) for e in call.transcript.entries)


def check(calls: Iterable[SimCall], sessions: Iterable[Mapping[str, Any]], *, now: float,
          epoch: datetime) -> list[Violation]:
    """`now`: the simulator's seconds since it began; `epoch`: the datetime at its second 0."""
    by_id = {str(s.get("instanceId")): s for s in sessions if s.get("name") == ORCHESTRATOR}
    calls = list(calls)
    known = {c.id: c for c in calls}
    found: list[Violation] = []
    for call in calls:
        if call.ended or call.answered_at is None or not call.service_hosted:
            continue
        session = by_id.get(session_of(call))
        status = session.get("runtimeStatus") if session else None
        if status not in ("Running", "Pending") and not _asked_to_hang_up(call):
            found.append(Violation(call.id, "zombie", f"the call is {call.state} and its session is "
                                                      f"{status or 'absent'}; nobody hangs it up"))
    for instance, session in by_id.items():
        status = session.get("runtimeStatus")
        if status == "Failed":
            found.append(Violation(instance, "failed", f"the session failed: {str(session.get('output'))[:300]}"))
            continue
        if status not in ("Running", "Pending"):
            continue
        own = known.get(instance)
        if own is None:
            began = (datetime.fromisoformat(str(session["createdTime"]).replace("Z", "+00:00")) - epoch)
            if now - began.total_seconds() > GRACE:
                found.append(Violation(instance, "orphan", f"the session runs {now - began.total_seconds():.0f} s "
                                                           "for a call Graph never had"))
        elif own.ended and own.ended_at is not None and now - own.ended_at > GRACE:
            found.append(Violation(instance, "outlived", f"the session runs {now - own.ended_at:.0f} s after "
                                                         "its call ended"))
    return found
