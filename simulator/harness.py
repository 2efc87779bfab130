"""Drive simulated calls against the real bot from plain, synchronous code: tests, scenarios, the demo.

`Simulation` starts the simulator (Graph and Teams) and the local host running `function_app.py` on
loopback ports, in a background event loop, and points the bot's settings at the simulator. A test reads
like the call it checks:

    call = sim.dial(from_phone="+14255550100", to=sim.bot)
    call.expect_prompt("welcome")
    call.press("2")
    call.expect_transfer(to="+14255550111")

On the virtual clock (the default), time passes only while the test waits in an `expect_*` or `wait`,
and jumps straight to the next thing due, so a whole IVR call takes milliseconds and runs the same way
every time. On the real clock (the demo) everything takes as long as it would on a phone.
"""

from __future__ import annotations

import asyncio
import tempfile
import threading
from collections.abc import Callable, Coroutine, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from simulator import watchdog
from simulator.calls import Heard, Leg, Recording, RecordingStatusChange, SimCall
from simulator.clock import DEFAULT_EPOCH, Clock, RealClock, Stuck, VirtualClock
from simulator.core import Bot, Meeting, Simulator
from simulator.directory import Directory, Outcome
from simulator.faults import Faults, GraphFault, NotificationFault
from simulator.media_link import MediaLink
from simulator.server import Routes, SimulatorServer
from simulator.speech import Say
from simulator.transcript import Transcript, render_all
from simulator.watchdog import Violation

T = TypeVar("T")

DEFAULT_APP_ID = "5e1ec7ed-0000-4000-8000-00000000b07a"
DEFAULT_TENANT_ID = "7e7a7e7a-0000-4000-8000-000000007e7a"
DEFAULT_NUMBER = "+14255550199"
DEFAULT_INSTANCE_ID = "1a5ace00-0000-4000-8000-0000000001a5"

#: Virtual seconds an expectation waits by default: long enough for any menu, short enough to fail fast.
DEFAULT_WITHIN = 300.0


class ExpectationFailed(AssertionError):
    """An expectation was not met; the message carries the call's transcript."""


@dataclass(frozen=True)
class Reply:
    """What the bot answered to a POST: its status, Content-Type (without parameters) and raw body."""

    status: int
    content_type: str
    body: bytes


@dataclass(frozen=True)
class BotHandle:
    """The bot under test as callers reach it."""

    app_id: str
    tenant_id: str
    number: str
    instance_id: str
    url: str = ""

    def __str__(self) -> str:
        return self.number


