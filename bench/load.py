"""(d) Load: N simultaneous IVR calls of flows/main-menu.yaml through the local host, on the real clock.

The call, one path of the sample main menu, short and touching every part of the bot (the inline answer,
prompts, a key press with barge-in, a second call the bot places, a consultative transfer):

  a PSTN caller dials the bot's number; the webhook answers inline (flow opened, call_session started,
  prompts prefetched); the orchestration plays welcome, subscribes to tones and plays the main menu. Half a
  second into the menu the caller presses 1 (sales): the bot cancels the menu, plays connecting, places a
  call to the sales lead (who answers after 1 s) and transfers the caller to it, consultative. The caller's
  call ends 0/7015 GracefulTransferCompleted (AppTransferred), and the bot's call to sales with it. About
  6 s of real time per call when it runs alone.

A level of N: N callers dial in the same event-loop turn (a burst: every call's incoming notification is
queued at once), then each goes on as above by itself. The baseline is the same call alone, one after
another (concurrency 1), on the same warm host, after one unmeasured warm-up call. Each caller is a
coroutine on the simulation's loop using the simulator's Teams side (`dial`, `press`) and looking at its
own SimCall every 50 ms: the harness's synchronous CallHandle, one thread per caller, works too, but each
of its waits wakes on every change of any call (in a trial of 50 calls: 6.3 s of loop CPU against 5.8).

Everything is real: the simulator POSTs signed notifications to devhost's /api/calls; the webhook
authenticates, routes and answers through msgraph-sdk; call_session runs under azure-functions-durable's
replay (devhost replay_check off, as in production); the call_action activity sends every Graph request.
Simulator, devhost and bot share one event loop, in one thread: the simulator's own work (signing each
POST, validating each Graph request against the OpenAPI schema) is part of every figure, as Graph's own
latency would be.

Why the real clock: on the virtual clock time moves only when nothing is busy, so under load every timer
(prompt ends, the menu's no-input timeout, and the simulator's 15 s answer deadline itself) waits for the
bot to catch up. A bot that answered after 20 s of wall time would still be "on time", and no prompt would
ever end while the bot lags: the load would hide its own failures. On the real clock a late answer makes
Teams drop the call, exactly as Graph would. Latencies are wall time (time.perf_counter) either way.

Figures per level, from instrumentation on the simulator's and devhost's side and on the event loop's
selector (instance attributes over methods; no code of the app, the simulator or devhost changes):

  answer latency   the simulator has signed the incoming-call notification and is about to POST it ->
                   it has read the body of the bot's POST .../answer for that call
  press latency    likewise from the tone notification of the key press -> the bot's
                   cancelMediaProcessing (the first Graph request the press sets off)
  POST latency     any notification POST -> the bot's HTTP answer back at the simulator
  call duration    dial -> the caller's call ended, on the simulator's clock (real seconds)
  event loop       its thread's CPU time, its time in select() with nothing ready, and the rest of the
                   wall time (the OS running other processes): a saturated loop has no idle time
  completed cleanly  the caller heard welcome and connecting to the end, the bot rang sales on a call of
                   its own that sales answered, the transfer went through, the call ended 0/7015, the
                   session's orchestration Completed, no Graph request of the two calls was refused and
                   every POST got a 2xx
  notifications    every notification the simulator posted, each with exactly one outcome:
                     answered  the incoming call: the bot's answer reached the simulator
                     read      the orchestrator of its session read it: the batch it came in was the
                               result of its wait for a Graph notification (checked by replaying each
                               execution's final history with the SDK, reading what the loop reads)
                     late      it reached the session after the event that ended the session: queued
                               behind the session's final episode's message, or not raised because the
                               session had finished before the bot answered its POST (e.g. the sales
                               call's `terminated`, posted while the caller's transfer ended the session)
                     lost      any other: the POST failed or got no 2xx, the webhook never raised it on a
                               running session, it was raised but never read, an incoming call never
                               answered. It must be 0.

A level "breaks" when a call does not complete cleanly, a notification is lost, or an answer takes 15 s or
more (Graph's deadline: Teams drops the call). Nothing asserts on timing.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.ivr import TimingFaults
from bench.stats import summary
from simulator.calls import SimCall
from simulator.core import Simulator
from simulator.delivery import Pending
from simulator.harness import Simulation

SALES = "user:6e1c7b52-3d4f-4a8e-9b21-0c5d7e8f9a10"
SALES_KEY = "1"
SALES_ANSWERS_AFTER = 1.0  # seconds of ringing before the sales lead picks up
PRESS_AFTER = 0.5  # seconds into the main menu when the caller presses 1
MENU, WELCOME, CONNECTING = "main-menu", "welcome", "connecting"
TRANSFERRED = (0, 7015)
ANSWER_DEADLINE = 15.0  # Graph's: Teams drops a call not answered within it
POLL = 0.05  # how often a caller looks at its call (real seconds); the callers' own cost on the loop
CALL_TIMEOUT = 120.0  # real seconds a caller stays on before it gives up
SETTLE_TIMEOUT = 60.0  # real seconds to wait, after a level, for every session to finish
TERMINAL = ("Completed", "Failed", "Terminated", "Canceled")
EVENT_RAISED, TASK_COMPLETED, TASK_FAILED, TIMER_FIRED, ORCHESTRATOR_STARTED = 15, 5, 6, 11, 12

# The POST the simulator is sending right now, in the task that sends it (set by Probe).
_posting: contextvars.ContextVar[Post | None] = contextvars.ContextVar("bench_load_posting", default=None)


def fingerprint(notification: Any) -> str:
    return json.dumps(notification, sort_keys=True, separators=(",", ":"))


@dataclass
class Post:
    """One POST of notifications from the simulator to the bot."""

    call_id: str
    session: str  # the session (orchestration instance id) its notifications belong to
    labels: list[str]
    prints: list[str]
    sent: float = 0.0  # signed, about to POST (perf_counter)
    returned: float | None = None  # the bot's HTTP answer read
    failure: str | None = None  # the simulator's complaint: a status >= 400 or no answer


@dataclass
class Caller:
    index: int
    number: str
    call_id: str = ""
    dialled: float = 0.0  # perf_counter
    problem: str | None = None  # why it is not clean (None: clean)


@dataclass
class Level:
    """One run of `concurrency` simultaneous calls (or, for the baseline, `calls` calls one at a time)."""

    concurrency: int
    calls: int = 0
    clean: int = 0
    answer_s: list[float] = field(default_factory=list)
    dial_to_answer_s: list[float] = field(default_factory=list)
    press_s: list[float] = field(default_factory=list)
    post_s: list[float] = field(default_factory=list)
    call_s: list[float] = field(default_factory=list)
    wall_s: float = 0.0
    cpu_s: float = 0.0  # CPU time of the event loop's thread (simulator, devhost and bot alike)
    idle_s: float | None = None  # time the loop waited in select() with nothing to do (None: not measured)
    load_average: float | None = None  # the machine's 1-minute load average as the level ended
    incoming_spread_s: float = 0.0  # first to last incoming-call notification posted
    posted: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)  # answered / read / late / lost
    late: Counter[str] = field(default_factory=Counter)  # label of each late notification
    lost: Counter[str] = field(default_factory=Counter)  # why: label and reason
    unchecked: int = 0  # sessions whose reading could not be replayed (counted as read when in history)
    problems: list[str] = field(default_factory=list)
    executions: Counter[int] = field(default_factory=Counter)  # call_session executions per session

    @property
    def lost_count(self) -> int:
        return self.outcomes["lost"]

    def breaks(self) -> str | None:
        """Why this level counts as broken, or None."""
        reasons = []
        if self.clean < self.calls:
            reasons.append(f"{self.calls - self.clean} of {self.calls} call(s) not clean")
        if self.lost_count:
            reasons.append(f"{self.lost_count} notification(s) lost")
        late = [s for s in self.answer_s if s >= ANSWER_DEADLINE]
        if late:
            reasons.append(f"{len(late)} answer(s) at or past Graph's {ANSWER_DEADLINE:g} s deadline")
        return "; ".join(reasons) or None

    def as_json(self) -> dict[str, Any]:
        return {"concurrency": self.concurrency, "calls": self.calls, "clean": self.clean,
                "wall_s": self.wall_s, "loop_cpu_s": self.cpu_s, "loop_idle_s": self.idle_s,
                "load_average_1m": self.load_average, "incoming_spread_s": self.incoming_spread_s,
                "answer": summary(self.answer_s), "dial_to_answer": summary(self.dial_to_answer_s),
                "press": summary(self.press_s), "post": summary(self.post_s), "call": summary(self.call_s),
                "notifications": {"posted": self.posted, **{k: self.outcomes[k] for k in OUTCOMES},
                                  "late_by_label": dict(self.late), "lost_by_reason": dict(self.lost),
                                  "sessions_not_replayed": self.unchecked},
                "executions_per_session": {str(k): v for k, v in sorted(self.executions.items())},
                "breaks": self.breaks(), "problems": self.problems[:20]}


OUTCOMES = ("answered", "read", "late", "lost")


@dataclass
class Results:
    baseline: Level
    levels: list[Level]
    warmup: int
    wall_s: float

    def broke_at(self) -> Level | None:
        return next((level for level in self.levels if level.breaks()), None)

    def as_json(self) -> dict[str, Any]:
        broke = self.broke_at()
        return {"clock": "real", "path": "dial, welcome, main menu, press 1 at 0.5 s, connecting, consult sales "
                "(answers after 1 s), consultative transfer", "warmup_calls": self.warmup,
                "baseline": self.baseline.as_json(), "levels": [level.as_json() for level in self.levels],
                "broke_at": broke.concurrency if broke else None, "wall_s": self.wall_s}


class Probe:
    """Marks on the simulator's side (POSTs, Graph requests) and devhost's (queued messages, commits).

    Installed on one Simulation's instances only; nothing of the simulator's, devhost's or the app's code
    changes. Everything runs on the simulation's loop thread.
    """

    def __init__(self, faults: TimingFaults) -> None:
        self.faults = faults
        self.posts: list[Post] = []
        self.answered: dict[str, float] = {}  # call id -> the bot's answer read
        self.tone: dict[str, Post] = {}  # call id -> its (first) tone POST
        self.cancelled: dict[str, float] = {}  # call id -> first cancelMediaProcessing after the tone
        # (instance id, kind, key) of every message devhost queued for an orchestration, in order
        self.queued: list[tuple[str, int, str]] = []
        self.histories: dict[tuple[str, str], list[dict[str, Any]]] = {}  # (instance, execution) -> events
        self.ended: dict[str, tuple[float, tuple[int, str] | None]] = {}  # instance -> (when, final trigger)

    def reset(self) -> None:
        self.posts.clear()
        self.answered.clear()
        self.tone.clear()
        self.cancelled.clear()
        self.queued.clear()
        self.histories.clear()
        self.ended.clear()

    def install(self, sim: Simulator, engine: Any) -> None:
        original_send = sim.outbox._send
        original_token = sim.signer.token
        original_answer = sim.graph_answer
        original_cancel = sim.graph_cancel_media
        original_enqueue = engine._enqueue
        original_commit = engine._commit

        async def send(batch: list[Pending]) -> None:
            call = batch[0].call
            post = Post(call.id, _session_of(call), [p.label for p in batch],
                        [fingerprint(p.notification) for p in batch])
            self.posts.append(post)
            if "tone" in post.labels:
                self.tone.setdefault(call.id, post)
            reset = _posting.set(post)
            try:
                await original_send(batch)
            finally:
                _posting.reset(reset)
                post.returned = time.perf_counter()

        def token(**kwargs: Any) -> str:
            signed = original_token(**kwargs)
            post = _posting.get()
            if post is not None:  # the POST follows at once
                post.sent = time.perf_counter()
            return signed

        def answer(call: SimCall, body: dict[str, Any]) -> None:
            self.answered.setdefault(call.id, self.faults.read_at)
            original_answer(call, body)

        def cancel(call: SimCall, body: dict[str, Any]) -> dict[str, Any]:
            if call.id in self.tone:
                self.cancelled.setdefault(call.id, self.faults.read_at)
            return original_cancel(call, body)

        def enqueue(instance_id: str, message: dict[str, Any], *args: Any, **kwargs: Any) -> bool:
            accepted = bool(original_enqueue(instance_id, message, *args, **kwargs))
            event = message.get("event")
            if accepted and isinstance(event, dict):
                self.queued.append((instance_id, *_key(event)))
            return accepted

        def commit(step: Any, seq: int, events: list[dict[str, Any]]) -> None:
            original_commit(step, seq, events)
            record = step.record
            self.histories.setdefault((record.instance_id, step.execution_id), []).extend(events)
            if record.status in TERMINAL and record.instance_id not in self.ended:
                trigger = _key(events[1]) if len(events) > 1 and events[0].get("EventType") == ORCHESTRATOR_STARTED \
                    else None
                self.ended[record.instance_id] = (time.perf_counter(), trigger)

        setattr(sim.outbox, "_send", send)  # noqa: B010 (an instance attribute over the method)
        setattr(sim.signer, "token", token)  # noqa: B010
        setattr(sim, "graph_answer", answer)  # noqa: B010
        setattr(sim, "graph_cancel_media", cancel)  # noqa: B010
        setattr(engine, "_enqueue", enqueue)  # noqa: B010
        setattr(engine, "_commit", commit)  # noqa: B010

    def failed(self, status: str) -> None:
        post = _posting.get()
        if post is not None:
            post.failure = status


class _DeliveryWarnings(logging.Handler):
    """The simulator warns when the bot answers a POST with >= 400 or not at all: pin it on the POST."""

    def __init__(self, probe: Probe) -> None:
        super().__init__(logging.WARNING)
        self.probe = probe

    def emit(self, record: logging.LogRecord) -> None:
        status = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
        self.probe.failed(f"the bot answered {status}")


def _session_of(call: SimCall) -> str:
    """The session a call's notifications go to: `/api/calls/{session}` for the bot's own second calls."""
    path = call.callback_uri.split("?", 1)[0].rstrip("/")
    head, _, tail = path.rpartition("/api/calls/")
    return tail if head and tail else call.id


def _key(event: dict[str, Any]) -> tuple[int, str]:
    """What identifies a queued history event within its instance: its type and Input / task / timer id."""
    kind = int(event.get("EventType", -1))
    if kind == EVENT_RAISED:
        return kind, str(event.get("Input"))
    if kind in (TASK_COMPLETED, TASK_FAILED):
        return kind, str(event.get("TaskScheduledId"))
    if kind == TIMER_FIRED:
        return kind, str(event.get("TimerId"))
    return kind, ""


def _notifications_of(text: str) -> list[Any]:
    """The notifications in a raised event's Input (the Python Durable client sends JSON inside JSON)."""
    data: Any = text
    try:
        while isinstance(data, str):
            data = json.loads(data)
    except ValueError:
        return []
    items = data.get("notifications") if isinstance(data, dict) else None
    return list(items) if isinstance(items, list) else []


