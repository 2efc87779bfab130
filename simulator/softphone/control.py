"""The softphone's decisions, free of HTTP: what a request asks for, and what a call looks like to the page.

`simulator.softphone.api` is the thin aiohttp face over these. Every refusal is a `BadRequest` (400) or a
`Refused` (its status) whose message is the reason the caller sees (`{"error": reason}`).
"""

from __future__ import annotations

import json
import re
from collections import OrderedDict
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from yarl import URL

from simulator.calls import Heard, SimCall
from simulator.core import TONE_NAMES
from simulator.transcript import Entry

#: The keys on the page's keypad, in the order they are laid out.
KEYPAD = "123456789*0#"
#: At most this many keys in one request: a person presses a few at a time.
MAX_KEYS = 32
#: The longest the caller may talk into a recording in one go (the flows record at most 120 s).
MAX_SPEECH_SECONDS = 120.0
#: How long an event stream stays open after its call ended (simulation seconds): the last notifications'
#: answers and the bot's last requests still reach the transcript.
LINGER = 3.0

_PHONE = re.compile(r"\+[0-9]{6,15}")
_PARTY = re.compile(r"(user|instance):[A-Za-z0-9_.@-]+")
#: The settings that say where the bot's prompts come from, the first one set winning (calling/config.py).
PROMPT_SETTINGS = ("PROMPTS_CONTAINER_URL", "PROMPTS_BASE_URL", "BOT_PUBLIC_URL")


class BadRequest(Exception):
    """A request the softphone refuses (400): the message says why."""


