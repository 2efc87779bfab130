"""A stub Graph and calling-platform key server on 127.0.0.1, in its own thread and event loop.

Serves the OpenID configuration and JWKS the webhook authenticates against, and records when each
`POST /v1.0/communications/calls/{id}/answer` arrives (time.perf_counter, same process, so comparable
with the driver's clock), answering 202 as Graph does. Its own thread keeps its work off the loop that
runs the app; it still shares the GIL, which costs the app a little under concurrency.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from typing import Any

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

ISSUER = "https://api.botframework.com"
KID = "bench-key"


class StubServer:
    def __init__(self) -> None:
        self.private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(self.private_key.public_key()))
        jwk.update(kid=KID, use="sig", alg="RS256")
        self._jwks = {"keys": [jwk]}
        self.arrivals: dict[str, float] = {}
        self.answers = 0
        self.sessions = 0
        self.key_fetches = 0
        self.unexpected: list[str] = []
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="bench-stub", daemon=True)
        self._runner: web.AppRunner | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> StubServer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._serve(), self._loop).result(timeout=10)
        return self

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=10)
            self._runner = None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()
        self._sock.close()

    def __enter__(self) -> StubServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def _serve(self) -> None:
        app = web.Application()
        app.router.add_get("/openid", self._openid)
        app.router.add_get("/jwks", self._jwks_handler)
        app.router.add_post("/v1.0/communications/calls/{call_id}/answer", self._answer)
        app.router.add_post("/durabletask/orchestrators/{name}/{instance_id}", self._start)
        app.router.add_route("*", "/{tail:.*}", self._other)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        await web.SockSite(self._runner, self._sock).start()

    async def _answer(self, request: web.Request) -> web.Response:
        arrived = time.perf_counter()
        await request.read()
        self.arrivals[request.match_info["call_id"]] = arrived
        self.answers += 1
        return web.Response(status=202)

    async def _start(self, request: web.Request) -> web.Response:
        """The Durable management API's start-new: each answered call starts its session first."""
        await request.read()
        self.sessions += 1
        instance = request.match_info["instance_id"]
        return web.json_response({"id": instance, "statusQueryGetUri": f"{self.base}/status/{instance}"}, status=202)

    async def _openid(self, request: web.Request) -> web.Response:
        self.key_fetches += 1
        return web.json_response({"issuer": ISSUER, "jwks_uri": f"{self.base}/jwks"})

    async def _jwks_handler(self, request: web.Request) -> web.Response:
        return web.json_response(self._jwks)

    async def _other(self, request: web.Request) -> web.Response:
        self.unexpected.append(f"{request.method} {request.path}")
        return web.json_response({"error": {"code": "notFound", "message": "not served by the stub"}},
                                 status=404)