def _read_by_sessions(sim: Simulation, probe: Probe) -> tuple[dict[str, Counter[str]], set[str]]:
    """Per session, the notifications its orchestrator read (fingerprints, with multiplicity).

    Each execution's final history is replayed once more through the SDK, as devhost's engine replays it,
    with the loop's reader of a raised event's notifications wrapped to note what it returns. The replay
    is deterministic, so that is what the live orchestrator read. Sessions whose replay failed are returned
    apart (their reading unchecked).
    """
    from devhost.durable import replay
    from orchestrations import session_loop

    host = sim._host
    function = host.index.orchestrator("call_session")
    reader = getattr(session_loop, "_notifications", None)
    read: dict[str, Counter[str]] = {}
    unchecked: set[str] = set()
    if function is None or reader is None:
        return read, {instance for instance, _ in probe.histories}
    current: list[str] = []

    def noting(data: Any) -> Any:
        items = reader(data)
        if current:
            read.setdefault(current[0], Counter()).update(fingerprint(n) for n in items)
        return items

    setattr(session_loop, "_notifications", noting)  # noqa: B010 (only for these replays, on this thread)
    try:
        for (instance, _execution), events in probe.histories.items():
            if not any(e.get("EventType") == 0 for e in events):  # no ExecutionStarted: not a whole history
                unchecked.add(instance)
                continue
            current[:] = [instance]
            state = replay.run(function.handle, replay.context_json(
                instance_id=instance, parent_instance_id=None, events=events, new_from=None))
            if state.error is not None:
                unchecked.add(instance)
    finally:
        setattr(session_loop, "_notifications", reader)  # noqa: B010
        current.clear()
    return read, unchecked


