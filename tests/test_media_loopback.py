"""The loopback media engine over its wire (mediavm/loopback.py, mediavm/wire.py): what the simulator streams
arrives as the engine interface promises, one list of unmixed frames per 20 ms tick, with source ids."""

from __future__ import annotations

import asyncio

import pytest

from mediavm import wire
from mediavm.engine import FRAME_BYTES
from mediavm.loopback import LoopbackEngine


async def _connect(blob: str, token: str | None = None) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    data = wire.read_blob(blob)
    reader, writer = await asyncio.open_connection(data["host"], data["port"])
    writer.write(wire.hello(data["session"], token or data["token"]))
    await writer.drain()
    return reader, writer


async def test_ticks_arrive_in_order_with_each_speakers_source_id() -> None:
    engine = LoopbackEngine()
    await engine.start()
    session = await engine.create_session("call-1")
    _, writer = await _connect(session.configuration())
    one, two = b"\x01\x00" * (FRAME_BYTES // 2), b"\x02\x00" * (FRAME_BYTES // 2)
    writer.write(wire.audio(10_000, [(11, one), (22, two)]))
    writer.write(wire.audio(210_000, []))
    writer.write(wire.message(wire.BYE))
    await writer.drain()
    ticks = [tick async for tick in session.frames()]
    assert [[(f.source_id, f.timestamp, f.pcm[:2]) for f in tick] for tick in ticks] == [
        [(11, 10_000, b"\x01\x00"), (22, 10_000, b"\x02\x00")], []]
    await engine.stop()


async def test_a_connection_without_the_sessions_token_is_refused() -> None:
    engine = LoopbackEngine()
    await engine.start()
    session = await engine.create_session("call-2")
    reader, writer = await _connect(session.configuration(), token="guess")
    writer.write(wire.audio(0, [(1, bytes(FRAME_BYTES))]))
    await writer.drain()
    assert await reader.read() == b""  # closed by the engine
    await session.close()
    assert [tick async for tick in session.frames()] == []
    await engine.stop()


async def test_a_slow_consumer_loses_the_oldest_ticks_not_the_connection() -> None:
    engine = LoopbackEngine()
    await engine.start()
    session = await engine.create_session("call-3")
    _, writer = await _connect(session.configuration())
    for n in range(600):
        writer.write(wire.audio(n, [(7, bytes(FRAME_BYTES))]))
    writer.write(wire.message(wire.BYE))
    await writer.drain()
    for _ in range(500):  # the consumer is slow: it starts only once everything has arrived
        if session.received == 600:
            break
        await asyncio.sleep(0.01)
    ticks = [tick async for tick in session.frames()]
    assert session.received == 600 and session.dropped == 101  # the oldest, and one for the end marker
    assert ticks[-1][0].timestamp == 599 and len(ticks) == 600 - session.dropped
    await engine.stop()


def test_the_wire_refuses_what_it_does_not_allow() -> None:
    with pytest.raises(wire.WireError):
        wire.audio(0, [(1, b"short")])
    with pytest.raises(wire.WireError):
        wire.read_blob('{"engine": "windows"}')
    with pytest.raises(wire.WireError):
        wire.parse_audio(b"\x00" * 9 + b"\x01")
