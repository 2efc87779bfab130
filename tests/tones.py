"""Test audio for the recorder: pure tones as 20 ms frames, and a Goertzel filter to tell them apart."""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable, Sequence

from mediavm.engine import FRAME_BYTES, SAMPLE_RATE

SAMPLES_PER_FRAME = FRAME_BYTES // 2


def tone_frame(frequency: float, index: int, amplitude: int = 8000) -> bytes:
    """Frame `index` of a continuous tone (phase carries on from frame to frame), 16-bit little-endian."""
    first = index * SAMPLES_PER_FRAME
    samples = array("h", (round(amplitude * math.sin(2 * math.pi * frequency * (first + n) / SAMPLE_RATE))
                          for n in range(SAMPLES_PER_FRAME)))
    return samples.tobytes()


def samples_of(pcm: bytes) -> array[int]:
    out = array("h")
    out.frombytes(pcm)
    return out


def goertzel(samples: Iterable[int], frequency: float, rate: int = SAMPLE_RATE) -> float:
    """The power of `frequency` in `samples` (the Goertzel recurrence: one DFT bin, no FFT)."""
    coefficient = 2 * math.cos(2 * math.pi * frequency / rate)
    s1 = s2 = 0.0
    for x in samples:
        s1, s2 = x + coefficient * s1 - s2, s1
    return s1 * s1 + s2 * s2 - coefficient * s1 * s2


def dominant(pcm: bytes, candidates: Sequence[float]) -> tuple[float, float]:
    """The candidate frequency with the most power in `pcm`, and how many times the runner-up's it has."""
    samples = samples_of(pcm)
    powers = sorted(((goertzel(samples, f), f) for f in candidates), reverse=True)
    (best, frequency), (second, _) = powers[0], powers[1]
    return frequency, best / max(second, 1e-9)
