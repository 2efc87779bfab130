"""A call queue's shared line: who waits in what order, and which agents are taken. Pure; no I/O, no clock.

One `Line` per queue name (and tenant) is the state of a Durable entity (orchestrations/queue_entity.py);
every call waiting in a `queue` node talks to it with three operations, each given the caller's `now`:

- `join`: take a place at the back, or be refused (`overflow`) when the line already holds `max_callers`.
- `offer`: ask for an agent to ring. Reports how a ring this call just had ended (the agent is free again)
  and gives back the caller's place and, when it is this caller's turn, a free agent it has not tried yet.
- `leave`: go (answered by an agent, timed out, hung up). An agent who took a call stays taken for
  `wrap_up` seconds: the bot left the call at the transfer and cannot see when it ends.

Honest places: calls are offered agents first come, first served. Each call ahead has the first pick of
the free agents it has not rung yet; a call gets an agent only when one is left over for it, so "you are
number N" counts the calls that will be offered an agent before this one. Every entry carries a deadline
(`until`) and is dropped once it passes, so a session that died without leaving cannot block the line.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

LINE_VERSION = 1
IN_ORDER, ROUND_ROBIN = "in_order", "round_robin"
ROUTINGS = (IN_ORDER, ROUND_ROBIN)
#: Operations the entity takes.
JOIN, OFFER, LEAVE = "join", "offer", "leave"
OPERATIONS = (JOIN, OFFER, LEAVE)
#: Seconds beyond its ring timeout an agent stays taken by a ring whose end was never reported.
RING_GUARD = 60
#: Seconds a waiting call keeps its place without asking (a session asks every 5 s; an answer may take 10 s).
#: A call silent for longer (its session died or is stuck) is dropped; if it comes back it joins again.
LEASE = 90


class QueueInputError(ValueError):
    """An operation's input is not what the operations above take."""


@dataclass
class Waiting:
    """A call in line: since when, until when it may stay, when it last asked, its agents, which of them it
    has rung in this round, and how many rounds it has had."""

    call: str
    since: str
    until: str
    tried: list[str] = field(default_factory=list)
    rounds: int = 0  # rounds over the free agents, each rung without an answer
    seen: str = ""  # when the call last asked (its lease); "" is `since`
    agents: list[str] = field(default_factory=list)  # the agents its node rings


@dataclass
class Taken:
    """An agent the line will not offer: `ringing` for `call` until `until`, or `connected` (wrap-up)."""

    call: str
    state: str
    until: str


