"""`say:` prompts: validated with positions, rendered by espeak-ng to Graph's WAV format under a content-hash
name, refused (at the prompt) until rendered, and played in a simulated call like any recorded prompt."""

from __future__ import annotations

import io
import json
import math
import shutil
import wave
from array import array
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jsonschema
import pytest

from calling.flows import speech
from calling.flows.__main__ import main
from calling.flows.load import load_bundle, parse_flow
from calling.flows.prompts import flow_prompts, prompt_uri
from calling.flows.schema import schema
from calling.flows.snapshot import restore, snapshot
from calling.flows.wav import check_file, check_prompt
from calling.yamlsource import SourceErrors

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                  reason="espeak-ng is not installed (python3 dev.py setup installs it as root; "
                                         "else apt-get install espeak-ng)")

WELCOME = "Welcome to Contoso. For sales, press 1. For support, press 2."
FLOW = f"""\
version: 1
nodes:
  welcome:
    type: play
    prompt:
      - say: {WELCOME}
      - prompts/goodbye.wav
    next: voicemail
  voicemail:
    type: record
    prompt: {{say: "Please leave a message after the tone.", language: en-GB}}
    next: bye
  bye:
    type: hangup
"""


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "prompts").mkdir()
    shutil.copy(Path(__file__).resolve().parent.parent / "flows" / "prompts" / "goodbye.wav", tmp_path / "prompts")
    (tmp_path / "f.yaml").write_text(FLOW, encoding="utf-8")
    return tmp_path


# --- the language ---------------------------------------------------------------------------------

def test_a_say_prompt_is_the_key_of_its_rendered_file() -> None:
    flow = parse_flow(FLOW, "f.yaml", renderer=speech.ESPEAK)
    welcome, goodbye = flow.nodes["welcome"].prompt  # type: ignore[attr-defined]
    assert goodbye == "prompts/goodbye.wav"
    assert welcome == speech.key(speech.Say(WELCOME), speech.ESPEAK)
    assert welcome.startswith(".rendered/say-") and welcome.endswith(".wav") and len(welcome) == len(
        ".rendered/say-0123456789abcdef.wav")
    assert flow.says[welcome] == speech.Say(WELCOME)
    assert flow.says[flow.nodes["voicemail"].prompt] == speech.Say(  # type: ignore[attr-defined]
        "Please leave a message after the tone.", language="en-GB")


def test_the_name_follows_the_text_voice_language_and_renderer_only() -> None:
    base = speech.Say("Hello")
    name = speech.file_name(base, speech.ESPEAK)
    assert speech.file_name(speech.Say("Hello"), speech.ESPEAK) == name
    others = {speech.file_name(speech.Say("Hello!"), speech.ESPEAK),
              speech.file_name(speech.Say("Hello", voice="en+f3"), speech.ESPEAK),
              speech.file_name(speech.Say("Hello", language="en-GB"), speech.ESPEAK),
              speech.file_name(base, speech.AZURE)}
    assert name not in others and len(others) == 4
    # white space in the YAML (folded lines, indentation) is not part of what is said
    a = parse_flow("nodes:\n  a: {type: play, prompt: {say: 'Hello   there'}, next: b}\n  b: {type: hangup}\n",
                   renderer=speech.ESPEAK)
    b = parse_flow("nodes:\n  a: {type: play, prompt: {say: 'Hello there'}, next: b}\n  b: {type: hangup}\n",
                   renderer=speech.ESPEAK)
    assert a.nodes["a"].prompt == b.nodes["a"].prompt  # type: ignore[attr-defined]


