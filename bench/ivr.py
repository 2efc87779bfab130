"""(c) IVR step latency: a caller's key press to the bot's next Graph request, through the local host and direct.

One simulated call per path dials the bot's main line (flows/main-menu.yaml) and presses 9 ("repeat the
menu") while the menu plays, `iterations` times in a row. Each press interrupts the prompt (barge-in), so the
flow answers it with two Graph requests: cancelMediaProcessing, then playPrompt of the menu again. Timed in
wall time (time.perf_counter, one process) for every press:

  t0     the simulator has signed the tone notification and is about to POST it to the bot
         (engine direct: the moment it hands the same notification to the bench's in-process session)
  first  the simulator has read the body of the next Graph request for that call (before schema checks)
  play   likewise for the playPrompt that starts the menu again
  return the bot's answer to the POST has reached the simulator (local host only)

The two paths run in the same process and event loop as the simulator, their presses interleaved (host,
direct, host, direct ...) so drift and background load hit both alike:

  local host     the simulator POSTs to /api/calls on devhost (function_app.py): JWT auth, parse, raise the
                 event through the Durable client (HTTP to devhost's management API), the call_session
                 orchestrator replayed by azure-functions-durable over its history, the call_action activity,
                 msgraph-sdk to the simulator's Graph; one orchestrator episode per activity result.
                 devhost runs with replay_check off (production-like: no second replay per episode).
  engine direct  no webhook, no HTTP to the bot, no Durable: calling.session.translate, the engine's step, and
                 the call_action activity's own function called directly (calling.actions.perform with the
                 runtime's CallControl, msgraph-sdk) against the same simulator: the orchestration's loop
                 minus Durable.
                 Engine timers are armed on the simulator's clock; no keepAlive (no 15 minutes pass).

One event loop serves everything, so on the local host the notification the cancel sets off (the interrupted
prompt's operation, posted while the press is still being handled) is signed, posted and taken in by the
webhook inside the measured window; the direct path takes it only once the press is handled. Holding it back
in a trial took about 1 ms off the local host's tone -> playPrompt p50. For the same reason the bot's HTTP
answer to the tone comes after the orchestrator's first episode: the Functions host would answer as soon as
the event is queued.

The calls run on the simulator's virtual clock: that only decides when simulated time moves (prompts,
timers); every figure is wall time of real work. Before measuring, one warm-up call per path (not counted), so
"step 1" is the start of a call in a warm process. Nothing asserts on timing.
"""

from __future__ import annotations

import contextvars
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bench.stats import summary
from calling import telemetry
from calling.flows import Bundle, State, step
from calling.flows import commands as c
from calling.flows import events as e
from calling.session import Session, failure_event, translate
from devhost import invocation
from devhost.functions import AppIndex
from simulator.calls import SimCall
from simulator.clock import TimerHandle
from simulator.core import Simulator
from simulator.delivery import Pending
from simulator.faults import Faults, GraphFault
from simulator.harness import CallHandle, Simulation

log = logging.getLogger("bench.ivr")

HOST_CALLER = "+14255550100"
DIRECT_CALLER = "+14255550177"
MENU_PROMPT = "main-menu"
REPEAT_KEY = "9"
CANCEL = "cancelMediaProcessing"
PLAY = "playPrompt"

# Which call the simulator is sending a tone notification for, while it sends it (set by Probe).
_sending_tone: contextvars.ContextVar[str | None] = contextvars.ContextVar("bench_sending_tone", default=None)


@dataclass
class Press:
    """One press of the repeat key: offsets from t0 (seconds), and the orchestration's history then."""

    index: int  # 1-based step of the call
    first_action: str  # the first Graph request after the tone
    to_first_s: float
    to_play_s: float
    cpu_s: float  # CPU time of the event loop's thread (simulator, host and bot alike) from t0 to the playPrompt
    to_return_s: float | None = None  # local host: the bot's answer to the tone's POST
    episodes: int = 0  # local host: orchestrator episodes (history read, replay, commit) until the playPrompt
    episodes_s: float = 0.0  # local host: wall time spent in them
    history: int | None = None  # local host: events in the current execution's history before the press
    execution: int | None = None  # local host: the execution of call_session before the press (1-based)


