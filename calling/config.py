"""Settings, read once from the environment (app settings in Azure) and validated as a whole.

Every problem is reported at once, each naming its setting, so a deployment is fixed in one pass.
The names are fixed: infra (Bicep) and users set them. docs/configuration.md lists each one.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

DEFAULT_OPENID_CONFIG_URL = "https://api.aps.skype.com/v1/.well-known/OpenIdConfiguration"
DEFAULT_GRAPH_BASE_URL = "https://graph.microsoft.com/v1.0"
CALLBACK_PATH = "/api/calls"

#: The longest IDEMPOTENCY_KEY_TTL_HOURS: a week (infra/modules/storage.bicep deletes key records after 8 days).
MAX_IDEMPOTENCY_KEY_TTL_HOURS = 7 * 24

GraphCredentialKind = Literal["managed_identity", "certificate", "secret", "local"]
HandoffKind = Literal["none", "inprocess", "servicebus"]

#: The hand-off queue's name when MEDIA_HANDOFF_QUEUE is unset: what infra/main.bicep names it.
DEFAULT_HANDOFF_QUEUE = "media-handoff"

_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_CREDENTIAL_KINDS: tuple[GraphCredentialKind, ...] = ("managed_identity", "certificate", "secret", "local")
_HANDOFF_KINDS: tuple[HandoffKind, ...] = ("none", "inprocess", "servicebus")
# A DNS host name with at least one dot: a namespace's fully qualified name (<name>.servicebus.windows.net).
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_HOST_NAME = re.compile(rf"^(?=.{{4,253}}$){_LABEL}(?:\.{_LABEL})+$")
# Service Bus queue names: letters, digits, '.', '-', '_', '/', starting and ending with a letter or digit.
_QUEUE_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._/-]{0,258}[A-Za-z0-9])?$")


class ConfigError(ValueError):
    """The settings are incomplete or wrong; `problems` names each setting and what is wrong."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid configuration: " + "; ".join(problems))


