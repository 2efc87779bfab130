"""Prompt WAV checks: exactly what Graph plays (RIFF, PCM, mono, 16-bit, 16 kHz), with the duration."""

from __future__ import annotations

import io
import struct
import wave
from pathlib import Path

import pytest

from calling.flows.harness import tone_wav
from calling.flows.wav import WavError, check_file, check_prompt, read_info


def test_a_good_prompt_and_its_duration() -> None:
    info = check_prompt(tone_wav(1.5))
    assert (info.channels, info.sample_width, info.rate, info.frames) == (1, 2, 16000, 24000)
    assert info.duration == 1.5


@pytest.mark.parametrize(("data", "message"), [
    (tone_wav(1, rate=8000), "must be RIFF WAV, PCM, mono, 16-bit, 16 kHz; it has 8000 Hz"),
    (tone_wav(1, rate=44100, channels=2), "it has 2 channels, 44100 Hz"),
    (tone_wav(1, width=1), "it has 8-bit"),
    (tone_wav(0.5, width=4), "it has 32-bit"),
    (b"ID3\x04\x00mp3 data", "not a WAV file (no RIFF/WAVE header)"),
    (b"RIFF\x00\x00\x00\x00AVI LIST", "not a WAV file (no RIFF/WAVE header)"),
    (tone_wav(1)[:30], "not a readable WAV file"),
])
def test_wrong_files_say_what_is_wrong(data: bytes, message: str) -> None:
    with pytest.raises(WavError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_prompt(data)


def test_an_empty_wav_is_no_prompt() -> None:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(16000)
    with pytest.raises(WavError, match=r"has no audio \(0 samples\)"):
        check_prompt(buffer.getvalue())


def test_a_float_wav_is_not_pcm() -> None:
    data = bytearray(tone_wav(0.1))
    struct.pack_into("<H", data, 20, 3)  # the fmt chunk's format tag: IEEE float
    with pytest.raises(WavError, match=r"not PCM \(format tag 3\)"):
        read_info(bytes(data))


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(WavError, match="no such file"):
        check_file(tmp_path / "nope.wav")
    with pytest.raises(WavError, match="cannot read"):
        check_file(tmp_path)


def test_the_sample_prompts_are_playable_and_small() -> None:
    prompts = sorted((Path(__file__).resolve().parent.parent / "flows" / "prompts").glob("*.wav"))
    assert len(prompts) >= 10
    for path in prompts:
        info, data = check_file(path)
        if path.stem == "hold-music":  # played again and again: long enough not to flood Graph with playPrompt
            assert 10 <= info.duration <= 30 and len(data) < 1_000_000, path.name
            continue
        assert 0.5 <= info.duration <= 6.5, path.name
        assert len(data) < 200_000, path.name
