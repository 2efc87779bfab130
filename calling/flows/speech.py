"""`say:` prompts: text rendered to the WAV Graph plays (mono, 16-bit, 16 kHz PCM) before a call needs it.

Graph plays only WAV URIs, so a say prompt is rendered ahead of time into the flows folder, at
`.rendered/say-<digest>.wav`. The digest is over the renderer's id, the language, the voice and the text:
the same prompt always has the same file name (and so the same prompt URI and Graph resource id), a changed
text or voice another, and the loader can name the file without rendering anything. The app never renders:
`python -m calling.flows check --render` does (locally, and in the azd predeploy hook), and a flow whose say
prompt has no rendered file fails to load, at the prompt's file and line.

Renderers (`SAY_RENDERER`): `espeak-ng` (default; local, tests, and deployments without a Speech
resource) and `azure-speech` (Azure AI Speech over REST with an Entra token, see `AzureSpeech`).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import operator
import os
import re
import shutil
import subprocess
import wave
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

from calling.flows.wav import CHANNELS, RATE, SAMPLE_WIDTH, WavError, read_info

#: Where rendered say prompts live, relative to the flows folder (served and uploaded like any prompt).
RENDERED = ".rendered"
#: Longest say text. About two minutes of speech at a usual 15 characters a second: far more than an IVR
#: prompt should be, well inside Azure AI Speech's 10 minutes of audio per request, and short enough that
#: a pasted document is caught by `check` rather than played to a caller.
MAX_TEXT = 2000
DEFAULT_LANGUAGE = "en-US"
#: A BCP-47 tag as renderers accept it: language, then optional script, region or variant subtags.
LANGUAGE = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$")
#: A voice name: espeak-ng's (`en-us`, `en+f3`, `mb-en1`) or Azure's (`en-US-AvaMultilingualNeural`).
VOICE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,99}$")
#: An Azure neural voice name: its locale is the part before the last dash (`en-US-JennyNeural` -> en-US).
_AZURE_VOICE = re.compile(r"^([a-z]{2,3}-[A-Za-z]{2,4}(?:-[A-Za-z]{2,4})?)-\w+Neural\w*$")

ESPEAK = "espeak-ng"
AZURE = "azure-speech"
RENDERERS = (ESPEAK, AZURE)
#: Bumped when a renderer's output for the same input changes, so its files get new names (and URIs).
_VERSIONS = {ESPEAK: f"{ESPEAK}/1", AZURE: f"{AZURE}/1"}


class SpeechError(WavError):
    """A say prompt that cannot be rendered (no renderer, an unknown voice, a service error)."""


@dataclass(frozen=True)
class Say:
    """A prompt given as text: what to say, and optionally the voice and the language (BCP-47)."""

    text: str
    voice: str = ""
    language: str = ""


def renderer_name() -> str:
    """The renderer say prompts are named and rendered for: `SAY_RENDERER`, default espeak-ng."""
    name = os.environ.get("SAY_RENDERER", "").strip() or ESPEAK
    if name not in RENDERERS:
        raise SpeechError(f"SAY_RENDERER must be one of {', '.join(RENDERERS)}, got {name!r}")
    return name


def file_name(say: Say, renderer: str) -> str:
    """`say-<first 16 hex of sha256(text, voice, language, renderer version)>.wav`."""
    material = json.dumps([say.text, say.voice, say.language, _VERSIONS.get(renderer, renderer)])
    return f"say-{hashlib.sha256(material.encode('utf-8')).hexdigest()[:16]}.wav"


def key(say: Say, renderer: str) -> str:
    """The prompt key (path relative to the flows folder) of a say prompt's rendered file."""
    return f"{RENDERED}/{file_name(say, renderer)}"


Renderer = Callable[[Say], bytes]


def renderer(name: str) -> Renderer:
    """The render function of a renderer by name: `render(say) -> WAV bytes` Graph can play."""
    if name == ESPEAK:
        return render_espeak
    if name == AZURE:
        return AzureSpeech.from_env().render
    raise SpeechError(f"no renderer {name!r} (one of {', '.join(RENDERERS)})")


# --- espeak-ng ------------------------------------------------------------------------------------

def espeak_voice(say: Say) -> str:
    """The espeak-ng voice for a say prompt: its voice, or for an Azure voice name or none its language."""
    if say.voice and not _AZURE_VOICE.match(say.voice):
        return say.voice
    match = _AZURE_VOICE.match(say.voice)
    return (match.group(1) if match else say.language or DEFAULT_LANGUAGE).lower()


