"""The loopback media wire: how the simulator (playing the Teams media service) streams audio to a loopback
media session and hears what the bot sends back. Both sides use these functions; nothing else speaks it.

The session's configuration blob (JSON) names where to connect: `{"engine": "loopback", "v": 1, "host",
"port", "session": <call id>, "token"}`. Over that TCP connection each message is a 1-byte type and a 4-byte
big-endian payload length, then the payload:
- HELLO (1), from the simulator: JSON `{"session", "token"}`, which must match the blob;
- AUDIO (2), from the simulator every 20 ms: 8-byte timestamp (100 ns ticks), a 1-byte count, then per
  active speaker a 4-byte media source id and FRAME_BYTES of PCM (the unmixed buffers; count 0 = silence);
- SENT (3), from the bot: 8-byte timestamp and FRAME_BYTES of PCM it sends to the call;
- BYE (4), either side: the media connection ends.
"""

from __future__ import annotations

import asyncio
import json
import struct
from typing import Any

from mediavm.engine import FRAME_BYTES, AudioFrame

HELLO, AUDIO, SENT, BYE = 1, 2, 3, 4
BLOB_VERSION = 1
_HEAD = struct.Struct(">BI")
_TICK = struct.Struct(">QB")
_SPEAKER = struct.Struct(">I")
MAX_PAYLOAD = 1 + 8 + 255 * (4 + FRAME_BYTES)


class WireError(ValueError):
    """The peer sent something this protocol does not allow."""


def blob(host: str, port: int, session: str, token: str) -> str:
    return json.dumps({"engine": "loopback", "v": BLOB_VERSION, "host": host, "port": port, "session": session,
                       "token": token}, separators=(",", ":"))


def read_blob(text: str) -> dict[str, Any]:
    """The loopback configuration in an appHostedMediaConfig blob; WireError when it is not one."""
    try:
        data = json.loads(text)
    except ValueError:
        raise WireError("the media configuration is not loopback JSON") from None
    if not isinstance(data, dict) or data.get("engine") != "loopback" or data.get("v") != BLOB_VERSION:
        raise WireError("the media configuration is not a loopback one of version 1")
    if not isinstance(data.get("port"), int) or not isinstance(data.get("host"), str):
        raise WireError("the loopback configuration has no host and port")
    return data


def message(kind: int, payload: bytes = b"") -> bytes:
    return _HEAD.pack(kind, len(payload)) + payload


def hello(session: str, token: str) -> bytes:
    return message(HELLO, json.dumps({"session": session, "token": token}).encode())


def audio(timestamp: int, speakers: list[tuple[int, bytes]]) -> bytes:
    """One 20 ms tick: each active speaker's media source id and frame."""
    if len(speakers) > 255:
        raise WireError("at most 255 speakers in one tick")
    parts = [_TICK.pack(timestamp, len(speakers))]
    for source_id, pcm in speakers:
        if len(pcm) != FRAME_BYTES:
            raise WireError(f"a frame is {FRAME_BYTES} bytes, not {len(pcm)}")
        parts += [_SPEAKER.pack(source_id), pcm]
    return message(AUDIO, b"".join(parts))


def sent(timestamp: int, pcm: bytes) -> bytes:
    if len(pcm) != FRAME_BYTES:
        raise WireError(f"a frame is {FRAME_BYTES} bytes, not {len(pcm)}")
    return message(SENT, struct.pack(">Q", timestamp) + pcm)


def parse_audio(payload: bytes) -> list[AudioFrame]:
    if len(payload) < _TICK.size:
        raise WireError("an audio tick is too short")
    timestamp, count = _TICK.unpack_from(payload)
    if len(payload) != _TICK.size + count * (4 + FRAME_BYTES):
        raise WireError(f"an audio tick of {count} speakers has {len(payload)} bytes")
    frames = []
    at = _TICK.size
    for _ in range(count):
        (source_id,) = _SPEAKER.unpack_from(payload, at)
        frames.append(AudioFrame(source_id, timestamp, payload[at + 4:at + 4 + FRAME_BYTES]))
        at += 4 + FRAME_BYTES
    return frames


def parse_sent(payload: bytes) -> tuple[int, bytes]:
    if len(payload) != 8 + FRAME_BYTES:
        raise WireError("a sent frame has the wrong length")
    return struct.unpack_from(">Q", payload)[0], payload[8:]


async def read_message(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """The next (type, payload); asyncio.IncompleteReadError at the end of the stream."""
    kind, length = _HEAD.unpack(await reader.readexactly(_HEAD.size))
    if kind not in (HELLO, AUDIO, SENT, BYE) or length > MAX_PAYLOAD:
        raise WireError(f"message type {kind} of {length} bytes")
    return kind, await reader.readexactly(length)
