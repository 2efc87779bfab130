"""`python -m devhost`: serve the project's function_app.py on real time until Ctrl-C, like `func start`.

Reads `local.settings.json` ("Values" become environment variables that are not already set) and the HTTP
route prefix from `host.json`, as Core Tools does. Exit code 2 when the port is taken.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

from devhost.host import DevHost, PortInUse
from devhost.signatures import FunctionLoadError
from simulator.clock import RealClock


def _settings(root: Path) -> None:
    path = root / "local.settings.json"
    if not path.is_file():
        return
    values = json.loads(path.read_text()).get("Values") or {}
    for key, value in values.items():
        os.environ.setdefault(str(key), str(value))


def _route_prefix(root: Path) -> str:
    path = root / "host.json"
    if not path.is_file():
        return "api"
    prefix = json.loads(path.read_text()).get("extensions", {}).get("http", {}).get("routePrefix")
    return "api" if prefix is None else str(prefix)


def _load(target: str) -> Any:
    module_name, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module_name), attribute or "app")


async def serve(host: DevHost, address: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for number in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not on Windows: Ctrl-C raises instead
            loop.add_signal_handler(number, stop.set)
    try:
        url = await host.start(address, port)
    except PortInUse:
        await host.stop()
        raise
    try:
        print(f"devhost: serving function_app.py at {url} (real time). Ctrl-C stops it.", flush=True)
        for methods, route, name in host.routes():
            print(f"  {name}: [{methods}] {route}", flush=True)
        for entity in host.index.entities.values():
            print(f"  {entity.name}: entity (signal or read at {url}/runtime/webhooks/durabletask/entities/"
                  f"{entity.name.lower()}/<key>)", flush=True)
        for name, reason in host.index.skipped:
            print(f"  {name}: skipped ({reason})", flush=True)
        print(f"  Durable management API: {url}/runtime/webhooks/durabletask/instances", flush=True)
        await stop.wait()
    finally:
        await host.stop()
        print("devhost: stopped", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devhost", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=7071, help="port to listen on (default 7071, as func start)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--store", default=":memory:",
                        help="SQLite file for orchestration state (default :memory:, gone when the host stops)")
    parser.add_argument("--app", default="function_app:app", help="module:attribute of the app (function_app:app)")
    parser.add_argument("--no-replay-check", action="store_true",
                        help="skip the extra replay after each orchestration step that detects nondeterminism")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    root = Path.cwd()
    sys.path.insert(0, str(root))
    _settings(root)
    try:
        host = DevHost(_load(args.app), clock=RealClock(), store=args.store, replay_check=not args.no_replay_check,
                       route_prefix=_route_prefix(root))
    except FunctionLoadError as exc:  # what the Azure Functions Python worker would refuse, named as it does
        print(f"devhost: the Functions worker would index no function: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(serve(host, args.host, args.port))
    except PortInUse as exc:
        print(f"devhost: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("devhost: stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
