"""Time for the simulator and the local host: real for the demo, virtual for tests.

A virtual clock only moves when nothing is happening. Every piece of work (an HTTP request in flight, a
notification being delivered, an orchestration step) runs inside `clock.busy()`; when the count of busy
scopes drops to zero and stays there, `run_until` jumps the clock to the next timer and fires it. So a
30-second no-input timeout takes no wall time, yet nothing is ever cut short: time never passes while the
bot is still working. The clock moves only while a driver (the test harness) waits in `run_until`, so a
test's caller acts at exact virtual instants and a run is deterministic.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, suppress
from datetime import UTC, datetime, timedelta
from typing import Protocol

Callback = Callable[[], object]

#: Where virtual time starts unless told otherwise: Tuesday 3 March 2026, 10:00 in Seattle (18:00 UTC),
#: inside the sample flows' business hours.
DEFAULT_EPOCH = datetime(2026, 3, 3, 18, 0, 0, tzinfo=UTC)
#: The request header that hands a sender's hold on the clock to the receiver (`Clock.hold`): the simulator
#: posts a notification holding time still, and the local host takes the hold over once its own busy scope has
#: begun, so a bot that then waits on purpose (`pause`) lets virtual time pass while its caller still waits.
HOLD_HEADER = "x-sim-clock-hold"


class Stuck(Exception):
    """Nothing is running, no timer is pending, and the awaited condition is still false."""


class TimerHandle:
    __slots__ = ("callback", "cancelled", "due")

    def __init__(self, due: float, callback: Callback) -> None:
        self.due = due
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""

    def elapsed(self) -> float:
        """Seconds since the clock started (for transcripts)."""

    def call_later(self, delay: float, callback: Callback) -> TimerHandle: ...

    def call_at(self, when: datetime, callback: Callback) -> TimerHandle: ...

    async def sleep(self, delay: float) -> None: ...

    def busy(self) -> AbstractAsyncContextManager[None]:
        """A scope of work during which virtual time must not pass."""

    def enter(self) -> None:
        """Start work that outlives the current call; virtual time waits until the matching `leave`."""

    def leave(self) -> None: ...

    async def pause(self, delay: float) -> None:
        """Sleep `delay` from inside a busy scope: virtual time may pass meanwhile."""

    def hold(self) -> str:
        """Keep time still until `release(token)`: a hold another party can end (HOLD_HEADER)."""

    def release(self, token: str) -> None:
        """End a hold; a second release of the same token does nothing."""

    def changed(self) -> None:
        """Something observable happened: wake whoever waits in run_until."""

    async def run_until(self, condition: Callable[[], bool], *, within: float,
                        wall_timeout: float = 30.0) -> None: ...

    async def idle(self, at_most: float = 2.0) -> None:
        """Wait until no work is in flight."""

    async def pass_time(self, seconds: float, *, wall_timeout: float = 30.0) -> None:
        """Let `seconds` go by with everything that happens in them (a caller staying on the line)."""


class _Base(ABC):
    def __init__(self) -> None:
        self._busy = 0
        self._changed: asyncio.Event | None = None
        self._holds: set[str] = set()
        self._hold_ids = itertools.count(1)

    def _event(self) -> asyncio.Event:
        if self._changed is None:
            self._changed = asyncio.Event()
        return self._changed

    def changed(self) -> None:
        """Something observable happened: wake whoever waits in run_until."""
        self._event().set()

    def enter(self) -> None:
        """Start a piece of work that outlives the current call (pair with `leave`)."""
        self._busy += 1

    def leave(self) -> None:
        self._busy -= 1
        self.changed()

    async def pause(self, delay: float) -> None:
        """Sleep `delay` from inside a busy scope (a request that waits on purpose): time may pass meanwhile."""
        self.leave()
        try:
            await self.sleep(delay)
        finally:
            self.enter()

    def hold(self) -> str:
        """Keep time still until `release(token)`, which whoever has the token may call (HOLD_HEADER)."""
        token = str(next(self._hold_ids))
        self._holds.add(token)
        self.enter()
        return token

    def release(self, token: str) -> None:
        """End a hold; an unknown or already released token does nothing (sender and receiver both release)."""
        if token in self._holds:
            self._holds.discard(token)
            self.leave()

    @asynccontextmanager
    async def _busy_scope(self) -> AsyncIterator[None]:
        self.enter()
        try:
            yield
        finally:
            self.leave()

    def _fire(self, callback: Callback) -> None:
        """Run a timer's callback; a coroutine runs as a task that counts as busy until it ends."""
        result = callback()
        if asyncio.iscoroutine(result):
            self.enter()
            task = asyncio.get_running_loop().create_task(result)
            task.add_done_callback(lambda _: self.leave())

    def busy(self) -> AbstractAsyncContextManager[None]:
        return self._busy_scope()

    def call_at(self, when: datetime, callback: Callback) -> TimerHandle:
        return self.call_later((when - self.now()).total_seconds(), callback)

    @abstractmethod
    async def run_until(self, condition: Callable[[], bool], *, within: float,
                        wall_timeout: float = 30.0) -> None: ...

    @abstractmethod
    def elapsed(self) -> float: ...

    async def idle(self, at_most: float = 2.0) -> None:
        """Wait (up to `at_most` wall seconds) until no work is in flight: a clean place to stop."""
        deadline = time.monotonic() + at_most
        while self._busy and time.monotonic() < deadline:
            event = self._event()
            event.clear()
            with suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), max(deadline - time.monotonic(), 0.001))

    async def pass_time(self, seconds: float, *, wall_timeout: float = 30.0) -> None:
        target = self.elapsed() + seconds
        self.call_later(seconds, lambda: None)
        await self.run_until(lambda: self.elapsed() >= target, within=seconds + 1e-6, wall_timeout=wall_timeout)

    @abstractmethod
    def now(self) -> datetime: ...

    @abstractmethod
    def call_later(self, delay: float, callback: Callback) -> TimerHandle: ...

    @abstractmethod
    async def sleep(self, delay: float) -> None: ...


