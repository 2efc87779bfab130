"""How the bot proves itself to Graph (outbound), per tenant, with azure-identity.

Production: the Function App's user-assigned managed identity signs a federated assertion for the bot's
Entra app (ClientAssertionCredential), so no secret exists anywhere. Development: a certificate or a
client secret. Local: a fixed token, only for a Graph base URL on loopback (the simulator).
azure-identity caches each credential's tokens in memory; one credential per tenant is kept for the
process lifetime, so a token is fetched about once an hour, never per request.
"""

from __future__ import annotations

import time
from typing import Any

from azure.core.credentials import AccessToken, AccessTokenInfo, TokenRequestOptions
from azure.core.credentials_async import AsyncTokenCredential

from calling.config import Settings

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
FEDERATION_SCOPE = "api://AzureADTokenExchange/.default"


class LocalTokenCredential(AsyncTokenCredential):
    """A fixed bearer token for the local simulator. Refused for anything but a loopback Graph (config)."""

    def __init__(self, token: str = "local-simulator-token") -> None:  # noqa: S107 (not a secret)
        self._token = token

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(self._token, int(time.time()) + 3600)

    async def get_token_info(self, *scopes: str, options: TokenRequestOptions | None = None) -> AccessTokenInfo:
        return AccessTokenInfo(self._token, int(time.time()) + 3600)

    async def close(self) -> None:
        return None

    async def __aexit__(self, *args: Any) -> None:
        return None


def graph_credential(settings: Settings, tenant_id: str) -> AsyncTokenCredential:
    """The credential for calls in `tenant_id` (the `tid` of the notification that started them)."""
    kind = settings.graph_credential
    if kind == "local":
        return LocalTokenCredential()
    if kind == "managed_identity":
        from azure.identity import ManagedIdentityCredential
        from azure.identity.aio import ClientAssertionCredential

        identity = ManagedIdentityCredential(client_id=settings.managed_identity_client_id)

        def assertion() -> str:
            # Called only when the app token needs renewing; the managed identity caches its own token.
            token: str = identity.get_token(FEDERATION_SCOPE).token
            return token

        return ClientAssertionCredential(tenant_id, settings.bot_app_id, assertion)
    if kind == "certificate":
        from azure.identity.aio import CertificateCredential

        return CertificateCredential(tenant_id, settings.bot_app_id, settings.certificate_path)
    from azure.identity.aio import ClientSecretCredential

    return ClientSecretCredential(tenant_id, settings.bot_app_id, settings.client_secret or "")


def is_azurite(url: str) -> bool:
    """Azurite, the local Blob Storage emulator: loopback and its fixed account name."""
    from urllib.parse import urlsplit

    from calling.config import is_loopback_url

    return is_loopback_url(url) and urlsplit(url).path.strip("/").split("/")[0] == "devstoreaccount1"


def storage_credential(url: str, settings: Settings) -> Any:
    """The credential for a Blob container: the Function App's managed identity (Storage Blob Data roles,
    no keys: the account allows none), or, for Azurite on loopback, its published development key.

    The development key is not ours: azure-storage-blob knows it for `UseDevelopmentStorage=true`, and
    this borrows it from there rather than writing it down.
    """
    if is_azurite(url):
        from azure.storage.blob import BlobServiceClient

        return BlobServiceClient.from_connection_string("UseDevelopmentStorage=true").credential
    from azure.identity.aio import DefaultAzureCredential, ManagedIdentityCredential

    if settings.managed_identity_client_id:
        return ManagedIdentityCredential(client_id=settings.managed_identity_client_id)
    return DefaultAzureCredential()  # a developer's `az login` against a real account


def servicebus_credential(settings: Settings) -> AsyncTokenCredential:
    """The credential for the hand-off queue (calling/servicebus.py), as for Blob Storage: the Function App's
    managed identity (Azure Service Bus Data Sender on the queue; the namespace allows no SAS keys), or a
    developer's `az login` against a real namespace. Never a connection string."""
    return identity_credential(settings.managed_identity_client_id)


def identity_credential(client_id: str | None) -> AsyncTokenCredential:
    """A user-assigned managed identity by client id (a Function App's, a media VM's), else DefaultAzureCredential
    (a developer's `az login`)."""
    from azure.identity.aio import DefaultAzureCredential, ManagedIdentityCredential

    if client_id:
        return ManagedIdentityCredential(client_id=client_id)
    return DefaultAzureCredential()
