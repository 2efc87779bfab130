"""The softphone page in headless Chromium (Debian's), driven by playwright-core: one whole IVR call of
flows/main-menu.yaml, from dialling to the bot's hang-up, against `python -m simulator serve` on the real clock.

tests/softphone/ivr_call.mjs clicks and types as a person would and reports what the page showed; this test
checks that, and what the bot asked Graph for. tests/softphone/trouble.mjs shows the page when things go wrong:
a call the simulator does not know, a simulator that stops answering, a barge-in before a prompt's audio came,
serve stopping mid-call. Without Chromium, Node.js or node_modules/playwright-core they skip with the reason,
except in CI (CI set to anything but empty, 0, false or no), where that is a failure: `python3 dev.py test`
installs them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

import dev
from tests.test_softphone_serve import PATIENCE, ROOT, Process, graph_requests, serve

SCRIPT = ROOT / "tests" / "softphone" / "ivr_call.mjs"
TROUBLE = ROOT / "tests" / "softphone" / "trouble.mjs"
CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
NODE = shutil.which("node")
SUPPORT = "instance:2b7d9c41-8e5a-4f36-a1c2-3d4e5f607182"
#: The demo's scenario with support ringing out after 1 s instead of 8, so the call takes about 15 s.
SCENARIO = f"""\
name: the softphone's IVR call
settings: {{DEFAULT_FLOW: main-menu}}
callees:
  "{SUPPORT}": {{outcome: no_answer, after: 1}}
