"""`WindowsEngine`: the MediaEngine interface over Microsoft's real-time media library (mediavm/windows/interop.py).

The library raises each received 20 ms buffer on a thread of its own, one event at a time per socket, and wants the
handler back at once. The interop handler copies the bytes out, disposes the buffer and calls `WindowsSession.deliver`
on that thread. `deliver` only appends the tick to a bounded deque (10 s: the oldest tick is dropped for a slow
consumer, as the loopback engine does) and, when the loop is not already due to look, schedules one wake-up with
`loop.call_soon_threadsafe`. Nothing on the library's thread waits for the event loop or for the consumer; memory is
bounded even if the loop stalls. The asyncio side (`frames`, `send`, `close`) runs on the loop; the library's blocking
calls (initialise, create a socket, dispose it, shut down) run in a worker thread so they do not stall the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from mediavm.config import WindowsMediaSettings
from mediavm.engine import FRAME_BYTES, AudioFrame

log = logging.getLogger("mediavm.windows")

#: Ticks held for a slow consumer before the oldest is dropped: 10 s of audio (as the loopback engine).
QUEUE_TICKS = 500
#: The GIL switch interval while the engine runs (Python's default is 5 ms). A library thread whose handler needs the
#: GIL while another Python thread computes waits up to about this long per hand-over; docs/media.md has the numbers.
SWITCH_INTERVAL = 0.001
#: A handler call slower than this (inside Python, after it got the GIL) is counted as slow.
SLOW_HANDLER_NS = 5_000_000


class MediaLibraryError(RuntimeError):
    """The media library could not be loaded, initialised or used; the message says what and why."""


class MediaSink(Protocol):
    """What the interop handlers call, on the library's threads: never blocking, never raising."""

    def deliver(self, frames: list[AudioFrame]) -> None: ...

    def handled(self, nanoseconds: int) -> None: ...

    def handler_error(self, what: str, exc: BaseException) -> None: ...

    def send_status(self, active: bool) -> None: ...

    def failed(self, reason: str) -> None: ...


class SocketHandle(Protocol):
    """One call's AudioSocket, as interop.py wraps it."""

    configuration: str

    def send(self, pcm: bytes) -> None: ...

    def close(self) -> None: ...


class MediaLibrary(Protocol):
    """The media platform, as interop.py wraps it (tests may give another)."""

    runtime: str

    def initialize(self, on_health: Callable[[str], None]) -> None: ...

    def open_socket(self, call_id: str, *, unmixed: bool, send: bool, sink: MediaSink) -> SocketHandle: ...

    def shutdown(self) -> None: ...


@dataclass
class SessionStats:
    received: int = 0  # ticks the library delivered
    dropped: int = 0  # ticks a slow consumer lost (the oldest)
    late: int = 0  # ticks delivered after the session ended (discarded)
    handler_calls: int = 0
    handler_ns: int = 0  # total time inside the handler (after it got the GIL)
    handler_max_ns: int = 0
    handler_slow: int = 0  # calls over SLOW_HANDLER_NS
    handler_errors: int = 0
    sent: int = 0
    send_not_active: int = 0  # frames dropped because the library had not said sending may start
    send_errors: int = 0

    def add(self, other: SessionStats) -> None:
        for name in self.__dataclass_fields__:
            if name == "handler_max_ns":
                self.handler_max_ns = max(self.handler_max_ns, other.handler_max_ns)
            else:
                setattr(self, name, getattr(self, name) + getattr(other, name))