@pytest.mark.parametrize(("prompt", "expected"), [
    ("{say: ''}", "f.yaml:2:37: nodes.a.prompt.say: must be the text to speak, got ''"),
    ("{say: '   '}", "f.yaml:2:37: nodes.a.prompt.say: must be the text to speak, got '   '"),
    ("{say: 42}", "f.yaml:2:37: nodes.a.prompt.say: must be the text to speak, got 42"),
    ("{voice: en-us}", "f.yaml:2:28: nodes.a.prompt: a prompt given as a mapping needs `say`: the text to speak"),
    ("{say: hi, colour: red}", "f.yaml:2:46: nodes.a.prompt.colour: unknown key (expected one of say, voice, "
                               "language)"),
    ("{say: hi, language: en_US}", "f.yaml:2:46: nodes.a.prompt.language: must be a BCP-47 language tag such as "
                                   "en-US or fr-CA, got 'en_US'"),
    ("{say: hi, voice: 'rm -rf'}", "f.yaml:2:46: nodes.a.prompt.voice: must be a voice name such as en-us "
                                   "(espeak-ng) or en-US-AvaMultilingualNeural (Azure AI Speech), got 'rm -rf'"),
    ("[prompts/a.wav, {say: ''}]", "f.yaml:2:53: nodes.a.prompt[1].say: must be the text to speak, got ''"),
    (f"{{say: {'a' * 2001}}}", "f.yaml:2:37: nodes.a.prompt.say: is 2001 characters; at most 2000 (about two "
                               "minutes of speech): split it or record a .wav"),
])
def test_a_bad_say_prompt_is_reported_at_its_field(prompt: str, expected: str) -> None:
    text = f"nodes:\n  a: {{type: play, next: b, prompt: {prompt}}}\n  b: {{type: hangup}}\n"
    with pytest.raises(SourceErrors) as caught:
        parse_flow(text, "f.yaml", renderer=speech.ESPEAK)
    assert [str(e) for e in caught.value.errors] == [expected]


def test_the_longest_text_is_accepted() -> None:
    text = f"nodes:\n  a: {{type: play, next: b, prompt: {{say: {'a' * speech.MAX_TEXT}}}}}\n  b: {{type: hangup}}\n"
    parse_flow(text, renderer=speech.ESPEAK)


def test_an_unknown_renderer_setting_is_an_error_at_the_prompt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAY_RENDERER", "festival")
    with pytest.raises(SourceErrors) as caught:
        parse_flow(FLOW, "f.yaml")
    assert "f.yaml:6:9: nodes.welcome.prompt[0]: SAY_RENDERER must be one of espeak-ng, azure-speech, got " \
           "'festival'" in [str(e) for e in caught.value.errors]


def test_the_schema_takes_say_prompts_as_the_loader_does() -> None:
    validator = jsonschema.Draft202012Validator(schema())
    play = {"type": "play", "next": "b"}

    def ok(prompt: object) -> bool:
        return validator.is_valid({"nodes": {"a": {**play, "prompt": prompt}, "b": {"type": "hangup"}}})

    assert ok({"say": "Hello"}) and ok({"say": "Bonjour", "voice": "fr-FR-DeniseNeural", "language": "fr-FR"})
    assert ok(["prompts/a.wav", {"say": "Hello", "voice": "en+f3"}]) and ok("prompts/a.wav")
    for bad in ({"say": ""}, {"say": "  "}, {"say": "a" * 2001}, {"voice": "en-us"}, {"say": "hi", "x": 1},
                {"say": "hi", "language": "en_US"}, {"say": "hi", "voice": "a b"}, "a.mp3"):
        assert not ok(bad), bad
    record = {"nodes": {"a": {"type": "record", "prompt": {"say": "hi"}, "next": "b"}, "b": {"type": "hangup"}}}
    assert validator.is_valid(record)


# --- rendering and loading ------------------------------------------------------------------------

