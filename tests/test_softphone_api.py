"""The softphone's control API without a browser: a whole IVR call driven over HTTP against the real bot on the
local host (virtual clock), the event stream a page reads, and every refusal. Then its decisions, on their own."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from simulator import softphone
from simulator.calls import Heard, SimCall
from simulator.harness import Simulation
from simulator.media import tone_wav
from simulator.scenario import load_scenario
from simulator.softphone.control import (
    LINGER,
    AudioCache,
    BadRequest,
    Cursor,
    Dial,
    finished,
    parse_dial,
    parse_keys,
    parse_speech,
    prompt_origin,
    prompt_uri,
    started,
)
from simulator.transcript import Transcript
from tests.test_softphone_serve import graph_requests

ROOT = Path(__file__).resolve().parent.parent
DEMO = load_scenario(ROOT / "scenarios" / "demo.yaml")
SUPPORT = "instance:2b7d9c41-8e5a-4f36-a1c2-3d4e5f607182"
CALLER = DEMO.call.source


@pytest.fixture
def sim() -> Iterator[Simulation]:
    with Simulation(settings=DEMO.settings, directory=DEMO.directory,
                    sim_routes=softphone.routes(default_from=CALLER)) as simulation:
        yield simulation


def http(sim: Simulation, method: str, path: str, body: Any = None, *, raw: bytes | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, httpx.Headers, Any]:
    content = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    response = httpx.request(method, f"{sim.simulator.url}{path}", content=content, timeout=30,
                             headers={"Content-Type": "application/json", **(headers or {})}, follow_redirects=True)
    json_body = response.headers.get("Content-Type", "").startswith("application/json")
    return response.status_code, response.headers, response.json() if json_body else response.content


class Stream:
    """An event stream read on a thread of its own, as a page's EventSource reads it."""

    def __init__(self, sim: Simulation, call_id: str) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.seen = threading.Condition()
        self._client = httpx.Client(timeout=60)
        request = self._client.build_request("GET", f"{sim.simulator.url}/softphone/calls/{call_id}/events")
        self._response = self._client.send(request, stream=True)
        assert self._response.headers["Content-Type"].startswith("text/event-stream")
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        kind = ""
        for line in self._response.iter_lines():
            if line.startswith("event: "):
                kind = line.removeprefix("event: ")
            elif line.startswith("data: "):
                with self.seen:
                    self.events.append((kind, json.loads(line.removeprefix("data: "))))
                    self.seen.notify_all()

    def wait_for(self, kind: str, **fields: Any) -> dict[str, Any]:
        """Until an event of `kind` with these fields has come (wall time bounded: the clock stands still)."""
        def match() -> dict[str, Any] | None:
            return next((d for k, d in self.events if k == kind and fields.items() <= d.items()), None)

        with self.seen:
            assert self.seen.wait_for(lambda: match() is not None, timeout=30), (kind, fields, self.events)
            found = match()
        assert found is not None
        return found

    def close(self) -> list[tuple[str, dict[str, Any]]]:
        self._thread.join(timeout=30)
        assert not self._thread.is_alive(), "the stream did not end"
        self._response.close()
        self._client.close()
        return self.events


