"""Audio the simulator handles: how long a prompt plays (from its WAV) and the WAV a recording produces.

A prompt's length is read from the file its URI points at, the way the media platform would fetch it.
When the URI cannot be fetched or is not a WAV Graph accepts (RIFF PCM, mono, 16-bit, 16 kHz), the play
operation fails, as it would in Teams, and the transcript says why.
"""

from __future__ import annotations

import io
import math
import struct
import wave
from dataclasses import dataclass

import aiohttp

SAMPLE_RATE = 16_000


@dataclass(frozen=True)
class PromptAudio:
    seconds: float | None
    problem: str | None = None


def wav_seconds(data: bytes) -> float:
    """Length of a WAV Graph can play. Raises ValueError naming what is wrong with it."""
    try:
        with wave.open(io.BytesIO(data)) as wav:
            channels, width, rate, frames = wav.getnchannels(), wav.getsampwidth(), wav.getframerate(), wav.getnframes()
    except (wave.Error, EOFError) as exc:
        raise ValueError(f"not a PCM WAV file ({exc})") from None
    problems = [text for bad, text in ((channels != 1, f"{channels} channels (Graph plays mono)"),
                                       (width != 2, f"{8 * width}-bit samples (Graph plays 16-bit)"),
                                       (rate != SAMPLE_RATE, f"{rate} Hz (Graph plays 16 kHz)")) if bad]
    if problems:
        raise ValueError("; ".join(problems))
    return float(frames) / float(rate)


class PromptLibrary:
    """Fetches and measures prompts once per URI (the media platform caches by resourceId too)."""

    def __init__(self, *, default_seconds: float | None = None, fetch_timeout: float = 5.0) -> None:
        self.default_seconds = default_seconds
        self._cache: dict[str, PromptAudio] = {}
        self._timeout = fetch_timeout
        self.durations: dict[str, float] = {}

    async def measure(self, uri: str, session: aiohttp.ClientSession) -> PromptAudio:
        if uri in self.durations:
            return PromptAudio(self.durations[uri])
        if uri in self._cache:
            return self._cache[uri]
        audio = await self._fetch(uri, session)
        if audio.problem is not None and self.default_seconds is not None:
            audio = PromptAudio(self.default_seconds)
        self._cache[uri] = audio
        return audio

    async def _fetch(self, uri: str, session: aiohttp.ClientSession) -> PromptAudio:
        try:
            async with session.get(uri, timeout=aiohttp.ClientTimeout(total=self._timeout)) as response:
                if response.status != 200:
                    return PromptAudio(None, f"fetching {uri} returned HTTP {response.status}")
                data = await response.read()
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            return PromptAudio(None, f"could not fetch {uri}: {exc or type(exc).__name__}")
        try:
            return PromptAudio(wav_seconds(data))
        except ValueError as exc:
            return PromptAudio(None, f"{uri}: {exc}")


def tone_wav(seconds: float, *, frequency: float = 440.0) -> bytes:
    """A mono 16-bit 16 kHz WAV: what the simulator 'records' when a caller speaks."""
    frames = int(seconds * SAMPLE_RATE)
    samples = (int(6000 * math.sin(2 * math.pi * frequency * i / SAMPLE_RATE)) for i in range(frames))
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(SAMPLE_RATE)
        wav.writeframes(b"".join(struct.pack("<h", s) for s in samples))
    return buffer.getvalue()