def _outcomes(sim: Simulation, probe: Probe, level: Level) -> None:
    """Give every posted notification exactly one outcome (see the module docstring)."""
    read, unchecked = _read_by_sessions(sim, probe)
    level.unchecked = len(unchecked)
    order: dict[tuple[str, int, str], int] = {}
    raised: dict[str, list[tuple[int, str]]] = {}  # session -> (queue position, fingerprint) of raised ones
    for position, (instance, kind, key) in enumerate(probe.queued):
        order.setdefault((instance, kind, key), position)
        if kind == EVENT_RAISED:
            raised.setdefault(instance, []).extend((position, fingerprint(n)) for n in _notifications_of(key))
    in_history: dict[str, Counter[str]] = {}
    for (instance, _execution), events in probe.histories.items():
        counter = in_history.setdefault(instance, Counter())
        for event in events:
            if event.get("EventType") == EVENT_RAISED:
                counter.update(fingerprint(n) for n in _notifications_of(str(event.get("Input"))))
    end_position: dict[str, int] = {}
    for instance, (_when, trigger) in probe.ended.items():
        if trigger is not None:
            end_position[instance] = order.get((instance, *trigger), len(probe.queued))
    # What each session read, queued and still has to account for (multisets: identical notifications).
    left_read = {s: Counter(c) for s, c in read.items()}
    for s in unchecked:
        left_read[s] = Counter(in_history.get(s, Counter()))
    left_raised: dict[str, list[tuple[int, str]]] = {s: list(v) for s, v in raised.items()}
    for post in probe.posts:
        level.posted += len(post.prints)
        for label, print_ in zip(post.labels, post.prints, strict=True):
            level.outcomes[_outcome(post, label, print_, probe, left_read, left_raised, end_position, level)] += 1