class WindowsSession:
    """One call's media: an AudioSocket (receive; send with `send_audio`) whose configuration is the answer's blob."""

    def __init__(self, call_id: str, loop: asyncio.AbstractEventLoop, *, send_audio: bool,
                 queue_ticks: int = QUEUE_TICKS) -> None:
        self.call_id = call_id
        self._loop = loop
        self._send_audio = send_audio
        self._ticks: deque[list[AudioFrame]] = deque(maxlen=queue_ticks)
        self._limit = queue_ticks
        self._ready = asyncio.Event()
        self._wake_due = False
        self._ended = False  # no more media: frames() ends once the queue is drained
        self._closed = False
        self._send_active = False
        self._socket: SocketHandle | None = None
        self.end_reason: str | None = None
        self.stats = SessionStats()

    def attach(self, socket: SocketHandle) -> None:
        self._socket = socket

    # --- the asyncio side -------------------------------------------------------------------------------

    def configuration(self) -> str:
        if self._socket is None:
            raise RuntimeError("the session has no socket")
        return self._socket.configuration

    async def frames(self) -> AsyncIterator[list[AudioFrame]]:
        while True:
            while self._ticks:
                yield self._ticks.popleft()
            if self._ended:
                return
            self._ready.clear()
            if self._ticks or self._ended:  # delivered between the check and the clear
                continue
            await self._ready.wait()

    async def send(self, pcm: bytes) -> None:
        if len(pcm) != FRAME_BYTES:
            raise ValueError(f"a frame is {FRAME_BYTES} bytes, not {len(pcm)}")
        socket = self._socket
        if socket is None or self._closed or not self._send_audio:
            return
        if not self._send_active:  # the library discards media sent before AudioSendStatusChanged says Active
            self.stats.send_not_active += 1
            return
        try:
            socket.send(pcm)  # quick: the library queues the buffer and disposes it when done
        except Exception as exc:
            self.stats.send_errors += 1
            if self.stats.send_errors == 1:
                log.warning("sending audio on call %s failed: %s", self.call_id, exc)
            return
        self.stats.sent += 1

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._end("closed")
        socket, self._socket = self._socket, None
        if socket is not None:
            try:
                await asyncio.to_thread(socket.close)  # unsubscribes, then AudioSocket.Dispose()
            except Exception:
                log.exception("disposing the audio socket of call %s failed", self.call_id)

    @property
    def closed(self) -> bool:
        return self._closed

    # --- the library's threads (MediaSink) --------------------------------------------------------------

    def deliver(self, frames: list[AudioFrame]) -> None:
        if self._ended:
            self.stats.late += 1
            return
        self.stats.received += 1
        if len(self._ticks) >= self._limit:
            self.stats.dropped += 1  # the deque's maxlen drops the oldest
        self._ticks.append(frames)
        self._wake()

    def handled(self, nanoseconds: int) -> None:
        stats = self.stats
        stats.handler_calls += 1
        stats.handler_ns += nanoseconds
        stats.handler_max_ns = max(stats.handler_max_ns, nanoseconds)
        if nanoseconds > SLOW_HANDLER_NS:
            stats.handler_slow += 1

    def handler_error(self, what: str, exc: BaseException) -> None:
        self.stats.handler_errors += 1
        if self.stats.handler_errors == 1:  # log from the loop, once: the library's thread must not wait for a log
            self._call(log.error, "call %s: the media handler failed (%s): %r; the media library's thread was "
                       "given its buffer back", self.call_id, what, exc)

    def send_status(self, active: bool) -> None:
        self._send_active = active

    def failed(self, reason: str) -> None:
        self._call(log.warning, "call %s: the media stream failed (%s)", self.call_id, reason)
        self._end(reason)

    def _end(self, reason: str) -> None:
        if not self._ended:
            self.end_reason = reason
            self._ended = True
        self._wake()

    def _wake(self) -> None:
        if self._wake_due:
            return
        self._wake_due = True
        self._call(self._woken)

    def _woken(self) -> None:
        self._wake_due = False
        self._ready.set()

    def _call(self, callback: Callable[..., Any], *args: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: the process is going away
            self._loop.call_soon_threadsafe(callback, *args)


def _ms(nanoseconds: float) -> float:
    return round(nanoseconds / 1e6, 3)


class WindowsEngine:
    """Microsoft's media platform in this process (pythonnet), one AudioSocket per call."""

    name = "windows"

    def __init__(self, settings: WindowsMediaSettings, *,
                 library: Callable[[WindowsMediaSettings], MediaLibrary] | None = None) -> None:
        """`library`: builds the MediaLibrary (default: interop.DotNetLibrary, which loads .NET)."""
        self._settings = settings
        self._make_library = library
        self._library: MediaLibrary | None = None
        self._sessions: dict[str, WindowsSession] = {}
        self._finished = SessionStats()  # sessions already forgotten
        self._started = False
        self._platform_health = "Unknown"
        self._switch_interval: float | None = None
        self.started_seconds: float | None = None

    async def start(self) -> None:
        if self._started:
            return
        began = time.perf_counter()
        if self._library is None:
            make = self._make_library
            if make is None:
                from mediavm.windows.interop import DotNetLibrary

                make = DotNetLibrary
            self._library = make(self._settings)  # loads .NET and the library, on this thread (once per process)
        self._switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(min(self._switch_interval, SWITCH_INTERVAL))
        loop = asyncio.get_running_loop()

        def on_health(status: str) -> None:  # on a library thread
            self._platform_health = status
            with contextlib.suppress(RuntimeError):  # the loop is closed: nothing to tell
                loop.call_soon_threadsafe(log.warning, "media platform health: %s", status)

        try:
            await asyncio.to_thread(self._library.initialize, on_health)
        except Exception:
            self._restore_switch_interval()
            raise
        self._platform_health = "Normal"
        self._started = True
        self.started_seconds = time.perf_counter() - began
        log.info("media platform initialised (%s) in %.2f s: %s:%d (internal %d), %s", self._library.runtime,
                 self.started_seconds, self._settings.service_fqdn, self._settings.public_port,
                 self._settings.internal_port, self._settings.public_ip)

    async def create_session(self, call_id: str, *, unmixed_audio: bool = True,
                             send_audio: bool = False) -> WindowsSession:
        if not self._started or self._library is None:
            raise RuntimeError("the media platform is not started")
        session = WindowsSession(call_id, asyncio.get_running_loop(), send_audio=send_audio)
        socket = await asyncio.to_thread(self._library.open_socket, call_id, unmixed=unmixed_audio, send=send_audio,
                                         sink=session)
        session.attach(socket)
        old = self._sessions.pop(call_id, None)
        if old is not None:
            await old.close()
            self._finished.add(old.stats)
        self._sessions[call_id] = session
        return session

    async def stop(self) -> None:
        for session in list(self._sessions.values()):
            await session.close()
            self._finished.add(session.stats)
        self._sessions.clear()
        if self._started and self._library is not None:
            self._started = False
            try:
                await asyncio.to_thread(self._library.shutdown)
            finally:
                self._restore_switch_interval()
            log.info("media platform shut down")
        self._platform_health = "Shutdown"

    def forget(self, call_id: str) -> None:
        session = self._sessions.get(call_id)
        if session is not None and session.closed:
            del self._sessions[call_id]
            self._finished.add(session.stats)

    def stats(self) -> SessionStats:
        total = SessionStats()
        total.add(self._finished)
        for session in self._sessions.values():
            total.add(session.stats)
        return total

    def health(self) -> Mapping[str, Any]:
        total = self.stats()
        return {
            "engine": self.name,
            "started": self._started,
            "sessions": len(self._sessions),
            "runtime": self._library.runtime if self._library is not None else None,
            "platform_health": self._platform_health,
            "ticks": total.received,
            "dropped": total.dropped,
            "handler_mean_ms": _ms(total.handler_ns / total.handler_calls) if total.handler_calls else None,
            "handler_max_ms": _ms(total.handler_max_ns),
            "handler_slow": total.handler_slow,
            "handler_errors": total.handler_errors,
            "sent": total.sent,
            "send_errors": total.send_errors,
        }

    def _restore_switch_interval(self) -> None:
        if self._switch_interval is not None:
            sys.setswitchinterval(self._switch_interval)
            self._switch_interval = None