def test_a_say_prompt_that_is_not_rendered_fails_check_at_its_line(folder: Path) -> None:
    code, out, err = run("check", "--renderer", "espeak-ng", str(folder / "f.yaml"))
    assert code == 1 and out == ""
    lines = err.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"{folder}/f.yaml:6:9: nodes.welcome.prompt[0]: say prompt 'Welcome to Contoso. "
                               "For sales, press 1.…': not rendered yet (.rendered/say-")
    assert lines[0].endswith(f".wav): python -m calling.flows check --render {folder}/f.yaml")
    assert lines[1].startswith(f"{folder}/f.yaml:11:5: nodes.voicemail.prompt: say prompt 'Please leave")
    with pytest.raises(SourceErrors):  # the app's flow load fails the same way: never a silent caller
        load_bundle(folder / "f.yaml", renderer=speech.ESPEAK)


@needs_espeak
def test_check_render_renders_graphs_format_once_and_then_check_passes(folder: Path) -> None:
    code, out, err = run("check", "--render", "--renderer", "espeak-ng", str(folder / "f.yaml"))
    assert (code, err) == (0, "")
    assert out.startswith(f"{folder}/f.yaml: ok (3 nodes, 3 prompts (2 say), ")
    rendered = sorted((folder / ".rendered").iterdir())
    assert [p.name for p in rendered] == sorted(
        speech.file_name(s, speech.ESPEAK) for s in (speech.Say(WELCOME), speech.Say(
            "Please leave a message after the tone.", language="en-GB")))
    welcome = folder / speech.key(speech.Say(WELCOME), speech.ESPEAK)
    info, _ = check_file(welcome)  # RIFF WAV, PCM, mono, 16-bit, 16 kHz
    assert (info.channels, info.sample_width, info.rate) == (1, 2, 16_000)
    assert 2.0 < info.duration < 10.0  # eleven words
    with wave.open(str(welcome)) as reader:
        samples = array("h", reader.readframes(reader.getnframes()))
    rms = math.sqrt(sum(s * s for s in samples) / len(samples))
    assert rms > 300 and max(map(abs, samples)) > 3000  # speech, not silence

    before = welcome.stat().st_mtime_ns
    assert run("check", "--renderer", "espeak-ng", str(folder / "f.yaml"))[0] == 0  # rendered: plain check passes
    assert run("check", "--render", "--renderer", "espeak-ng", str(folder / "f.yaml"))[0] == 0
    assert welcome.stat().st_mtime_ns == before  # cached: not rendered again

    bundle = load_bundle(folder / "f.yaml", renderer=speech.ESPEAK)
    keys = [p.key for p in flow_prompts(bundle)]
    assert keys[0] == welcome.relative_to(folder).as_posix() and keys[1] == "prompts/goodbye.wav"
    uri = prompt_uri("https://bot.example.com/api/prompts", bundle.prompts[keys[0]])
    assert uri.startswith(f"https://bot.example.com/api/prompts/.rendered/{welcome.name}?v=")
    again = restore(json.loads(json.dumps(snapshot(bundle))))  # what a call's session carries rebuilds it
    assert again == bundle and again.flow.says == bundle.flow.says


@needs_espeak
def test_a_changed_text_is_a_new_file_and_the_old_one_is_not_used(folder: Path) -> None:
    assert run("check", "--render", "--renderer", "espeak-ng", str(folder / "f.yaml"))[0] == 0
    first = load_bundle(folder / "f.yaml", renderer=speech.ESPEAK)
    (folder / "f.yaml").write_text(FLOW.replace("press 2", "press 3"), encoding="utf-8")
    assert run("check", "--renderer", "espeak-ng", str(folder / "f.yaml"))[0] == 1  # the new text: not rendered
    assert run("check", "--render", "--renderer", "espeak-ng", str(folder / "f.yaml"))[0] == 0
    second = load_bundle(folder / "f.yaml", renderer=speech.ESPEAK)
    assert flow_prompts(first)[0].key != flow_prompts(second)[0].key
    assert flow_prompts(first)[0].sha256 != flow_prompts(second)[0].sha256
    assert second.version != first.version