def _outcome(post: Post, label: str, print_: str, probe: Probe, left_read: dict[str, Counter[str]],
             left_raised: dict[str, list[tuple[int, str]]], end_position: dict[str, int], level: Level) -> str:
    def lost(why: str) -> str:
        level.lost[f"{label}: {why}"] += 1
        return "lost"

    if post.failure is not None:
        return lost(post.failure)
    if label == "incoming":
        return "answered" if post.call_id in probe.answered else lost("never answered")
    session = post.session
    reading = left_read.get(session)
    if reading is not None and reading[print_] > 0:
        reading[print_] -= 1
        _take(left_raised.get(session, []), print_)
        return "read"
    position = _take(left_raised.get(session, []), print_)
    ended = probe.ended.get(session)
    if position is None:
        # Never raised on the session: late only when the session had finished before the bot answered.
        if ended is not None and post.returned is not None and ended[0] <= post.returned:
            level.late[label] += 1
            return "late"
        return lost("not raised on a running session")
    if position > end_position.get(session, len(probe.queued) + 1):
        level.late[label] += 1
        return "late"
    return lost("raised but never read")


def _take(items: list[tuple[int, str]], print_: str) -> int | None:
    for index, (position, candidate) in enumerate(items):
        if candidate == print_:
            del items[index]
            return position
    return None


