"""A chaos campaign: every caller path of the sample flows, under every kind of fault, each call checked.

Each fault profile gets its own simulations (a weekday for the menu and the outbound reminder, a Saturday
for the after-hours voicemail, the support line for its queue), seeded so a run replays exactly, on the
virtual clock. In each, the paths' callers (and callees) do what their script says; a step the call no
longer allows (the faults sent it elsewhere) just ends the script, because a fault may change where a call
goes but never how it ends.
Every call is judged on what must hold whatever happened:

- an incoming call is answered, rejected or redirected within Graph's deadline (never dropped unanswered);
- no action twice: at most one accepted answer, one connected transfer, one second call placed to a
  target, one stored recording (by blob name, so this counts recordings, not overwrites) and one accepted
  hang-up per call;
- the watchdog's rules (simulator/watchdog.py): no established call left without a running session or a
  hang-up, and no session outliving its call by more than a few minutes.

`run()` returns the rows (one per call); `table()` prints them. tests/test_chaos.py runs the whole campaign
in CI and fails on any violation.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from simulator.calls import SimCall
from simulator.faults import GraphFault, NotificationFault
from simulator.harness import CallHandle, ExpectationFailed, Simulation

Fault = GraphFault | NotificationFault
RATE = 0.2
MANY = 10**9
SALES = "user:6e1c7b52-3d4f-4a8e-9b21-0c5d7e8f9a10"
SUPPORT = "instance:2b7d9c41-8e5a-4f36-a1c2-3d4e5f607182"
OPERATOR = "+14255550100"
CALLER = "+14255550123"
CALLEE = "+14255550177"
#: flows/support.yaml's agents (its queue rings them in turn, round robin).
ANA = "user:4f2a6c1e-7b3d-4e58-9a01-b2c3d4e5f601"
BEN = "user:5b3c7d2f-8c4e-4f69-8b12-c3d4e5f60712"
CHEN = "user:6c4d8e3a-9d5f-4a7a-9c23-d4e5f6071823"
NAMES = {SALES: "sales", SUPPORT: "support", OPERATOR: "operator", CALLEE: "callee", ANA: "Ana", BEN: "Ben",
         CHEN: "Chen"}
SATURDAY = datetime(2026, 3, 7, 18, 0, tzinfo=UTC)
ANSWER_DEADLINE = 15.0


#: Every notification label the sample flows see. A lost `incoming` is left out of `drop`: a call the bot
#: never heard of is Graph's to drop, and nothing the bot does could save it.
LABELS = ("incoming", "establishing", "established", "terminating", "terminated", "transferring",
          "transferAccepted", "tone", "playPrompt", "record")
#: Where each kind of path runs: the main line on a weekday and a Saturday, the support line's queue.
DAYS = {"weekday": {}, "saturday": {}, "queue": {"DEFAULT_FLOW": "support"}}


def _graph(status: int, rate: float = RATE) -> GraphFault:
    # A short Retry-After: the bot's retry waits are wall time, and the campaign should take a minute or two.
    return GraphFault("*", status, times=MANY, rate=rate, retry_after=0.2 if status in (429, 503) else None)


def _notes(kind: str, rate: float = RATE) -> list[NotificationFault]:
    labels = [label for label in LABELS if not (kind == "drop" and label == "incoming")]
    return [NotificationFault(label, kind, times=MANY, rate=rate, seconds=3.0)  # type: ignore[arg-type]
            for label in labels]


PROFILES: dict[str, Callable[[], Sequence[Fault]]] = {
    "none": list,
    "graph 429": lambda: [_graph(429)],
    "graph 500": lambda: [_graph(500)],
    "graph 503": lambda: [_graph(503)],
    "duplicate": lambda: _notes("duplicate"),
    "delay": lambda: _notes("delay"),
    "reorder": lambda: _notes("reorder"),
    "drop": lambda: _notes("drop"),
    # Graph does the work, then the answer is lost (the bot is told 500): retries must not do it twice.
    "lost answers": lambda: [GraphFault("*", 500, times=MANY, rate=0.1, applied=True)],
    "mix": lambda: [_graph(429, 0.04), _graph(500, 0.04), _graph(503, 0.04), *_notes("duplicate", 0.05),
                    *_notes("delay", 0.05), *_notes("reorder", 0.05), *_notes("drop", 0.05)],
}


class ScriptEnded(Exception):
    """The call no longer allows the script's next step."""