@dataclass
class Series:
    name: str
    presses: list[Press] = field(default_factory=list)
    missing: int = 0  # presses for which no playPrompt was seen (counted, left out of the figures)

    def window(self, first: int, last: int) -> list[Press]:
        return [p for p in self.presses if first <= p.index <= last]

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "missing": self.missing,
                "presses": [{"step": p.index, "first_action": p.first_action, "to_first_ms": p.to_first_s * 1000,
                             "to_play_ms": p.to_play_s * 1000, "cpu_ms": p.cpu_s * 1000,
                             "to_return_ms": None if p.to_return_s is None else p.to_return_s * 1000,
                             "episodes": p.episodes, "episodes_ms": p.episodes_s * 1000,
                             "history": p.history, "execution": p.execution} for p in self.presses]}


@dataclass
class Results:
    iterations: int
    early: tuple[int, int]
    late: tuple[int, int]
    host: Series
    direct: Series
    replay_check: bool
    executions: int | None  # call_session executions of the host call (continue-as-new count + 1)
    events_per_execution: int
    wall_s: float
    warmup: int
    graph_requests: dict[str, int]  # action -> count, both calls, measured part

    def windows(self) -> dict[str, tuple[int, int]]:
        return {"early": self.early, "late": self.late}

    def as_json(self) -> dict[str, Any]:
        def figures(path: Series) -> dict[str, Any]:
            out: dict[str, Any] = {}
            for label, (first, last) in self.windows().items():
                presses = path.window(first, last)
                out[label] = {"steps": [first, last],
                              "to_first": summary([p.to_first_s for p in presses]),
                              "to_play": summary([p.to_play_s for p in presses]),
                              "cpu": summary([p.cpu_s for p in presses])}
                returns = [p.to_return_s for p in presses if p.to_return_s is not None]
                if returns:
                    out[label]["to_return"] = summary(returns)
                histories = [p.history for p in presses if p.history is not None]
                if histories:
                    out[label]["history_max"] = max(histories)
            return out

        return {"iterations": self.iterations, "warmup_iterations": self.warmup, "replay_check": self.replay_check,
                "executions": self.executions, "events_per_execution": self.events_per_execution,
                "wall_s": self.wall_s, "graph_requests": self.graph_requests,
                "host": {**figures(self.host), **self.host.as_json()},
                "direct": {**figures(self.direct), **self.direct.as_json()}}


class TimingFaults(Faults):
    """The simulator's fault list (empty), also noting when each Graph request's body has been read.

    The simulator asks for a fault right after reading a Graph request, before it checks and acts on it.
    """

    def __init__(self) -> None:
        super().__init__()
        self.read_at = 0.0
        self.read_cpu = 0.0

    def take_graph(self, action: str) -> GraphFault | None:
        self.read_at = time.perf_counter()
        self.read_cpu = time.thread_time()
        return super().take_graph(action)