@needs_espeak
def test_a_voice_espeak_ng_does_not_have_fails_check_render_at_the_prompt(folder: Path) -> None:
    (folder / "f.yaml").write_text(FLOW.replace("language: en-GB", "voice: nosuchvoice"), encoding="utf-8")
    code, _, err = run("check", "--render", "--renderer", "espeak-ng", str(folder / "f.yaml"))
    assert code == 1
    assert err.splitlines() == [f"{folder}/f.yaml:11:5: nodes.voicemail.prompt: say prompt 'Please leave a "
                                "message after the tone.': espeak-ng cannot speak it with voice 'nosuchvoice': "
                                "Error: The specified espeak-ng voice does not exist."]
    assert not list((folder / ".rendered").glob("*.partial"))


@needs_espeak
def test_espeak_speaks_an_azure_voice_in_its_language() -> None:
    assert speech.espeak_voice(speech.Say("Bonjour", voice="fr-FR-DeniseNeural")) == "fr-fr"
    assert speech.espeak_voice(speech.Say("Hallo", language="de-DE")) == "de-de"
    assert speech.espeak_voice(speech.Say("Hi", voice="en+f3")) == "en+f3"
    assert speech.espeak_voice(speech.Say("Hi")) == "en-us"
    check_prompt(speech.render_espeak(speech.Say("Bonjour", voice="fr-FR-DeniseNeural")))


def test_resampling_keeps_the_level_and_removes_what_would_alias() -> None:
    def tone(hz: float, rate: int) -> array[int]:
        return array("h", (round(10_000 * math.sin(2 * math.pi * hz * n / rate)) for n in range(rate)))

    kept = speech.resample(tone(1000, 22_050), 22_050, 16_000)
    assert len(kept) == 16_000
    assert 9_800 < max(kept[100:-100]) <= 10_100
    gone = speech.resample(tone(10_000, 22_050), 22_050, 16_000)  # above 16 kHz's Nyquist frequency
    assert max(map(abs, gone[100:-100])) < 200
    assert speech.resample(array("h", [1, 2, 3]), 16_000, 16_000) == array("h", [1, 2, 3])


def test_to_prompt_wav_takes_espeaks_streamed_header_and_stereo() -> None:
    pcm = array("h", [1000, -1000] * 11_025)  # stereo 22050 Hz, 1 s
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(2)
        writer.setsampwidth(2)
        writer.setframerate(22_050)
        writer.writeframes(pcm.tobytes())
    data = bytearray(buffer.getvalue())
    data[4:8] = data[40:44] = (0x7FFFFFFF).to_bytes(4, "little")  # as espeak-ng --stdout writes it
    info = check_prompt(speech.to_prompt_wav(bytes(data)))
    assert (info.channels, info.rate) == (1, 16_000) and abs(info.duration - 0.5) < 0.01


# --- Azure AI Speech (the request only: no service here) ------------------------------------------