class Refused(Exception):
    """A request the softphone refuses with `status` (404, 409, 403, 415, 502): `reason` says why."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


@dataclass(frozen=True)
class Dial:
    """Who calls (`+E164` or `user:<id>`) and whom: a bot number, `instance:<id>`, or `app` (its app id)."""

    source: str
    to: str
    display_name: str | None = None


def _fields(body: Any, allowed: set[str]) -> Mapping[str, Any]:
    if body is None:
        return {}
    if not isinstance(body, Mapping):
        raise BadRequest("the body must be a JSON object")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise BadRequest(f"unknown field {unknown[0]!r}; expected {', '.join(sorted(allowed))}")
    return body


def _text(fields: Mapping[str, Any], name: str, default: str) -> str:
    value = fields.get(name, default)
    if not isinstance(value, str) or not value.strip():
        raise BadRequest(f"{name} must be a non-empty string")
    return value.strip()


def parse_dial(body: Any, *, default_from: str, default_to: str, instances: Collection[str]) -> Dial:
    """`{"from": ..., "to": ..., "name": ...}`, every field optional (the defaults: the demo's caller, the bot).
    `instances`: the bot's resource accounts (`instance:<id>` must name one; its numbers the simulator checks)."""
    fields = _fields(body, {"from", "to", "name"})
    source = _text(fields, "from", default_from)
    to = _text(fields, "to", default_to)
    if not (_PHONE.fullmatch(source) or (_PARTY.fullmatch(source) and source.startswith("user:"))):
        raise BadRequest(f"from: {source!r} is not a caller; use a phone number (+E164) or user:<id>")
    if to == "bot":
        to = default_to
    if not (_PHONE.fullmatch(to) or (_PARTY.fullmatch(to) and to.startswith("instance:")) or to == "app"):
        raise BadRequest(f"to: {to!r} is not the bot; use one of its numbers (+E164), instance:<id> or app")
    if to.startswith("instance:") and to.removeprefix("instance:") not in instances:
        known = ", ".join(f"instance:{i}" for i in instances) or "none"
        raise BadRequest(f"to: {to} is not one of the bot's resource accounts ({known})")
    name = fields.get("name")
    if name is not None and not isinstance(name, str):
        raise BadRequest("name must be a string")
    return Dial(source, to, name or None)


def parse_keys(body: Any) -> str:
    """`{"keys": "12#"}`: keys on a phone (0-9, *, #, A-D)."""
    keys = _text(_fields(body, {"keys"}), "keys", "")
    if len(keys) > MAX_KEYS:
        raise BadRequest(f"keys: at most {MAX_KEYS} keys at a time")
    wrong = next((k for k in keys if k.upper() not in TONE_NAMES), None)
    if wrong is not None:
        raise BadRequest(f"keys: {wrong!r} is not a key on a phone (0-9, *, #, A-D)")
    return keys.upper()


def parse_speech(body: Any) -> float:
    """`{"seconds": 3}`: how long the caller talks into the next recording (0: says nothing)."""
    seconds = _fields(body, {"seconds"}).get("seconds")
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not 0 <= seconds <= MAX_SPEECH_SECONDS:
        raise BadRequest(f"seconds must be a number from 0 to {MAX_SPEECH_SECONDS:g}")
    return float(seconds)


# -- what the page sees ------------------------------------------------------------------------------


def _start(call: SimCall) -> float:
    entries = call.transcript.entries
    return entries[0].at if entries else 0.0


def _result(call: SimCall) -> dict[str, Any] | None:
    if call.result_info is None:
        return None
    return {key: value for key, value in call.result_info.items() if not key.startswith("@")}


def line_json(index: int, entry: Entry, start: float) -> dict[str, Any]:
    """One transcript line: seconds since the call began, who (caller, to-bot, from-bot, sim), what."""
    return {"index": index, "at": round(entry.at - start, 3), "direction": entry.direction, "summary": entry.summary}


def prompt_json(call: SimCall, index: int, heard: Heard, now: float) -> dict[str, Any]:
    """A prompt the caller hears: the URI the bot asked Graph to play, and where the page gets its audio."""
    return {"index": index, "name": heard.name, "uri": heard.uri, "audio": audio_path(call.id, index),
            "at": round(heard.started_at - _start(call), 3), "seconds": round(heard.seconds, 3),
            "outcome": heard.state(now)}


def audio_path(call_id: str, index: int) -> str:
    """The softphone's same-origin copy of a call's `index`-th prompt (fetched from the bot's URI)."""
    return f"/softphone/calls/{call_id}/prompts/{index}"


def state_json(call: SimCall) -> dict[str, Any]:
    return {"state": call.state, "ended": call.ended, "result": _result(call)}


def started(heard: Heard, now: float) -> bool:
    """The caller hears it now or heard it: a prompt queued behind another has not begun, and one whose operation
    ended (cancelled, failed, the call ended) before its turn never will."""
    return heard.started_at <= now and (heard.ended_at is None or heard.started_at <= heard.ended_at)


def call_json(call: SimCall, now: float) -> dict[str, Any]:
    """The whole call as the page and the API show it."""
    start = _start(call)
    return {
        "id": call.id, "title": call.transcript.title, "direction": call.direction, **state_json(call),
        "transcript": [line_json(i, e, start) for i, e in enumerate(call.transcript.entries)],
        "prompts": [prompt_json(call, i, h, now) for i, h in enumerate(call.heard) if started(h, now)],
        "tones": list(call.tones_received),
        "recordings": [{"id": r.id, "seconds": r.seconds, "completionReason": r.completion_reason,
                        "downloaded": r.downloaded} for r in call.recordings],
    }


def call_summary(call: SimCall) -> dict[str, Any]:
    return {"id": call.id, "title": call.transcript.title, "direction": call.direction, "state": call.state}


def prompt_uri(call: SimCall, index: str) -> str | None:
    """The URI of the call's prompt number `index` (as the API numbers them), or None."""
    if not (index.isascii() and index.isdigit()) or int(index) >= len(call.heard):
        return None
    uri = call.heard[int(index)].uri
    return uri if uri.startswith(("http://", "https://")) else None


Origin = tuple[str, str, int]


def origin_of(url: str) -> Origin | None:
    """(scheme, host, port) of an http(s) URL, as aiohttp's own parser (yarl) reads it; None if it is none."""
    try:
        parsed = URL(url)
        scheme, host, port = parsed.scheme.lower(), parsed.host, parsed.port
    except (ValueError, TypeError):
        return None
    if scheme not in ("http", "https") or not host or port is None:
        return None
    return scheme, host.lower(), port


def show_origin(origin: Origin) -> str:
    scheme, host, port = origin
    return f"{scheme}://{f'[{host}]' if ':' in host else host}:{port}"


def prompt_origin(env: Mapping[str, str]) -> str | None:
    """Where the bot's prompts come from, by its settings: the first of PROMPTS_CONTAINER_URL, PROMPTS_BASE_URL
    and BOT_PUBLIC_URL that is set (as calling/config.py and calling/prompt_links.py choose)."""
    return next((env[key] for key in PROMPT_SETTINGS if env.get(key)), None)


def prompt_to_fetch(call: SimCall, index: str, origins: Collection[str]) -> str:
    """The URI the softphone may fetch for the call's prompt `index`: one the bot sent Graph, that played (not
    one that failed: the caller heard nothing, and its body is not a prompt), from where the bot's prompts come
    from (`origins`), so the softphone is no way to read other services on this machine. Refused otherwise."""
    uri = prompt_uri(call, index)
    if uri is None:
        raise Refused(404, f"call {call.id} has no prompt {index!r}")
    if call.heard[int(index)].outcome == "failed":
        raise Refused(404, f"prompt {index} of call {call.id} failed to play (the transcript says why): "
                           "it has no audio")
    allowed = {o for o in map(origin_of, origins) if o is not None}
    own = origin_of(uri)
    if own is None or own not in allowed:
        where = ", ".join(sorted(map(show_origin, allowed))) or "nowhere known"
        raise Refused(403, f"{uri} is not where the bot's prompts come from ({where}): the softphone fetches "
                           "only those")
    return uri


class AudioCache:
    """The prompts' WAVs the softphone fetched, least recently used first out: at most `items` of them, and
    `size` bytes in all (a WAV larger than that is not kept)."""

    def __init__(self, *, items: int, size: int) -> None:
        self.items, self.size = items, size
        self._kept: OrderedDict[str, bytes] = OrderedDict()
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._kept)

    def __contains__(self, key: object) -> bool:
        return key in self._kept

    def get(self, key: str) -> bytes | None:
        data = self._kept.get(key)
        if data is not None:
            self._kept.move_to_end(key)
        return data

    def put(self, key: str, data: bytes) -> None:
        old = self._kept.pop(key, None)
        if old is not None:
            self.bytes -= len(old)
        if len(data) > self.size:
            return
        self._kept[key] = data
        self.bytes += len(data)
        while len(self._kept) > self.items or self.bytes > self.size:
            _, dropped = self._kept.popitem(last=False)
            self.bytes -= len(dropped)