class Probe:
    """Wall-clock marks on the simulator's side: tone notifications leaving, Graph requests arriving.

    Installed on one Simulator instance (instance attributes only; the simulator's code is unchanged). Calls
    from DIRECT_CALLER never reach the bot over HTTP: their notifications go to `direct` in-process.
    """

    def __init__(self, faults: TimingFaults) -> None:
        self.faults = faults
        self.sent: dict[str, tuple[float, float]] = {}  # call id -> t0 of its latest tone, and thread CPU time then
        self.returned: dict[str, float] = {}  # call id -> when the bot answered that tone's POST
        # call id -> (action, read at, thread CPU time then) of each Graph request since its latest tone
        self.requests: dict[str, list[tuple[str, float, float]]] = {}
        self.counts: dict[str, int] = {}
        self.episodes: list[tuple[float, float]] = []  # (start, duration) of each orchestrator episode

    def install(self, sim: Simulator, direct: DirectSessions) -> None:
        original_send = sim.outbox._send
        original_token = sim.signer.token

        async def send(batch: list[Pending]) -> None:
            call = batch[0].call
            tone = any(p.label == "tone" for p in batch)
            if tone:
                self.requests[call.id] = []
                self.returned.pop(call.id, None)
            if call.remote == DIRECT_CALLER:
                await direct.receive(sim, batch, tone)
                return
            reset = _sending_tone.set(call.id if tone else None)
            try:
                await original_send(batch)
            finally:
                _sending_tone.reset(reset)
            if tone:
                self.returned[call.id] = time.perf_counter()

        def token(**kwargs: Any) -> str:
            signed = original_token(**kwargs)
            call_id = _sending_tone.get()
            if call_id is not None:  # the POST follows at once
                self.sent[call_id] = time.perf_counter(), time.thread_time()
            return signed

        def timed(action: str, handler: Callable[[SimCall, dict[str, Any]], dict[str, Any]]
                  ) -> Callable[[SimCall, dict[str, Any]], dict[str, Any]]:
            def wrapper(call: SimCall, body: dict[str, Any]) -> dict[str, Any]:
                self.requests.setdefault(call.id, []).append((action, self.faults.read_at, self.faults.read_cpu))
                self.counts[action] = self.counts.get(action, 0) + 1
                return handler(call, body)

            return wrapper

        setattr(sim.outbox, "_send", send)  # noqa: B010 (an instance attribute over the method)
        setattr(sim.signer, "token", token)  # noqa: B010
        setattr(sim, "graph_cancel_media", timed(CANCEL, sim.graph_cancel_media))  # noqa: B010
        setattr(sim, "graph_play_prompt", timed(PLAY, sim.graph_play_prompt))  # noqa: B010

    def time_episodes(self, engine: Any) -> None:
        """Time devhost's orchestrator episodes: read the history, replay the orchestrator, commit."""
        original = engine._episode

        def episode(*args: Any, **kwargs: Any) -> None:
            started = time.perf_counter()
            try:
                original(*args, **kwargs)
            finally:
                self.episodes.append((started, time.perf_counter() - started))

        setattr(engine, "_episode", episode)  # noqa: B010

    def mark_direct(self, call_id: str) -> None:
        self.sent[call_id] = time.perf_counter(), time.thread_time()

    def press(self, index: int, call_id: str) -> Press | None:
        """The marks of the press just made on `call_id`, or None when its playPrompt never came."""
        sent = self.sent.pop(call_id, None)
        seen = self.requests.get(call_id, [])
        plays = [(at, cpu) for action, at, cpu in seen if action == PLAY]
        if sent is None or not plays:
            return None
        (t0, cpu0), (played, cpu1) = sent, plays[0]
        returned = self.returned.get(call_id)
        episodes = [took for at, took in self.episodes if t0 <= at <= played]
        self.episodes.clear()
        return Press(index, seen[0][0], seen[0][1] - t0, played - t0, cpu1 - cpu0,
                     None if returned is None else returned - t0, len(episodes), sum(episodes))