@dataclass
class Line:
    waiting: list[Waiting] = field(default_factory=list)
    taken: dict[str, Taken] = field(default_factory=dict)
    last: str = ""  # the agent offered last, where round robin goes on from

    # --- JSON: the entity's state ----------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """The state as JSON. Callers of one node share its agent list: each list is written once (`teams`),
        so the state grows by about 150 bytes a caller, not by the list's length."""
        teams: dict[tuple[str, ...], str] = {}
        for w in self.waiting:
            teams.setdefault(tuple(w.agents), str(len(teams)))
        return {"v": LINE_VERSION, "last": self.last, "teams": {key: list(agents) for agents, key in teams.items()},
                "waiting": [{"call": w.call, "since": w.since, "until": w.until, "tried": list(w.tried),
                             "rounds": w.rounds, "seen": w.seen, "team": teams[tuple(w.agents)]}
                            for w in self.waiting],
                "taken": {agent: {"call": t.call, "state": t.state, "until": t.until}
                          for agent, t in self.taken.items()}}

    @classmethod
    def from_json(cls, data: Any) -> Line:
        """A line from its state. A new entity's (None) is an empty line; so is another version's, whose
        places expire within minutes anyway. An entry that cannot be read is dropped, never an error that
        would fail every later operation."""
        if not isinstance(data, Mapping) or data.get("v") != LINE_VERSION:
            return cls()
        waiting = []
        found = data.get("teams")
        teams: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
        for w in data.get("waiting") or ():
            try:
                waiting.append(Waiting(str(w["call"]), _stamp(w["since"]), _stamp(w["until"]),
                                       [str(a) for a in w.get("tried") or ()], int(w.get("rounds") or 0),
                                       _stamp(w["seen"]) if w.get("seen") else "",
                                       [str(a) for a in teams.get(str(w.get("team")), ())]))
            except (KeyError, TypeError, ValueError, AttributeError):
                continue
        taken = {}
        for agent, t in (data.get("taken") or {}).items() if isinstance(data.get("taken"), Mapping) else ():
            try:
                taken[str(agent)] = Taken(str(t["call"]), str(t["state"]), _stamp(t["until"]))
            except (KeyError, TypeError, ValueError):
                continue
        return cls(waiting, taken, str(data.get("last") or ""))

    # --- operations -------------------------------------------------------------------------------

    def apply(self, operation: str | None, data: Any) -> dict[str, Any]:
        """Carry out one operation from its JSON input; the reply (see `reply`)."""
        if not isinstance(data, Mapping):
            raise QueueInputError(f"{operation}: the input must be an object")
        call, now = _text(data, "call"), _time(data, "now")
        self.expire(now)
        if operation == JOIN:
            return self.join(call, now, _int(data, "max_callers", 1), _int(data, "hold", 1),
                             _agents(data, required=False))
        if operation == OFFER:
            agents = _agents(data, required=True)
            routing = str(data.get("routing") or IN_ORDER)
            if routing not in ROUTINGS:
                raise QueueInputError(f"offer: routing must be one of {', '.join(ROUTINGS)}")
            return self.offer(call, now, [str(a) for a in agents], routing, _int(data, "rounds", 1),
                              _int(data, "ring", 1), str(data.get("rung") or ""))
        if operation == LEAVE:
            return self.leave(call, now, str(data.get("answered_by") or ""), _int(data, "wrap_up", 0))
        raise QueueInputError(f"unknown operation {operation!r}; expected one of {', '.join(OPERATIONS)}")

    def join(self, call: str, now: datetime, max_callers: int, hold: int,
             agents: Sequence[str] = ()) -> dict[str, Any]:
        entry = self.entry(call)
        if entry is None:
            if len(self.waiting) >= max_callers:
                return reply(False, why="overflow", waiting=len(self.waiting))
            self.waiting.append(Waiting(call, now.isoformat(), (now + timedelta(seconds=hold)).isoformat(),
                                        seen=now.isoformat(), agents=list(agents)))
        else:
            entry.seen = now.isoformat()
        return reply(True, position=self.place(call) or 0, waiting=len(self.waiting))

    def offer(self, call: str, now: datetime, agents: list[str], routing: str, rounds: int, ring: int,
              rung: str = "") -> dict[str, Any]:
        """Free the agent `rung` (its ring ended unanswered); give this call an agent when it is its turn.

        A round is over when every agent of the call's that is free has been rung for it: agents taken by
        other calls are not waited for. `exhausted`: `rounds` rounds passed and no agent took the call."""
        entry = self.entry(call)
        for agent, taken in list(self.taken.items()):  # a call rings one agent at a time: any ring it still
            if taken.call == call and taken.state == "ringing":  # holds has ended (or its answer was lost)
                del self.taken[agent]
        if entry is None:
            return reply(False, why="not_waiting")
        if rung and rung not in entry.tried:
            entry.tried.append(rung)
        entry.seen, entry.agents = now.isoformat(), list(agents)
        free = [a for a in agents if a not in self.taken]
        if free and all(a in entry.tried for a in free):  # every free agent was rung: the next round
            entry.rounds += 1
            entry.tried = []
        if entry.rounds >= rounds:
            return reply(True, position=self.place(call) or 0, why="exhausted", waiting=len(self.waiting))
        position = self.place(call) or 0
        busy = {t.call for t in self.taken.values() if t.state == "ringing"}
        for ahead in self.waiting[:position - 1]:  # each call ahead (not ringing one now) picks first
            if ahead.call in busy:
                continue
            theirs = [a for a in free if a in (ahead.agents or agents)]
            picks = [a for a in theirs if a not in ahead.tried] or theirs  # all tried: its next round
            if picks:
                free.remove(picks[0])
        candidates = [a for a in free if a not in entry.tried]
        if not candidates:
            return reply(True, position=position, why="wait", waiting=len(self.waiting))
        agent = candidates[0] if routing == IN_ORDER else _after(agents, candidates, self.last)
        self.taken[agent] = Taken(call, "ringing", (now + timedelta(seconds=ring + RING_GUARD)).isoformat())
        self.last = agent
        return reply(True, position=position, agent=agent, waiting=len(self.waiting))

    def leave(self, call: str, now: datetime, answered_by: str = "", wrap_up: int = 0) -> dict[str, Any]:
        self.waiting = [w for w in self.waiting if w.call != call]
        for agent, taken in list(self.taken.items()):
            if taken.call == call and taken.state == "ringing":
                del self.taken[agent]
        if answered_by and wrap_up > 0:
            self.taken[answered_by] = Taken(call, "connected", (now + timedelta(seconds=wrap_up)).isoformat())
        return reply(True, waiting=len(self.waiting))

    # --- reading ----------------------------------------------------------------------------------

    def entry(self, call: str) -> Waiting | None:
        return next((w for w in self.waiting if w.call == call), None)

    def place(self, call: str) -> int | None:
        """The call's place in line, from 1; None when it is not in line."""
        return next((i + 1 for i, w in enumerate(self.waiting) if w.call == call), None)

    def expire(self, now: datetime) -> None:
        """Drop what outlived its deadline: calls past their longest wait or silent for LEASE seconds (their
        session died) unless ringing an agent, rings never reported, wrap-ups, rings for calls gone."""
        stamp = now.isoformat()
        lease = (now - timedelta(seconds=LEASE)).isoformat()
        ringing = {t.call for t in self.taken.values() if t.state == "ringing" and _later(t.until, stamp)}
        self.waiting = [w for w in self.waiting if _later(w.until, stamp)
                        and (w.call in ringing or _later(w.seen or w.since, lease))]
        calls = {w.call for w in self.waiting}
        self.taken = {a: t for a, t in self.taken.items()
                      if _later(t.until, stamp) and (t.state != "ringing" or t.call in calls)}


