"""Who is on a call: typed identities, their Graph wire form, and meeting join links.

Graph puts a party in an identitySet under one key: `user`, `application`, `applicationInstance`,
`phone`, `guest`, `encrypted`, ... msgraph-sdk's IdentitySet only models user/application/device, and its
generated snippets write the other keys in snake_case (wrong on the wire), so `to_identity_set` writes
them into `additional_data` with Graph's exact camelCase keys. Parsing is the reverse, from raw dicts,
so nothing the SDK does not model (tenantId, identityProvider, new keys) is lost.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

if TYPE_CHECKING:  # msgraph-sdk is imported when a request body is built, not with the app (cold start)
    from msgraph.generated.models.identity_set import IdentitySet

E164 = re.compile(r"^\+[1-9]\d{1,14}$")
_IDENTITY_ODATA = "#microsoft.graph.identity"


@dataclass(frozen=True)
class Party:
    """One identity from an identitySet. `kind` is Graph's key (`user`, `phone`, ...), kept verbatim."""

    kind: str
    id: str | None = None
    display_name: str | None = None
    tenant_id: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def is_anonymous(self) -> bool:
        """No usable caller identity: encrypted (app lacks a calls permission), hidden or absent."""
        return self.kind in ("encrypted", "none") or (self.kind == "phone" and not self.id) or (
            self.kind == "phone" and (self.id or "").lower() == "anonymous"
        )

    def to_identity_set(self) -> IdentitySet:
        """The msgraph model for a request body, exactly as Graph's HTTP examples write it."""
        from msgraph.generated.models.identity import Identity as GraphIdentity
        from msgraph.generated.models.identity_set import IdentitySet

        inner: dict[str, Any] = {"@odata.type": _IDENTITY_ODATA}
        if self.id is not None:
            inner["id"] = self.id
        if self.display_name is not None:
            inner["displayName"] = self.display_name
        if self.tenant_id is not None:
            inner["tenantId"] = self.tenant_id
        if self.kind in ("user", "application"):
            extra = {"tenantId": self.tenant_id} if self.tenant_id is not None else {}
            model = GraphIdentity(
                odata_type=_IDENTITY_ODATA, id=self.id, display_name=self.display_name, additional_data=extra
            )
            return IdentitySet(**{self.kind: model})  # type: ignore[arg-type]  # kind is user|application
        return IdentitySet(additional_data={self.kind: inner})


def teams_user(user_id: str, *, display_name: str | None = None, tenant_id: str | None = None) -> Party:
    """A Teams (Entra) user by object id."""
    _require(user_id, "Teams user id")
    return Party("user", user_id, display_name, tenant_id)


def phone(number: str, *, display_name: str | None = None) -> Party:
    """A PSTN number in E.164 form (+ and up to 15 digits)."""
    if not E164.match(number or ""):
        raise ValueError(f"phone number must be E.164 (like +14255550100), got {number!r}")
    return Party("phone", number, display_name)


def application(app_id: str, *, display_name: str | None = None) -> Party:
    """A bot or application by its Entra app id."""
    _require(app_id, "application id")
    return Party("application", app_id, display_name)


def application_instance(
    object_id: str, *, display_name: str | None = None, tenant_id: str | None = None
) -> Party:
    """A resource account (application instance) by object id: the bot's phone-number identity."""
    _require(object_id, "application instance object id")
    return Party("applicationInstance", object_id, display_name, tenant_id)


def guest(guest_id: str, *, display_name: str | None = None) -> Party:
    """A guest (anonymous meeting participant) identity."""
    _require(guest_id, "guest id")
    return Party("guest", guest_id, display_name)


def _require(value: str, what: str) -> None:
    if not value or not value.strip():
        raise ValueError(f"{what} must not be empty")


# The order in which a party is read from an identitySet that carries several keys: the most
# specific identity wins (an application instance also names its application, a PSTN leg may carry
# a user when it is a Teams Phone user).
_PRECEDENCE = (
    "applicationInstance",
    "phone",
    "guest",
    "user",
    "acsUser",
    "azureCommunicationServicesUser",
    "application",
    "onPremises",
    "assertedIdentity",
    "encrypted",
    "device",
)


def parse_identity_set(value: Any) -> Party:
    """Read the party from an identitySet dict; unknown keys are kept, an empty set is kind `none`."""
    if not isinstance(value, Mapping):
        return Party("none")
    keys = [k for k, v in value.items() if not k.startswith("@") and isinstance(v, Mapping)]
    ordered = sorted(keys, key=lambda k: _PRECEDENCE.index(k) if k in _PRECEDENCE else len(_PRECEDENCE))
    if not ordered:
        return Party("none", raw=value)
    kind = ordered[0]
    inner = value[kind]
    return Party(
        kind=kind,
        id=_str_or_none(inner.get("id")),
        display_name=_str_or_none(inner.get("displayName")),
        tenant_id=_str_or_none(inner.get("tenantId")),
        raw=value,
    )


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


@dataclass(frozen=True)
class MeetingJoin:
    """A scheduled Teams meeting as a join link names it: chat thread, message and organizer."""

    thread_id: str
    message_id: str
    organizer_id: str
    tenant_id: str
    reply_chain_message_id: str | None = None


@dataclass(frozen=True)
class MeetingId:
    """A meeting by its numeric join id (and passcode, when the meeting has one)."""

    join_meeting_id: str
    passcode: str | None = None

    def __post_init__(self) -> None:
        if not re.fullmatch(r"\d{6,20}", self.join_meeting_id or ""):
            raise ValueError(f"joinMeetingId must be digits, got {self.join_meeting_id!r}")


def parse_join_url(url: str) -> MeetingJoin:
    """Parse `https://teams.microsoft.com/l/meetup-join/<thread>/<message>?context={"Tid":..,"Oid":..}`.

    Short links (`teams.microsoft.com/meet/<id>?p=...`) carry no thread or organizer; for those use the
    meeting's joinMeetingId and passcode (`MeetingId`) instead. The error says so.
    """
    parts = urlsplit(url.strip())
    if parts.scheme != "https" or not (parts.hostname or "").endswith(("teams.microsoft.com", "teams.live.com")):
        raise ValueError(f"not a Teams meeting join URL: {url!r}")
    segments = [unquote(s) for s in parts.path.split("/") if s]
    try:
        at = segments.index("meetup-join")
        thread_id, message_id = segments[at + 1], segments[at + 2]
    except (ValueError, IndexError):
        raise ValueError(
            "join URL has no /l/meetup-join/<thread>/<message> part; short links cannot be joined "
            "directly: use the meeting's joinMeetingId and passcode"
        ) from None
    raw_context = parse_qs(parts.query).get("context", [""])[0]
    try:
        context = json.loads(raw_context) if raw_context else {}
    except json.JSONDecodeError:
        raise ValueError("join URL context is not JSON") from None
    organizer, tenant = context.get("Oid"), context.get("Tid")
    if not organizer or not tenant:
        raise ValueError("join URL context lacks the organizer (Oid) or tenant (Tid)")
    return MeetingJoin(
        thread_id=thread_id,
        message_id=message_id,
        organizer_id=str(organizer),
        tenant_id=str(tenant),
        reply_chain_message_id=_str_or_none(context.get("MessageId")),
    )
