"""The media engine interface: what the worker needs of a real-time media stack, modelled on Microsoft's.

Microsoft's library (Microsoft.Skype.Bots.Media with Microsoft.Graph.Communications.Calls.Media) works like
this, and so must every engine here:
- the media platform is initialised once per process (certificate, ports, public address: `start`);
- a call's media session is created *before* the call is answered, and its media configuration is the
  `blob` of the answer's appHostedMediaConfig (`create_session`, `MediaSession.configuration`);
- received audio comes as one buffer per 20 ms: PCM 16 kHz mono 16-bit, with, for meetings, one unmixed
  buffer per active speaker carrying the speaker's media source id (MSI), which the roster's
  `mediaStreams[].sourceId` maps to a participant (`MediaSession.frames`, `AudioFrame.source_id`);
- the library raises these on its own threads, and each buffer must be copied out and disposed at once:
  an engine copies the bytes and hands them to the asyncio loop without blocking the library's thread;
- audio sent back goes out as 20 ms PCM buffers (`MediaSession.send`);
- a session is disposed when its call ends (`MediaSession.close`).
The loopback engine (mediavm/loopback.py) implements this in pure Python for development, tests and the
demo; the Windows engine (mediavm/windows/) implements the same interface over the .NET library.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

SAMPLE_RATE = 16_000
FRAME_MS = 20
FRAME_BYTES = SAMPLE_RATE * FRAME_MS // 1000 * 2  # 640: 20 ms of 16-bit mono PCM at 16 kHz
TICKS_PER_MS = 10_000  # the library's timestamps are 100 ns ticks


@dataclass(frozen=True)
class AudioFrame:
    """20 ms of one speaker's audio as the library hands it out (copied out of its buffer)."""

    source_id: int  # the speaker's media source id (MSI): the roster's mediaStreams[].sourceId
    timestamp: int  # 100 ns ticks, the library's AudioMediaBuffer.Timestamp
    pcm: bytes  # FRAME_BYTES of PCM 16 kHz mono 16-bit


class MediaSession(Protocol):
    """One call's media, created before the answer and closed when the call ends."""

    call_id: str

    def configuration(self) -> str:
        """The media configuration for the answer's appHostedMediaConfig `blob`."""

    def frames(self) -> AsyncIterator[list[AudioFrame]]:
        """Received audio, one list per 20 ms: the unmixed buffer of each active speaker (empty: silence).
        Ends when the session closes or the media connection is lost."""

    async def send(self, pcm: bytes) -> None:
        """Send FRAME_BYTES of PCM to the call."""

    async def close(self) -> None:
        """Dispose of the session; its frames end."""


class MediaEngine(Protocol):
    """A media stack: initialised once, then a session per call."""

    name: str

    async def start(self) -> None:
        """Initialise the media platform (once per process)."""

    async def create_session(self, call_id: str, *, unmixed_audio: bool = True,
                             send_audio: bool = False) -> MediaSession:
        """A media session for `call_id`, to answer with. `unmixed_audio`: one buffer per speaker."""

    async def stop(self) -> None:
        """Close every session and shut the platform down."""

    def health(self) -> Mapping[str, Any]:
        """What the engine knows of itself, for the worker's health endpoint."""