def test_a_whole_ivr_call_over_the_control_api(sim: Simulation) -> None:
    status, headers, created = http(sim, "POST", "/softphone/calls", {})
    assert status == 201, created
    call_id = created["id"]
    assert headers["Location"] == f"/softphone/calls/{call_id}"
    assert created["title"] == f"{CALLER} calls {sim.bot.number}"
    stream = Stream(sim, call_id)
    call = sim.call(call_id)

    call.expect_prompt("main-menu", to_the_end=False)
    playing = stream.wait_for("prompt", name="main-menu", outcome="playing")  # while it plays: the clock stands still
    assert playing["uri"].startswith(f"{sim.bot.url}/api/prompts/prompts/main-menu.wav")
    status, headers, audio = http(sim, "GET", playing["audio"])
    assert (status, headers["Content-Type"]) == (200, "audio/wav")
    assert audio == (ROOT / "flows" / "prompts" / "main-menu.wav").read_bytes()

    assert http(sim, "POST", f"/softphone/calls/{call_id}/tones", {"keys": "2"})[0] == 202
    call.expect_consult(SUPPORT, outcome="no_answer")
    call.expect_prompt("support-voicemail", to_the_end=False)
    assert http(sim, "POST", f"/softphone/calls/{call_id}/speech", {"seconds": 3})[0] == 202
    call.expect_prompt("support-voicemail")  # to its end, and the beep: the recording takes the caller from here
    call.wait(2)
    assert http(sim, "POST", f"/softphone/calls/{call_id}/tones", {"keys": "#"})[0] == 202
    recording = call.expect_recording(downloaded=True)
    call.expect_prompt("goodbye")
    call.expect_ended(code=200, subcode=7000)

    _, _, shown = http(sim, "GET", f"/softphone/calls/{call_id}")
    assert shown["state"] == "terminated" and shown["ended"] is True
    assert shown["result"] == {"code": 200, "subcode": 7000, "message": "The call was ended by the application."}
    assert graph_requests(shown) == [
        "POST answer 202", "POST playPrompt 200", "POST subscribeToTone 200", "POST playPrompt 200",
        "POST cancelMediaProcessing 200", "POST playPrompt 200", "POST recordResponse 200", "POST playPrompt 200",
        "DELETE hangUp 204"]
    summaries = [line["summary"] for line in shown["transcript"]]
    assert "caller presses 2" in summaries
    assert "caller speaks for 3 s" in summaries
    assert "caller presses # (a stop tone: the recording ends)" in summaries
    assert f"recording {recording.id[:8]} captured: 2 s (stopToneDetected)" in summaries
    assert [(p["name"], p["outcome"]) for p in shown["prompts"]] == [
        ("welcome", "completed"), ("main-menu", "cancelled"), ("connecting", "completed"),
        ("support-voicemail", "completed"), ("thanks-for-message", "completed"), ("goodbye", "completed")]
    assert shown["tones"] == ["2", "#"]
    assert shown["recordings"] == [{"id": recording.id, "seconds": 2, "completionReason": "stopToneDetected",
                                    "downloaded": 1}]
    assert len(list(sim.recordings_dir.rglob("*.wav"))) == 1  # the bot stored the voicemail

    sim.wait(LINGER)  # the stream stays open a moment after the call ended, then says so and closes
    events = stream.close()
    assert events[-1] == ("end", {"state": "terminated", "ended": True, "result": shown["result"]})
    lines: dict[int, str] = {}
    for kind, data in events:
        if kind == "line":
            lines[data["index"]] = data["summary"]  # a line may come again, changed: the bot's answer was added
    assert [lines[i] for i in sorted(lines)] == summaries
    states = [data["state"] for kind, data in events if kind == "state"]
    assert states[0] == "incoming" and states[-1] == "terminated" and "established" in states