class DirectSessions:
    """The engine without Durable: what call_session does per event, in-process, with no replay and no host.

    The incoming call goes through the app's own webhook code, called in-process (authenticated with the
    simulator's token): it routes, takes the flow's first step, starts the session here (the sink) and answers.
    Every later notification is handed straight to the session, as the webhook would pass it to the sink.
    """

    def __init__(self, probe: Probe, index: AppIndex) -> None:
        self.probe = probe
        self.activity = activity_function(index)
        self.sessions: dict[str, DirectSession] = {}
        self.sim: Simulator | None = None

    async def receive(self, sim: Simulator, batch: list[Pending], tone: bool) -> None:
        call = batch[0].call
        for pending in batch:
            if pending.summary:
                call.transcript.add(sim.now(), "to-bot", f"{pending.summary}  [engine direct]", label=pending.label)
        notifications = [p.notification for p in batch]
        if call.id not in self.sessions:
            await self._incoming(sim, call, notifications)
        else:
            if tone:
                self.probe.mark_direct(call.id)
            await self.sessions[call.id].deliver(notifications)
        sim.clock.changed()

    async def _incoming(self, sim: Simulator, call: SimCall, notifications: list[dict[str, Any]]) -> None:
        from functions import runtime

        self.sim = sim
        token = sim.signer.token(aud=sim.bot.app_id, tid=call.tenant_id)
        body = json.dumps({"value": notifications}).encode()
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json",
                   "Content-Length": str(len(body))}
        response = await runtime.get().webhook.handle(headers, body, self)
        if response.status >= 400:
            raise RuntimeError(f"the webhook refused the direct call's incoming notification: {response.status}")

    # -- CallEventSink ----------------------------------------------------------------------------

    async def start(self, call_id: str, session: Mapping[str, Any]) -> None:
        if self.sim is None:
            raise RuntimeError("no simulator")
        self.sessions[call_id] = DirectSession(Session.from_json(dict(session)), self.sim, self.activity)

    async def deliver(self, call_id: str, notifications: list[Mapping[str, Any]]) -> bool:
        found = self.sessions.get(call_id)
        if found is None:
            return False
        await found.deliver(notifications)
        return True


class DirectSession:
    """One call's engine state and timers; commands carried out in order, Graph ones by the activity's function."""

    def __init__(self, session: Session, sim: Simulator, activity: Callable[[dict[str, Any]], Awaitable[Any]]) -> None:
        from functions import runtime

        self.session = session
        self.sim = sim
        self.app = runtime.get()
        self.bundle: Bundle = self.app.flows.bundle(session.flow)
        self.state: State = session.state
        self.pending: list[c.Command] = list(session.commands)
        self.timers: dict[str, TimerHandle] = {}
        self.activity = activity

    def now(self) -> datetime:
        return self.sim.clock.now()

    async def deliver(self, notifications: Sequence[Mapping[str, Any]]) -> None:
        queue, self.pending = self.pending, []
        for event in translate(notifications, self.state, self.now()):
            self.state, commands = step(self.bundle, self.state, event)
            queue.extend(commands)
        await self._carry_out(queue)
        if self.state.phase == "ended":
            self.close()

    async def _timer(self, ref: str) -> None:
        self.timers.pop(ref, None)
        self.state, commands = step(self.bundle, self.state, e.TimerFired(at=self.now(), ref=ref))
        await self._carry_out(commands)

    async def _carry_out(self, queue: list[c.Command]) -> None:
        session = self.session
        while queue:
            followups: list[e.Event] = []
            for command in queue:
                if isinstance(command, c.StartTimer):
                    self._cancel(command.ref)
                    self.timers[command.ref] = self.sim.clock.call_later(command.seconds, _bind(self._timer,
                                                                                                 command.ref))
                elif isinstance(command, c.CancelTimer):
                    self._cancel(command.ref)
                elif isinstance(command, c.Milestone):
                    with telemetry.correlation(call_id=session.call_id, tenant_id=session.tenant_id):
                        telemetry.emit(command.name, **{"flow": session.flow, **dict(command.facts)})
                elif isinstance(command, c.HandOff):
                    log.error("flow %s hands off mid-call", session.flow)
                else:
                    result = await self._act(command)
                    event = failure_event(command, result, self.now())
                    if event is not None:
                        followups.append(event)
            queue = []
            for event in followups:
                self.state, commands = step(self.bundle, self.state, event)
                queue.extend(commands)

    async def _act(self, command: c.Command) -> Mapping[str, Any]:
        try:
            result = await self.activity(self.session.action(command))
        except Exception as exc:  # Durable would retry; nothing fails in the benchmark
            log.warning("%s failed: %s", type(command).__name__, exc)
            return {"ok": False, "code": "failed", "message": str(exc)[:300]}
        return result if isinstance(result, Mapping) else {"ok": False, "code": "bad_result"}

    def _cancel(self, ref: str) -> None:
        handle = self.timers.pop(ref, None)
        if handle is not None:
            handle.cancel()

    def close(self) -> None:
        for handle in self.timers.values():
            handle.cancel()
        self.timers.clear()


