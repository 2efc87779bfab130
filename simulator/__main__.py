"""`python -m simulator`: run scenarios against the bot on the local host, check them, or run the demo.

    python -m simulator run SCENARIO.yaml...   [--real-time] [--json FILE]
    python -m simulator check SCENARIO.yaml...
    python -m simulator demo                   [--sim-port N] [--host-port N] [--virtual]
    python -m simulator serve                  [--port N] [--host-port N] [--bot URL] [--scenario FILE] [--open]

Exit status: 0 when every scenario passed, 1 when one failed, 2 for bad input (a scenario file with
errors, a busy port). Errors are one line each, never a traceback.
"""

from __future__ import annotations

import argparse
import errno
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from calling.yamlsource import SourceErrors
from devhost.signatures import FunctionLoadError

ROOT = Path(__file__).resolve().parent.parent
#: The demo: an IVR call (service-hosted media), then a compliance-recorded call (a media worker).
DEMOS = (ROOT / "scenarios" / "demo.yaml", ROOT / "scenarios" / "compliance-recording.yaml")
DEMO_PORTS = (8090, 7071)


def port(text: str) -> int:
    """A TCP port for argparse: 0 (any free one) to 65535."""
    number = int(text) if text.isascii() and text.isdigit() else -1
    if not 0 <= number <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port: use 0 (any free port) to 65535")
    return number


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m simulator", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run scenarios and print their transcripts")
    run.add_argument("scenarios", nargs="+", type=Path)
    run.add_argument("--real-time", action="store_true", help="take as long as a real call would")
    run.add_argument("--json", type=Path, help="also write the transcripts as JSON to this file")
    run.add_argument("--color", action="store_true", help="color the transcript")
    check = commands.add_parser("check", help="check scenario files without running them")
    check.add_argument("scenarios", nargs="+", type=Path)
    demo = commands.add_parser("demo", help="simulated calls through the real bot, in real time")
    demo.add_argument("--sim-port", type=port, default=DEMO_PORTS[0], help="the simulator's port (default 8090)")
    demo.add_argument("--host-port", type=port, default=DEMO_PORTS[1], help="the local host's port (default 7071)")
    demo.add_argument("--virtual", action="store_true", help="virtual time: finish in a blink")
    serve = commands.add_parser("serve", help="the simulator on its own, real time, with the browser softphone")
    serve.add_argument("--port", type=port, default=DEMO_PORTS[0], help="the simulator's port (default 8090)")
    serve.add_argument("--host-port", type=port, default=DEMO_PORTS[1],
                       help="the local host's port, without --bot (default 7071)")
    serve.add_argument("--bot", metavar="URL", help="the calling webhook of a bot you run yourself (func start), "
                       "e.g. http://localhost:7071/api/calls; no local host is started")
    serve.add_argument("--scenario", type=Path, default=DEMOS[0],
                       help="how the parties the bot rings behave, the bot's settings, the default caller "
                       "(its callees, settings, faults and caller; default scenarios/demo.yaml)")
    serve.add_argument("--open", action="store_true", help="open the softphone in a browser")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # The bot's telemetry events go to Application Insights in Azure; here the transcript tells the story.
    events = logging.getLogger("calling.events")
    quiet = logging.Filter("-quiet-")  # passes no record: only this command's output is quietened
    events.addFilter(quiet)
    try:
        return _main(args)
    finally:
        events.removeFilter(quiet)


def _main(args: argparse.Namespace) -> int:
    from simulator.scenario import load_scenario

    if args.command == "serve":
        from simulator import serve

        return serve.run(port=args.port, host_port=args.host_port, bot=args.bot, scenario=args.scenario,
                         open_page=args.open)
    scenarios = []
    problems = []
    for path in DEMOS if args.command == "demo" else args.scenarios:
        try:
            scenarios.append(load_scenario(path))
        except SourceErrors as exc:
            problems.append(str(exc))
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 2
    if args.command == "check":
        for scenario in scenarios:
            print(f"{scenario.file}: ok ({len(scenario.steps)} steps)")
        return 0
    if args.command == "demo":
        for number, scenario in enumerate(scenarios, 1):
            status = _demo(scenario, args.sim_port, args.host_port, virtual=args.virtual,
                           heading=f"Demo {number} of {len(scenarios)}")
            if status:
                return status
        return 0
    return _run(scenarios, real_time=args.real_time, json_path=args.json, color=args.color)


def _run(scenarios: Sequence[object], *, real_time: bool, json_path: Path | None, color: bool) -> int:
    from simulator.scenario import Scenario, run_scenario

    failures = 0
    everything = []
    for scenario in scenarios:
        assert isinstance(scenario, Scenario)
        outcome = run_scenario(scenario, real_time=real_time or None)
        everything.append({"scenario": scenario.file, "passed": outcome.passed, "calls": outcome.transcript_json})
        print(outcome.transcript)
        if outcome.passed:
            print(f"PASS {scenario.file}: {scenario.name}\n")
        else:
            failures += 1
            print(f"FAIL {outcome.message}\n")
    if json_path is not None:
        json_path.write_text(json.dumps(everything, indent=2), encoding="utf-8")
    return 1 if failures else 0


def _demo(scenario: object, sim_port: int, host_port: int, *, virtual: bool, heading: str = "Demo") -> int:
    from simulator.scenario import Scenario, run_scenario

    assert isinstance(scenario, Scenario)
    print(f"{heading}: {scenario.name}")
    print(f"  the simulator (Graph and Teams) on http://127.0.0.1:{sim_port}, "
          f"the bot (function_app.py on the local host) on http://127.0.0.1:{host_port}\n")
    try:
        outcome = run_scenario(scenario, real_time=not virtual, ports=(sim_port, host_port),
                               progress=lambda line: print(f"  … {line.split(': ', 1)[-1]}", flush=True))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE or "in use" in str(exc):
            print(f"\n{exc}\nA port the demo needs is busy. Stop whatever listens there, or pick free ports:\n"
                  "  python3 dev.py demo --sim-port 8091 --host-port 7072", file=sys.stderr)
            return 2
        raise
    except FunctionLoadError as exc:  # the app as the Azure Functions Python worker would refuse it
        print(f"\nThe Functions worker would index no function of function_app.py: {exc}", file=sys.stderr)
        return 2
    print("\nTranscript (seconds since the call began; → bot: notification posted to the bot, "
          "← bot: the bot's request to Graph):\n")
    print(outcome.transcript)
    recorded = [(path, size) for path, size in outcome.stored if path.startswith("compliance/")]
    for path, size in outcome.stored:
        if (path, size) not in recorded:
            print(f"\nThe bot stored the voicemail: {path} ({size // 1024} KB WAV, with a .json of caller, time, "
                  "duration)")
    if recorded:
        print(f"\nThe media worker stored {len(recorded)} recording(s), one per participant who spoke, each a WAV "
              "with a .json of call, tenant, recorded user, participant, start, end, duration and status:")
        for path, size in recorded:
            print(f"  {path} ({size // 1024} KB)")
    if outcome.passed:
        workers = " and the media worker" if scenario.media_workers else ""
        print(f"\nThe call went as the scenario expected. The servers{workers} are stopped; nothing is left "
              "listening.\n")
        return 0
    print(f"\nThe call did not go as expected: {outcome.message}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