def test_the_page_and_its_defaults_are_served(sim: Simulation) -> None:
    status, headers, page = http(sim, "GET", "/softphone/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    for asset, kind in (("app.js", "text/javascript"), ("style.css", "text/css")):
        assert f"/softphone/{asset}".encode() in page
        status, headers, _ = http(sim, "GET", f"/softphone/{asset}")
        assert (status, headers["Content-Type"].split(";")[0]) == (200, kind)
    assert http(sim, "GET", "/")[2] == page  # / and /softphone lead to the page
    assert http(sim, "GET", "/softphone")[2] == page
    _, _, config = http(sim, "GET", "/softphone/config")
    assert config == {"from": CALLER, "to": sim.bot.number, "numbers": [sim.bot.number], "keypad": "123456789*0#",
                      "webhook": f"{sim.bot.url}/api/calls"}


def test_calls_are_listed_and_hang_up_is_idempotent(sim: Simulation) -> None:
    _, _, created = http(sim, "POST", "/softphone/calls", {"from": "user:alice-id", "to": "app", "name": "Alice"})
    call = sim.call(created["id"])
    call.expect_answered()
    assert http(sim, "GET", "/softphone/calls")[2] == [
        {"id": call.id, "title": "user:alice-id calls app", "direction": "incoming", "state": "established"}]
    status, _, hung = http(sim, "POST", f"/softphone/calls/{call.id}/hangup")
    assert status == 200 and hung["state"] == "terminated"
    assert hung["result"]["subcode"] == 4521  # a Teams user hung up
    status, _, again = http(sim, "POST", f"/softphone/calls/{call.id}/hangup")
    assert status == 200 and again["result"] == hung["result"]
    assert [line["summary"] for line in again["transcript"]].count("caller hangs up") == 1


@pytest.mark.parametrize(("method", "path", "body", "status", "reason"), [
    ("POST", "/softphone/calls", b"{nope", 400, "the body is not JSON"),
    ("POST", "/softphone/calls", b"[1]", 400, "the body must be a JSON object"),
    ("POST", "/softphone/calls", b'{"bogus": 1}', 400, "unknown field 'bogus'; expected from, name, to"),
    ("POST", "/softphone/calls", b'{"from": 5}', 400, "from must be a non-empty string"),
    ("POST", "/softphone/calls", b'{"from": "nobody"}', 400, "from: 'nobody' is not a caller"),
    ("POST", "/softphone/calls", b'{"to": "user:bob"}', 400, "to: 'user:bob' is not the bot"),
    ("POST", "/softphone/calls", b'{"to": "+14255550000"}', 400,
     "to: +14255550000 is not one of the bot's numbers (+14255550199)"),
    ("POST", "/softphone/calls", b'{"name": 3}', 400, "name must be a string"),
    ("POST", "/softphone/calls", b'{"to": "instance:not-the-bot"}', 400,
     "to: instance:not-the-bot is not one of the bot's resource accounts (instance:1a5ace00-"),
    ("POST", "/softphone/calls", '{"from": "+١٤٢٥٥٥٥٠١٢٣"}'.encode(), 400, "is not a caller"),
    ("GET", "/softphone/calls/no-such-call", None, 404, "no call 'no-such-call'"),
    ("POST", "/softphone/calls/no-such-call/tones", b'{"keys": "1"}', 404, "no call 'no-such-call'"),
    ("POST", "/softphone/calls/no-such-call/hangup", None, 404, "no call 'no-such-call'"),
    ("GET", "/softphone/calls/no-such-call/events", None, 404, "no call 'no-such-call'"),
    ("POST", "/softphone/calls/{live}/tones", b'{"keys": "1x"}', 400, "keys: 'x' is not a key on a phone"),
    ("POST", "/softphone/calls/{live}/tones", b'{"keys": ""}', 400, "keys must be a non-empty string"),
    ("POST", "/softphone/calls/{live}/tones", b'{"keys": "' + b"1" * 33 + b'"}', 400, "at most 32 keys"),
    ("POST", "/softphone/calls/{live}/speech", b'{"seconds": -1}', 400, "seconds must be a number from 0 to 120"),
    ("POST", "/softphone/calls/{live}/speech", b'{"seconds": true}', 400, "seconds must be a number"),
    ("GET", "/softphone/calls/{live}/prompts/7", None, 404, "has no prompt '7'"),
    ("GET", "/softphone/calls/{live}/prompts/x", None, 404, "has no prompt 'x'"),
    ("GET", "/softphone/calls/{live}/prompts/%C2%B2", None, 404, "has no prompt '²'"),  # a digit, but not 0-9
    ("POST", "/softphone/calls/{ended}/tones", b'{"keys": "1"}', 409, "has ended"),
    ("POST", "/softphone/calls/{ended}/speech", b'{"seconds": 1}', 409, "has ended"),
])
def test_bad_requests_are_refused_with_a_reason(sim: Simulation, method: str, path: str, body: bytes | None,
                                                status: int, reason: str) -> None:
    live = sim.dial(from_phone=CALLER, to=sim.bot)
    live.expect_answered()
    ended = sim.dial(from_phone=CALLER, to=sim.bot)
    ended.hang_up()
    answer, headers, payload = http(sim, method, path.format(live=live.id, ended=ended.id), raw=body)
    assert (answer, headers["Content-Type"].split(";")[0]) == (status, "application/json"), payload
    assert reason in payload["error"]
    assert "Traceback" not in payload["error"]


def test_a_prompt_the_bot_cannot_serve_is_a_502(sim: Simulation) -> None:
    call = sim.dial(from_phone=CALLER, to=sim.bot)
    call.expect_prompt("welcome", to_the_end=False)
    call.call.heard[0].uri = f"{sim.bot.url}/api/prompts/prompts/missing.wav"
    status, _, payload = http(sim, "GET", f"/softphone/calls/{call.id}/prompts/0")
    assert status == 502
    assert payload == {"error": f"the bot answered 404 for {sim.bot.url}/api/prompts/prompts/missing.wav"}


@dataclass
class Elsewhere:
    """Another service on this machine, serving what a prompt URI might name; it notes every path asked for."""

    asked: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.asked.append(self.path)
                body, headers = owner.answer(self.path)
                self.send_response(302 if "Location" in headers else 200)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                with suppress(OSError):  # the softphone stops reading what is too large
                    self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, path: str) -> tuple[bytes, dict[str, str]]:
        if path == "/prompt.wav":
            return WAV, {"Content-Type": "audio/wav", "Content-Length": str(len(WAV))}
        if path == "/redirect.wav":
            return b"", {"Location": f"{self.url}/secret", "Content-Length": "0"}
        if path == "/huge.wav":  # says so
            return WAV, {"Content-Length": str(11 * 2**20)}
        if path == "/endless.wav":  # does not say, and sends more than 10 MB
            return WAV + bytes(11 * 2**20), {}
        return b"TOP-SECRET internal data", {"Content-Type": "text/plain", "Content-Length": "24"}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