@dataclass(frozen=True)
class CallerPath:
    name: str
    day: str  # weekday | saturday
    callees: tuple[tuple[str, str, float], ...]  # (target, outcome, after seconds)
    script: Callable[[Simulation], CallHandle]


def _menu(call: CallHandle, digit: str) -> None:
    call.expect_prompt("main-menu", to_the_end=False, within=60)
    call.press(digit)


def _dial(sim: Simulation) -> CallHandle:
    return sim.dial(from_phone=CALLER, to=sim.bot)


def _press(digit: str, *then: str) -> Callable[[Simulation], CallHandle]:
    def script(sim: Simulation) -> CallHandle:
        call = _dial(sim)
        _attempt(lambda: _menu(call, digit))
        for step in then:
            _attempt(lambda step=step: _do(call, step))  # type: ignore[misc]
        return call
    return script


def _do(call: CallHandle, step: str) -> None:
    verb, _, arg = step.partition(" ")
    if verb == "speak":
        call.speak(float(arg))
    elif verb == "press":
        _menu(call, arg)
    elif verb == "hear":
        call.expect_prompt(arg, within=90, to_the_end=False)
    elif verb == "wait":
        call.wait(float(arg))
    elif verb == "hangup":
        call.hang_up()


def _attempt(step: Callable[[], object]) -> None:
    try:
        step()
    except ExpectationFailed as exc:
        raise ScriptEnded(str(exc).splitlines()[0]) from None


def _silent(sim: Simulation) -> CallHandle:
    call = _dial(sim)
    _attempt(lambda: call.wait(60))
    return call


def _hang_up_mid_menu(sim: Simulation) -> CallHandle:
    call = _dial(sim)
    _attempt(lambda: call.expect_prompt("main-menu", to_the_end=False, within=60))
    call.hang_up()
    return call


def _after_hours(speak: bool) -> Callable[[Simulation], CallHandle]:
    def script(sim: Simulation) -> CallHandle:
        call = _dial(sim)
        _attempt(lambda: call.expect_prompt("voicemail", within=60, to_the_end=False))
        if speak:
            call.speak(4)
        return call
    return script


def _queue(wait: float | None = None) -> Callable[[Simulation], CallHandle]:
    """A caller of the support line: waits in its queue (and hangs up after `wait` s, if given)."""
    def script(sim: Simulation) -> CallHandle:
        call = _dial(sim)
        _attempt(lambda: call.expect_prompt("hold-music", within=60, to_the_end=False))
        if wait is not None:
            _attempt(lambda: call.wait(wait))
            call.hang_up()
        else:
            _attempt(lambda: call.expect_ended(within=120))
        return call
    return script


def _reminder(press: str | None) -> Callable[[Simulation], CallHandle]:
    def script(sim: Simulation) -> CallHandle:
        request = {"to": CALLEE, "flow": "reminder", "from_instance": sim.instance_id}
        # A client retries with the same Idempotency-Key; a 502 (Graph may have placed the call) is replayed,
        # a throttled 503 is not (docs/flows.md, "Retrying safely").
        for _ in range(3):
            status, body = sim.http("POST", "/api/outbound/calls", request,
                                    headers={"Idempotency-Key": f"chaos-{id(sim)}-reminder-{press}"})
            if status < 500:
                break
        if status != 202:
            raise ScriptEnded(f"placing the call answered {status}: {body}")
        call = sim.expect_call(to=CALLEE)
        if press is not None:
            _attempt(lambda: call.expect_prompt("reminder-options", to_the_end=False, within=60))
            call.press(press)
        return call
    return script


