"""Who speaks on each media source id: a call's roster (Graph participant objects) read as MSI -> identity.

The media library labels each unmixed 20 ms buffer with the speaker's media source id (MSI). Graph's roster
names it: every participant lists its `mediaStreams`, and the stream of `mediaType` `audio` carries the MSI
as `sourceId`, a string in Graph's JSON (`"sourceId": "2"`). This module reads that, and the participant's
identity (calling/identities.py: `user`, `phone`, `guest`, `applicationInstance`, ... as Graph keys it).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from calling.identities import parse_identity_set

if TYPE_CHECKING:
    from calling.events import ParticipantState

#: MSIs are unsigned 32-bit (the wire and the .NET library's uint); anything else in a roster is ignored.
MAX_SOURCE_ID = 0xFFFFFFFF


@dataclass(frozen=True)
class Speaker:
    """A participant as a recording names it: the roster entry's id and the identity behind it."""

    participant_id: str | None  # Graph's participant id (one per leg of the call; a rejoin is a new one)
    kind: str  # the identitySet key: user, phone, guest, application, applicationInstance, ... or none
    id: str | None = None  # the identity's id: an Entra object id, an E.164 number, a guest id, ...
    display_name: str | None = None
    tenant_id: str | None = None


def speaker(participant: Mapping[str, Any]) -> Speaker:
    """The Speaker of one Graph participant object."""
    info = participant.get("info")
    party = parse_identity_set(info.get("identity") if isinstance(info, Mapping) else None)
    pid = participant.get("id")
    return Speaker(participant_id=str(pid) if pid not in (None, "") else None, kind=party.kind, id=party.id,
                   display_name=party.display_name, tenant_id=party.tenant_id)


def audio_sources(roster: Iterable[Mapping[str, Any] | ParticipantState]) -> dict[int, Speaker]:
    """MSI -> Speaker for every audio stream the roster names. Accepts raw Graph participants or the
    core's ParticipantState (its `raw`); entries without a usable audio sourceId are left out."""
    sources: dict[int, Speaker] = {}
    for entry in roster:
        participant = entry if isinstance(entry, Mapping) else entry.raw
        streams = participant.get("mediaStreams")
        if not isinstance(streams, list):
            continue
        who: Speaker | None = None
        for stream in streams:
            if not isinstance(stream, Mapping) or str(stream.get("mediaType", "")).lower() != "audio":
                continue
            source_id = parse_source_id(stream.get("sourceId"))
            if source_id is not None:
                who = who or speaker(participant)
                sources[source_id] = who
    return sources


def participant_ids(roster: Iterable[Mapping[str, Any] | ParticipantState]) -> set[str]:
    """The participant ids a roster lists (to tell who has left, when it is the whole roster)."""
    ids: set[str] = set()
    for entry in roster:
        participant = entry if isinstance(entry, Mapping) else entry.raw
        pid = participant.get("id")
        if pid not in (None, ""):
            ids.add(str(pid))
    return ids


def parse_source_id(value: Any) -> int | None:
    """Graph's `sourceId` (a decimal string, or a number) as an MSI; None when it is not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and value.strip().isdecimal() and value.strip().isascii():
        number = int(value.strip())
    else:
        return None
    return number if 0 <= number <= MAX_SOURCE_ID else None