def activity_function(index: AppIndex) -> Callable[[dict[str, Any]], Awaitable[Any]]:
    """The `call_action` activity's own function, as the app registers it, to call without Durable."""
    from orchestrations.call_session import ACTIVITY

    activity = index.activity(ACTIVITY)
    if activity is None:
        raise RuntimeError(f"function_app registers no activity named {ACTIVITY!r}")
    found = activity

    async def call(request: dict[str, Any]) -> Any:
        return await invocation.call(found.function, {found.input_param: request})

    return call


def _bind(function: Callable[[str], Awaitable[None]], ref: str) -> Callable[[], Awaitable[None]]:
    return lambda: function(ref)


def _history(sim: Simulation, call_id: str) -> tuple[int, int | None]:
    """(events in the current execution's history, executions so far) of the host call's orchestration."""
    host = sim._host
    length = len(host.history(call_id))
    status = host.status(call_id)
    session: Any = status["input"] if status else None
    while isinstance(session, str):
        session = json.loads(session)
    executions = session.get("executions") if isinstance(session, dict) else None
    return length, executions if isinstance(executions, int) else None


def _to_menu(sim: Simulation, *callers: str) -> list[CallHandle]:
    """Dial from each caller at once, and wait until each hears the main menu start."""
    calls = [sim.dial(from_phone=caller, to=sim.bot) for caller in callers]
    for call in calls:
        call.expect_prompt(MENU_PROMPT, to_the_end=False)
    return calls


def _press(sim: Simulation, probe: Probe, call: CallHandle, index: int, path: Series,
           history: bool) -> None:
    before = _history(sim, call.id) if history else (None, None)
    call.press(REPEAT_KEY)  # returns once the bot has done everything the press set off
    call.expect_prompt(MENU_PROMPT, to_the_end=False)
    press = probe.press(index, call.id)
    if press is None:
        path.missing += 1
        return
    press.history, press.execution = before
    path.presses.append(press)


def run(iterations: int, window: int, warmup: int) -> Results:
    """A warm-up call per path, then one call per path pressing 9 `iterations` times, interleaved."""
    from orchestrations.call_session import EVENTS_PER_EXECUTION

    started = time.perf_counter()
    faults = TimingFaults()
    probe = Probe(faults)
    host, engine_direct = Series("local host"), Series("engine direct")
    # Without devhost's replay check: production-like, the Functions host does not replay twice per episode.
    with Simulation(faults=faults, wall_timeout=60.0, replay_check=False) as sim:
        engine = sim._host._engine
        probe.time_episodes(engine)
        direct = DirectSessions(probe, sim._host.index)
        sim._do(lambda: probe.install(sim.simulator, direct))

        scratch_host, scratch_direct = Series("warm-up"), Series("warm-up")
        calls = _to_menu(sim, HOST_CALLER, DIRECT_CALLER)
        for index in range(1, warmup + 1):
            _press(sim, probe, calls[0], index, scratch_host, history=False)
            _press(sim, probe, calls[1], index, scratch_direct, history=False)
        for call in calls:
            call.hang_up()
            call.expect_ended()

        counts_before = dict(probe.counts)
        calls = _to_menu(sim, HOST_CALLER, DIRECT_CALLER)
        for index in range(1, iterations + 1):
            _press(sim, probe, calls[0], index, host, history=True)
            _press(sim, probe, calls[1], index, engine_direct, history=False)
        executions = _history(sim, calls[0].id)[1]
        counts = {k: v - counts_before.get(k, 0) for k, v in probe.counts.items()}
        for call in calls:
            call.hang_up()
            call.expect_ended()
        for session in direct.sessions.values():
            session.close()
    early = (1, min(window, iterations))
    late = (max(1, iterations - window + 1), iterations)
    return Results(iterations, early, late, host, engine_direct, replay_check=False, executions=executions,
                   events_per_execution=EVENTS_PER_EXECUTION, wall_s=time.perf_counter() - started, warmup=warmup,
                   graph_requests=counts)
