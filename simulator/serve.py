"""`python -m simulator serve`: the simulator on its own, on the real clock, with the browser softphone.

By default it also runs the project's function app on the local host, wired to the simulator as the demo does.
With `--bot URL` it leaves the bot to you (`func start`, a devhost of your own): it prints the settings that
bot needs to reach the simulator, and posts every call's notifications to URL. It runs until Ctrl-C (or
SIGTERM); the parties the bot rings behave as the scenario's `callees:` say (default scenarios/demo.yaml,
whose caller the page offers too).
"""

from __future__ import annotations

import errno
import json
import signal
import sys
import threading
import webbrowser
from pathlib import Path
from typing import TextIO
from urllib.parse import urlsplit

from calling.config import ConfigError, is_loopback_url
from calling.yamlsource import SourceErrors
from devhost.signatures import FunctionLoadError

#: What a bot that is not ours must be told, of the settings the harness gives the function app.
BOT_SETTINGS = ("BOT_APP_ID", "BOT_TENANT_ID", "BOT_PUBLIC_URL", "CALLING_OPENID_CONFIG_URL", "GRAPH_BASE_URL",
                "GRAPH_CREDENTIAL")


def bot_url_problem(url: str) -> str | None:
    """Why `url` cannot be the calling webhook the simulator posts to, or None."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"--bot {url!r} is not an http(s) URL, e.g. http://localhost:7071/api/calls"
    if not is_loopback_url(url):
        return (f"--bot {url!r} is not on this machine: the simulator listens on loopback only, so a bot "
                "elsewhere could not reach its Graph (and GRAPH_CREDENTIAL=local is for a loopback Graph only)")
    if parts.query or parts.fragment:
        return (f"--bot {url!r} has a query or fragment: give the calling webhook itself, e.g. "
                "http://localhost:7071/api/calls (BOT_PUBLIC_URL is that URL without /api/calls)")
    if not parts.path.rstrip("/").endswith("/api/calls"):
        return (f"--bot {url!r} is not a calling webhook: its path must end in /api/calls, e.g. "
                "http://localhost:7071/api/calls (BOT_PUBLIC_URL is that URL without /api/calls)")
    return None


def bot_settings(env: dict[str, str], scenario_settings: dict[str, str]) -> dict[str, str]:
    """The `Values` a `func start` bot needs in local.settings.json to talk to this simulator."""
    return {key: env[key] for key in (*BOT_SETTINGS, *scenario_settings) if key in env}


def run(*, port: int, host_port: int, bot: str | None, scenario: Path, open_page: bool,
        out: TextIO = sys.stdout) -> int:
    from simulator import softphone
    from simulator.harness import Simulation
    from simulator.scenario import load_scenario
    from simulator.softphone.control import prompt_origin

    try:
        spec = load_scenario(scenario)
    except SourceErrors as exc:
        print(str(exc), file=sys.stderr)
        return 2
    if bot is not None and (problem := bot_url_problem(bot)):
        print(problem, file=sys.stderr)
        return 2
    def prompt_origins() -> list[str]:  # where the bot's prompts come from, by the settings it was given
        origin = prompt_origin(sim.env)
        return [origin] if origin else []

    sim = Simulation(settings=spec.settings, real_time=True, directory=spec.directory, faults=spec.faults,
                     sim_port=port, host_port=host_port, watchdog=False, bot_url=bot,
                     sim_routes=softphone.routes(default_from=spec.call.source, prompt_origins=prompt_origins))
    try:
        sim.start()
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE and "in use" not in str(exc):
            raise
        print(f"{exc}\nA port serve needs is busy. Stop whatever listens there, or pick others: "
              "python -m simulator serve --port 8091 --host-port 7072", file=sys.stderr)
        return 2
    except FunctionLoadError as exc:  # the app as the Azure Functions Python worker would refuse it
        print(f"The Functions worker would index no function of function_app.py: {exc}", file=sys.stderr)
        return 2
    except ConfigError as exc:  # the scenario's settings, as the app reads them
        print(f"{spec.file}: the app refuses the scenario's settings: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C while starting: start() has already stopped what it started
        return 130
    try:
        page = f"{sim.simulator.url}/softphone/"
        _banner(sim.simulator.url, sim.bot.url, bot, bot_settings(sim.env, spec.settings), spec.file, out)
        print(f"Softphone: {page}", file=out, flush=True)
        if open_page:
            webbrowser.open(page)
        _wait_for_stop()
    finally:
        sim.close()
    print("serve: stopped; nothing is left listening.", file=out, flush=True)
    return 0


def _banner(sim_url: str, bot_url: str, bot: str | None, settings: dict[str, str], scenario: str,
            out: TextIO) -> None:
    print(f"The simulator (Graph and Teams) on {sim_url}, real time; callees behave as {scenario} says.", file=out)
    if bot is None:
        print(f"The bot (function_app.py on the local host) on {bot_url}.", file=out)
    else:
        print(f"The bot is yours: its webhook {bot}. Give it these settings (local.settings.json \"Values\"), "
              "then restart it:", file=out)
        print(json.dumps(settings, indent=2), file=out)
    print(f"Control API: {sim_url}/softphone/calls (docs/testing-flows.md#browser-softphone). Ctrl-C stops it.",
          file=out)


def _wait_for_stop() -> None:
    """Until SIGINT (Ctrl-C) or SIGTERM."""
    stop = threading.Event()
    previous = {number: signal.signal(number, lambda *_: stop.set()) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stop.wait(0.5):
            pass
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