# ------------------------------------------------------------------------------------------------ driving


def _menu_started(call: SimCall) -> bool:
    return any(h.name == MENU for h in call.heard)


async def _call(sim: Simulation, caller: Caller) -> None:
    """One caller, from the dial to the end of the call (runs on the simulation's loop)."""
    simulator = sim.simulator
    caller.dialled = time.perf_counter()
    call = simulator.dial(source=caller.number, to=sim.bot.number)
    caller.call_id = call.id
    give_up = caller.dialled + CALL_TIMEOUT
    while not _menu_started(call) and not call.ended:
        if time.perf_counter() > give_up:
            caller.problem = f"no {MENU} prompt within {CALL_TIMEOUT:g} s"
            return
        await asyncio.sleep(POLL)
    if call.ended:
        return
    await sim.clock.sleep(PRESS_AFTER)
    simulator.press(call, SALES_KEY)
    while not call.ended:
        if time.perf_counter() > give_up:
            caller.problem = f"the call was still up after {CALL_TIMEOUT:g} s"
            return
        await asyncio.sleep(POLL)


async def _settle(sim: Simulation, callers: Sequence[Caller]) -> None:
    """Wait until every caller's session has finished and nothing is in flight."""
    host = sim._host
    deadline = time.perf_counter() + SETTLE_TIMEOUT
    while time.perf_counter() < deadline:
        statuses = [host.status(c.call_id) for c in callers if c.call_id]
        if all(s is None or s["runtimeStatus"] in TERMINAL for s in statuses):
            break
        await asyncio.sleep(POLL)
    await sim.clock.idle(5.0)