WAV = tone_wav(0.1)


@pytest.fixture
def elsewhere() -> Iterator[Elsewhere]:
    service = Elsewhere()
    yield service
    service.close()


def _graph(sim: Simulation, call_id: str, action: str, uri: str) -> int:
    """The bot asking Graph to play `uri` (what a buggy or hostile bot could send)."""
    prompt = {"@odata.type": "#microsoft.graph.mediaPrompt", "mediaInfo": {"uri": uri, "resourceId": "x"}}
    response = httpx.post(f"{sim.simulator.url}/v1.0/communications/calls/{call_id}/{action}",
                          headers={"Authorization": "Bearer x"}, json={"prompts": [prompt]}, timeout=30)
    return response.status_code


def test_the_prompt_proxy_reads_nothing_but_the_bots_prompts(sim: Simulation, elsewhere: Elsewhere) -> None:
    call = sim.dial(from_phone=CALLER, to=sim.bot)
    call.expect_prompt("welcome", to_the_end=False)
    assert _graph(sim, call.id, "recordResponse", f"{elsewhere.url}/metadata") == 200
    failed = call.expect_prompt("metadata")
    assert failed.outcome == "failed"  # not a WAV: the simulator fetched it once, as Graph would, and failed it
    index = call.call.heard.index(failed)
    fetched = list(elsewhere.asked)
    status, _, payload = http(sim, "GET", f"/softphone/calls/{call.id}/prompts/{index}")
    assert (status, payload) == (404, {"error": f"prompt {index} of call {call.id} failed to play (the transcript "
                                                "says why): it has no audio"})
    call.call.heard[0].uri = f"{elsewhere.url}/prompt.wav"  # a prompt that played, from elsewhere
    status, _, payload = http(sim, "GET", f"/softphone/calls/{call.id}/prompts/0")
    assert status == 403
    assert payload["error"] == (f"{elsewhere.url}/prompt.wav is not where the bot's prompts come from "
                                f"({sim.bot.url}): the softphone fetches only those")
    assert elsewhere.asked == fetched  # the softphone asked it for nothing