@dataclass
class Simulation:
    """The simulator plus the local host running the function app, on loopback, in a background loop."""

    settings: Mapping[str, str] = field(default_factory=dict)
    real_time: bool = False
    app_id: str = DEFAULT_APP_ID
    tenant_id: str = DEFAULT_TENANT_ID
    number: str = DEFAULT_NUMBER
    instance_id: str = DEFAULT_INSTANCE_ID
    directory: Directory = field(default_factory=Directory)
    faults: Faults = field(default_factory=Faults)
    sim_port: int = 0
    host_port: int = 0
    store_path: str | None = None
    app: Any = None
    #: Real seconds any single wait may take before the simulation calls itself stuck.
    wall_timeout: float = 30.0
    #: When the virtual clock starts (UTC); default: a Tuesday, 10:00 in Seattle.
    starts_at: datetime | None = None
    #: Replay every orchestration once more after each step and fail on nondeterminism (devhost's check).
    #: Off: production-like cost per step, for long calls.
    replay_check: bool = True
    #: On leaving the `with` block, check no call was left in silence and no session outlives its call
    #: (simulator/watchdog.py; it runs the clock a few minutes on, so only on the virtual clock).
    #: Off only for a test of the watchdog itself, or where the caller checks (`check_calls()`).
    #: Its rules are about the local host's sessions, so with `bot_url` (no local host) it checks nothing.
    watchdog: bool = True
    #: Play the Teams media service for app-hosted calls: connect to the loopback media session an answer's
    #: blob names and stream each speaker's audio (simulator/media_link.py); any other blob fails the call.
    media_service: bool = True
    #: Media workers run beside the local host (mediavm/local.py): real MediaWorkers with the loopback engine,
    #: taking the app's in-process hand-offs (MEDIA_HANDOFF_TRANSPORT=inprocess, set for you), answering with
    #: their own callback, recording policy-recorded calls into the recordings sink the settings name
    #: (RECORDINGS_CONTAINER_URL, e.g. Azurite, else the scratch RECORDINGS_DIR). More: `start_worker()`.
    media_workers: int = 0
    #: Settings of every worker over the app's (MEDIA_WORKER_CAPACITY, MEDIA_PARTICIPANT_CAPACITY, ...).
    worker_settings: Mapping[str, str] = field(default_factory=dict)
    #: The workers' application, given the recordings sink (default: `mediavm.compliance.recording_app`).
    media_app: Callable[[Any], Any] | None = None
    #: Routes of its own on the simulator's HTTP server, added before it starts (the softphone).
    sim_routes: Routes | None = None
    #: The calling webhook of a bot someone else runs (`func start`, a devhost of its own): no local host is
    #: started and the function app is not configured from here; that bot takes `env`'s settings itself.
    #: It must be the webhook itself, `<BOT_PUBLIC_URL>/api/calls`, without a query.
    bot_url: str | None = None

    def __post_init__(self) -> None:
        if self.bot_url is not None:
            _public_url(self.bot_url)  # refuses what is not a calling webhook, before anything starts
        start = self.starts_at or DEFAULT_EPOCH
        self.clock: Clock = RealClock(start) if self.real_time else VirtualClock(start)
        self._scratch = tempfile.TemporaryDirectory(prefix="teams-calling-sim-")
        self.recordings_dir = Path(self._scratch.name) / "recordings"
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: SimulatorServer | None = None
        self._host: Any = None
        self.sim: Simulator | None = None
        self.bot = BotHandle(self.app_id, self.tenant_id, self.number, self.instance_id)
        self.env: dict[str, str] = {}
        self.workers: list[Any] = []  # mediavm.local.LocalWorker, imported late
        self.recording_sink: Any = None

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> Simulation:
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            loop.run_forever()

        self._loop = loop
        self._thread = threading.Thread(target=run, name="simulation", daemon=True)
        self._thread.start()
        ready.wait()
        try:
            self._run(self._start(), timeout=60)
        except BaseException:
            self.close()
            raise
        return self

    async def _start(self) -> None:
        from functions import runtime

        sim = Simulator(clock=self.clock, bot=Bot(self.app_id, self.tenant_id, "", {self.number: self.instance_id}),
                        directory=self.directory, faults=self.faults, media_service=self.media_service)
        self.sim = sim
        self._server = SimulatorServer(sim, routes=self.sim_routes)
        await self._server.start(port=self.sim_port)
        host_url = await self._start_host() if self.bot_url is None else _public_url(self.bot_url)
        sim.bot.webhook_url = self.bot_url or f"{host_url}/api/calls"
        self.bot = BotHandle(self.app_id, self.tenant_id, self.number, self.instance_id, host_url)
        self.env = {
            "BOT_APP_ID": self.app_id,
            "BOT_TENANT_ID": self.tenant_id,
            "BOT_PUBLIC_URL": host_url,
            "CALLING_OPENID_CONFIG_URL": self._server.openid_url,
            "GRAPH_BASE_URL": self._server.graph_url,
            "GRAPH_CREDENTIAL": "local",
            "RECORDINGS_DIR": str(self.recordings_dir),
            "FLOWS_DIR": str(_app_root() / "flows"),
            **({"MEDIA_HANDOFF_TRANSPORT": "inprocess"} if self.media_workers else {}),
            **self.settings,
        }
        if self._host is None:
            return  # someone else's bot: it is configured with `env` by whoever runs it
        runtime.reset(runtime.build(self.env, now=self.clock.now, sleep=self.clock.pause))
        for _ in range(self.media_workers):
            await self._start_worker({})

    async def _start_host(self) -> str:
        """The local host serving the function app; its base URL."""
        from devhost.host import DevHost  # imported late: devhost imports the function app

        app = self.app
        if app is None:
            import function_app

            app = function_app.app
        self._host = DevHost(app, clock=self.clock, store=_store(self.store_path), replay_check=self.replay_check)
        url: str = await self._host.start(host="127.0.0.1", port=self.host_port)
        return url

    async def _start_worker(self, settings: Mapping[str, str]) -> Any:
        from calling.config import Settings
        from calling.handoff import InProcessTransport
        from functions import runtime
        from mediavm import local
        from mediavm.compliance import recording_app
        from mediavm.sinks import recording_sink

        inbox = runtime.get().handoff
        if not isinstance(inbox, InProcessTransport):
            raise RuntimeError("media workers take in-process hand-offs: MEDIA_HANDOFF_TRANSPORT must be inprocess")
        if self.recording_sink is None:
            self.recording_sink = recording_sink(Settings.from_env(self.env, flows=False))
        app = (self.media_app or (lambda sink: recording_app(sink, clock=self.clock.now)))(self.recording_sink)
        worker = await local.start({**self.env, **self.worker_settings, **settings}, inbox, app,
                                   now=self.clock.now, sleep=self.clock.sleep, busy=self.clock.busy)
        self.workers.append(worker)
        return worker

    def close(self) -> None:
        loop = self._loop
        if loop is None:
            self._scratch.cleanup()
            return
        if loop.is_running():
            try:
                self._run(self._stop(), timeout=30)
            finally:
                loop.call_soon_threadsafe(loop.stop)
                if self._thread is not None:
                    self._thread.join(timeout=10)
        loop.close()
        self._loop = None
        self._scratch.cleanup()

    async def _stop(self) -> None:
        from azure.durable_functions.models.utils import http_utils

        from functions import runtime

        await self.clock.idle()  # let notifications in flight reach the bot before anything stops
        for worker in self.workers:
            await worker.stop(0.0)
        if self.recording_sink is not None:
            await self.recording_sink.close()
        if self._server is not None:
            await self._server.stop()
        await self.clock.idle()
        if self._host is not None:
            await self._host.stop()
        session = http_utils._client_session
        if session is not None and not session.closed:
            await session.close()
        http_utils._client_session = None
        runtime.reset()

    def __enter__(self) -> Simulation:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, *exc: object) -> None:
        try:
            check = kind is None and self.watchdog and not self.real_time and self._loop is not None
            violations = self.check_calls() if check else []
        finally:
            report = self.transcript() if kind is None and self._loop is not None else ""
            self.close()
        if violations:
            raise ExpectationFailed("the watchdog found calls left in silence or sessions left running:\n  "
                                    + "\n  ".join(map(str, violations)) + "\n\n" + report)

    def check_calls(self) -> list[Violation]:
        """The watchdog (simulator/watchdog.py): let the clock run watchdog.SETTLE seconds on and check every
        call and session; then every caller still on the line hangs up, and after watchdog.GRACE more seconds
        every session must have ended. Without a local host (`bot_url`) there are no sessions to check: []."""
        if self._host is None:
            return []
        self.wait(watchdog.SETTLE)
        found = self._check()
        self._do(self._callers_hang_up)
        self.wait(watchdog.GRACE)
        return found + [v for v in self._check() if v not in found]

    def _callers_hang_up(self) -> None:
        for call in list(self.simulator.calls.values()):
            if not call.ended and call.direction == "incoming":
                self.simulator.hang_up(call)

    def _check(self) -> list[Violation]:
        async def read() -> tuple[list[SimCall], list[dict[str, Any]], float, datetime]:
            elapsed = self.clock.elapsed()
            return (list(self.simulator.calls.values()), self._host.instances(), elapsed,
                    self.clock.now() - timedelta(seconds=elapsed))

        calls, sessions, now, epoch = self._run(read())
        return watchdog.check(calls, sessions, now=now, epoch=epoch)

    # -- running things on the simulation's loop --------------------------------------------------

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        if self._loop is None:
            raise RuntimeError("the simulation is not running; call start() or use it as a context manager")
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(timeout=timeout if timeout is not None else self.wall_timeout + 5)

    def _do(self, action: Callable[[], T]) -> T:
        async def call() -> T:
            return action()

        return self._run(call())

    def _wait(self, condition: Callable[[], bool], within: float, what: str, call: SimCall | None) -> None:
        async def wait() -> None:
            await self.clock.run_until(condition, within=within, wall_timeout=self.wall_timeout)

        try:
            self._run(wait())
        except (TimeoutError, Stuck) as exc:
            raise ExpectationFailed(self._failure(what, str(exc), call)) from None

    def _failure(self, what: str, why: str, call: SimCall | None) -> str:
        transcripts = [call.transcript] if call is not None else self.transcripts()
        return f"expected {what}, but {why}\n\n{render_all(transcripts)}"

    # -- the Teams side -------------------------------------------------------------------------

    @property
    def simulator(self) -> Simulator:
        if self.sim is None:
            raise RuntimeError("the simulation is not running")
        return self.sim

    def dial(self, *, from_phone: str | None = None, from_user: str | None = None, to: Any = None,
             display_name: str | None = None, policy_recording: bool = False) -> CallHandle:
        """A caller rings the bot. `to`: the bot (default), its number, `instance:<id>`, or `app`."""
        if (from_phone is None) == (from_user is None):
            raise ValueError("give exactly one of from_phone or from_user")
        source = from_phone if from_phone is not None else f"user:{from_user}"
        target = str(to) if to is not None and not isinstance(to, BotHandle) else self.number
        call = self._do(lambda: self.simulator.dial(source=source, to=target, display_name=display_name,
                                                    policy_recording=policy_recording))
        return CallHandle(self, call)

    def policy_call(self, recorded: str, others: Sequence[str] = (), *,
                    speech: Mapping[str, Sequence[Say]] | None = None, to: Any = None,
                    display_name: str | None = None, webhook: str | None = None) -> CallHandle:
        """A Teams user under a compliance-recording policy (`recorded`: `user:<id>`) in a call with `others`
        (`+E164`, `user:<id>`): Teams invites the recording bot with a policy-recording incoming call (botData,
        tokenMeetingInfo, incomingContext; 5 s to answer). `speech`: what each party says, by target
        (`simulator.speech.tone(...)` / `wav(...)`, `at` seconds from now); the rest is silence. `to`: how the
        bot is invited (default its resource account, `instance:<id>`). `webhook`: where Teams posts the
        invite (default the bot's calling webhook, the function app), for a test playing the bot itself."""
        if not recorded.startswith("user:"):
            raise ValueError(f"the recorded party is a Teams user (user:<id>), not {recorded!r}")
        target = str(to) if to is not None and not isinstance(to, BotHandle) else f"instance:{self.instance_id}"
        call = self._do(lambda: self.simulator.dial(source=recorded, to=target, display_name=display_name,
                                                    policy_recording=True, others=list(others), speech=speech,
                                                    webhook=webhook))
        return CallHandle(self, call)

    # -- media workers ------------------------------------------------------------------------------

    def start_worker(self, **settings: str) -> Any:
        """Another media worker beside the local host (mediavm/local.py), with `settings` over the workers'
        (e.g. MEDIA_WORKER_CAPACITY="1"). Returns its LocalWorker (`url`, `worker.health()`)."""
        return self._run(self._start_worker(settings))

    def kill_worker(self, worker: Any) -> list[CallHandle]:
        """A media worker crashes (LocalWorker.kill): its media connections drop with no goodbye, its callback
        stops answering, nothing of its calls is finalised (a recording keeps only what it committed). Teams
        ends the bot's leg of each call it served MEDIA_LOSS_TIMEOUT later. Returns those calls."""
        async def kill() -> list[SimCall]:
            served = self.simulator.kill_worker_at(worker.url)
            await worker.kill()
            return served

        return [CallHandle(self, c) for c in self._run(kill())]

    def worker_of(self, call: CallHandle) -> Any:
        """The local media worker serving `call` (the one its callbackUri names), or None."""
        return next((w for w in self.workers if call.call.callback_uri.startswith(w.url)), None)

    def violations(self) -> dict[str, list[str]]:
        """Rules bots broke that Teams does not enforce (a recording status not set in time), by call id."""
        return {c.id: list(c.violations) for c in self.simulator.calls.values() if c.violations}

    def callee(self, target: str, outcome: Outcome = "answer", *, after: float | None = None) -> None:
        """How `target` behaves when the bot calls, transfers to, redirects to or invites it."""
        self.directory.set(target, outcome, after)

    def meeting(self, thread_id: str, organizer: str, attendees: list[str] | None = None) -> Meeting:
        meeting = Meeting(thread_id, organizer, attendees or [])
        self.simulator.meetings[thread_id] = meeting
        return meeting

    def fault(self, fault: GraphFault | NotificationFault) -> None:
        if isinstance(fault, GraphFault):
            self.faults.graph.append(fault)
        else:
            self.faults.notifications.append(fault)

    def wait(self, seconds: float) -> None:
        """Let time pass (virtual in tests), with everything that happens in it."""
        self._run(self.clock.pass_time(seconds, wall_timeout=self.wall_timeout))

    def calls(self) -> list[CallHandle]:
        return [CallHandle(self, c) for c in self.simulator.calls.values()]

    def call(self, call_id: str) -> CallHandle:
        return CallHandle(self, self.simulator.calls[call_id])

    def expect_call(self, to: str | None = None, *, within: float = DEFAULT_WITHIN) -> CallHandle:
        """Wait for the bot to place a call (optionally to `to`) and return it."""
        def placed() -> SimCall | None:
            for candidate in self.simulator.calls.values():
                if candidate.direction == "outgoing" and (to is None or candidate.remote == to
                                                          or to in {leg_t for leg in candidate.legs
                                                                    for leg_t in leg.targets}):
                    return candidate
            return None

        self._wait(lambda: placed() is not None, within, f"the bot to place a call to {to or 'anyone'}", None)
        found = placed()
        assert found is not None
        return CallHandle(self, found)

    def http(self, method: str, path: str, body: Any = None,
             headers: Mapping[str, str] | None = None) -> tuple[int, Any]:
        """Call one of the function app's HTTP endpoints on the local host: `sim.http("POST", "/api/...")`."""
        import aiohttp

        async def send() -> tuple[int, Any]:
            async with self.clock.busy(), aiohttp.ClientSession() as session, session.request(
                    method, f"{self.bot.url}{path}", json=body, headers=dict(headers or {})) as response:
                text = await response.text()
                try:
                    return response.status, await response.json(content_type=None) if text else None
                except ValueError:
                    return response.status, text

        return self._run(send())

    def post_notification(self, body: bytes, *, path: str = "/api/calls", tenant_id: str | None = None,
                          chain_id: str = "sim-chain") -> Reply:
        """POST `body`, byte for byte, to the bot's calling webhook, signed as the simulator signs every
        notification (its outbox's headers: a fresh RS256 token for `tenant_id`, default the bot's tenant).
        For what no simulated call would send: hand-made or fuzzed bodies."""
        import aiohttp

        async def send() -> Reply:
            sim = self.simulator
            headers = sim.outbox.headers(tenant_id or self.tenant_id, chain_id)
            async with self.clock.busy(), sim.session.post(f"{self.bot.url}{path}", data=body, headers=headers,
                                                            timeout=aiohttp.ClientTimeout(total=30)) as response:
                return Reply(response.status, response.content_type, await response.read())

        return self._run(send())

    def transcripts(self) -> list[Transcript]:
        return [c.transcript for c in self.simulator.calls.values()]

    def transcript(self, *, color: bool = False) -> str:
        return render_all(self.transcripts(), color=color)


