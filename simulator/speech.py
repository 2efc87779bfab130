"""What the people on a simulated call say: pure tones or WAV clips over given time spans, as 20 ms frames.

A speech plan is a list of `Say` items per party (`tone(440, seconds=2, at=1)`, `wav("hello.wav", at=3)`);
anything a plan does not cover is silence. The simulator turns each item into an `Utterance` on its own
timeline (simulation seconds) and, for app-hosted media, cuts it into the frames the Teams media service
hands a bot: 20 ms of PCM 16 kHz mono 16-bit (640 bytes), one per speaking participant per tick.
Time is counted in samples (1/16000 s), so frames land on exact sample boundaries whatever the clock does.
"""

from __future__ import annotations

import io
import math
import struct
import wave
from dataclasses import dataclass, replace
from pathlib import Path

SAMPLE_RATE = 16_000
FRAME_SAMPLES = 320  # 20 ms
FRAME_BYTES = FRAME_SAMPLES * 2
#: A tone's amplitude: about -12 dBFS, loud enough to measure, far from clipping.
AMPLITUDE = 8_000


@dataclass(frozen=True)
class Say:
    """One thing a party says, `at` seconds after the plan is given (a call's start, or now for `say`)."""

    at: float
    seconds: float | None
    frequency: float | None = None
    pcm: bytes = b""
    name: str = ""

    def __post_init__(self) -> None:
        if self.at < 0:
            raise ValueError("speech cannot start before it is given (at < 0)")
        if self.seconds is not None and self.seconds <= 0:
            raise ValueError("speech lasts more than 0 seconds")
        if self.frequency is None and not self.pcm:
            raise ValueError("say a tone (frequency) or a WAV clip")
        if self.frequency is not None and not 0 < self.frequency < SAMPLE_RATE / 2:
            raise ValueError(f"a tone's frequency must be between 0 and {SAMPLE_RATE // 2} Hz")
        if self.frequency is not None and self.seconds is None:
            raise ValueError("a tone needs `seconds`")

    @property
    def length(self) -> float:
        """How long it lasts: `seconds`, or a clip's own length (cut to `seconds` when that is shorter)."""
        clip = len(self.pcm) / 2 / SAMPLE_RATE
        if self.frequency is not None:
            return float(self.seconds or 0.0)
        return clip if self.seconds is None else min(clip, self.seconds)

    def describe(self) -> str:
        what = f"a {self.frequency:g} Hz tone" if self.frequency is not None else (self.name or "a clip")
        return f"{what} for {self.length:g} s"


def tone(frequency: float, *, seconds: float, at: float = 0.0) -> Say:
    """A pure tone of `frequency` Hz for `seconds`, starting `at` seconds in."""
    return Say(float(at), float(seconds), frequency=float(frequency), name=f"{frequency:g} Hz")


def wav(clip: str | Path | bytes, *, at: float = 0.0, seconds: float | None = None) -> Say:
    """A WAV clip (mono 16-bit 16 kHz, like the prompts: a path or the file's bytes), starting `at` seconds in;
    `seconds` cuts it short."""
    data = clip if isinstance(clip, bytes) else Path(clip).read_bytes()
    name = "a clip" if isinstance(clip, bytes) else Path(clip).name
    return Say(float(at), None if seconds is None else float(seconds), pcm=wav_pcm(data), name=name)


def wav_pcm(data: bytes) -> bytes:
    """The samples of a mono 16-bit 16 kHz WAV; ValueError naming what else it is."""
    try:
        with wave.open(io.BytesIO(data)) as clip:
            shape = clip.getnchannels(), clip.getsampwidth(), clip.getframerate()
            frames = bytes(clip.readframes(clip.getnframes()))
    except (wave.Error, EOFError) as exc:
        raise ValueError(f"not a PCM WAV file ({exc})") from None
    if shape != (1, 2, SAMPLE_RATE):
        raise ValueError(f"{shape[0]} channel(s), {8 * shape[1]}-bit, {shape[2]} Hz: speech is mono 16-bit 16 kHz")
    if not frames:
        raise ValueError("the WAV file has no samples")
    return frames


def samples(seconds: float) -> int:
    """Simulation seconds as a sample index on the 16 kHz timeline."""
    return round(seconds * SAMPLE_RATE)


@dataclass(frozen=True)
class Utterance:
    """A `Say` placed on the simulation's timeline: samples [start, end)."""

    start: int
    end: int
    say: Say

    @classmethod
    def place(cls, say: Say, base: float) -> Utterance:
        start = samples(base + say.at)
        return cls(start, start + samples(say.length), say)

    def cut(self, at: int) -> Utterance | None:
        """This utterance as it is when its speaker falls silent at sample `at` (None: it never began)."""
        if at <= self.start:
            return None
        return replace(self, end=min(self.end, at))

    def render(self, first: int, count: int) -> bytes:
        """PCM for samples [first, first + count), which this utterance covers."""
        offset = first - self.start
        if self.say.frequency is None:
            return self.say.pcm[offset * 2:(offset + count) * 2]
        return _tone_samples(self.say.frequency, offset, count)


def frame(plan: list[Utterance], start: int) -> bytes | None:
    """The 20 ms frame from sample `start` for a party with this plan; None when it is silent throughout.

    Later items win where items overlap; samples no item covers are silence."""
    end = start + FRAME_SAMPLES
    pcm: bytearray | None = None
    for item in plan:
        first, last = max(start, item.start), min(end, item.end)
        if first >= last:
            continue
        if pcm is None:
            pcm = bytearray(FRAME_BYTES)
        chunk = item.render(first, last - first)
        pcm[(first - start) * 2:(first - start) * 2 + len(chunk)] = chunk
    return bytes(pcm) if pcm is not None else None


def speaking(plan: list[Utterance], at: int) -> Utterance | None:
    """What the party is saying at sample `at`, if anything."""
    found = None
    for item in plan:
        if item.start <= at < item.end:
            found = item
    return found


_TONES: dict[int, bytes] = {}


def _tone_samples(frequency: float, offset: int, count: int) -> bytes:
    """Samples [offset, offset + count) of a tone that starts at sample 0 with phase 0."""
    if frequency.is_integer():
        one = _tone_period(int(frequency))
        period = len(one) // 2
        at = offset % period
        return (one * -(-(at + count) // period))[at * 2:(at + count) * 2]
    step = 2 * math.pi * frequency / SAMPLE_RATE
    return struct.pack(f"<{count}h", *(round(AMPLITUDE * math.sin(step * (offset + i))) for i in range(count)))


def _tone_period(frequency: int) -> bytes:
    """One period of an integer-frequency tone (it repeats every 16000 / gcd(f, 16000) samples)."""
    cached = _TONES.get(frequency)
    if cached is None:
        period = SAMPLE_RATE // math.gcd(frequency, SAMPLE_RATE)
        cached = struct.pack(f"<{period}h", *(round(AMPLITUDE * math.sin(2 * math.pi * frequency * i / SAMPLE_RATE))
                                              for i in range(period)))
        _TONES[frequency] = cached
    return cached