def test_the_prompt_proxy_fetches_only_a_wav_of_bounded_size_without_redirects(elsewhere: Elsewhere) -> None:
    far = "http://" + "a" * 300 + ".example"  # a host IDNA cannot encode (a label over 63 characters)
    with Simulation(settings=DEMO.settings, directory=DEMO.directory, watchdog=False, sim_routes=softphone.routes(
            default_from=CALLER, prompt_origins=lambda: [elsewhere.url, far])) as sim:
        call = sim.dial(from_phone=CALLER, to=sim.bot)
        call.expect_prompt("welcome", to_the_end=False)
        heard = call.call.heard[0]

        def get(uri: str) -> tuple[int, Any]:
            heard.uri = uri
            status, _, payload = http(sim, "GET", f"/softphone/calls/{call.id}/prompts/0")
            return status, payload

        assert get(f"{elsewhere.url}/prompt.wav") == (200, WAV)
        assert get(f"{elsewhere.url}/prompt.wav") == (200, WAV)
        assert elsewhere.asked == ["/prompt.wav"]  # fetched once, then kept
        assert get(f"{elsewhere.url}/redirect.wav") == (
            502, {"error": f"the bot answered 302 for {elsewhere.url}/redirect.wav"})
        assert get(f"{elsewhere.url}/huge.wav") == (502, {"error": f"{elsewhere.url}/huge.wav is larger than 10 MB"})
        assert get(f"{elsewhere.url}/endless.wav") == (
            502, {"error": f"{elsewhere.url}/endless.wav is larger than 10 MB"})
        status, payload = get(f"{elsewhere.url}/secret.wav")
        assert status == 502
        assert payload["error"].startswith(f"{elsewhere.url}/secret.wav is not a prompt Graph plays: not a PCM WAV")
        assert "/secret" not in elsewhere.asked  # the redirect was not followed
        status, payload = get(f"{far}/prompt.wav")
        assert status == 502 and payload["error"].startswith(f"could not fetch {far}/prompt.wav: "), payload


@pytest.mark.parametrize(("headers", "body", "status", "reason"), [
    ({"Content-Type": "text/plain"}, b'{"keys": "1"}', 415, "the body is text/plain: send it as application/json"),
    ({"Content-Type": "application/x-www-form-urlencoded"}, b"keys=1", 415, "the body is application/x-www-form"),
    ({"Origin": "http://evil.example"}, b'{"keys": "1"}', 403, "Origin 'http://evil.example' is another site"),
    ({"Origin": "null"}, b'{"keys": "1"}', 403, "Origin 'null' is another site"),
    ({"Host": "evil.example:8090"}, b'{"keys": "1"}', 403, "Host 'evil.example:8090' is not this server"),
])
def test_another_site_cannot_use_the_softphone(sim: Simulation, headers: dict[str, str], body: bytes, status: int,
                                               reason: str) -> None:
    call = sim.dial(from_phone=CALLER, to=sim.bot)
    call.expect_answered()
    for path, content in ((f"/softphone/calls/{call.id}/tones", body), (f"/softphone/calls/{call.id}/hangup", b"")):
        answer, _, payload = http(sim, "POST", path, raw=content, headers=headers)
        if answer == 415 and not content:
            reason = reason.split(":", maxsplit=1)[0]  # no body, but a cross-site form's Content-Type
        assert (answer, reason in payload["error"]) == (status, True), payload
    assert call.call.tones_received == [] and not call.call.ended
    if "Host" in headers:
        assert http(sim, "GET", "/softphone/calls", headers=headers)[0] == 403  # DNS rebinding reads nothing either
    port = sim.simulator.url.rsplit(":", 1)[1]
    for own in (f"http://127.0.0.1:{port}", f"http://localhost:{port}"):  # the page's own origin is welcome
        answer, _, payload = http(sim, "POST", f"/softphone/calls/{call.id}/tones", {"keys": "1"},
                                  headers={"Origin": own})
        assert answer == 202, payload


def test_a_simulation_with_a_bot_of_its_own_closes_cleanly_and_takes_only_a_webhook() -> None:
    with Simulation(bot_url="http://127.0.0.1:9/api/calls") as sim:  # the watchdog: no local host, no sessions
        assert sim.env["BOT_PUBLIC_URL"] == "http://127.0.0.1:9"
    for wrong in ("http://127.0.0.1:9/api/calls?code=x", "http://127.0.0.1:9/", "http://127.0.0.1:9/api"):
        with pytest.raises(ValueError, match="is not a calling webhook"):
            Simulation(bot_url=wrong)


