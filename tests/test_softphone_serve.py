"""`python -m simulator serve` as a user runs it, in a subprocess on the real clock: with the project's bot on the
local host (the default), and with a bot someone else runs (`--bot URL`: here a `python -m devhost` configured
only from the settings serve printed, standing in for `func start`). Bad input exits 2 with one line."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
#: Real seconds any one wait for the servers may take before the test gives up (a bound, not a measurement).
PATIENCE = 60.0


@dataclass
class Process:
    """A command whose output is drained on a thread, so it never blocks, and kept for the report."""

    command: Sequence[str]
    cwd: Path = ROOT
    env: dict[str, str] | None = None
    lines: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._changed = threading.Condition()
        self.popen = subprocess.Popen(list(self.command), cwd=self.cwd, env=self.env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True)
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for_line(self, pattern: str) -> re.Match[str]:
        """The first output line matching `pattern`; fails if the process ends first."""
        def found() -> re.Match[str] | None:
            return next((m for line in self.lines if (m := re.search(pattern, line))), None)

        with self._changed:
            self._changed.wait_for(lambda: found() is not None or self.popen.poll() is not None, timeout=PATIENCE)
            match = found()
        assert match is not None, f"no line like {pattern!r} from {' '.join(self.command)}:\n{self.output}"
        return match

    def stop(self) -> int:
        """SIGTERM, as a service manager (or Ctrl-C) stops it; its exit status."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout=PATIENCE)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            raise


@dataclass
class Served:
    process: Process
    url: str  # the simulator's base URL

    @property
    def page(self) -> str:
        return f"{self.url}/softphone/"

    def http(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        response = httpx.request(method, f"{self.url}{path}", json=body, timeout=30)
        return response.status_code, response.json()

    def call_until(self, call_id: str, condition: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        """GET the call until `condition` holds of it (real time: bounded by PATIENCE, polled)."""
        deadline = time.monotonic() + PATIENCE
        while True:
            status, call = self.http("GET", f"/softphone/calls/{call_id}")
            assert status == 200, call
            if condition(call):
                return call
            assert time.monotonic() < deadline, f"the call never got there:\n{json.dumps(call, indent=2)}"
            time.sleep(0.1)


@contextmanager
def serve(*args: str) -> Iterator[Served]:
    """`python -m simulator serve ARGS` until the block ends; then it must stop cleanly on SIGTERM."""
    process = Process([sys.executable, "-m", "simulator", "serve", *args])
    try:
        match = process.wait_for_line(r"^Softphone: (http://127\.0\.0\.1:\d+)/softphone/$")
        served = Served(process, match[1])
        yield served
    finally:
        status = process.stop()
    assert status == 0, process.output
    assert process.lines[-1] == "serve: stopped; nothing is left listening.", process.output
    assert "Traceback" not in process.output, process.output


def graph_requests(call: dict[str, Any]) -> list[str]:
    """The bot's requests to Graph, in order, as the transcript tags them: `POST answer 202`."""
    found = (re.search(r"\[((?:POST|GET|DELETE) \w+ \d+)\]$", line["summary"]) for line in call["transcript"]
             if line["direction"] == "from-bot")
    return [match[1] for match in found if match]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_serve_runs_the_bot_on_the_local_host_and_the_api_drives_a_call() -> None:
    with serve("--port", "0", "--host-port", "0") as served:
        assert re.search(r"^The bot \(function_app\.py on the local host\) on http://127\.0\.0\.1:\d+\.$",
                         served.process.output, re.MULTILINE), served.process.output
        status, created = served.http("POST", "/softphone/calls", {})
        assert status == 201, created
        assert created["title"] == "+14255550123 calls +14255550199"  # the demo's caller, the bot's number
        call = served.call_until(created["id"], lambda c: any(p["name"] == "main-menu" for p in c["prompts"]))
        assert graph_requests(call)[:4] == ["POST answer 202", "POST playPrompt 200", "POST subscribeToTone 200",
                                            "POST playPrompt 200"]
        assert served.http("POST", f"/softphone/calls/{created['id']}/hangup")[0] == 200
        call = served.call_until(created["id"], lambda c: c["ended"])
        assert call["result"]["subcode"] == 540000


def test_serve_with_a_bot_of_your_own_configured_from_what_it_printed(tmp_path: Path) -> None:
    bot_port = free_port()
    webhook = f"http://127.0.0.1:{bot_port}/api/calls"
    with serve("--port", "0", "--bot", webhook) as served:
        output = served.process.output
        printed = output[output.index("{\n"):output.index("\n}") + 2]
        settings = json.loads(printed)
        assert settings == {
            "BOT_APP_ID": "5e1ec7ed-0000-4000-8000-00000000b07a",
            "BOT_TENANT_ID": "7e7a7e7a-0000-4000-8000-000000007e7a",
            "BOT_PUBLIC_URL": f"http://127.0.0.1:{bot_port}",
            "CALLING_OPENID_CONFIG_URL": f"{served.url}/v1/.well-known/OpenIdConfiguration",
            "GRAPH_BASE_URL": f"{served.url}/v1.0",
            "GRAPH_CREDENTIAL": "local",
            "DEFAULT_FLOW": "main-menu",
        }
        assert served.http("GET", "/softphone/config")[1]["webhook"] == webhook
        # The bot is not ours: a devhost that knows the simulator only from local.settings.json, as func start would.
        (tmp_path / "local.settings.json").write_text(json.dumps(
            {"IsEncrypted": False, "Values": {**settings, "FLOWS_DIR": str(ROOT / "flows")}}), encoding="utf-8")
        env = {**{k: v for k, v in os.environ.items() if k not in settings}, "PYTHONPATH": str(ROOT)}
        bot = Process([sys.executable, "-m", "devhost", "--port", str(bot_port)], cwd=tmp_path, env=env)
        try:
            bot.wait_for_line(r"^devhost: serving function_app\.py at ")
            status, created = served.http("POST", "/softphone/calls", {"from": "+14255550100"})
            assert status == 201, created
            # devhost runs on today's clock: inside business hours the menu's welcome plays, outside them closed.
            call = served.call_until(created["id"], lambda c: bool(c["prompts"]))
            assert call["prompts"][0]["name"] in ("welcome", "closed")
            assert call["prompts"][0]["uri"].startswith(f"http://127.0.0.1:{bot_port}/api/prompts/prompts/")
            audio = httpx.get(f"{served.url}{call['prompts'][0]['audio']}", timeout=30)  # from BOT_PUBLIC_URL
            assert (audio.status_code, audio.headers["Content-Type"]) == (200, "audio/wav"), audio.text
            assert graph_requests(call)[:2] == ["POST answer 202", "POST playPrompt 200"]
            assert served.http("POST", f"/softphone/calls/{created['id']}/hangup")[0] == 200
            served.call_until(created["id"], lambda c: c["ended"])
        finally:
            assert bot.stop() == 0, bot.output


def run_serve(*args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, "-m", "simulator", "serve", *args], cwd=ROOT, capture_output=True,
                            text=True, timeout=120, check=False)
    assert "Traceback" not in result.stdout + result.stderr, result.stdout + result.stderr
    return result


def test_serve_refuses_a_busy_port() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_serve("--port", str(port), "--host-port", "0")
    assert result.returncode == 2
    assert f"port {port} on 127.0.0.1 is in use" in result.stderr.splitlines()
    assert "Softphone:" not in result.stdout


def test_serve_refuses_bad_input_in_one_line(tmp_path: Path) -> None:
    result = run_serve("--bot", "localhost:7071/api/calls")
    assert (result.returncode, result.stderr) == (
        2, "--bot 'localhost:7071/api/calls' is not an http(s) URL, e.g. http://localhost:7071/api/calls\n")
    result = run_serve("--bot", "https://bot.example.com/api/calls")
    assert result.returncode == 2
    assert result.stderr.startswith("--bot 'https://bot.example.com/api/calls' is not on this machine")
    bad = tmp_path / "bad.yaml"
    bad.write_text("call: {from: nobody}\nsteps: [{wait: 0}]\n", encoding="utf-8")
    result = run_serve("--scenario", str(bad))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"{bad}:1:8: call.from: 'nobody' is not a party: use +E164, user:<id>, instance:<id>"]


