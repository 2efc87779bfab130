"""Regenerate the sample prompts: spoken with espeak-ng, converted by sox to what Graph plays.

Graph plays WAV prompts only as RIFF, PCM, mono, 16-bit, 16 kHz. The generated files are committed, so
nothing here runs at build or test time; run it after changing a text (Debian: apt-get install
espeak-ng sox):

    python3 flows/prompts/make_prompts.py
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
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
}


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


def main() -> int:
    missing = [tool for tool in ("espeak-ng", "sox") if shutil.which(tool) is None]
    if missing:
        print(f"needs {' and '.join(missing)} (Debian: apt-get install espeak-ng sox)", file=sys.stderr)
        return 1
    for name, text in PROMPTS.items():
        path = make(name, text, HERE)
        print(f"{path.relative_to(HERE.parent.parent)}  {path.stat().st_size:,} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
