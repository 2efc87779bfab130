"""Building msgraph-sdk clients the way a calling bot needs them.

One client per tenant (tokens are per tenant), built once and reused: the httpx connection pool and the
token cache live for the process. The middleware pipeline is kiota's default with its RetryHandler
replaced by `BudgetedRetryHandler` (see calling/retry.py). The base URL comes from GRAPH_BASE_URL, so
the same code talks to Graph or to the local simulator; `transport` lets tests swap the network out.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from calling.config import Settings
from calling.credentials import GRAPH_SCOPE, graph_credential

if TYPE_CHECKING:  # msgraph-sdk, kiota and httpx load with the first client, not with the app (cold start)
    import httpx
    from azure.core.credentials_async import AsyncTokenCredential
    from msgraph.graph_service_client import GraphServiceClient

    from calling.graph import CallControl


def build_graph_client(
    base_url: str,
    credential: AsyncTokenCredential,
    *,
    retry_budget_seconds: float = 10.0,
    transport: httpx.AsyncBaseTransport | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> GraphServiceClient:
    import httpx
    from kiota_authentication_azure.azure_identity_authentication_provider import (
        AzureIdentityAuthenticationProvider,
    )
    from kiota_http.kiota_client_factory import KiotaClientFactory
    from kiota_http.middleware.middleware import BaseMiddleware
    from kiota_http.middleware.retry_handler import RetryHandler
    from msgraph.graph_request_adapter import GraphRequestAdapter
    from msgraph.graph_service_client import GraphServiceClient
    from msgraph_core import GraphClientFactory

    from calling.retry import BudgetedRetryHandler

    http = httpx.AsyncClient(
        base_url=base_url,
        timeout=httpx.Timeout(10.0, connect=5.0),
        transport=transport,
        limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
    )
    middleware: list[BaseMiddleware] = [BudgetedRetryHandler(budget_seconds=retry_budget_seconds, sleep=sleep)]
    middleware += [m for m in KiotaClientFactory.get_default_middleware(None) if not isinstance(m, RetryHandler)]
    GraphClientFactory.create_with_custom_middleware(middleware=middleware, client=http)
    auth = AzureIdentityAuthenticationProvider(credential, scopes=[GRAPH_SCOPE])
    adapter = GraphRequestAdapter(auth, client=http)
    adapter.base_url = base_url
    return GraphServiceClient(request_adapter=adapter)


class CallControls:
    """One `CallControl` per tenant, created on first use and kept (with its token cache)."""

    def __init__(self, settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None,
                 credential_factory: Callable[[Settings, str], AsyncTokenCredential] = graph_credential) -> None:
        self._settings = settings
        self._transport = transport
        self._credential_factory = credential_factory
        self._by_tenant: dict[str, CallControl] = {}

    def for_tenant(self, tenant_id: str | None = None) -> CallControl:
        tenant = (tenant_id or self._settings.bot_tenant_id).lower()
        control = self._by_tenant.get(tenant)
        if control is None:
            from calling.graph import CallControl

            client = build_graph_client(
                self._settings.graph_base_url,
                self._credential_factory(self._settings, tenant),
                retry_budget_seconds=self._settings.graph_retry_budget_seconds,
                transport=self._transport,
            )
            control = CallControl(client, callback_uri=self._settings.callback_uri, tenant_id=tenant,
                                  app_id=self._settings.bot_app_id)
            self._by_tenant[tenant] = control
        return control
