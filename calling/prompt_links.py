"""Where Graph fetches the flows' prompts from.

Locally the app serves them itself (PROMPTS_BASE_URL, default `BOT_PUBLIC_URL/api/prompts`). In Azure
they live in a private Blob container (PROMPTS_CONTAINER_URL; the account allows no anonymous reads and
no shared keys), and Graph gets a read-only SAS for the container signed with a user delegation key, which
the app's managed identity obtains itself: nothing secret is stored. A SAS lasts two days and is renewed
when less than one is left, so a call never starts with a link about to expire. Against Azurite the SAS
is signed with Azurite's development key instead (it has no Entra ID).

Prompt resource ids (Graph's media cache keys) come from the URI without the SAS (calling/flows/prompts.py),
so renewing the SAS does not make Graph fetch every prompt again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

SAS_LIFETIME = timedelta(days=2)
RENEW_BEFORE = timedelta(days=1)
CLOCK_SKEW = timedelta(minutes=5)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class PromptLinks:
    """The base URL of the prompts, with a fresh SAS when they are in a private container."""

    def __init__(self, base_url: str, *, container_url: str | None = None, credential: Any = None,
                 now: Callable[[], datetime] = _utcnow) -> None:
        self._fixed = base_url.rstrip("/")
        self._container_url = container_url.rstrip("/") if container_url else None
        self._credential = credential
        self._now = now
        self._signed: tuple[str, datetime] | None = None  # (base URL with SAS, when it expires)
        self._lock = asyncio.Lock()

    @property
    def container_url(self) -> str | None:
        return self._container_url

    async def base_url(self) -> str:
        if self._container_url is None:
            return self._fixed
        signed = self._signed
        if signed is not None and signed[1] - self._now() > RENEW_BEFORE:
            return signed[0]
        async with self._lock:
            signed = self._signed
            if signed is None or signed[1] - self._now() <= RENEW_BEFORE:
                signed = await self._sign(self._container_url)
                self._signed = signed
        return signed[0]

    async def _sign(self, container_url: str) -> tuple[str, datetime]:
        from azure.storage.blob import generate_container_sas

        parts = urlsplit(container_url)
        segments = [s for s in parts.path.split("/") if s]
        container = segments[-1]
        account = segments[0] if len(segments) > 1 else parts.netloc.split(".")[0]  # Azurite: /account/container
        now = self._now()
        start, expiry = now - CLOCK_SKEW, now + SAS_LIFETIME
        key = getattr(self._credential, "account_key", None)
        if key:
            sas = generate_container_sas(account, container, account_key=key, permission="r", start=start,
                                         expiry=expiry)
        else:
            from azure.storage.blob.aio import BlobServiceClient

            account_url = container_url[: container_url.rstrip("/").rfind("/")]
            async with BlobServiceClient(account_url, credential=self._credential) as service:
                delegation = await service.get_user_delegation_key(start, expiry)
            sas = generate_container_sas(account, container, user_delegation_key=delegation, permission="r",
                                         start=start, expiry=expiry)
        return f"{container_url}?{sas}", expiry
