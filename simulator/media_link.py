"""The Teams media service for an app-hosted call: the simulator's end of the loopback media wire.

When a bot answers (or places, or joins) a call with an appHostedMediaConfig, the real media service
connects to the media session the bot's media library created. Here the blob must be a loopback one
(mediavm/wire.py): the simulator connects to the host and port it names, says HELLO with its session and
token, and from the moment the call is established sends an AUDIO tick every 20 ms of simulated time, with
the unmixed frame of each participant speaking then, tagged with that participant's media source id. It
keeps every frame the bot SENT, and says BYE when the call ends.

Ticks go out in batches (`BATCH_TICKS` per clock wake), each tick once its 20 ms are over, so a tick's
content is final (a participant who joins or falls silent mid-batch is heard from exactly that sample) and
its timestamp is exact: 100 ns units of simulation time (`clock.elapsed()`), i.e. 625 per 16 kHz sample.
Nothing here holds the clock busy once connected: writes never wait for the bot (a bot that stops reading
loses ticks, as the real library drops buffers nobody takes), and the reader waits outside any busy scope.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from mediavm import wire
from simulator.clock import Clock, TimerHandle
from simulator.speech import FRAME_SAMPLES, SAMPLE_RATE, samples

log = logging.getLogger("simulator.media")

#: Ticks sent per clock wake: 100 ms of audio, each tick sent once its 20 ms are over.
BATCH_TICKS = 5
#: 100 ns units per 16 kHz sample (the media library's timestamps are 100 ns ticks).
UNITS_PER_SAMPLE = 10_000_000 // SAMPLE_RATE
#: Wall seconds the connection may take before the media counts as unreachable.
CONNECT_TIMEOUT = 2.0
#: Wall seconds the simulator waits after HELLO for a refusal (the session closes the connection) before it
#: counts the handshake as accepted: the wire has no acknowledgement.
HANDSHAKE_GRACE = 0.05
#: Bytes the simulator lets pile up unsent before it drops ticks (about 8 s of one speaker's audio).
MAX_UNSENT = 256 * 1024

State = Literal["connecting", "connected", "streaming", "failed", "lost", "closed"]


@dataclass(frozen=True)
class SentFrame:
    """20 ms the bot sent to the call: when it arrived (simulation seconds), its timestamp, the PCM."""

    at: float
    timestamp: int
    pcm: bytes


class MediaLink:
    """One call's media connection. `speakers(sample)` gives (source id, frame) for each participant speaking in
    the 20 ms from that sample; `on_lost(why)` hears the connection end while the call still wants it."""

    def __init__(self, blob: str, *, clock: Clock, speakers: Callable[[int], list[tuple[int, bytes]]],
                 on_lost: Callable[[str], None], on_sent: Callable[[SentFrame], None]) -> None:
        self.blob = blob
        self._clock = clock
        self._speakers = speakers
        self._on_lost = on_lost
        self._on_sent = on_sent
        self.state: State = "connecting"
        self.address = ""
        self.failure: str | None = None
        self.connected_at: float | None = None
        self.started_at: float | None = None
        self.ended_at: float | None = None
        self.ended_why: str | None = None
        #: AUDIO ticks sent, speaker frames in them (all and per source id), ticks dropped (the bot not reading).
        self.ticks = 0
        self.frames = 0
        self.frames_by_source: Counter[int] = Counter()
        self.dropped = 0
        self.sent: list[SentFrame] = []
        self._start_sample = 0
        self._next_tick = 0
        self._want_start = False
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None
        self._timer: TimerHandle | None = None
        self._refusal: str | None = None

    # -- setting up --------------------------------------------------------------------------------

    async def connect(self) -> str | None:
        """Connect and say HELLO; the reason it failed, or None. Call inside a busy scope: it is quick."""
        try:
            config = wire.read_blob(self.blob)
        except wire.WireError as exc:
            return self._fail(f"{exc}: the simulator plays only the loopback media wire (mediavm/wire.py)")
        host, port = config["host"], config["port"]
        self.address = f"{host}:{port}"
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), CONNECT_TIMEOUT)
        except (OSError, TimeoutError) as exc:
            return self._fail(f"could not connect to {self.address}: {exc or type(exc).__name__}")
        self._reader, self._writer = reader, writer
        writer.write(wire.hello(str(config.get("session", "")), str(config.get("token", ""))))
        try:
            await asyncio.wait_for(writer.drain(), CONNECT_TIMEOUT)
        except (OSError, TimeoutError) as exc:
            self._abort()
            return self._fail(f"{self.address} did not take the hello: {exc or type(exc).__name__}")
        self._task = asyncio.get_running_loop().create_task(self._read())
        done, _ = await asyncio.wait({self._task}, timeout=HANDSHAKE_GRACE)
        if done or self.state != "connecting":
            return self._fail(f"{self.address} refused the session ({self._refusal or 'closed'})")
        self.state = "connected"
        self.connected_at = self._clock.elapsed()
        if self._want_start:
            self.start()
        return None

    def _fail(self, why: str) -> str:
        self.state, self.failure = "failed", why
        self.ended_at = self._clock.elapsed()
        self._abort()
        return why

    def start(self) -> None:
        """The call is established: the first tick covers the 20 ms from now. Before the connection is up, it
        starts once it is."""
        if self.state == "connecting":
            self._want_start = True
            return
        if self.state != "connected":
            return
        self.state = "streaming"
        self.started_at = self._clock.elapsed()
        self._start_sample = samples(self.started_at)
        self._schedule()

    # -- streaming ---------------------------------------------------------------------------------

    def _schedule(self) -> None:
        due = (self._start_sample + (self._next_tick + BATCH_TICKS) * FRAME_SAMPLES) / SAMPLE_RATE
        self._timer = self._clock.call_later(max(due - self._clock.elapsed(), 0.0), self._wake)

    def _wake(self) -> None:
        self._timer = None
        if self.state != "streaming":
            return
        self.catch_up()
        if self.state == "streaming":
            self._schedule()

    def catch_up(self) -> None:
        """Send every tick whose 20 ms are over. Call before anything that changes what a tick carries
        (a participant joins, leaves, is muted, starts or stops speaking) and before the media ends."""
        if self.state != "streaming" or self._writer is None:
            return
        now = samples(self._clock.elapsed())
        writer = self._writer
        while self._start_sample + (self._next_tick + 1) * FRAME_SAMPLES <= now:
            start = self._start_sample + self._next_tick * FRAME_SAMPLES
            self._next_tick += 1
            if writer.is_closing():
                self._lose("the media connection closed")
                return
            speakers = self._speakers(start)
            if writer.transport.get_write_buffer_size() > MAX_UNSENT:
                self.dropped += 1
                continue
            writer.write(wire.audio(start * UNITS_PER_SAMPLE, speakers))
            self.ticks += 1
            self.frames += len(speakers)
            self.frames_by_source.update(source for source, _ in speakers)

    def tick_time(self, index: int) -> float:
        """When tick `index` (0 = the first) begins, in simulation seconds."""
        return (self._start_sample + index * FRAME_SAMPLES) / SAMPLE_RATE

    async def _read(self) -> None:
        """What the bot sends: SENT frames until BYE or the end of the connection."""
        reader = self._reader
        assert reader is not None
        why = "the bot closed the media connection"
        try:
            while True:
                kind, payload = await wire.read_message(reader)
                if kind == wire.SENT:
                    timestamp, pcm = wire.parse_sent(payload)
                    sent = SentFrame(self._clock.elapsed(), timestamp, pcm)
                    self.sent.append(sent)
                    self._on_sent(sent)
                elif kind == wire.BYE:
                    why = "the bot said BYE on the media connection"
                    break
                else:
                    raise wire.WireError(f"the bot sent message type {kind}, which only the media service sends")
        except asyncio.IncompleteReadError:
            pass  # the connection closed mid-message: `why` already says the bot closed it
        except (ConnectionError, OSError) as exc:
            why = f"the media connection failed: {exc or type(exc).__name__}"
        except wire.WireError as exc:
            why = f"the media connection broke the wire protocol: {exc}"
        if self.state == "connecting":
            self._refusal = why
            return
        self._lose(why)

    def _lose(self, why: str) -> None:
        if self.state not in ("connected", "streaming"):
            return
        self.state, self.ended_at, self.ended_why = "lost", self._clock.elapsed(), why
        self._stop_timer()
        self._abort()
        self._on_lost(why)

    def catch_up_quietly(self) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            self.catch_up()

    # -- ending --------------------------------------------------------------------------------------

    def close(self, why: str = "the call ended") -> None:
        """The call ended: the last ticks, then BYE, then the connection closes."""
        if self.state in ("failed", "lost", "closed"):
            return
        self.catch_up_quietly()
        if self._writer is not None and not self._writer.is_closing():
            self._writer.write(wire.message(wire.BYE))
            self._writer.close()
        self.state, self.ended_at, self.ended_why = "closed", self._clock.elapsed(), why
        self._stop_timer()

    def drop(self, why: str) -> None:
        """The bot's side is gone (its worker died): the connection ends with no BYE."""
        if self.state not in ("connected", "streaming"):
            return
        self.catch_up_quietly()
        self.state, self.ended_at, self.ended_why = "lost", self._clock.elapsed(), why
        self._stop_timer()
        self._abort()

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _abort(self) -> None:
        if self._writer is not None and not self._writer.is_closing():
            self._writer.transport.abort()

    async def aclose(self) -> None:
        """Release everything (the simulator stops)."""
        self.close("the simulator stopped")
        self._abort()
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._writer is not None:
            with contextlib.suppress(OSError, ConnectionError):
                await self._writer.wait_closed()