PATHS: tuple[CallerPath, ...] = (
    CallerPath("1 sales answers", "weekday", ((SALES, "answer", 3),), _press("1")),
    CallerPath("1 sales rings out, voicemail", "weekday", ((SALES, "no_answer", 60),),
               _press("1", "hear sales-voicemail", "speak 4")),
    CallerPath("1 sales declines, voicemail", "weekday", ((SALES, "decline", 2),),
               _press("1", "hear sales-voicemail", "speak 3")),
    CallerPath("2 support answers", "weekday", ((SUPPORT, "answer", 2),), _press("2")),
    CallerPath("2 support rings out, silent", "weekday", ((SUPPORT, "no_answer", 8),), _press("2")),
    CallerPath("0 operator answers", "weekday", ((OPERATOR, "answer", 3),), _press("0")),
    CallerPath("0 operator busy, voicemail", "weekday", ((OPERATOR, "busy", 2),),
               _press("0", "hear voicemail", "speak 3")),
    CallerPath("wrong key, then 2", "weekday", ((SUPPORT, "answer", 2),), _press("7", "press 2")),
    CallerPath("9 repeats, then 0", "weekday", ((OPERATOR, "answer", 2),), _press("9", "press 0")),
    CallerPath("silent caller", "weekday", ((OPERATOR, "answer", 2),), _silent),
    CallerPath("hangs up mid-menu", "weekday", (), _hang_up_mid_menu),
    CallerPath("reminder confirmed", "weekday", ((CALLEE, "answer", 3),), _reminder("1")),
    CallerPath("reminder not answered", "weekday", ((CALLEE, "no_answer", 30),), _reminder(None)),
    CallerPath("after hours, message", "saturday", (), _after_hours(True)),
    CallerPath("after hours, silent", "saturday", (), _after_hours(False)),
    CallerPath("queue: Ana answers", "queue", ((ANA, "answer", 3),), _queue()),
    CallerPath("queue: Ben declines, Chen answers", "queue", ((BEN, "decline", 2), (CHEN, "answer", 3)), _queue()),
    CallerPath("queue: hangs up waiting", "queue",
               ((ANA, "no_answer", 60), (BEN, "no_answer", 60), (CHEN, "no_answer", 60)), _queue(25)),
)


@dataclass
class Row:
    profile: str
    path: str
    call_id: str = ""
    outcome: str = ""
    faults: int = 0
    note: str = ""
    violations: list[str] = field(default_factory=list)


def _outcome(call: SimCall, recordings: int) -> str:
    parts = []
    if call.direction == "incoming" and call.answered_at is None:
        parts.append({"reject": "rejected", "redirect": "redirected"}.get(call.decided or "", "never answered"))
    connected = [leg for leg in call.legs if leg.connected_to]
    if connected:
        who = str(connected[-1].connected_to)
        parts.append(f"{connected[-1].kind} to {NAMES.get(who, who)}")
    if recordings:
        parts.append(f"{recordings} voicemail")
    result = call.result_info or {}
    end = f"ended {result.get('code')}/{result.get('subcode')}" if call.ended else f"still {call.state}"
    return ", ".join([*parts, end])


def _ok(entries: Iterable[object], start: str, http: str) -> int:
    return sum(1 for e in entries if getattr(e, "direction", "") == "from-bot"
               and str(getattr(e, "summary", "")).startswith(start) and http in str(getattr(e, "summary", "")))


def judge(call: SimCall, recordings_dir: Path, calls: Iterable[SimCall] = ()) -> tuple[str, int, list[str]]:
    """The call's outcome, the faults it met, and what it broke of the campaign's rules. `calls`: every call
    the simulator had, to find the second calls the bot placed for this one (a consultative transfer's)."""
    calls = list(calls)
    entries = call.transcript.entries
    violations = []
    if call.direction == "incoming":
        start = entries[0].at if entries else 0.0
        decided = call.answered_at is not None or call.decided in ("reject", "redirect")
        if not decided and not any(e.summary.startswith("caller hangs up") for e in entries):
            violations.append("never answered, rejected or redirected")
        if call.answered_at is not None and call.answered_at - start > ANSWER_DEADLINE:
            violations.append(f"answered after {call.answered_at - start:.1f} s")
        if any("did not answer, reject or redirect" in e.summary for e in entries):
            violations.append("Teams dropped it unanswered")
    second = [c for c in calls if c.callback_uri.rstrip("/").endswith(f"/api/calls/{call.id}")]
    per_target = max((sum(1 for c in second if c.remote == r) for r in {c.remote for c in second}), default=0)
    counts = {"answers": _ok(entries, "bot answers", " 202]"),
              "calls placed to one target": per_target,
              "transfers connected": sum(1 for leg in call.legs if leg.kind == "transfer" and leg.connected_to),
              "recordings stored": len([p for p in recordings_dir.rglob("*.wav") if call.id in p.name]),
              "hang-ups accepted": _ok(entries, "bot hangs up", " 204]")}
    violations += [f"{n} {what}" for what, n in counts.items() if n > 1]
    faults = sum(1 for e in entries if e.summary.startswith("fault:"))
    return _outcome(call, counts["recordings stored"]), faults, violations


