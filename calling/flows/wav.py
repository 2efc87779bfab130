"""Prompt files: Graph plays only RIFF WAV, PCM, mono, 16-bit, 16 kHz, so check that before a call does.

A wrong file does not fail when the flow is deployed but when a caller reaches it, as silence or a
failed playPrompt; checking the header when the flow is checked moves that to the author's desk. The
duration is kept too: the engine bounds how long it waits for a prompt to finish by it.
"""

from __future__ import annotations

import io
import wave
from dataclasses import dataclass
from pathlib import Path

RATE = 16_000
SAMPLE_WIDTH = 2
CHANNELS = 1
FORMAT = "RIFF WAV, PCM, mono, 16-bit, 16 kHz"


class WavError(ValueError):
    """Why a file is not a prompt Graph can play."""


@dataclass(frozen=True)
class WavInfo:
    channels: int
    sample_width: int
    rate: int
    frames: int

    @property
    def duration(self) -> float:
        return self.frames / self.rate if self.rate else 0.0


def read_info(data: bytes) -> WavInfo:
    """The format of a WAV file's bytes; WavError if it is not a RIFF WAVE file with PCM samples."""
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise WavError("not a WAV file (no RIFF/WAVE header)")
    try:
        with wave.open(io.BytesIO(data), "rb") as reader:
            return WavInfo(reader.getnchannels(), reader.getsampwidth(), reader.getframerate(), reader.getnframes())
    except wave.Error as exc:
        text = str(exc)
        if text.startswith("unknown format"):
            tag = text.rsplit(":", 1)[-1].strip()
            raise WavError(f"not PCM (format tag {tag}); write plain PCM samples") from None
        raise WavError(f"not a readable WAV file ({text})") from None
    except EOFError:
        raise WavError("not a readable WAV file (truncated)") from None


def check_prompt(data: bytes) -> WavInfo:
    """The file's format if Graph can play it as a prompt; WavError naming what is wrong otherwise."""
    info = read_info(data)
    wrong: list[str] = []
    if info.channels != CHANNELS:
        wrong.append(f"{info.channels} channels")
    if info.sample_width != SAMPLE_WIDTH:
        wrong.append(f"{info.sample_width * 8}-bit")
    if info.rate != RATE:
        wrong.append(f"{info.rate} Hz")
    if wrong:
        raise WavError(f"must be {FORMAT}; it has {', '.join(wrong)}")
    if info.frames == 0:
        raise WavError("has no audio (0 samples)")
    return info


def check_file(path: str | Path) -> tuple[WavInfo, bytes]:
    """Read and check one prompt file; WavError (also for a missing or unreadable file)."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise WavError("no such file") from None
    except OSError as exc:
        raise WavError(f"cannot read: {exc.strerror or exc}") from None
    return check_prompt(data), data