@dataclass
class CallHandle:
    """One simulated call, seen from the caller's side."""

    simulation: Simulation
    call: SimCall

    @property
    def id(self) -> str:
        return self.call.id

    @property
    def state(self) -> str:
        return self.call.state

    @property
    def heard(self) -> list[Heard]:
        return list(self.call.heard)

    @property
    def transcript(self) -> Transcript:
        return self.call.transcript

    def _wait(self, condition: Callable[[], bool], within: float, what: str) -> None:
        self.simulation._wait(condition, within, what, self.call)

    # -- what the caller does -------------------------------------------------------------------

    def press(self, digits: str) -> CallHandle:
        """Press keys, one after another, as a person would (a quarter second apart)."""
        sim = self.simulation.simulator
        self.simulation._do(lambda: sim.press(self.call, digits))
        self.simulation.wait(sim.tone_gap * max(len(digits) - 1, 0) + 1e-3)
        return self

    def speak(self, seconds: float) -> CallHandle:
        """Talk for `seconds` into the next recording (a voicemail)."""
        self.simulation._do(lambda: self.simulation.simulator.speak(self.call, seconds))
        return self

    def stay_silent(self) -> CallHandle:
        self.simulation._do(lambda: self.simulation.simulator.speak(self.call, None))
        return self

    def wait(self, seconds: float) -> CallHandle:
        self.simulation.wait(seconds)
        return self

    def hang_up(self) -> CallHandle:
        self.simulation._do(lambda: self.simulation.simulator.hang_up(self.call))
        self.simulation.wait(0.001)
        return self

    def participant_joining(self, participant: str, *, speech: Sequence[Say] = ()) -> dict[str, Any]:
        """Another Teams user under the recording policy joins the recorded call; returns what the bot answered
        to the joining notification (which Teams honours: accept adds them to this leg's roster and media,
        inviteNewBot rings the bot again at the URI). `speech`: what they say (`at` from now). A leg whose
        participantCapacity is reached gets no notification: Teams sends a new incoming call at once, and this
        returns {}."""
        count = len(self.call.joining_responses)
        calls = len(self.simulation.simulator.calls)
        self.simulation._do(lambda: self.simulation.simulator.participant_joining(self.call, participant,
                                                                                  speech=speech))
        if len(self.simulation.simulator.calls) > calls:
            return {}
        self._wait(lambda: len(self.call.joining_responses) > count, 10, "the bot to answer the join")
        return self.call.joining_responses[-1]

    def say(self, who: str, what: Say) -> CallHandle:
        """`who` (a party's target: `user:<id>`, `+E164`) says `what` (`simulator.speech.tone` / `wav`), starting
        `what.at` seconds from now."""
        self.simulation._do(lambda: self.simulation.simulator.say(self.call, who, what))
        return self

    def stop_speaking(self, who: str) -> CallHandle:
        """`who` falls silent now, whatever they were saying or were going to."""
        self.simulation._do(lambda: self.simulation.simulator.stop_speaking(self.call, who))
        return self

    def kill_worker(self) -> list[CallHandle]:
        """The bot's worker serving this call dies: its media connections drop and its callback stops answering.
        Teams ends the bot's leg of each call it served 30 s later (410/301005); the people's calls go on.
        Returns the calls it served."""
        worker = self.simulation.worker_of(self)
        if worker is not None:
            return self.simulation.kill_worker(worker)
        served = self.simulation._do(lambda: self.simulation.simulator.kill_worker(self.call))
        return [CallHandle(self.simulation, c) for c in served]

    # -- what the bot's media sees ------------------------------------------------------------------

    @property
    def media(self) -> MediaLink | None:
        """The simulator's side of the bot's app-hosted media: state, ticks sent, what the bot sent."""
        return self.call.media

    @property
    def source_ids(self) -> dict[str, int]:
        """Each participant's media source id (the roster's mediaStreams sourceId), by target."""
        return self.call.source_ids()

    def roster(self) -> list[dict[str, Any]]:
        """The participants as the roster notifications show them."""
        return [p.to_json() for p in self.call.participants.values()]

    @property
    def recording_statuses(self) -> list[RecordingStatusChange]:
        """Every recording status the bot set (updateRecordingStatus), with when."""
        return list(self.call.recording_log)

    @property
    def violations(self) -> list[str]:
        """Rules the bot broke that Teams does not enforce (see docs/testing-flows.md)."""
        return list(self.call.violations)

    @property
    def people_on_the_line(self) -> bool:
        """The people are still talking: a policy-recorded call goes on when a bot's leg ends."""
        if self.call.conversation is not None:
            return not self.call.conversation.ended
        return not self.call.ended

    # -- what the caller expects ----------------------------------------------------------------

    def expect_answered(self, *, within: float = 15.0) -> CallHandle:
        self._wait(lambda: self.call.answered_at is not None or self.call.ended, within, "the bot to answer")
        if self.call.answered_at is None:
            raise ExpectationFailed(self.simulation._failure("the bot to answer", "the call ended", self.call))
        return self

    def expect_prompt(self, name: str, *, within: float = DEFAULT_WITHIN, to_the_end: bool = True) -> Heard:
        """Wait until the caller hears prompt `name` (its file name without .wav); by default, to its end."""
        sim = self.simulation.simulator

        def over(item: Heard) -> bool:
            return item.state(sim.now()) != "playing"

        seen = {id(h) for h in self.call.heard if h.name == name and over(h)}

        def heard() -> Heard | None:
            for item in self.call.heard:
                if item.name == name and id(item) not in seen and (over(item) or not to_the_end):
                    return item
            return None

        self._wait(lambda: heard() is not None or self.call.ended, within, f"prompt {name!r}")
        found = heard()
        if found is None:
            raise ExpectationFailed(self.simulation._failure(f"prompt {name!r}", "the call ended", self.call))
        return found

    def _expect_leg(self, kind: str, to: str | None, outcome: str | None, within: float) -> Leg:
        def leg() -> Leg | None:
            for item in self.call.legs:
                if item.kind == kind and (to is None or to in item.targets):
                    return item
            return None

        what = f"a {kind}" + (f" to {to}" if to else "") + (f" ({outcome})" if outcome else "")
        return self._await_leg(leg, what, outcome, within)

    def _await_leg(self, leg: Callable[[], Leg | None], what: str, outcome: str | None, within: float) -> Leg:
        """Wait for `leg()` to exist, then (unless `outcome` is None) for it to end that way."""
        self._wait(lambda: leg() is not None or self.call.ended, within, what)
        found = leg()
        if found is None:
            raise ExpectationFailed(self.simulation._failure(what, "the call ended without one", self.call))
        if outcome is not None:
            self._wait(lambda: found.outcome != "ringing", within, what)
            if found.outcome != outcome:
                raise ExpectationFailed(self.simulation._failure(what, f"it ended {found.outcome}", self.call))
        return found

    def expect_transfer(self, to: str | None = None, *, outcome: str | None = "answered",
                        within: float = DEFAULT_WITHIN) -> Leg:
        """Wait for the bot to transfer this caller (to `to`); by default also that the target answered."""
        return self._expect_leg("transfer", to, outcome, within)

    def expect_consult(self, to: str | None = None, *, outcome: str | None = "answered",
                       within: float = DEFAULT_WITHIN) -> Leg:
        """Wait for the bot to ring `to` on a call of its own while this caller waits (the first half of a
        consultative transfer); by default also that the target answered. `expect_transfer` then sees the
        hand-over."""
        began = self.call.transcript.entries[0].at if self.call.transcript.entries else 0.0

        def leg() -> Leg | None:
            for other in list(self.simulation.simulator.calls.values()):
                if other is self.call or other.direction != "outgoing":
                    continue
                for item in other.legs:
                    if item.kind == "outbound" and item.started_at >= began and (to is None or to in item.targets):
                        return item
            return None

        what = "the bot ringing " + (to or "someone") + " for a consultative transfer" + (
            f" ({outcome})" if outcome else "")
        return self._await_leg(leg, what, outcome, within)

    def expect_redirect(self, to: str | None = None, *, outcome: str | None = "answered",
                        within: float = DEFAULT_WITHIN) -> Leg:
        return self._expect_leg("redirect", to, outcome, within)

    def expect_invite(self, to: str | None = None, *, outcome: str | None = "answered",
                      within: float = DEFAULT_WITHIN) -> Leg:
        return self._expect_leg("invite", to, outcome, within)

    def expect_recording(self, *, within: float = DEFAULT_WITHIN, downloaded: bool = False) -> Recording:
        """Wait for a recording of the caller (a voicemail) to be captured; optionally, fetched by the bot."""
        self._wait(lambda: (bool(self.call.recordings) and (not downloaded or self.call.recordings[-1].downloaded > 0))
                   or (self.call.ended and not self.call.recordings), within, "a recording")
        if not self.call.recordings:
            raise ExpectationFailed(self.simulation._failure("a recording", "the call ended without one", self.call))
        return self.call.recordings[-1]

    def expect_ended(self, *, code: int | None = None, subcode: int | None = None,
                     within: float = DEFAULT_WITHIN) -> dict[str, Any]:
        self._wait(lambda: self.call.ended, within, "the call to end")
        result = dict(self.call.result_info or {})
        for key, wanted in (("code", code), ("subcode", subcode)):
            if wanted is not None and result.get(key) != wanted:
                raise ExpectationFailed(self.simulation._failure(
                    f"the call to end with {key} {wanted}", f"it ended with {result.get(key)}", self.call))
        return result

    def expect_state(self, state: str, *, within: float = DEFAULT_WITHIN) -> CallHandle:
        self._wait(lambda: self.call.state == state, within, f"the call to be {state}")
        return self

    def expect_media(self, *, within: float = 15.0) -> MediaLink:
        """Wait until the bot's app-hosted media streams (connected, and the call established)."""
        def settled() -> bool:
            link = self.call.media
            return self.call.ended or (link is not None and link.state not in ("connecting", "connected"))

        self._wait(settled, within, "the bot's media to stream")
        link = self.call.media
        if link is None or link.state != "streaming":
            why = (link.failure or link.ended_why or link.state) if link is not None else "it has no app-hosted media"
            raise ExpectationFailed(self.simulation._failure("the bot's media to stream", str(why), self.call))
        return link

    def expect_recording_status(self, status: str, *, within: float = DEFAULT_WITHIN) -> RecordingStatusChange:
        """Wait until the bot sets its recording status to `status` (recording, notRecording, failed)."""
        def found() -> RecordingStatusChange | None:
            return next((c for c in self.call.recording_log if c.status == status), None)

        what = f"the bot to set its recording status to {status}"
        self._wait(lambda: found() is not None or self.call.ended, within, what)
        change = found()
        if change is None:
            raise ExpectationFailed(self.simulation._failure(what, "the call ended", self.call))
        return change


def _public_url(webhook: str) -> str:
    """A bot's BOT_PUBLIC_URL from its calling webhook: the URL without its `/api/calls`. ValueError for a URL
    that is not a calling webhook (no `/api/calls` at the end of its path, or a query)."""
    from urllib.parse import urlsplit

    parts = urlsplit(webhook)
    if parts.query or parts.fragment or not parts.path.rstrip("/").endswith("/api/calls"):
        raise ValueError(f"bot_url {webhook!r} is not a calling webhook: it must be <BOT_PUBLIC_URL>/api/calls, "
                         "without a query, e.g. http://localhost:7071/api/calls")
    return webhook.rstrip("/").removesuffix("/api/calls")


def _store(path: str | None) -> Any:
    """None: histories in memory (SQLite :memory:); a path: a SQLite file the host opens and closes."""
    return None if path is None else str(Path(path))


def _app_root() -> Path:
    """The folder of function_app.py: flows resolve from there whatever the current directory."""
    import function_app

    return Path(function_app.__file__).resolve().parent