class RealClock(_Base):
    """Wall-clock time on the running event loop: the demo and `python -m devhost`.

    `start`: what `now()` reads at the beginning (then it runs at wall speed), so a demo falls inside the
    sample flows' business hours whatever day it is run on. None: the real date and time.
    """

    def __init__(self, start: datetime | None = None) -> None:
        super().__init__()
        self._start = time.monotonic()
        self._epoch = start

    def now(self) -> datetime:
        if self._epoch is None:
            return datetime.now(UTC)
        return self._epoch + timedelta(seconds=time.monotonic() - self._start)

    def elapsed(self) -> float:
        return time.monotonic() - self._start

    def call_later(self, delay: float, callback: Callback) -> TimerHandle:
        handle = TimerHandle(time.monotonic() + max(delay, 0.0), callback)
        loop = asyncio.get_running_loop()

        def run() -> None:
            if not handle.cancelled:
                self._fire(callback)
                self.changed()

        loop.call_later(max(delay, 0.0), run)
        return handle

    async def sleep(self, delay: float) -> None:
        await asyncio.sleep(max(delay, 0.0))

    async def run_until(self, condition: Callable[[], bool], *, within: float,
                        wall_timeout: float = 30.0) -> None:
        deadline = time.monotonic() + min(within, wall_timeout)
        while not condition():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"not reached within {min(within, wall_timeout):g} s")
            event = self._event()
            event.clear()
            with suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), min(remaining, 0.05))


class VirtualClock(_Base):
    """Time that jumps to the next timer whenever the system is idle and a driver is waiting."""

    #: Event-loop turns with nothing busy before the system counts as idle: lets sockets and callbacks
    #: that were already scheduled run first.
    SETTLE_TURNS = 8

    def __init__(self, start: datetime = DEFAULT_EPOCH) -> None:
        super().__init__()
        self._epoch = start
        self._now = 0.0
        self._timers: list[tuple[float, int, TimerHandle]] = []
        self._seq = itertools.count()

    def now(self) -> datetime:
        return self._epoch + timedelta(seconds=self._now)

    def elapsed(self) -> float:
        return self._now

    def call_later(self, delay: float, callback: Callback) -> TimerHandle:
        handle = TimerHandle(self._now + max(delay, 0.0), callback)
        heapq.heappush(self._timers, (handle.due, next(self._seq), handle))
        self.changed()
        return handle

    async def sleep(self, delay: float) -> None:
        done = asyncio.get_running_loop().create_future()

        def wake() -> None:
            if not done.done():
                done.set_result(None)

        self.call_later(delay, wake)
        await done

    def pending(self) -> float | None:
        """When the next live timer is due (virtual seconds), or None."""
        while self._timers and self._timers[0][2].cancelled:
            heapq.heappop(self._timers)
        return self._timers[0][0] if self._timers else None

    async def settle(self) -> None:
        """Return once nothing has been busy for SETTLE_TURNS consecutive loop turns."""
        quiet = 0
        while quiet < self.SETTLE_TURNS:
            await asyncio.sleep(0)
            quiet = quiet + 1 if self._busy == 0 else 0
            if self._busy:
                event = self._event()
                event.clear()
                if self._busy:
                    await event.wait()

    async def advance(self) -> bool:
        """Fire every timer due at the next pending instant. False when there is none."""
        due = self.pending()
        if due is None:
            return False
        self._now = max(self._now, due)
        while self._timers and self._timers[0][0] <= self._now:
            _, _, handle = heapq.heappop(self._timers)
            if not handle.cancelled:
                self._fire(handle.callback)
        self.changed()
        return True

    async def run_until(self, condition: Callable[[], bool], *, within: float,
                        wall_timeout: float = 30.0) -> None:
        """Let virtual time pass until `condition()` holds; at most `within` virtual seconds."""
        limit = self._now + within
        wall_deadline = time.monotonic() + wall_timeout
        while True:
            try:
                await asyncio.wait_for(self.settle(), max(wall_deadline - time.monotonic(), 0.001))
            except TimeoutError:
                raise TimeoutError(f"the bot was still busy after {wall_timeout:g} s of wall time "
                                   "(a request or an orchestration step never finished)") from None
            if condition():
                return
            due = self.pending()
            if due is None:
                raise Stuck("nothing is running and no timer is pending")
            if due > limit:
                self._now = max(self._now, limit)
                raise TimeoutError(f"not reached within {within:g} s of simulated time")
            if time.monotonic() > wall_deadline:
                raise TimeoutError(f"not reached within {wall_timeout:g} s of wall time")
            await self.advance()
