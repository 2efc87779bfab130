"""Settings: validated as a whole, each problem naming its setting."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from calling.config import DEFAULT_GRAPH_BASE_URL, DEFAULT_OPENID_CONFIG_URL, ConfigError, Settings
from calling.credentials import LocalTokenCredential, graph_credential
from tests.stubs import APP_ID, OTHER_TENANT, TENANT_ID

BASE = {"BOT_APP_ID": APP_ID, "BOT_TENANT_ID": TENANT_ID, "BOT_PUBLIC_URL": "https://bot.example.com/",
        "BOT_MANAGED_IDENTITY_CLIENT_ID": "22222222-3333-4444-5555-666666666666"}


def problems(env: dict[str, str]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        Settings.from_env(env)
    return info.value.problems


def test_minimal_production_settings() -> None:
    s = Settings.from_env(BASE)
    assert s.bot_app_id == APP_ID
    assert s.allowed_tenants == {TENANT_ID}
    assert s.callback_uri == "https://bot.example.com/api/calls"
    assert (s.openid_config_url, s.graph_base_url) == (DEFAULT_OPENID_CONFIG_URL, DEFAULT_GRAPH_BASE_URL)
    assert s.graph_credential == "managed_identity"
    assert s.handoff_transport == "none"
    assert s.max_body_bytes == 4 * 1024 * 1024


def test_all_problems_are_reported_together() -> None:
    found = problems({"BOT_PUBLIC_URL": "http://bot.example.com", "BOT_ALLOWED_TENANTS": "contoso",
                      "WEBHOOK_MAX_BODY_BYTES": "lots", "GRAPH_RETRY_BUDGET_SECONDS": "600"})
    text = "\n".join(found)
    for expected in ("BOT_APP_ID is not set", "BOT_TENANT_ID is not set", "BOT_ALLOWED_TENANTS must be",
                     "BOT_PUBLIC_URL must use https", "WEBHOOK_MAX_BODY_BYTES must be a number",
                     "GRAPH_RETRY_BUDGET_SECONDS must be between 0 and 60", "no Graph credential"):
        assert expected in text
    assert "ConfigError" not in text


@pytest.mark.parametrize(("extra", "message"), [
    ({"BOT_APP_ID": "bot"}, "BOT_APP_ID must be a GUID"),
    ({"BOT_PUBLIC_URL": "bot.example.com"}, "BOT_PUBLIC_URL must be an absolute https URL"),
    ({"GRAPH_BASE_URL": "ftp://graph"}, "GRAPH_BASE_URL must be an absolute https URL"),
    ({"GRAPH_CREDENTIAL": "password"}, "GRAPH_CREDENTIAL must be one of"),
    ({"GRAPH_CREDENTIAL": "secret"}, "GRAPH_CREDENTIAL=secret needs BOT_CLIENT_SECRET"),
    ({"GRAPH_CREDENTIAL": "local"}, "only for a GRAPH_BASE_URL on loopback"),
    ({"MEDIA_HANDOFF_TRANSPORT": "carrier-pigeon"}, "MEDIA_HANDOFF_TRANSPORT must be one of"),
    ({"ROUTING_POLICY_PATH": "/nonexistent/routing.yaml"}, "ROUTING_POLICY_PATH"),
    ({"GRAPH_CREDENTIAL": "certificate", "BOT_CERTIFICATE_PATH": "/nonexistent.pem"}, "not a readable file"),
    ({"BOT_INSTANCE_ID": "+14255550199"}, "BOT_INSTANCE_ID must be a GUID"),
])
def test_invalid_settings_name_the_setting(extra: dict[str, str], message: str) -> None:
    assert any(message in p for p in problems({**BASE, **extra}))


def test_allowed_tenants_and_loopback_development() -> None:
    s = Settings.from_env({"BOT_APP_ID": APP_ID.upper(), "BOT_TENANT_ID": TENANT_ID,
                           "BOT_PUBLIC_URL": "http://127.0.0.1:7071", "GRAPH_BASE_URL": "http://localhost:8900/v1.0",
                           "BOT_ALLOWED_TENANTS": f"{TENANT_ID}, {OTHER_TENANT.upper()} ,"})
    assert s.bot_app_id == APP_ID
    assert s.allowed_tenants == {TENANT_ID, OTHER_TENANT}
    assert s.graph_credential == "local"
    assert isinstance(graph_credential(s, TENANT_ID), LocalTokenCredential)


def test_credential_is_inferred_from_what_is_set(tmp_path: Path) -> None:
    pem = tmp_path / "bot.pem"
    pem.write_text("-----BEGIN PRIVATE KEY-----\n")
    without_mi = {k: v for k, v in BASE.items() if k != "BOT_MANAGED_IDENTITY_CLIENT_ID"}
    assert Settings.from_env({**without_mi, "BOT_CERTIFICATE_PATH": str(pem)}).graph_credential == "certificate"
    assert Settings.from_env({**without_mi, "BOT_CLIENT_SECRET": "dev-only"}).graph_credential == "secret"


def test_production_credential_is_a_federated_assertion() -> None:
    from azure.identity.aio import ClientAssertionCredential

    credential = graph_credential(Settings.from_env(BASE), TENANT_ID)
    assert isinstance(credential, ClientAssertionCredential)


def test_in_process_handoff_is_only_for_local_development() -> None:
    assert any("MEDIA_HANDOFF_TRANSPORT=inprocess is for local development" in p
               for p in problems({**BASE, "MEDIA_HANDOFF_TRANSPORT": "inprocess"}))
    local = Settings.from_env({**BASE, "GRAPH_BASE_URL": "http://127.0.0.1:9/v1.0",
                               "MEDIA_HANDOFF_TRANSPORT": "inprocess"})
    assert local.handoff_transport == "inprocess"


def test_range_messages_print_whole_numbers() -> None:
    assert any("between 1024 and 67108864" in p for p in problems({**BASE, "WEBHOOK_MAX_BODY_BYTES": "1"}))


def test_bot_instance_is_optional_and_read_as_a_lowercase_guid() -> None:
    assert Settings.from_env(BASE).bot_instance_id is None
    instance = "1A5ACE00-0000-4000-8000-0000000001A5"
    assert Settings.from_env({**BASE, "BOT_INSTANCE_ID": f" {instance} "}).bot_instance_id == instance.lower()


def test_blob_containers_for_recordings_and_prompts() -> None:
    s = Settings.from_env({**BASE, "RECORDINGS_CONTAINER_URL": "https://acct.blob.core.windows.net/recordings/",
                           "PROMPTS_CONTAINER_URL": "http://127.0.0.1:10000/devstoreaccount1/prompts"})
    assert s.recordings_container_url == "https://acct.blob.core.windows.net/recordings"
    assert s.prompts_container_url == "http://127.0.0.1:10000/devstoreaccount1/prompts"
    assert Settings.from_env(BASE).recordings_container_url is None
    found = problems({**BASE, "RECORDINGS_CONTAINER_URL": "http://acct.blob.core.windows.net/recordings",
                      "PROMPTS_CONTAINER_URL": "https://acct.blob.core.windows.net/a/b/c"})
    assert any(p.startswith("RECORDINGS_CONTAINER_URL must use https") for p in found), found
    assert any(p.startswith("PROMPTS_CONTAINER_URL must be a Blob container URL") for p in found), found


def test_the_idempotency_key_store_and_lifetime() -> None:
    s = Settings.from_env(BASE)
    assert (s.idempotency_container_url, s.idempotency_key_ttl) == (None, timedelta(hours=24))
    s = Settings.from_env({**BASE, "IDEMPOTENCY_CONTAINER_URL": "https://acct.blob.core.windows.net/idempotency/",
                           "IDEMPOTENCY_KEY_TTL_HOURS": "1.5"})
    assert s.idempotency_container_url == "https://acct.blob.core.windows.net/idempotency"
    assert s.idempotency_key_ttl == timedelta(minutes=90)
    found = problems({**BASE, "IDEMPOTENCY_CONTAINER_URL": "https://acct.blob.core.windows.net/",
                      "IDEMPOTENCY_KEY_TTL_HOURS": "0.1"})
    assert any(p.startswith("IDEMPOTENCY_CONTAINER_URL must be a Blob container URL") for p in found), found
    assert "IDEMPOTENCY_KEY_TTL_HOURS must be between 1 and 168, got '0.1'" in found
    assert "IDEMPOTENCY_KEY_TTL_HOURS must be a number, got 'a day'" in problems(
        {**BASE, "IDEMPOTENCY_KEY_TTL_HOURS": "a day"})
    assert "IDEMPOTENCY_KEY_TTL_HOURS must be between 1 and 168, got '169'" in problems(
        {**BASE, "IDEMPOTENCY_KEY_TTL_HOURS": "169"})