def test_azure_speech_asks_for_graphs_format_with_an_entra_token(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[object] = []
    wav = speech.wav_bytes(array("h", [500, -500] * 800))

    class Response(io.BytesIO):
        def __enter__(self) -> Response:
            return self

        def __exit__(self, *_: object) -> None:
            return None

    def urlopen(request: object, timeout: float) -> Response:
        sent.append(request)
        return Response(wav)

    monkeypatch.setattr("urllib.request.urlopen", urlopen)
    resource = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.CognitiveServices/accounts/spch-contoso"
    azure = speech.AzureSpeech("westeurope", resource, lambda: "TOKEN")
    data = azure.render(speech.Say("Fish & <chips>", language="en-GB"))
    assert check_prompt(data).rate == 16_000
    request: Any = sent[0]
    assert request.full_url == "https://westeurope.tts.speech.microsoft.com/cognitiveservices/v1"
    assert request.get_method() == "POST"
    assert request.headers["Authorization"] == f"Bearer aad#{resource}#TOKEN"
    assert request.headers["Content-type"] == "application/ssml+xml"
    assert request.headers["User-agent"] == "teams-calling-flows"
    assert request.headers["X-microsoft-outputformat"] == "riff-16khz-16bit-mono-pcm"
    assert request.data.decode() == (
        "<speak version='1.0' xmlns='http://www.w3.org/2001/10/synthesis' xml:lang=\"en-GB\">"
        "<voice name=\"en-US-AvaMultilingualNeural\"><lang xml:lang=\"en-GB\">Fish &amp; &lt;chips&gt;</lang>"
        "</voice></speak>")
    assert "<lang" not in azure.ssml(speech.Say("Hi", voice="en-GB-SoniaNeural"))
    assert "xml:lang=\"en-GB\"" in azure.ssml(speech.Say("Hi", voice="en-GB-SoniaNeural"))


def test_azure_speech_needs_the_region_and_the_resource_id(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AZURE_SPEECH_REGION", raising=False)
    monkeypatch.setenv("AZURE_SPEECH_RESOURCE_ID", "/subscriptions/s/providers/Microsoft.CognitiveServices/accounts/a")
    with pytest.raises(speech.SpeechError, match="AZURE_SPEECH_REGION"):
        speech.renderer(speech.AZURE)
    monkeypatch.setenv("AZURE_SPEECH_REGION", "westeurope")
    monkeypatch.setenv("AZURE_SPEECH_RESOURCE_ID", "")
    with pytest.raises(speech.SpeechError, match="AZURE_SPEECH_RESOURCE_ID"):
        speech.renderer(speech.AZURE)
    monkeypatch.setenv("AZURE_SPEECH_RESOURCE_ID", "/subscriptions/s/providers/Microsoft.CognitiveServices/accounts/a")
    assert speech.AzureSpeech.from_env().url == "https://westeurope.tts.speech.microsoft.com/cognitiveservices/v1"


# --- in a call ------------------------------------------------------------------------------------

CALL_FLOW = """\
version: 1
name: main-menu
nodes:
  welcome:
    type: play
    prompt: {say: "Thank you for calling Contoso. Goodbye."}
    next: bye
  bye:
    type: hangup
"""


@needs_espeak
def test_a_caller_hears_a_say_prompt_in_a_simulated_call(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from calling import session as session_module
    from simulator.harness import Simulation

    monkeypatch.setenv("SAY_RENDERER", speech.ESPEAK)
    (tmp_path / "main-menu.yaml").write_text(CALL_FLOW, encoding="utf-8")
    assert run("check", "--render", str(tmp_path / "main-menu.yaml"))[0] == 0
    name = speech.file_name(speech.Say("Thank you for calling Contoso. Goodbye."), speech.ESPEAK).removesuffix(".wav")
    session_module._load.cache_clear()
    try:
        with Simulation(settings={"FLOWS_DIR": str(tmp_path), "SAY_RENDERER": speech.ESPEAK}) as sim:
            call = sim.dial(from_phone="+14255550123", to=sim.bot)
            heard = call.expect_prompt(name)
            call.expect_ended(code=200, subcode=7000)
        assert heard.outcome == "completed"
    finally:
        session_module._load.cache_clear()


def test_the_prompts_route_serves_rendered_prompts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import azure.functions as func

    from functions import prompts, runtime

    (tmp_path / ".rendered").mkdir()
    wav = speech.wav_bytes(array("h", [100, -100] * 800))
    (tmp_path / ".rendered" / "say-0123456789abcdef.wav").write_bytes(wav)
    monkeypatch.setattr(runtime, "get", lambda: SimpleNamespace(settings=SimpleNamespace(flows_dir=str(tmp_path))))

    def get(path: str) -> func.HttpResponse:
        request = func.HttpRequest("GET", f"https://bot.example.com/api/prompts/{path}", body=b"",
                                   route_params={"path": path})
        handler: Any = prompts.prompts
        return handler.build().get_user_function()(request)  # type: ignore[no-any-return]

    served = get(".rendered/say-0123456789abcdef.wav")
    assert served.status_code == 200 and served.get_body() == wav
    assert get(".rendered/../../x.wav").status_code == 404
