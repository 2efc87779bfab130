"""DevHost: the function app's HTTP triggers, orchestrations, activities and entities on one aiohttp server.

It stands in for Core Tools plus the Durable extension: one listening socket serves the app's HTTP routes,
the Durable management API (`/runtime/webhooks/durabletask/...` and the client's `/durabletask/` RPC base),
and the engine runs orchestrations and activities in the same event loop, on the clock it is given.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
from collections.abc import Collection, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from aiohttp import web

from devhost import functions
from devhost.durable import history, management, payloads
from devhost.durable.engine import Engine
from devhost.durable.store import Store, open_store
from devhost.http import HttpTriggers
from simulator.clock import Clock

log = logging.getLogger("devhost")

#: The Functions host accepts request bodies up to 100 MB.
MAX_BODY_BYTES = 100 * 1024 * 1024


class PortInUse(OSError):
    """The port is taken by another process; the message says what to do."""

    def __init__(self, port: int) -> None:
        super().__init__(errno.EADDRINUSE, f"port {port} is in use; pass --port N or stop the other process")
        self.port = port

    def __str__(self) -> str:
        return str(self.strerror)


def _listen(host: str, port: int) -> socket.socket:
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                         flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    try:
        if os.name == "posix":  # elsewhere SO_REUSEADDR would let two servers share the port
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortInUse(port) from None
        raise
    sock.setblocking(False)
    return sock


class DevHost:
    """Runs `app` (a `df.DFApp`) locally. See docs/local-development.md, "The local host (devhost)"."""

    def __init__(self, app: Any, *, clock: Clock, store: Store | str | Path | None = None,
                 function_keys: Collection[str] | Mapping[str, str] | None = None, replay_check: bool = True,
                 route_prefix: str = "api", overridable_existing_instance_states: str = "AnyState") -> None:
        self.index = functions.index(app)
        self._clock = clock
        self._owns_store = store is None or isinstance(store, (str, Path))
        self._store = open_store(store)
        keys = function_keys.values() if isinstance(function_keys, Mapping) else function_keys or ()
        self._keys = tuple(keys)
        self._url: str | None = None
        self._runner: web.AppRunner | None = None
        self._stopped = False
        self._engine = Engine(self.index, self._store, clock, replay_check=replay_check, binding=self.client_binding,
                              overridable_existing_instance_states=overridable_existing_instance_states)
        self._triggers = HttpTriggers(self.index.http, clock, route_prefix=route_prefix, keys=self._keys,
                                      binding=self.client_binding)

    @property
    def url(self) -> str:
        """The base URL, e.g. http://127.0.0.1:54321 (only once started)."""
        if self._url is None:
            raise RuntimeError("the host is not started")
        return self._url

    def client_binding(self) -> str:
        """The JSON a `durable_client_input` parameter receives, pointing at this host."""
        return management.client_binding(self.url, code=self._keys[0] if self._keys else None)

    def routes(self) -> list[tuple[str, str, str]]:
        """(methods, URL, function name) of every HTTP trigger."""
        return self._triggers.urls(self.url)

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen on host:port (0: any free port) and start work; returns the base URL. Raises PortInUse.

        A host starts once: `stop()` closes the store it opened, so build a new DevHost (over the same SQLite
        file, if state should carry over) to start again.
        """
        if self._url is not None or self._stopped:
            raise RuntimeError("a DevHost starts once; create a new one to start again")
        sock = _listen(host, port)
        bound = sock.getsockname()[1]
        shown = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)  # noqa: S104 (a mapping)
        self._url = f"http://[{shown}]:{bound}" if ":" in shown else f"http://{shown}:{bound}"
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        management.ManagementApi(self._engine, self._clock, base_url=lambda: self.url,
                                 keys=self._keys).add_routes(app)
        self._triggers.add_routes(app)
        runner = web.AppRunner(app, handle_signals=False, access_log=logging.getLogger("devhost.access"),
                               shutdown_timeout=2.0)
        try:
            await runner.setup()
            await web.SockSite(runner, sock).start()
        except BaseException:
            await runner.cleanup()
            sock.close()
            self._url = None
            raise
        self._runner = runner
        await self._engine.start()
        log.info("devhost listening on %s", self._url)
        return self._url

    async def stop(self) -> None:
        """Close the server (in-flight requests get 2 s), stop timers, activities and orchestrations, close the
        store it opened. Nothing stays listening."""
        if self._stopped:
            return
        self._stopped = True
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self._engine.stop()
        if self._owns_store:
            self._store.close()

    async def __aenter__(self) -> DevHost:
        if self._url is None and not self._stopped:
            await self.start()
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        trace: TracebackType | None) -> None:
        await self.stop()

    def status(self, instance_id: str) -> dict[str, Any] | None:
        """The instance's status as the management API returns it (input, output, customStatus as JSON)."""
        record = self._engine.get(instance_id)
        return management.status_payload(record) if record else None

    def instances(self) -> list[dict[str, Any]]:
        """Every instance's status, as `status` gives it (the management API lists the same)."""
        return [management.status_payload(record) for record in self._engine.instances()]

    def entity(self, name: str, key: str) -> dict[str, Any] | None:
        """An entity's committed state: `exists`, `state` (the JSON value) and `lastOperationTime`; None when no
        batch of it has run yet."""
        record = self._engine.entity(name, key)
        if record is None:
            return None
        return {"exists": record.exists, "state": payloads.value_of(record.state),
                "lastOperationTime": history.timestamp(record.last_operation_time)}

    def history(self, instance_id: str) -> list[dict[str, Any]]:
        """The current execution's history as recorded, EventType as a name ("TaskScheduled")."""
        return history.readable(self._engine.events(instance_id))