def test_a_stream_open_when_the_server_stops_ends_with_the_call_still_up() -> None:
    sim = Simulation(settings=DEMO.settings, directory=DEMO.directory, watchdog=False,
                     sim_routes=softphone.routes(default_from=CALLER)).start()
    try:
        call = sim.dial(from_phone=CALLER, to=sim.bot)
        call.expect_answered()
        stream = Stream(sim, call.id)
        stream.wait_for("state", state="established")
    finally:
        sim.close()
    assert stream.close()[-1] == ("end", {"state": "established", "ended": False, "result": None})


# -- the decisions, without HTTP ---------------------------------------------------------------------------


def test_parse_dial_takes_defaults_and_refuses_what_is_not_a_party() -> None:
    defaults: dict[str, Any] = {"default_from": "+14255550123", "default_to": "+14255550199", "instances": ["abc"]}
    assert parse_dial(None, **defaults) == Dial("+14255550123", "+14255550199")
    assert parse_dial({"to": "bot"}, **defaults) == Dial("+14255550123", "+14255550199")
    assert parse_dial({"from": " user:alice ", "to": "instance:abc", "name": "Alice"}, **defaults) == Dial(
        "user:alice", "instance:abc", "Alice")
    for bad in ({"from": "+12"}, {"from": "instance:abc"}, {"to": "+1-425"}, {"to": ""}, {"to": "instance:abd"},
                {"from": "+\u0661\u0664\u0662\u0665\u0665\u0665\u0665\u0660\u0661\u0662\u0663"},  # Arabic-Indic digits
                {"from": "+\uff11\uff14\uff12\uff15\uff15\uff15\uff15\uff10\uff11"},  # fullwidth digits
                {"from": "user:\u0430lice"}):  # a Cyrillic a
        with pytest.raises(BadRequest):
            parse_dial(bad, **defaults)


def test_parse_keys_and_speech() -> None:
    assert parse_keys({"keys": "12*#a"}) == "12*#A"
    assert parse_speech({"seconds": 0}) == 0.0
    assert parse_speech({"seconds": 2.5}) == 2.5
    for body in ({}, {"keys": 1}, {"keys": "9", "extra": 1}):
        with pytest.raises(BadRequest):
            parse_keys(body)
    for body in ({}, {"seconds": "3"}, {"seconds": 121}):
        with pytest.raises(BadRequest):
            parse_speech(body)


def _call() -> SimCall:
    call = SimCall(id="c1", tenant_id="t", direction="incoming", source={}, targets=[], callback_uri="", remote="+1")
    call.transcript = Transcript("c1", "a test call")
    return call


def test_the_cursor_sends_each_change_once() -> None:
    call = _call()
    cursor = Cursor()
    call.transcript.add(10.0, "caller", "+1 dials the bot")
    assert [(e.kind, e.data) for e in cursor.changes(call, 10.0)] == [
        ("state", {"state": "incoming", "ended": False, "result": None}),
        ("line", {"index": 0, "at": 0.0, "direction": "caller", "summary": "+1 dials the bot"})]
    assert cursor.changes(call, 10.5) == []
    call.transcript.add(10.5, "to-bot", "incoming call")
    call.transcript.entries[1] = type(call.transcript.entries[1])(10.5, "to-bot", "incoming call  [202]")
    call.heard.append(Heard("welcome", "http://bot/api/prompts/welcome.wav", 11.0, 2.0))
    call.heard.append(Heard("menu", "http://bot/api/prompts/menu.wav", 13.0, 5.0))  # queued behind welcome
    changes = cursor.changes(call, 11.0)
    assert [(e.kind, e.data.get("index"), e.data.get("summary", e.data.get("name"))) for e in changes] == [
        ("line", 1, "incoming call  [202]"), ("prompt", 0, "welcome")]
    assert changes[1].data == {"index": 0, "name": "welcome", "uri": "http://bot/api/prompts/welcome.wav",
                               "audio": "/softphone/calls/c1/prompts/0", "at": 1.0, "seconds": 2.0,
                               "outcome": "playing"}
    call.heard[0].outcome = "completed"
    assert [(e.kind, e.data["name"], e.data["outcome"]) for e in cursor.changes(call, 13.0)] == [
        ("prompt", "welcome", "completed"), ("prompt", "menu", "playing")]
    assert Cursor().changes(call, 13.0)[-1].encode().startswith(b"event: prompt\ndata: {\"index\":1,")