def _verdict(sim: Simulation, caller: Caller, consults: dict[str, list[SimCall]], failed: set[str]) -> str | None:
    """Why the caller's call was not clean, or None."""
    if caller.problem:
        return caller.problem
    call = sim.simulator.calls.get(caller.call_id)
    if call is None:
        return "never dialled"
    result = call.result_info or {}
    if not call.ended or (result.get("code"), result.get("subcode")) != TRANSFERRED:
        return f"ended {result.get('code')}/{result.get('subcode')} {result.get('message', '')}".rstrip()
    heard = {h.name: h.outcome for h in call.heard}
    for prompt in (WELCOME, CONNECTING):
        if heard.get(prompt) != "completed":
            return f"{prompt}: {heard.get(prompt, 'not heard')}"
    seconds = consults.get(call.id, [])
    if len(seconds) != 1:
        return f"{len(seconds)} call(s) placed to sales"
    leg = seconds[0].legs[0] if seconds[0].legs else None
    if leg is None or leg.outcome != "answered" or leg.targets != [SALES] or not seconds[0].ended:
        return f"the call to sales: {leg.outcome if leg else 'no leg'}"
    if not any(item.kind == "transfer" and item.outcome == "answered" for item in call.legs):
        return "no transfer"
    status = sim._host.status(call.id)
    if status is None or status["runtimeStatus"] != "Completed":
        return f"session {status['runtimeStatus'] if status else 'missing'}"
    for other in (call, seconds[0]):
        refused = [e.summary for e in other.transcript.entries if e.direction == "from-bot" and "refused" in e.summary]
        if refused:
            return f"Graph refused: {refused[0][:120]}"
    if caller.call_id in failed or seconds[0].id in failed:
        return "a POST to the bot failed"
    return None


class LoopIdle:
    """Time the event loop spends waiting in select() with nothing ready: what is neither its own CPU time nor
    idleness is time the OS gave the CPU to other processes (or the loop blocked in a system call)."""

    def __init__(self) -> None:
        self.idle_s = 0.0
        self.installed = False

    def install(self) -> None:
        selector = getattr(asyncio.get_running_loop(), "_selector", None)  # CPython's selector event loop
        if selector is None or not hasattr(selector, "select"):
            return
        original = selector.select

        def select(timeout: float | None = None) -> Any:
            started = time.perf_counter()
            ready = original(timeout)
            if not ready:
                self.idle_s += time.perf_counter() - started
            return ready

        setattr(selector, "select", select)  # noqa: B010 (an instance attribute over the method)
        self.installed = True


async def _run_level(sim: Simulation, probe: Probe, idle: LoopIdle, concurrency: int, calls: int,
                     first: int) -> Level:
    """`calls` callers, `concurrency` at a time (all at once, or one after another when 1)."""
    probe.reset()
    level = Level(concurrency)
    callers = [Caller(first + i, _number(first + i)) for i in range(calls)]
    started, cpu, idle_before = time.perf_counter(), time.thread_time(), idle.idle_s
    if concurrency == 1:
        for caller in callers:
            await _call(sim, caller)
    else:
        await asyncio.gather(*(_call(sim, c) for c in callers))
    level.wall_s, level.cpu_s = time.perf_counter() - started, time.thread_time() - cpu
    level.idle_s = idle.idle_s - idle_before if idle.installed else None
    level.load_average = _load_average()
    await _settle(sim, callers)
    _measure(sim, probe, level, callers)
    return level


