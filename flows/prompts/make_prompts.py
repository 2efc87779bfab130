"""Regenerate the sample prompts: spoken with espeak-ng, converted by sox to what Graph plays.

Graph plays WAV prompts only as RIFF, PCM, mono, 16-bit, 16 kHz. The generated files are committed, so
nothing here runs at build or test time; run it after changing a text (Debian: apt-get install
espeak-ng sox):

    python3 flows/prompts/make_prompts.py [NAME...]
"""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
import tempfile
import wave
from array import array
from pathlib import Path

HERE = Path(__file__).resolve().parent
VOICE = "en-us"
WORDS_PER_MINUTE = "165"

# File name (without .wav) to what it says. Names say what the prompt says.
PROMPTS = {
    "welcome": "Thank you for calling Contoso.",
    "main-menu": "For sales press 1, support 2, the operator 0, or press 9 to repeat.",
    "no-input": "Sorry, I didn't hear a choice.",
    "invalid-choice": "Sorry, that is not one of the choices.",
    "connecting": "Please hold while I connect you.",
    "sales-voicemail": "Sales is busy right now. Leave a message after the tone, then press pound.",
    "support-voicemail": "Support is busy right now. Leave a message after the tone, then press pound.",
    "voicemail": "No one can take your call. Leave a message after the tone, then press pound.",
    "closed": "Our office is closed. We are open Monday to Friday, 8:30 to 5:30.",
    "thanks-for-message": "Thank you. We will call you back soon.",
    "goodbye": "Goodbye.",
    "reminder-message": "Hello, this is Contoso with a reminder of your appointment tomorrow at ten.",
    "reminder-options": "To confirm, press 1. To hear the message again, press 2.",
    "appointment-confirmed": "Thank you, your appointment is confirmed. Goodbye.",
    "not-confirmed": "We could not confirm your appointment. We will call again later. Goodbye.",
    "queue-greeting": "Please stay on the line for the next available agent.",
    "queue-first": "You are first in line.",
    "queue-second": "You are second in line.",
    "queue-third": "You are third in line.",
    "queue-fourth": "You are fourth in line.",
    "queue-fifth": "You are fifth in line.",
}
#: Not spoken: a short tune (hold music), synthesized here.
MUSIC = "hold-music"


def make(name: str, text: str, out_dir: Path) -> Path:
    target = out_dir / f"{name}.wav"
    with tempfile.TemporaryDirectory() as tmp:
        spoken = Path(tmp) / "spoken.wav"
        subprocess.run(["espeak-ng", "-v", VOICE, "-s", WORDS_PER_MINUTE, "-w", str(spoken), text],  # noqa: S603, S607
                       check=True)
        # Mono, 16-bit, 16 kHz, a plain PCM header; trim trailing silence, keep 0.2 s of it.
        subprocess.run(["sox", str(spoken), "-t", "wavpcm", "-r", "16000", "-c", "1", "-b", "16", "-e",  # noqa: S603, S607
                        "signed-integer", str(target), "reverse", "silence", "1", "0.05", "0.5%", "reverse",
                        "pad", "0", "0.2"], check=True)
    return target


def music(out_dir: Path, *, seconds_per_note: float = 0.4, rate: int = 16_000) -> Path:
    """A gentle 8-bar tune (sine notes with soft edges), 16 kHz mono 16-bit: hold music nobody owns."""
    notes = [392.0, 440.0, 493.9, 587.3, 493.9, 440.0, 392.0, 329.6] * 2 + [349.2, 392.0, 440.0, 523.3,
                                                                           440.0, 392.0, 349.2, 293.7] * 2
    samples = array("h")
    per_note = int(seconds_per_note * rate)
    for freq in notes:
        for i in range(per_note):
            edge = min(1.0, i / 400, (per_note - i) / 800)
            value = math.sin(2 * math.pi * freq * i / rate) + 0.3 * math.sin(4 * math.pi * freq * i / rate)
            samples.append(int(6000 * edge * value))
    target = out_dir / f"{MUSIC}.wav"
    with wave.open(str(target), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples.tobytes())
    return target


def main(argv: list[str]) -> int:
    """All prompts, or only those named (`python3 flows/prompts/make_prompts.py queue-first hold-music`)."""
    names = argv or [*PROMPTS, MUSIC]
    unknown = [n for n in names if n not in PROMPTS and n != MUSIC]
    if unknown:
        print(f"no prompt {', '.join(unknown)}; the prompts: {', '.join([*PROMPTS, MUSIC])}", file=sys.stderr)
        return 2
    spoken = [n for n in names if n in PROMPTS]
    missing = [tool for tool in ("espeak-ng", "sox") if shutil.which(tool) is None]
    if spoken and missing:
        print(f"needs {' and '.join(missing)} (Debian: apt-get install espeak-ng sox)", file=sys.stderr)
        return 1
    for name in names:
        path = music(HERE) if name == MUSIC else make(name, PROMPTS[name], HERE)
        print(f"{path.relative_to(HERE.parent.parent)}  {path.stat().st_size:,} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
