"""Recordings and prompts in Blob Storage, against Azurite: what is stored, with which facts, and what
Graph can fetch (only through the SAS)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from azure.storage.blob.aio import BlobServiceClient

from calling.config import Settings
from calling.credentials import is_azurite, storage_credential
from calling.flows import load_bundle
from calling.flows.prompts import graph_prompt
from calling.prompt_links import PromptLinks
from calling.recordings import BlobStore, blob_metadata
from simulator.scenario import load_scenario, run_scenario
from tests.azurite import azurite

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = Settings(bot_app_id="11111111-1111-4111-8111-111111111111",
                    bot_tenant_id="22222222-2222-4222-8222-222222222222",
                    allowed_tenants=frozenset({"22222222-2222-4222-8222-222222222222"}),
                    public_url="https://bot.example.com")
WELCOME = (ROOT / "flows" / "prompts" / "welcome.wav").read_bytes()


@pytest.fixture(scope="module")
def account() -> Iterator[str]:
    with azurite() as url:
        yield url


@pytest.fixture
async def service(account: str) -> AsyncIterator[BlobServiceClient]:
    async with BlobServiceClient(account, credential=storage_credential(account, SETTINGS)) as client:
        for name in ("recordings", "prompts"):
            try:
                await client.create_container(name)
            except Exception as exc:  # already there from an earlier test in this module
                if "ContainerAlreadyExists" not in str(exc):
                    raise
        yield client


def test_azurite_is_recognised_only_on_loopback() -> None:
    assert is_azurite("http://127.0.0.1:10000/devstoreaccount1/recordings")
    assert not is_azurite("https://devstoreaccount1.blob.core.windows.net/recordings")
    assert not is_azurite("http://127.0.0.1:10000/someaccount/recordings")


async def test_a_recording_is_stored_once_with_its_facts(account: str, service: BlobServiceClient) -> None:
    url = f"{account}/recordings"
    store = BlobStore(url, storage_credential(url, SETTINGS))
    facts = {"call_id": "c-1", "caller": "+14255550123", "mailbox": "support", "at": "2026-03-03T18:00:05+00:00",
             "duration": "4.5", "flow": "main-menu", "node": "support-voicemail", "bytes": str(len(WELCOME))}
    name = "support/2026-03-03/c-1-record-11.wav"
    where = await store.save(name, WELCOME, facts)
    again = await store.save(name, WELCOME, facts)  # a retried activity writes the same blob again
    assert where == again == f"{url}/{name}"
    container = service.get_container_client("recordings")
    names = [b.name async for b in container.list_blobs(name_starts_with="support/")]
    assert names == [name]
    blob = container.get_blob_client(name)
    props = await blob.get_blob_properties()
    assert props.metadata == facts and props.content_settings.content_type == "audio/wav"
    assert await (await blob.download_blob()).readall() == WELCOME


def test_blob_metadata_keeps_names_and_values_ascii() -> None:
    assert blob_metadata({"caller-name": "Zoë", "1st": "x"}) == {"caller_name": "Zo\\xeb", "_1st": "x"}


async def test_prompts_are_private_and_graph_fetches_them_through_the_sas(account: str,
                                                                          service: BlobServiceClient) -> None:
    await service.get_blob_client("prompts", "prompts/welcome.wav").upload_blob(WELCOME, overwrite=True)
    url = f"{account}/prompts"
    clock = [datetime.now(UTC)]
    links = PromptLinks("http://127.0.0.1:7071/api/prompts", container_url=url,
                        credential=storage_credential(url, SETTINGS), now=lambda: clock[0])
    base = await links.base_url()
    assert base.startswith(url + "?") and "sig=" in base and "sp=r" in base
    bundle = load_bundle(ROOT / "flows" / "main-menu.yaml", folder=ROOT / "flows")
    prompt = graph_prompt(bundle, "prompts/welcome.wav", base)
    async with httpx.AsyncClient() as http:
        fetched = await http.get(prompt.uri)
        anonymous = await http.get(prompt.uri.split("?", 1)[0])
    assert fetched.status_code == 200 and fetched.content == WELCOME
    assert anonymous.status_code in (401, 403, 404)  # no public access

    assert await links.base_url() == base  # kept while more than a day is left
    clock[0] += timedelta(days=1, hours=1)
    renewed = await links.base_url()
    assert renewed != base
    # Graph's cache key ignores the SAS: a renewed link is the same cached prompt.
    assert graph_prompt(bundle, "prompts/welcome.wav", renewed).resource_id == prompt.resource_id


def test_the_demo_call_stores_its_voicemail_in_blob_storage(account: str) -> None:
    import asyncio

    async def make() -> None:
        async with BlobServiceClient(account, credential=storage_credential(account, SETTINGS)) as client:
            try:
                await client.create_container("voicemail")
            except Exception as exc:
                if "ContainerAlreadyExists" not in str(exc):
                    raise

    asyncio.run(make())
    scenario = load_scenario(ROOT / "scenarios" / "demo.yaml")
    outcome = run_scenario(scenario, settings={"RECORDINGS_CONTAINER_URL": f"{account}/voicemail"})
    assert outcome.passed, outcome.message + "\n" + outcome.transcript

    async def stored() -> list[tuple[str, dict[str, str]]]:
        async with BlobServiceClient(account, credential=storage_credential(account, SETTINGS)) as client:
            container = client.get_container_client("voicemail")
            return [(b.name, b.metadata) async for b in container.list_blobs(include=["metadata"])]

    [(name, metadata)] = asyncio.run(stored())
    assert name.startswith("support/") and name.endswith(".wav")
    assert metadata["caller"] == "+14255550123" and metadata["mailbox"] == "support"
    assert metadata["flow"] == "main-menu" and metadata["node"] == "support-voicemail"
    assert float(metadata["duration"]) > 0
