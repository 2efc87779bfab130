"""Serving the simulator on a loopback port: start, the URLs the bot is configured with, stop."""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable

from aiohttp import web

from simulator.core import Simulator
from simulator.graph_api import build_app


class PortBusy(OSError):
    def __init__(self, host: str, port: int) -> None:
        super().__init__(errno.EADDRINUSE, f"port {port} on {host} is in use")
        self.host, self.port = host, port

    def __str__(self) -> str:
        return str(self.strerror)


#: Adds routes of its own to the simulator's application before it starts (the softphone, simulator/softphone/).
Routes = Callable[[web.Application, Simulator], None]


class SimulatorServer:
    def __init__(self, sim: Simulator, *, routes: Routes | None = None) -> None:
        self.sim = sim
        self._routes = routes
        self._runner: web.AppRunner | None = None

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        app = build_app(self.sim)
        if self._routes is not None:
            self._routes(app, self.sim)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            if exc.errno == errno.EADDRINUSE:
                raise PortBusy(host, port) from None
            raise
        server = site._server
        sockets: list[socket.socket] = list(getattr(server, "sockets", []) or [])
        bound = sockets[0].getsockname()[1] if sockets else port
        self.sim.url = f"http://{host}:{bound}"
        return self.sim.url

    @property
    def graph_url(self) -> str:
        return f"{self.sim.url}/v1.0"

    @property
    def openid_url(self) -> str:
        return f"{self.sim.url}/v1/.well-known/OpenIdConfiguration"

    async def stop(self) -> None:
        await self.sim.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