call: {{from: "+14255550123", to: bot}}
steps: [{{wait: 0}}]
"""


def missing() -> str | None:
    if not CHROMIUM.is_file():
        return f"no Chromium at {CHROMIUM} (apt-get install chromium; python3 dev.py test installs it)"
    if NODE is None:
        return "no node on PATH (Node.js runs the Playwright script)"
    if not (ROOT / "node_modules" / "playwright-core" / "package.json").is_file():
        return "node_modules/playwright-core is missing (npm ci; python3 dev.py test runs it)"
    return None


def cannot_run(reason: str) -> None:
    """Skip for want of `reason`, or fail under CI, where the browser test must run."""
    if dev.in_ci():
        pytest.fail(f"the softphone's browser test cannot run: {reason}")
    pytest.skip(reason)


@pytest.fixture
def browser() -> None:
    reason = missing()
    if reason is not None:
        cannot_run(reason)


@pytest.mark.parametrize(("value", "ci"), [("true", True), ("1", True), ("yes", True), ("True", True),
                                           ("", False), ("0", False), ("false", False), ("no", False)])
def test_under_ci_a_missing_browser_fails_the_test_and_dev_py_says_so(
        value: str, ci: bool, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("CI", value)
    with pytest.raises(pytest.fail.Exception if ci else pytest.skip.Exception, match="no Chromium"):
        cannot_run("no Chromium at /nowhere")
    monkeypatch.setattr(dev.os, "geteuid", lambda: 1000, raising=False)  # not root: dev.py cannot apt-get it
    dev.apt_install(dev.CHROMIUM_PACKAGES, "the softphone's browser test", needed_in_ci=True)
    said = capsys.readouterr().out
    assert ("the softphone's browser test will FAIL without them" in said) is ci, said
    assert ("the softphone's browser test will skip" in said) is not ci, said


@pytest.mark.usefixtures("browser")
def test_a_whole_ivr_call_from_the_browser(tmp_path: Path) -> None:
    scenario = tmp_path / "softphone.yaml"
    scenario.write_text(SCENARIO, encoding="utf-8")
    with serve("--port", "0", "--host-port", "0", "--scenario", str(scenario)) as served:
        done = subprocess.run([str(NODE), str(SCRIPT), served.page, str(tmp_path / "softphone.png")], cwd=ROOT,
                              capture_output=True, text=True, timeout=240, check=False,
                              env={**os.environ, "CHROMIUM": str(CHROMIUM)})
        assert done.returncode == 0, f"{done.stderr}\n{done.stdout}\nserve:\n{served.process.output}"
        shown = json.loads(done.stdout)
        call_id = shown["callId"]
        status, call = served.http("GET", f"/softphone/calls/{call_id}")
        assert status == 200
        _, calls = served.http("GET", "/softphone/calls")

    # The page offered the demo's caller and the bot's number, and played each prompt's WAV, fetched through the
    # simulator from the URI the bot sent Graph.
    assert (shown["from"], shown["to"]) == ("+14255550123", "+14255550199")
    bot_prompts = call["prompts"][0]["uri"].split("/api/prompts/")[0] + "/api/prompts/prompts/"
    for heard, name, index in ((shown["welcome"], "welcome", 0), (shown["menu"], "main-menu", 1),
                               (shown["voicemail"], "support-voicemail", 3)):
        assert heard["src"] == f"{served.url}/softphone/calls/{call_id}/prompts/{index}"
        assert heard["uri"].startswith(f"{bot_prompts}{name}.wav?")
        assert heard["uri"] == call["prompts"][index]["uri"]
        assert (heard["prompt"], heard["nowPlaying"]) == (name, name)
        assert heard["state"] in ("playing", "ended")  # the <audio> element's own events: the browser played it
    assert shown["connected"] == "Connected"
    assert shown["ended"] == "Call ended: 200/7000 The call was ended by the application."
    assert shown["keysEnabled"] is False

    assert [(p["name"], p["outcome"]) for p in shown["prompts"]] == [
        ("welcome", "completed"), ("main-menu", "cancelled"), ("connecting", "completed"),
        ("support-voicemail", "completed"), ("thanks-for-message", "completed"), ("goodbye", "completed")]
    assert all(p["played"] for p in shown["prompts"][:4])
    lines = shown["lines"]
    assert len(lines) == len(call["transcript"])  # the page shows the whole transcript, line for line
    for line, entry in zip(lines, call["transcript"], strict=True):
        assert line.endswith(entry["summary"])
    for expected in ("+14255550123 dials +14255550199", "caller presses 2", "bot plays connecting",
                     "bot starts a recording", "caller speaks for 3 s",
                     "caller presses # (a stop tone: the recording ends)", "(stopToneDetected)",
                     "bot downloads recording", "bot plays thanks-for-message, goodbye", "bot hangs up",
                     "call ended: 200/7000 The call was ended by the application."):
        assert any(expected in line for line in lines), (expected, lines)

    # What the bot asked Graph for, in order, and the tones the simulator took from the page's keypad and keyboard.
    assert graph_requests(call) == [
        "POST answer 202", "POST playPrompt 200", "POST subscribeToTone 200", "POST playPrompt 200",
        "POST cancelMediaProcessing 200", "POST playPrompt 200", "POST recordResponse 200", "POST playPrompt 200",
        "DELETE hangUp 204"]
    assert call["tones"] == ["2", "#"]
    assert shown["tonesPosted"] == [{"keys": "2"}, {"keys": "#"}]  # # held down (repeating) is one press

    # The transcript's live region announced each line once: new lines are added, changed ones change in place.
    changes = shown["transcriptChanges"]
    assert changes["relevant"] == "additions"
    assert changes["added"] == {str(i): 1 for i in range(len(lines))}
    assert changes["replacedInside"] == 0
    assert changes["changedText"] > 0  # lines did change: notifications' lines gained the bot's answers
    assert [r["completionReason"] for r in call["recordings"]] == ["stopToneDetected"]
    assert call["recordings"][0]["downloaded"] == 1
    consult = [c for c in calls if c["title"] == f"the bot calls {SUPPORT}"]
    assert [c["state"] for c in consult] == ["terminated"]  # support rang out: the caller left a voicemail


#: Support rings for five minutes: the call is still up when the test stops serve.
RINGING = SCENARIO.replace("after: 1}", "after: 300}")


@pytest.mark.usefixtures("browser")
def test_the_page_says_what_went_wrong(tmp_path: Path) -> None:
    scenario = tmp_path / "ringing.yaml"
    scenario.write_text(RINGING, encoding="utf-8")
    with serve("--port", "0", "--host-port", "0", "--scenario", str(scenario)) as served:
        page = Process([str(NODE), str(TROUBLE), served.page], env={**os.environ, "CHROMIUM": str(CHROMIUM)})
        try:
            call_id = page.wait_for_line(r"^STOP (\S+)$")[1]
            status, call = served.http("GET", f"/softphone/calls/{call_id}")
            assert status == 200 and not call["ended"], call
        except BaseException:
            page.popen.kill()
            raise
    # serve has stopped (SIGTERM, cleanly): the page heard the stream's last event, the call not ended.
    try:
        assert page.popen.wait(timeout=PATIENCE) == 0, page.output
    finally:
        page.popen.kill()
    shown = json.loads(page.lines[-1])

    # A call the simulator does not know: its event stream answered 404, and the page asked after the call.
    assert shown["unknown"] == {
        "status": "The simulator does not know call no-such-call (was it restarted?). Call again.", "state": "lost",
        "stream": "lost", "error": "", "callEnabled": True, "keysEnabled": False, "hangupEnabled": False}
    assert shown["streams"]["no-such-call"] == 1  # a refused stream is not retried
    # A simulator that does not answer: the EventSource retried by itself, then the page stopped it.
    assert shown["gone"] == {
        "status": "Lost the simulator: it does not answer. Is serve still running?", "state": "lost",
        "stream": "lost", "error": "", "callEnabled": True, "keysEnabled": False, "hangupEnabled": False}
    assert shown["streams"]["gone-call"] == 3  # STREAM_TRIES in app.js, and no more all the while after
    # A key barged in while the main menu's audio was still coming: its play() was aborted, which is no error.
    assert shown["bargedIn"]["error"] == "" and shown["bargedIn"]["keysEnabled"] is True
    # serve stopped mid-call: the page says so and nothing is left to press.
    assert shown["stopped"] == {
        "status": "The simulator stopped: this call is gone with it. Start serve again to call.",
        "state": "stopped", "stream": "ended", "error": "", "callEnabled": True, "keysEnabled": False,
        "hangupEnabled": False}
    assert shown["callId"] == call_id
