"""Media workers in this process, beside the local host: for tests, the demo and development.

Each `LocalWorker` is a real MediaWorker with the loopback engine and its own notification endpoint on a
loopback port, taking hand-offs from the app's in-process transport (MEDIA_HANDOFF_TRANSPORT=inprocess).
`kill()` is a crash: the endpoint stops answering and every media connection drops, with nothing closed
or finalised (a recording keeps only what it had committed); `stop()` is a graceful drain.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from aiohttp import web

from calling.auth import NotificationAuthenticator, SigningKeys
from calling.graphclient import CallControls
from calling.handoff import HandoffInbox
from mediavm import server
from mediavm.config import WorkerSettings
from mediavm.loopback import LoopbackEngine
from mediavm.worker import AppFactory, MediaWorker

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


@dataclass
class LocalWorker:
    worker: MediaWorker
    engine: LoopbackEngine
    url: str
    _runner: web.AppRunner
    _task: asyncio.Task[None]
    alive: bool = True

    async def kill(self) -> None:
        """A crash: no drain, no goodbyes, nothing finalised."""
        self.alive = False
        self._task.cancel()
        await self._runner.cleanup()
        for task in [t for call in self.worker.live.values() for t in call.tasks]:
            task.cancel()
        for call in list(self.worker.live.values()):
            await call.session.close()  # the media connections drop with the process
        self.worker.live.clear()

    async def stop(self, drain_seconds: float = 0.0) -> None:
        if not self.alive:
            return
        self.alive = False
        await self.worker.drain(drain_seconds)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        await self._runner.cleanup()


@contextlib.asynccontextmanager
async def _idle() -> AsyncIterator[None]:
    yield


async def start(env: Mapping[str, str], inbox: HandoffInbox, app: AppFactory, *,
                now: Callable[[], datetime] = lambda: datetime.now(UTC),
                sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                busy: Callable[[], AbstractAsyncContextManager[None]] = _idle) -> LocalWorker:
    """A worker on a free loopback port, taking from `inbox`, its calls' notifications on its own endpoint."""
    settings = WorkerSettings.from_env({"MEDIA_WORKER_PUBLIC_URL": "http://127.0.0.1:1", **env})
    engine = LoopbackEngine()
    keys = SigningKeys(settings.app.openid_config_url)
    auth = NotificationAuthenticator(app_id=settings.app.bot_app_id, allowed_tenants=settings.app.allowed_tenants,
                                     keys=keys)
    worker = MediaWorker(settings, engine=engine, inbox=inbox, calls=CallControls(settings.app), authenticator=auth,
                         app=app, now=now, sleep=sleep, busy=busy)
    runner = web.AppRunner(server.application(worker), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    url = f"http://127.0.0.1:{port}"
    worker.settings = replace(settings, public_url=url, listen_host="127.0.0.1", listen_port=port)
    return LocalWorker(worker, engine, url, runner, asyncio.create_task(worker.run()))