@pytest.mark.parametrize(("webhook", "why"), [
    ("http://localhost:7071/api/calls?code=abc", "has a query or fragment: give the calling webhook itself"),
    ("http://localhost:7071/api/calls#x", "has a query or fragment"),
    ("http://localhost:7071", "is not a calling webhook: its path must end in /api/calls"),
    ("http://localhost:7071/api/callbacks", "is not a calling webhook"),
])
def test_serve_refuses_a_bot_url_that_is_not_a_calling_webhook(webhook: str, why: str) -> None:
    result = run_serve("--bot", webhook)
    assert result.returncode == 2
    assert result.stderr.startswith(f"--bot {webhook!r} {why}") and result.stderr.count("\n") == 1, result.stderr


def test_serve_refuses_settings_the_app_refuses_in_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text('settings: {GRAPH_RETRY_BUDGET_SECONDS: "abc"}\ncall: {from: "+14255550123", to: bot}\n'
                   "steps: [{wait: 0}]\n", encoding="utf-8")
    result = run_serve("--port", "0", "--host-port", "0", "--scenario", str(bad))
    assert (result.returncode, result.stderr.splitlines()) == (2, [
        f"{bad}: the app refuses the scenario's settings: invalid configuration: GRAPH_RETRY_BUDGET_SECONDS must "
        "be a number, got 'abc'"])
    assert "Softphone:" not in result.stdout


@pytest.mark.parametrize("args", [("serve", "--port", "99999"), ("serve", "--port", "-1"),
                                  ("serve", "--host-port", "65536"), ("serve", "--port", "\u0668\u0660"),
                                  ("demo", "--sim-port", "99999"), ("demo", "--host-port", "-1")])
def test_ports_outside_0_to_65535_are_refused(args: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    from simulator.__main__ import main

    with pytest.raises(SystemExit) as exited:
        main(list(args))
    assert exited.value.code == 2
    assert f"argument {args[1]}: {args[2]!r} is not a port: use 0 (any free port) to 65535" in capsys.readouterr().err
