"""The softphone's control API without a browser: a whole IVR call driven over HTTP against the real bot on the
local host (virtual clock), the event stream a page reads, and every refusal. Then its decisions, on their own."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from simulator import softphone
from simulator.calls import Heard, SimCall
from simulator.harness import Simulation
from simulator.scenario import load_scenario
from simulator.softphone.control import (
    LINGER,
    BadRequest,
    Cursor,
    Dial,
    finished,
    parse_dial,
    parse_keys,
    parse_speech,
    prompt_uri,
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


def http(sim: Simulation, method: str, path: str, body: Any = None, *, raw: bytes | None = None
         ) -> tuple[int, httpx.Headers, Any]:
    content = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    response = httpx.request(method, f"{sim.simulator.url}{path}", content=content, timeout=30,
                             headers={"Content-Type": "application/json"}, follow_redirects=True)
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


# -- the decisions, without HTTP ---------------------------------------------------------------------------


def test_parse_dial_takes_defaults_and_refuses_what_is_not_a_party() -> None:
    defaults = {"default_from": "+14255550123", "default_to": "+14255550199"}
    assert parse_dial(None, **defaults) == Dial("+14255550123", "+14255550199")
    assert parse_dial({"to": "bot"}, **defaults) == Dial("+14255550123", "+14255550199")
    assert parse_dial({"from": " user:alice ", "to": "instance:abc", "name": "Alice"}, **defaults) == Dial(
        "user:alice", "instance:abc", "Alice")
    for bad in ({"from": "+12"}, {"from": "instance:abc"}, {"to": "+1-425"}, {"to": ""}):
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
