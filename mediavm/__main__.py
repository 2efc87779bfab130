"""`python -m mediavm`: the media worker as a service (one per media VM instance).

Reads its settings from the environment (mediavm/config.py, docs/configuration.md), checks them all at
once, and exits with status 2 and every problem named when they are wrong, never a traceback. Then: marks
recordings an earlier run left `recording` as partial (the startup sweep, then every 5 minutes, so the
recordings of a worker that died and never came back are marked too), takes hand-offs from the Service
Bus queue, serves its calls' notifications and /health on MEDIA_WORKER_LISTEN, and on SIGTERM or Ctrl+C
drains (takes no more calls, lets live ones end for up to MEDIA_WORKER_DRAIN_SECONDS) before it exits; on a
media VM an Azure scheduled event for the instance (scale-in, maintenance) does the same within its notice,
then approves it (mediavm/scheduled_events.py). Exit status 3: the media platform (the Windows engine) did not
start, so the instance takes no call.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import ssl
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from calling.config import ConfigError
from mediavm.config import WindowsMediaSettings, WorkerSettings

if TYPE_CHECKING:
    from calling.handoff import HandoffInbox
    from mediavm.engine import MediaEngine

log = logging.getLogger("mediavm")

EXIT_CONFIG = 2
EXIT_MEDIA = 3  # the media platform did not start (the Windows engine)


def check(env: Mapping[str, str]) -> WorkerSettings:
    """The settings, or ConfigError naming every problem, including those only a service run has."""
    settings = WorkerSettings.from_env(env)
    problems: list[str] = []
    if settings.engine == "windows":  # its settings matter only here: only the service builds the Windows engine
        try:
            windows = WindowsMediaSettings.from_env(env, settings.app.bot_app_id)
        except ConfigError as exc:
            problems.extend(exc.problems)
        else:
            if not (Path(windows.library_dir) / "Microsoft.Skype.Bots.Media.dll").is_file():
                problems.append(f"MEDIA_LIBRARY_DIR {windows.library_dir} has no Microsoft.Skype.Bots.Media.dll "
                                "(publish mediavm/windows/MediaLibrary.csproj there; docs/media.md)")
            settings = dataclasses.replace(settings, windows=windows)
    from mediavm import scheduled_events

    problems.extend(scheduled_events.check(env, settings.engine))
    if settings.app.handoff_transport != "servicebus":
        problems.append("MEDIA_HANDOFF_TRANSPORT must be servicebus for the worker service (with "
                        "SERVICEBUS_NAMESPACE): it takes hand-offs from the queue the webhook sends to")
    if not (settings.app.recordings_container_url or settings.app.recordings_dir):
        problems.append("RECORDINGS_CONTAINER_URL (or RECORDINGS_DIR) is not set: compliance recordings need "
                        "somewhere to go")
    if problems:
        raise ConfigError(problems)
    return settings


def tls_context(env: Mapping[str, str]) -> ssl.SSLContext | None:
    """HTTPS for the notification endpoint from MEDIA_WORKER_TLS_CERT_FILE and MEDIA_WORKER_TLS_KEY_FILE (PEM),
    or None (plain HTTP: behind a TLS-terminating proxy, or on loopback)."""
    cert, key = env.get("MEDIA_WORKER_TLS_CERT_FILE", "").strip(), env.get("MEDIA_WORKER_TLS_KEY_FILE", "").strip()
    if not cert and not key:
        return None
    if not (cert and key):
        raise ConfigError(["MEDIA_WORKER_TLS_CERT_FILE and MEDIA_WORKER_TLS_KEY_FILE go together: set both or neither"])
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError([f"MEDIA_WORKER_TLS_CERT_FILE/KEY_FILE could not be loaded ({cert}, {key}): {exc}"]) from exc
    return context


def media_engine(settings: WorkerSettings) -> MediaEngine:
    """The engine MEDIA_ENGINE names: loopback, or the Windows engine (it loads .NET only when it starts)."""
    if settings.engine == "windows":
        from mediavm.windows import WindowsEngine

        if settings.windows is None:
            raise ConfigError(["MEDIA_ENGINE=windows: its settings were not read (check() reads them)"])
        return WindowsEngine(settings.windows)
    from mediavm.loopback import LoopbackEngine

    return LoopbackEngine()


async def serve(settings: WorkerSettings, context: ssl.SSLContext | None, *, stop: asyncio.Event | None = None,
                inbox: HandoffInbox | None = None) -> None:
    """Run the worker until `stop` is set (SIGTERM/SIGINT set it), then drain and exit. `inbox`: the Service
    Bus queue unless given (tests give an in-process one: no Service Bus runs here)."""
    from calling import telemetry
    from calling.auth import NotificationAuthenticator, SigningKeys
    from calling.credentials import identity_credential
    from calling.graphclient import CallControls
    from calling.servicebus import ServiceBusHandoffInbox
    from mediavm import server
    from mediavm.compliance import recording_app
    from mediavm.recorder import keep_sweeping, sweep
    from mediavm.sinks import recording_sink
    from mediavm.worker import MediaWorker

    app_settings = settings.app
    telemetry.configure(app_settings.appinsights_connection_string, also=("mediavm",))
    sink = recording_sink(app_settings)
    assert sink is not None  # check() made sure
    swept = await sweep(sink)
    if swept:
        log.warning("marked %d recording(s) an earlier run left unfinished as partial", len(swept))
    assert app_settings.servicebus_namespace is not None  # check() made sure
    inbox = inbox or ServiceBusHandoffInbox.connect(app_settings.servicebus_namespace, app_settings.handoff_queue,
                                                    identity_credential(app_settings.managed_identity_client_id))
    auth = NotificationAuthenticator(app_id=app_settings.bot_app_id, allowed_tenants=app_settings.allowed_tenants,
                                     keys=SigningKeys(app_settings.openid_config_url))
    engine = media_engine(settings)
    await engine.start()  # the media platform before anything takes a call: an instance that cannot start it takes none
    worker = MediaWorker(settings, engine=engine, inbox=inbox, calls=CallControls(app_settings),
                         authenticator=auth, app=recording_app(sink))
    runner = web.AppRunner(server.application(worker), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.listen_host, settings.listen_port, ssl_context=context)
    await site.start()
    log.info("media worker up: notifications at %s, listening on %s:%d, %d calls at most", settings.callback_uri,
             settings.listen_host, settings.listen_port, settings.capacity)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # Windows: only Ctrl+C, via KeyboardInterrupt
            loop.add_signal_handler(sig, stop.set)
    # Operating it (docs/media.md): gauges for autoscale and the alerts; a scheduled event (scale-in,
    # maintenance) that ends this instance's calls sets `stop`, bounds the drain and is approved after it.
    from mediavm import metrics, scheduled_events

    gauges = metrics.observe(worker)
    events = await scheduled_events.watch(worker, settings, stop, os.environ)
    taking = asyncio.create_task(worker.run())
    stopping = asyncio.create_task(stop.wait())
    sweeping = asyncio.create_task(keep_sweeping(sink))
    await asyncio.wait({taking, stopping}, return_when=asyncio.FIRST_COMPLETED)
    drain_seconds = events.drain_seconds(settings.drain_seconds)
    log.info("media worker draining: %d live call(s), up to %g s", len(worker.live), drain_seconds)
    await worker.drain(drain_seconds)
    for task in (taking, stopping, sweeping):
        task.cancel()
    await runner.cleanup()
    await sink.close()
    await events.finish()
    gauges.close()


def main(env: Mapping[str, str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    env = os.environ if env is None else env
    try:
        settings = check(env)
        context = tls_context(env)
    except ConfigError as exc:
        print("The media worker's settings are not usable:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  - {problem}", file=sys.stderr)
        print("See docs/configuration.md (Media worker).", file=sys.stderr)
        return EXIT_CONFIG
    from mediavm.windows import MediaLibraryError

    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve(settings, context))
    except MediaLibraryError as exc:
        log.error("the media platform did not start: %s", exc)
        print(f"The media platform did not start: {exc}", file=sys.stderr)
        return EXIT_MEDIA
    return 0


if __name__ == "__main__":
    sys.exit(main())