def test_a_stream_finishes_a_moment_after_its_call_ended() -> None:
    call = _call()
    assert not finished(call, 100.0)
    call.state, call.ended_at = "terminated", 100.0
    assert not finished(call, 100.0 + LINGER / 2)
    assert finished(call, 100.0 + LINGER)


def test_prompt_uri_gives_only_what_the_bot_sent() -> None:
    call = _call()
    call.heard.append(Heard("welcome", "http://bot/api/prompts/welcome.wav", 1.0, 2.0))
    call.heard.append(Heard("odd", "file:///etc/passwd", 1.0, 2.0))
    assert prompt_uri(call, "0") == "http://bot/api/prompts/welcome.wav"
    assert prompt_uri(call, "1") is None  # not fetched for anyone: only http(s)
    assert prompt_uri(call, "2") is None
    assert prompt_uri(call, "-1") is None
    assert prompt_uri(call, "\u00b2") is None  # '²'.isdigit(), but no index
    assert prompt_uri(call, "\u0660") is None  # an Arabic-Indic zero


def test_a_queued_prompt_whose_operation_ended_before_its_turn_is_not_shown() -> None:
    welcome = Heard("welcome", "http://bot/w.wav", 10.0, 2.0)
    queued = Heard("menu", "http://bot/m.wav", 12.0, 5.0)
    assert started(welcome, 10.0) and not started(queued, 11.0)
    welcome.outcome, welcome.ended_at = "cancelled", 11.0  # a key barged in while the welcome played
    queued.outcome, queued.ended_at = "cancelled", 11.0
    assert started(welcome, 30.0)
    assert not started(queued, 30.0)  # the caller never heard it begin
    cut = Heard("goodbye", "http://bot/g.wav", 20.0, 2.0, ended_at=20.0, outcome="failed")
    assert started(cut, 20.0)  # the first of a failed operation: shown, failed


def test_the_prompt_origin_is_where_the_bot_takes_its_prompts_from() -> None:
    assert prompt_origin({"BOT_PUBLIC_URL": "http://127.0.0.1:7071"}) == "http://127.0.0.1:7071"
    assert prompt_origin({"BOT_PUBLIC_URL": "http://127.0.0.1:7071",
                          "PROMPTS_BASE_URL": "http://127.0.0.1:10000/prompts"}) == "http://127.0.0.1:10000/prompts"
    assert prompt_origin({"BOT_PUBLIC_URL": "http://127.0.0.1:7071", "PROMPTS_BASE_URL": "http://x/p",
                          "PROMPTS_CONTAINER_URL": "http://127.0.0.1:10000/devstoreaccount1/prompts"}
                         ) == "http://127.0.0.1:10000/devstoreaccount1/prompts"
    assert prompt_origin({}) is None


def test_the_audio_cache_keeps_the_most_recent_within_its_bounds() -> None:
    cache = AudioCache(items=3, size=10)
    for key in "abc":
        cache.put(key, b"12")
    assert cache.get("a") == b"12"  # a is now the most recent
    cache.put("d", b"34")  # four items: b, the least recently used, goes
    assert ("b" in cache, len(cache), cache.bytes) == (False, 3, 6)
    cache.put("e", b"123456")  # 12 bytes in four: c, the oldest, goes
    assert [key for key in "acde" if key in cache] == ["a", "d", "e"] and cache.bytes == 10
    cache.put("f", b"x" * 11)  # larger than the whole cache: not kept, nothing dropped for it
    assert ("f" in cache, len(cache), cache.bytes) == (False, 3, 10)
    cache.put("d", b"1")  # replaced, counted once
    assert cache.bytes == 9 and cache.get("d") == b"1"
    cache.put("g", b"12345")  # 14 bytes: a and e (d was just used) go
    assert [key for key in "adeg" if key in cache] == ["d", "g"] and cache.bytes == 6