def _load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):  # not on Windows
        return None


def _measure(sim: Simulation, probe: Probe, level: Level, callers: Sequence[Caller]) -> None:
    simulator = sim.simulator
    consults: dict[str, list[SimCall]] = {}
    for other in simulator.calls.values():
        if other.direction == "outgoing":
            consults.setdefault(_session_of(other), []).append(other)
    failed = {p.call_id for p in probe.posts if p.failure is not None}
    level.calls = len(callers)
    incoming = {p.call_id: p for p in probe.posts if "incoming" in p.labels}
    for caller in callers:
        why = _verdict(sim, caller, consults, failed)
        if why is None:
            level.clean += 1
        else:
            level.problems.append(f"caller {caller.index}: {why}")
        post = incoming.get(caller.call_id)
        answered = probe.answered.get(caller.call_id)
        if post is not None and post.sent and answered is not None:
            level.answer_s.append(answered - post.sent)
            level.dial_to_answer_s.append(answered - caller.dialled)
        tone, cancelled = probe.tone.get(caller.call_id), probe.cancelled.get(caller.call_id)
        if tone is not None and tone.sent and cancelled is not None:
            level.press_s.append(cancelled - tone.sent)
        call = simulator.calls.get(caller.call_id)
        if call is not None and call.ended_at is not None and call.transcript.entries:
            level.call_s.append(call.ended_at - call.transcript.entries[0].at)
    level.post_s = [p.returned - p.sent for p in probe.posts if p.returned is not None and p.sent and p.failure is None]
    sent = [p.sent for p in incoming.values()]
    level.incoming_spread_s = max(sent) - min(sent) if sent else 0.0
    per_session = Counter(instance for instance, _ in probe.histories)
    level.executions = Counter(per_session.values())
    _outcomes(sim, probe, level)


def _number(index: int) -> str:
    return f"+1206555{index % 10000:04d}"


def run(baseline_calls: int, levels: Sequence[int], warmup: int = 1,
        on_level: Callable[[Level], None] | None = None) -> Results:
    """A warm-up call, the baseline (`baseline_calls` calls one at a time), then each level in turn."""
    started = time.perf_counter()
    faults = TimingFaults()
    probe = Probe(faults)
    idle = LoopIdle()
    warnings = _DeliveryWarnings(probe)
    delivery_log = logging.getLogger("simulator.delivery")
    delivery_log.addHandler(warnings)
    timeout = CALL_TIMEOUT + SETTLE_TIMEOUT + 60
    # Started and closed by hand, not as a context manager: leaving a `with` block also runs the harness's
    # end-of-test checks, which let the clock run on for minutes (real minutes, here).
    sim = Simulation(real_time=True, faults=faults, replay_check=False, wall_timeout=timeout)
    done: list[Level] = []
    try:
        sim.start()
        sim.callee(SALES, "answer", after=SALES_ANSWERS_AFTER)
        sim._do(lambda: probe.install(sim.simulator, sim._host._engine))
        sim._do(idle.install)
        first = 0
        if warmup:
            sim._run(_run_level(sim, probe, idle, 1, warmup, first), timeout=timeout * warmup)
            first += warmup
        baseline = sim._run(_run_level(sim, probe, idle, 1, baseline_calls, first), timeout=timeout * baseline_calls)
        first += baseline_calls
        if on_level is not None:
            on_level(baseline)
        for concurrency in levels:
            level = sim._run(_run_level(sim, probe, idle, concurrency, concurrency, first), timeout=timeout)
            first += concurrency
            done.append(level)
            if on_level is not None:
                on_level(level)
    finally:
        sim.close()
        delivery_log.removeHandler(warnings)
    return Results(baseline, done, warmup, time.perf_counter() - started)