def reply(ok: bool, *, position: int = 0, agent: str = "", why: str = "", waiting: int = 0) -> dict[str, Any]:
    """What an operation answers: `ok`, the caller's `position` (0: not in line), an `agent` to ring or "",
    `why` (overflow, not_waiting, wait, exhausted) and how many calls are `waiting`."""
    return {"ok": ok, "position": position, "agent": agent, "why": why, "waiting": waiting}


def _after(agents: list[str], candidates: list[str], last: str) -> str:
    """Round robin: the first candidate after `last` in the agents' order, wrapping around."""
    start = agents.index(last) + 1 if last in agents else 0
    for agent in agents[start:] + agents[:start]:
        if agent in candidates:
            return agent
    return candidates[0]


def _later(until: str, now: str) -> bool:
    return datetime.fromisoformat(until) > datetime.fromisoformat(now)


def _stamp(value: Any) -> str:
    """An ISO time as stored, checked readable (and so comparable) here rather than in every operation."""
    text = str(value)
    if datetime.fromisoformat(text).tzinfo is None:
        raise ValueError(f"no UTC offset in {text!r}")
    return text


def _agents(data: Mapping[str, Any], *, required: bool) -> list[str]:
    agents = data.get("agents")
    if agents is None and not required:
        return []
    if not isinstance(agents, Sequence) or isinstance(agents, str) or not agents \
            or not all(isinstance(a, str) and a for a in agents):
        raise QueueInputError("agents must be a list of one or more targets")
    return [str(a) for a in agents]


def _text(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise QueueInputError(f"{key} must be a non-empty string")
    return value


def _int(data: Mapping[str, Any], key: str, minimum: int) -> int:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise QueueInputError(f"{key} must be a whole number of at least {minimum}")
    return value


def _time(data: Mapping[str, Any], key: str) -> datetime:
    value = _text(data, key)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise QueueInputError(f"{key} must be an ISO 8601 time, got {value!r}") from exc
    if moment.tzinfo is None:
        raise QueueInputError(f"{key} must carry its UTC offset, got {value!r}")
    return moment