def render_espeak(say: Say) -> bytes:
    """Speak `say` with espeak-ng (22050 Hz) and convert it to 16 kHz mono 16-bit PCM WAV."""
    program = shutil.which(ESPEAK)
    if program is None:
        raise SpeechError("espeak-ng is not installed (apt-get install espeak-ng; python3 dev.py setup does it)")
    voice = espeak_voice(say)
    try:
        done = subprocess.run([program, "--stdout", "-v", voice, "--", say.text], capture_output=True,  # noqa: S603
                              timeout=60, check=False)
    except subprocess.TimeoutExpired:
        raise SpeechError("espeak-ng took more than 60 s") from None
    if done.returncode != 0 or not done.stdout.startswith(b"RIFF"):
        why = done.stderr.decode("utf-8", "replace").strip() or f"exit code {done.returncode}"
        raise SpeechError(f"espeak-ng cannot speak it with voice {voice!r}: {why}")
    return to_prompt_wav(done.stdout)


# --- WAV conversion -------------------------------------------------------------------------------

def to_prompt_wav(data: bytes) -> bytes:
    """Any 16-bit PCM WAV (mono or not, any rate) as Graph's prompt format: mono, 16-bit, 16 kHz.

    espeak-ng writes a header whose sizes are 0x7FFFFFFF (it streams), which the stdlib reader refuses
    to trust at the end of the data; the samples are taken from the `data` chunk to the end of the bytes.
    """
    info = read_info(_fixed_sizes(data))
    if info.sample_width != SAMPLE_WIDTH:
        raise SpeechError(f"the renderer wrote {info.sample_width * 8}-bit audio; expected 16-bit")
    with wave.open(io.BytesIO(_fixed_sizes(data)), "rb") as reader:
        frames = reader.readframes(reader.getnframes())
    samples = array("h")
    samples.frombytes(frames[: len(frames) // (2 * info.channels) * 2 * info.channels])
    if info.channels > 1:
        samples = array("h", (sum(samples[i:i + info.channels]) // info.channels
                              for i in range(0, len(samples), info.channels)))
    return wav_bytes(resample(samples, info.rate, RATE))


def _fixed_sizes(data: bytes) -> bytes:
    """The WAV with its RIFF and data chunk sizes set from the bytes actually there."""
    at = data.find(b"data", 12)
    if at < 0:
        return data
    body = len(data) - (at + 8)
    body -= body % 2
    out = bytearray(data[: at + 8 + body])
    out[4:8] = (len(out) - 8).to_bytes(4, "little")
    out[at + 4: at + 8] = body.to_bytes(4, "little")
    return bytes(out)


def resample(samples: array[int], rate: int, to: int, *, taps: int = 16) -> array[int]:
    """Band-limited resampling of 16-bit samples from `rate` to `to` Hz (windowed-sinc interpolation).

    Each output sample is a weighted sum of the `2 * taps` input samples around its position; the
    weights are a Hann-windowed sinc whose cutoff is just below the lower of the two Nyquist frequencies,
    so downsampling (espeak-ng's 22050 Hz to 16 kHz) does not alias and the gain stays 1. The ratio is
    rational, so there are only `to / gcd` distinct weight sets, computed once.
    """
    if rate == to or not samples:
        return array("h", samples)
    g = math.gcd(rate, to)
    up, down = to // g, rate // g
    cutoff = 0.97 * min(1.0, to / rate)  # in units of the input's Nyquist frequency

    def weight(x: float) -> float:
        if abs(x) >= taps:
            return 0.0
        window = 0.5 + 0.5 * math.cos(math.pi * x / taps)
        return cutoff * window * (1.0 if x == 0 else math.sin(math.pi * cutoff * x) / (math.pi * cutoff * x))

    phases = [[weight(p / up - j) for j in range(-taps + 1, taps + 1)] for p in range(up)]
    padded = [0.0] * taps + [float(v) for v in samples] + [0.0] * (taps + 1)
    count = len(samples) * up // down
    out = array("h", bytes(2 * count))
    for i in range(count):
        base, phase = divmod(i * down, up)
        value = sum(map(operator.mul, phases[phase], padded[base + 1: base + 1 + 2 * taps]))
        out[i] = max(-32768, min(32767, round(value)))
    return out


def wav_bytes(samples: array[int], rate: int = RATE) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(CHANNELS)
        writer.setsampwidth(SAMPLE_WIDTH)
        writer.setframerate(rate)
        writer.writeframes(samples.tobytes())
    return buffer.getvalue()


# --- Azure AI Speech ------------------------------------------------------------------------------

#: A multilingual neural voice: it speaks the `xml:lang` of the SSML, so a say prompt needs no voice.
AZURE_DEFAULT_VOICE = "en-US-AvaMultilingualNeural"
AZURE_FORMAT = "riff-16khz-16bit-mono-pcm"  # Graph's prompt format exactly: no conversion


@dataclass(frozen=True)
class AzureSpeech:
    """Azure AI Speech text to speech over REST, authenticated with Entra ID (no keys: disableLocalAuth).

    As documented for the REST API with Microsoft Entra auth
    (https://learn.microsoft.com/azure/ai-services/speech-service/rest-text-to-speech#authentication): POST SSML to
    the region's `https://<region>.tts.speech.microsoft.com/cognitiveservices/v1` with
    `Authorization: Bearer aad#<Speech resource id>#<Entra access token>`. The token, scope
    `https://cognitiveservices.azure.com/.default`, comes from azure-identity's DefaultAzureCredential (the
    deployer's `az login` in the azd hook); the resource needs a custom subdomain for Entra auth
    (infra/modules/speech.bicep) and the caller Cognitive Services Speech User on it.
    """

    region: str
    resource_id: str
    token: Callable[[], str]
    default_voice: str = AZURE_DEFAULT_VOICE

    @classmethod
    def from_env(cls) -> AzureSpeech:
        region = os.environ.get("AZURE_SPEECH_REGION", "").strip().lower()
        resource_id = os.environ.get("AZURE_SPEECH_RESOURCE_ID", "").strip()
        if not re.fullmatch(r"[a-z0-9]+", region):
            raise SpeechError("AZURE_SPEECH_REGION must be the Speech resource's region (for example westeurope)")
        if "/providers/Microsoft.CognitiveServices/accounts/" not in resource_id:
            raise SpeechError("AZURE_SPEECH_RESOURCE_ID must be the Speech resource's id "
                              "(/subscriptions/.../providers/Microsoft.CognitiveServices/accounts/<name>)")

        def token() -> str:
            from azure.identity import DefaultAzureCredential

            return DefaultAzureCredential().get_token("https://cognitiveservices.azure.com/.default").token

        return cls(region, resource_id, token,
                   os.environ.get("AZURE_SPEECH_VOICE", "").strip() or AZURE_DEFAULT_VOICE)

    @property
    def url(self) -> str:
        return f"https://{self.region}.tts.speech.microsoft.com/cognitiveservices/v1"

    def ssml(self, say: Say) -> str:
        language = say.language or _azure_locale(say.voice) or DEFAULT_LANGUAGE
        voice = say.voice if _AZURE_VOICE.match(say.voice) else self.default_voice
        text = escape(say.text)
        if "Multilingual" in voice:  # such a voice speaks the language of its <lang> element
            text = f"<lang xml:lang={quoteattr(language)}>{text}</lang>"
        return (f"<speak version='1.0' xmlns='http://www.w3.org/2001/10/synthesis' xml:lang={quoteattr(language)}>"
                f"<voice name={quoteattr(voice)}>{text}</voice></speak>")

    def render(self, say: Say) -> bytes:
        import urllib.error
        import urllib.request

        request = urllib.request.Request(  # noqa: S310 (a fixed https:// URL)
            self.url, data=self.ssml(say).encode("utf-8"), method="POST",
            headers={"Authorization": f"Bearer aad#{self.resource_id}#{self.token()}",
                     "Content-Type": "application/ssml+xml",
                     "X-Microsoft-OutputFormat": AZURE_FORMAT, "User-Agent": "teams-calling-flows"})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
                data: bytes = response.read()
        except urllib.error.HTTPError as exc:
            raise SpeechError(f"Azure AI Speech answered {exc.code}: {exc.read()[:300]!r}") from None
        except OSError as exc:
            raise SpeechError(f"Azure AI Speech is unreachable: {exc}") from None
        return to_prompt_wav(data)


def _azure_locale(voice: str) -> str:
    match = _AZURE_VOICE.match(voice)
    return match.group(1) if match else ""