@dataclass(frozen=True)
class Event:
    """One Server-Sent Event: `line` (a transcript line, new or changed), `prompt` (began, or ended some way),
    `state` (the call's state changed), `end` (nothing more will come)."""

    kind: str
    data: dict[str, Any]

    def encode(self) -> bytes:
        return f"event: {self.kind}\ndata: {json.dumps(self.data, separators=(',', ':'))}\n\n".encode()


@dataclass
class Cursor:
    """What one event stream has sent of a call; `changes` gives what is new since."""

    lines: list[str] = field(default_factory=list)
    prompts: dict[int, str] = field(default_factory=dict)
    state: str | None = None

    def changes(self, call: SimCall, now: float) -> list[Event]:
        events = []
        if call.state != self.state:
            self.state = call.state
            events.append(Event("state", state_json(call)))
        start = _start(call)
        for index, entry in enumerate(call.transcript.entries):
            if index < len(self.lines) and self.lines[index] == entry.summary:
                continue
            events.append(Event("line", line_json(index, entry, start)))
            if index < len(self.lines):
                self.lines[index] = entry.summary  # a notification's line gains the bot's answer once it came
            else:
                self.lines.append(entry.summary)
        for index, heard in enumerate(call.heard):
            if started(heard, now) and self.prompts.get(index) != heard.state(now):
                self.prompts[index] = heard.state(now)
                events.append(Event("prompt", prompt_json(call, index, heard, now)))
        return events


def finished(call: SimCall, now: float) -> bool:
    """The call ended long enough ago (LINGER) that its stream can close."""
    return call.ended_at is not None and now >= call.ended_at + LINGER