def is_loopback_url(url: str) -> bool:
    """True for http(s) URLs on this machine: the simulator and local host live there."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Settings:
    """The bot's configuration. Build it with `Settings.from_env`."""

    bot_app_id: str
    bot_tenant_id: str
    allowed_tenants: frozenset[str]
    public_url: str
    openid_config_url: str = DEFAULT_OPENID_CONFIG_URL
    graph_base_url: str = DEFAULT_GRAPH_BASE_URL
    graph_credential: GraphCredentialKind = "managed_identity"
    managed_identity_client_id: str | None = None
    certificate_path: str | None = None
    client_secret: str | None = None
    routing_policy_path: str | None = None
    default_flow: str = "main-menu"
    flows_dir: str = "flows"
    prompts_base_url: str = ""
    recordings_dir: str | None = None
    recordings_container_url: str | None = None
    prompts_container_url: str | None = None
    max_body_bytes: int = 4 * 1024 * 1024
    graph_retry_budget_seconds: float = 10.0
    handoff_transport: HandoffKind = "none"
    #: The hand-off queue's namespace, fully qualified (MEDIA_HANDOFF_TRANSPORT=servicebus).
    servicebus_namespace: str | None = None
    handoff_queue: str = DEFAULT_HANDOFF_QUEUE
    appinsights_connection_string: str | None = None
    bot_instance_id: str | None = None
    #: The flow that answers, service-hosted, a hand-off no media worker took in time (not for recording).
    media_fallback_flow: str | None = None
    idempotency_container_url: str | None = None
    idempotency_key_ttl_hours: float = 24.0

    @property
    def callback_uri(self) -> str:
        """Where Graph posts this bot's notifications: the webhook's public address."""
        return self.public_url + CALLBACK_PATH

    @property
    def idempotency_key_ttl(self) -> timedelta:
        """How long an outbound request's Idempotency-Key is remembered after its first use."""
        return timedelta(hours=self.idempotency_key_ttl_hours)

    @classmethod
    def from_env(cls, env: Mapping[str, str], *, flows: bool = True) -> Settings:
        """Every setting, checked at once. `flows`: whether FLOWS_DIR must be there (the media worker runs
        no flows)."""
        problems: list[str] = []

        def text(name: str, default: str | None = None) -> str | None:
            value = env.get(name, "").strip()
            return value or default

        def guid(name: str) -> str:
            value = text(name)
            if value is None:
                problems.append(f"{name} is not set (the {_GUID_MEANING[name]}, a GUID)")
                return ""
            if not _GUID.match(value):
                problems.append(f"{name} must be a GUID, got {value!r}")
            return value.lower()

        def url(name: str, default: str | None, *, required: bool = False) -> str:
            value = text(name, default)
            if value is None:
                if required:
                    problems.append(f"{name} is not set (the public https base URL of this app)")
                return ""
            parts = urlsplit(value)
            if parts.scheme not in ("https", "http") or not parts.netloc:
                problems.append(f"{name} must be an absolute https URL, got {value!r}")
            elif parts.scheme == "http" and not is_loopback_url(value):
                problems.append(f"{name} must use https (plain http is allowed only on loopback), got {value!r}")
            return value.rstrip("/")

        def number(name: str, default: float, low: float, high: float) -> float:
            raw = text(name)
            if raw is None:
                return default
            try:
                value = float(raw)
            except ValueError:
                problems.append(f"{name} must be a number, got {raw!r}")
                return default
            if not low <= value <= high:
                problems.append(f"{name} must be between {_num(low)} and {_num(high)}, got {raw!r}")
            return value

        app_id = guid("BOT_APP_ID")
        tenant_id = guid("BOT_TENANT_ID")
        allowed = frozenset(t.strip().lower() for t in (text("BOT_ALLOWED_TENANTS") or "").split(",") if t.strip())
        for tenant in sorted(allowed):
            if not _GUID.match(tenant):
                problems.append(f"BOT_ALLOWED_TENANTS must be a comma-separated list of GUIDs, got {tenant!r}")
        public_url = url("BOT_PUBLIC_URL", None, required=True)
        openid = url("CALLING_OPENID_CONFIG_URL", DEFAULT_OPENID_CONFIG_URL)
        graph = url("GRAPH_BASE_URL", DEFAULT_GRAPH_BASE_URL)

        mi_client_id = text("BOT_MANAGED_IDENTITY_CLIENT_ID")
        cert = text("BOT_CERTIFICATE_PATH")
        secret = text("BOT_CLIENT_SECRET")
        credential = _credential_kind(text("GRAPH_CREDENTIAL"), mi_client_id, cert, secret, graph, problems)
        if credential == "certificate" and cert and not Path(cert).is_file():
            problems.append(f"BOT_CERTIFICATE_PATH {cert!r} is not a readable file (PEM with the private key)")

        raw_handoff = text("MEDIA_HANDOFF_TRANSPORT", "none")
        handoff: HandoffKind = "none"
        if raw_handoff in _HANDOFF_KINDS:
            handoff = _HANDOFF_KINDS[_HANDOFF_KINDS.index(raw_handoff)]
        else:
            problems.append(f"MEDIA_HANDOFF_TRANSPORT must be one of {', '.join(_HANDOFF_KINDS)}, got {raw_handoff!r}")

        namespace = text("SERVICEBUS_NAMESPACE")
        if namespace is not None:
            namespace = namespace.lower()
            if wrong := _namespace_problem(namespace):
                problems.append(wrong)
        elif handoff == "servicebus":
            problems.append("MEDIA_HANDOFF_TRANSPORT=servicebus needs SERVICEBUS_NAMESPACE (the namespace's fully "
                            "qualified host name, <name>.servicebus.windows.net)")
        queue = text("MEDIA_HANDOFF_QUEUE", DEFAULT_HANDOFF_QUEUE) or DEFAULT_HANDOFF_QUEUE
        if not _QUEUE_NAME.match(queue):
            problems.append(f"MEDIA_HANDOFF_QUEUE must be a Service Bus queue name (up to 260 letters, digits, "
                            f"'.', '-', '_' or '/', starting and ending with a letter or digit), got {queue!r}")

        if handoff == "inprocess" and not is_loopback_url(graph):
            problems.append("MEDIA_HANDOFF_TRANSPORT=inprocess is for local development (a media worker in the same "
                            "process); with a real GRAPH_BASE_URL nothing would receive the hand-offs")

        instance = text("BOT_INSTANCE_ID")
        if instance is not None and not _GUID.match(instance):
            problems.append(f"BOT_INSTANCE_ID must be a GUID (the object id of the bot's resource account, "
                            f"its application instance), got {instance!r}")

        routing = text("ROUTING_POLICY_PATH")
        if routing and not Path(routing).is_file():
            problems.append(f"ROUTING_POLICY_PATH {routing!r} is not a file")

        flows_dir = text("FLOWS_DIR", "flows") or "flows"
        fallback = text("MEDIA_FALLBACK_FLOW")
        if fallback and flows and not (Path(flows_dir) / f"{fallback}.yaml").is_file():
            problems.append(f"MEDIA_FALLBACK_FLOW {fallback!r} names no flow: {Path(flows_dir) / fallback}.yaml "
                            "does not exist")
        if flows and not Path(flows_dir).is_dir():
            problems.append(f"FLOWS_DIR {flows_dir!r} is not a folder (the flow files and their prompts)")
        prompts = url("PROMPTS_BASE_URL", f"{public_url}/api/prompts" if public_url else None)

        recordings_container = url("RECORDINGS_CONTAINER_URL", None) or None
        prompts_container = url("PROMPTS_CONTAINER_URL", None) or None
        idempotency_container = url("IDEMPOTENCY_CONTAINER_URL", None) or None
        for name, value in (("RECORDINGS_CONTAINER_URL", recordings_container),
                            ("PROMPTS_CONTAINER_URL", prompts_container),
                            ("IDEMPOTENCY_CONTAINER_URL", idempotency_container)):
            if value and len([s for s in urlsplit(value).path.split("/") if s]) not in (1, 2):
                problems.append(f"{name} must be a Blob container URL (https://<account>.blob.core.windows.net/"
                                f"<container>), got {value!r}")

        max_body = number("WEBHOOK_MAX_BODY_BYTES", 4 * 1024 * 1024, 1024, 64 * 1024 * 1024)
        budget = number("GRAPH_RETRY_BUDGET_SECONDS", 10.0, 0, 60)
        # At least an hour: a key must outlive any request still running with it (host.json functionTimeout,
        # 10 min), or a retry could place a second call; at most a week (the infra's lifecycle rule deletes
        # records 8 days after their last write).
        key_ttl = number("IDEMPOTENCY_KEY_TTL_HOURS", 24.0, 1, MAX_IDEMPOTENCY_KEY_TTL_HOURS)

        if problems:
            raise ConfigError(problems)
        return cls(
            bot_app_id=app_id,
            bot_tenant_id=tenant_id,
            allowed_tenants=allowed or frozenset({tenant_id}),
            public_url=public_url,
            openid_config_url=openid,
            graph_base_url=graph,
            graph_credential=credential,
            managed_identity_client_id=mi_client_id,
            certificate_path=cert,
            client_secret=secret,
            routing_policy_path=routing,
            default_flow=text("DEFAULT_FLOW", "main-menu") or "main-menu",
            flows_dir=flows_dir,
            prompts_base_url=prompts,
            recordings_dir=text("RECORDINGS_DIR"),
            recordings_container_url=recordings_container,
            prompts_container_url=prompts_container,
            max_body_bytes=int(max_body),
            graph_retry_budget_seconds=budget,
            handoff_transport=handoff,
            servicebus_namespace=namespace,
            handoff_queue=queue,
            appinsights_connection_string=text("APPLICATIONINSIGHTS_CONNECTION_STRING"),
            bot_instance_id=instance.lower() if instance else None,
            media_fallback_flow=fallback,
            idempotency_container_url=idempotency_container,
            idempotency_key_ttl_hours=key_ttl,
        )


