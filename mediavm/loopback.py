"""The loopback media engine: the MediaEngine interface in pure Python, for development, tests and the demo.

Each session listens on its own loopback TCP port and names it in its configuration blob
(mediavm/wire.py). Whoever answers the call's media — the simulator, playing the Teams media service —
connects there, streams each speaker's 20 ms frames with its media source id, and hears what the bot sends.
Frames are queued for the worker as the real engine queues them from the library's threads; a slow consumer
loses the oldest ticks, never the connection (the library drops buffers a bot does not take either).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator, Mapping
from typing import Any

from mediavm import wire
from mediavm.engine import FRAME_BYTES, AudioFrame

log = logging.getLogger("mediavm.loopback")

#: Ticks held for a slow consumer before the oldest is dropped: 10 s of audio.
QUEUE_TICKS = 500


class LoopbackSession:
    def __init__(self, call_id: str, host: str, *, send_audio: bool) -> None:
        self.call_id = call_id
        self._host = host
        self._token = secrets.token_urlsafe(12)
        self._send_audio = send_audio
        self._queue: asyncio.Queue[list[AudioFrame] | None] = asyncio.Queue(QUEUE_TICKS)
        self._server: asyncio.Server | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._closed = False
        self.port = 0
        self.dropped = 0  # ticks a slow consumer lost
        self.received = 0  # ticks received

    async def open(self) -> LoopbackSession:
        self._server = await asyncio.start_server(self._serve, self._host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def configuration(self) -> str:
        return wire.blob(self._host, self.port, self.call_id, self._token)

    async def frames(self) -> AsyncIterator[list[AudioFrame]]:
        while True:
            tick = await self._queue.get()
            if tick is None:
                return
            yield tick

    async def send(self, pcm: bytes) -> None:
        if len(pcm) != FRAME_BYTES:
            raise ValueError(f"a frame is {FRAME_BYTES} bytes, not {len(pcm)}")
        if self._writer is not None and self._send_audio and not self._writer.is_closing():
            self._writer.write(wire.sent(0, pcm))
            await self._writer.drain()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._writer is not None and not self._writer.is_closing():
            with contextlib.suppress(ConnectionError):
                self._writer.write(wire.message(wire.BYE))
            self._writer.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        self._end()

    def _end(self) -> None:
        while True:  # make room for the end marker: a closed session's frames end at once
            try:
                self._queue.put_nowait(None)
                return
            except asyncio.QueueFull:
                self._queue.get_nowait()
                self.dropped += 1

    def _put(self, tick: list[AudioFrame]) -> None:
        self.received += 1
        if self._queue.full():
            self._queue.get_nowait()
            self.dropped += 1
        self._queue.put_nowait(tick)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._writer is not None:  # one media connection per session
            writer.close()
            return
        try:
            kind, payload = await wire.read_message(reader)
            if kind != wire.HELLO or _hello(payload) != (self.call_id, self._token):
                log.warning("loopback media for %s: refused a connection without the session's hello", self.call_id)
                writer.close()
                return
            self._writer = writer
            while True:
                kind, payload = await wire.read_message(reader)
                if kind == wire.AUDIO:
                    self._put(wire.parse_audio(payload))
                elif kind == wire.BYE:
                    break
        except (asyncio.IncompleteReadError, ConnectionError, wire.WireError) as exc:
            if not self._closed:
                log.info("loopback media for %s ended: %s", self.call_id, exc or type(exc).__name__)
        finally:
            self._end()
            writer.close()


def _hello(payload: bytes) -> tuple[str, str] | None:
    import json

    try:
        data = json.loads(payload)
    except ValueError:
        return None
    return (str(data.get("session")), str(data.get("token"))) if isinstance(data, dict) else None


class LoopbackEngine:
    """Sessions on loopback TCP ports; `host` is the address they listen on and name in their blobs."""

    name = "loopback"

    def __init__(self, host: str = "127.0.0.1") -> None:
        self._host = host
        self._sessions: dict[str, LoopbackSession] = {}
        self._started = False

    async def start(self) -> None:
        self._started = True

    async def create_session(self, call_id: str, *, unmixed_audio: bool = True,
                             send_audio: bool = False) -> LoopbackSession:
        if not self._started:
            raise RuntimeError("the media platform is not started")
        session = await LoopbackSession(call_id, self._host, send_audio=send_audio).open()
        self._sessions[call_id] = session
        return session

    async def stop(self) -> None:
        for session in list(self._sessions.values()):
            await session.close()
        self._sessions.clear()
        self._started = False

    def forget(self, call_id: str) -> None:
        self._sessions.pop(call_id, None)

    def health(self) -> Mapping[str, Any]:
        return {"engine": self.name, "started": self._started, "sessions": len(self._sessions)}
