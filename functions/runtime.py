"""The process-wide objects the triggers share, built once from the settings.

Built on first use rather than at import, so a missing setting does not stop the Functions host from
indexing the app: the problem is logged once with every setting named, and the webhook answers 503.
Singletons matter here: the signing-key cache, the Graph token caches and connection pools must
survive across invocations, or every notification would pay for them.

The core is imported by `build()`, not by this module: the host imports function_app (and so this) on every
cold start before it routes a request, and only the first invocation needs the core (bench/imports.py).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from calling.config import ConfigError, Settings, is_loopback_url

if TYPE_CHECKING:
    from calling.graphclient import CallControls
    from calling.handoff import HandoffTransport
    from calling.idempotency import KeyStore
    from calling.prompt_links import PromptLinks
    from calling.recordings import RecordingStore
    from calling.session import FlowLibrary
    from calling.webhook import Webhook

log = logging.getLogger("functions.runtime")


@dataclass
class Runtime:
    settings: Settings
    webhook: Webhook
    calls: CallControls
    handoff: HandoffTransport | None
    flows: FlowLibrary
    recordings: RecordingStore | None
    #: The app's clock for call facts (a flow's start time): the local host's virtual clock in tests.
    now: Callable[[], datetime]
    #: Where outbound requests' Idempotency-Keys are kept (Blob Storage, or this process's memory).
    idempotency: KeyStore


class NotConfigured(Exception):
    """The app cannot run with these settings; `reason` names each setting at fault."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


_runtime: Runtime | None = None
_failure: str | None = None


def build(env: Mapping[str, str], *, now: Callable[[], datetime] | None = None,
          sleep: Callable[[float], Awaitable[None]] | None = None) -> Runtime:
    """`now`: the webhook's clock (the local host's virtual clock in tests; wall-clock UTC otherwise);
    `sleep`: how the webhook waits inside a request (the virtual clock's, in tests)."""
    from calling import telemetry
    from calling.auth import NotificationAuthenticator, SigningKeys
    from calling.graphclient import CallControls
    from calling.routing import Router, default_policy, load_policy
    from calling.session import FlowLibrary
    from calling.webhook import Webhook

    settings = Settings.from_env(env)
    telemetry.configure(settings.appinsights_connection_string)
    keys = SigningKeys(settings.openid_config_url)
    authenticator = NotificationAuthenticator(app_id=settings.bot_app_id, allowed_tenants=settings.allowed_tenants,
                                              keys=keys)
    policy = (load_policy(settings.routing_policy_path, default_flow=settings.default_flow)
              if settings.routing_policy_path else default_policy(settings.default_flow))
    calls = CallControls(settings)
    handoff = _handoff(settings, now)
    router = Router(policy, bot_app_id=settings.bot_app_id)
    flows = FlowLibrary(Path(settings.flows_dir), settings.prompts_base_url, _prompt_links(settings, now))
    recordings = _recordings(settings)
    webhook = Webhook(settings=settings, authenticator=authenticator, router=router, calls=calls, handoff=handoff,
                      flows=flows, now=now or _utcnow, sleep=sleep or _sleep)
    return Runtime(settings, webhook, calls, handoff, flows, recordings, now or _utcnow, _idempotency(settings))


def _handoff(settings: Settings, now: Callable[[], datetime] | None) -> HandoffTransport | None:
    """Where hand-offs go (MEDIA_HANDOFF_TRANSPORT). The Service Bus sender connects on its first hand-off and
    keeps its link; azure-servicebus loads only here, never with `import function_app`."""
    if settings.handoff_transport == "inprocess":
        from calling.handoff import InProcessTransport

        return InProcessTransport()
    if settings.handoff_transport == "servicebus" and settings.servicebus_namespace:
        from calling.credentials import servicebus_credential
        from calling.servicebus import ServiceBusHandoffSender

        return ServiceBusHandoffSender.connect(settings.servicebus_namespace, settings.handoff_queue,
                                               servicebus_credential(settings), now=now or _utcnow)
    return None


def _recordings(settings: Settings) -> RecordingStore | None:
    """Blob Storage when RECORDINGS_CONTAINER_URL is set (Azure, or Azurite locally), else a folder, else none."""
    from calling.recordings import FolderStore

    if settings.recordings_container_url:
        from calling.credentials import storage_credential
        from calling.recordings import BlobStore

        url = settings.recordings_container_url
        return BlobStore(url, storage_credential(url, settings))
    return FolderStore(Path(settings.recordings_dir)) if settings.recordings_dir else None


def _idempotency(settings: Settings) -> KeyStore:
    """Blob Storage when IDEMPOTENCY_CONTAINER_URL is set (Azure, or Azurite locally), else this process's memory."""
    from calling.idempotency import BlobKeyStore, MemoryKeyStore

    if settings.idempotency_container_url:
        from calling.credentials import storage_credential

        url = settings.idempotency_container_url
        return BlobKeyStore(url, storage_credential(url, settings))
    if not is_loopback_url(settings.graph_base_url):
        log.warning("IDEMPOTENCY_CONTAINER_URL is not set: Idempotency-Keys of outbound requests are kept in this "
                    "process only, so a retry reaching another instance could place a second call")
    return MemoryKeyStore()


def _prompt_links(settings: Settings, now: Callable[[], datetime] | None) -> PromptLinks | None:
    if not settings.prompts_container_url:
        return None
    from calling.credentials import storage_credential
    from calling.prompt_links import PromptLinks

    url = settings.prompts_container_url
    return PromptLinks(settings.prompts_base_url, container_url=url, credential=storage_credential(url, settings),
                       now=now or _utcnow)


async def _sleep(seconds: float) -> None:
    import asyncio

    await asyncio.sleep(seconds)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def get() -> Runtime:
    """The runtime for this process. Raises NotConfigured (already logged) when settings are wrong."""
    global _runtime, _failure  # noqa: PLW0603 (process-wide singletons, see module docstring)
    if _runtime is not None:
        return _runtime
    from calling.yamlsource import SourceErrors

    try:
        _runtime = build(os.environ)
    except (ConfigError, SourceErrors) as exc:
        message = str(exc)
        if message != _failure:
            log.error("the calling bot is not configured: %s", message)
            _failure = message
        raise NotConfigured(message) from None
    return _runtime


def reset(runtime: Runtime | None = None) -> None:
    """Replace (or drop) the process runtime: for tests and the local host."""
    global _runtime, _failure
    _runtime, _failure = runtime, None