def _num(value: float) -> str:
    return str(int(value)) if value == int(value) else str(value)


def _namespace_problem(value: str) -> str | None:
    """What is wrong with a SERVICEBUS_NAMESPACE value (lower-cased), or None. A connection string is never
    echoed: it holds a key."""
    if ";" in value or "=" in value:  # a connection string or a SAS token: never in a host name
        return ("SERVICEBUS_NAMESPACE must be the namespace's host name, not a connection string or SAS token: the "
                "app signs in with its managed identity (the namespace allows no keys)")
    if "://" in value or "/" in value or ":" in value:
        return (f"SERVICEBUS_NAMESPACE must be a host name without scheme, port or path "
                f"(<name>.servicebus.windows.net), got {value!r}")
    if _HOST_NAME.match(value):
        return None
    if re.fullmatch(r"[a-z][a-z0-9-]{4,48}[a-z0-9]", value):  # a bare namespace name (6 to 50 characters)
        return (f"SERVICEBUS_NAMESPACE must be fully qualified: {value!r} is only the namespace's name; use "
                f"{value}.servicebus.windows.net (azd output SERVICEBUS_FULLY_QUALIFIED_NAMESPACE)")
    return f"SERVICEBUS_NAMESPACE must be a fully qualified host name (<name>.servicebus.windows.net), got {value!r}"


_GUID_MEANING = {
    "BOT_APP_ID": "bot's Entra application (client) id",
    "BOT_TENANT_ID": "Entra tenant id the bot belongs to",
}


def _credential_kind(
    explicit: str | None,
    mi_client_id: str | None,
    cert: str | None,
    secret: str | None,
    graph_base_url: str,
    problems: list[str],
) -> GraphCredentialKind:
    """Pick how the bot gets Graph tokens: explicit GRAPH_CREDENTIAL, else inferred from what is set."""
    if explicit is not None:
        if explicit not in _CREDENTIAL_KINDS:
            problems.append(f"GRAPH_CREDENTIAL must be one of {', '.join(_CREDENTIAL_KINDS)}, got {explicit!r}")
            return "managed_identity"
        kind = _CREDENTIAL_KINDS[_CREDENTIAL_KINDS.index(explicit)]
    elif mi_client_id:
        kind = "managed_identity"
    elif cert:
        kind = "certificate"
    elif secret:
        kind = "secret"
    elif is_loopback_url(graph_base_url):
        kind = "local"
    else:
        problems.append(
            "no Graph credential: set BOT_MANAGED_IDENTITY_CLIENT_ID (Azure, federated credential), "
            "or BOT_CERTIFICATE_PATH / BOT_CLIENT_SECRET (development)"
        )
        return "managed_identity"
    needs = {"managed_identity": ("BOT_MANAGED_IDENTITY_CLIENT_ID", mi_client_id),
             "certificate": ("BOT_CERTIFICATE_PATH", cert), "secret": ("BOT_CLIENT_SECRET", secret)}
    if kind in needs and not needs[kind][1]:
        problems.append(f"GRAPH_CREDENTIAL={kind} needs {needs[kind][0]}")
    if kind == "local" and not is_loopback_url(graph_base_url):
        problems.append("GRAPH_CREDENTIAL=local is only for a GRAPH_BASE_URL on loopback (the simulator)")
    return kind