def run_profile(profile: str, *, seed: int = 7, paths: Iterable[CallerPath] = PATHS) -> list[Row]:
    rows: list[Row] = []
    chosen = list(paths)
    for day, settings in DAYS.items():
        day_paths = [p for p in chosen if p.day == day]
        if not day_paths:
            continue
        sim = Simulation(settings=settings, starts_at=SATURDAY if day == "saturday" else None, watchdog=False)
        sim.faults.rng = random.Random(f"{seed}:{profile}:{day}")  # noqa: S311 (reproducible faults)
        with sim:
            for fault in PROFILES[profile]():
                sim.fault(fault)
            mine: list[tuple[Row, CallHandle | None]] = []
            for path in day_paths:
                for target, outcome, after in path.callees:
                    sim.callee(target, outcome, after=after)  # type: ignore[arg-type]
                row = Row(profile, path.name)
                before = set(sim.simulator.calls)
                try:
                    path.script(sim)
                except ScriptEnded as exc:
                    row.note = exc.args[0][:100]
                call = _first_new_call(sim, before)
                if call is not None:
                    _attempt_quietly(lambda call=call: call.wait(5))  # type: ignore[misc]
                mine.append((row, call))
            violations = sim.check_calls()
            for row, call in mine:
                if call is None:  # an outbound call Graph refused (the client was told so) is clean; else a bug
                    row.outcome = "not placed"
                    if not row.note.startswith("placing the call answered"):
                        row.violations.append("no call")
                    rows.append(row)
                    continue
                row.call_id = call.id
                row.outcome, row.faults, row.violations = judge(call.call, sim.recordings_dir,
                                                                sim.simulator.calls.values())
                legs = {call.id} | {c.id for c in sim.simulator.calls.values()
                                    if c.callback_uri.rstrip("/").endswith(f"/api/calls/{call.id}")}
                row.violations += [f"{v.rule}: {v.detail}" for v in violations if v.call_id in legs]
                rows.append(row)
    return rows


def _first_new_call(sim: Simulation, before: set[str]) -> CallHandle | None:
    """The path's own call: the first the simulator got since the path began (its consult legs come later)."""
    fresh = [c for c in sim.simulator.calls.values() if c.id not in before]
    return CallHandle(sim, fresh[0]) if fresh else None


def _attempt_quietly(step: Callable[[], object]) -> None:
    with contextlib.suppress(ExpectationFailed):
        step()


def run(profiles: Iterable[str] = tuple(PROFILES), *, seed: int = 7) -> list[Row]:
    return [row for profile in profiles for row in run_profile(profile, seed=seed)]


def table(rows: list[Row]) -> str:
    header = ("profile", "path", "faults", "outcome", "verdict")
    body = [(r.profile, r.path, str(r.faults), r.outcome + (f" (script: {r.note})" if r.note else ""),
             "; ".join(r.violations) or "ok") for r in rows]
    widths = [max(len(x[i]) for x in [header, *body]) for i in range(len(header) - 1)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, [*widths, 0], strict=True)).rstrip()]
    lines.append("-" * len(lines[0]))
    lines += ["  ".join(c.ljust(w) for c, w in zip(cells, [*widths, 0], strict=True)).rstrip() for cells in body]
    bad = sum(1 for r in rows if r.violations)
    lines.append(f"{len(rows)} calls, {sum(r.faults for r in rows)} faults applied, {bad} with a violation")
    return "\n".join(lines)
