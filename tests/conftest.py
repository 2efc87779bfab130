from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from calling.credentials import LocalTokenCredential
from calling.graph import CallControl
from calling.graphclient import build_graph_client
from tests.stubs import APP_ID, TENANT_ID, LoopbackServer, Signer


@pytest.fixture
def signer() -> Signer:
    return Signer()


@pytest.fixture
async def server(signer: Signer) -> AsyncIterator[LoopbackServer]:
    stub = LoopbackServer()
    stub.signers.append(signer)
    await stub.start()
    try:
        yield stub
    finally:
        await stub.stop()


@pytest.fixture
def control(server: LoopbackServer) -> CallControl:
    """A CallControl talking HTTP to the loopback Graph stub (real msgraph-sdk pipeline)."""
    client = build_graph_client(server.graph_url, LocalTokenCredential(), retry_budget_seconds=5)
    return CallControl(client, callback_uri="https://bot.example.com/api/calls", tenant_id=TENANT_ID, app_id=APP_ID)


@pytest.fixture(autouse=True)
async def _fresh_durable_client_session() -> AsyncIterator[None]:
    """azure-functions-durable keeps one process-wide aiohttp session, bound to the event loop that made it.

    The Functions worker runs one loop for its lifetime; pytest gives each test a new loop, so close the
    library's session after each test as the worker's shutdown would.
    """
    yield
    from azure.durable_functions.models.utils import http_utils

    session = http_utils._client_session
    if session is not None and not session.closed:
        await session.close()
    http_utils._client_session = None
