"""A call's session: the flow engine fed with Graph's notifications and the orchestration's timers.

The orchestration (orchestrations/call_session.py) is a thin loop; what it needs decided lives here,
testable without any runtime: how a call opens (the engine's first step, before the webhook answers),
what the session carries across continue-as-new, how a batch of Graph notifications becomes engine
events, and which event a failed Graph action turns into.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

from calling.consult import Consult, ring_outcome
from calling.events import CallEvent, CallStateChanged, OperationCompleted, ToneReceived
from calling.flows import Bundle, State, load_bundle, step
from calling.flows import commands as c
from calling.flows import events as e
from calling.flows.model import PromptFile
from calling.flows.snapshot import restore
from calling.notifications import NotificationError, parse_notification
from calling.prompt_links import PromptLinks
from calling.yamlsource import SourceErrors

SESSION_VERSION = 1
KEEPALIVE_EVERY = timedelta(minutes=15)
KEEPALIVE_REF = "keepalive"


class FlowNotFound(LookupError):
    """No file for a flow name in FLOWS_DIR: the webhook rejects the call busy and says which file."""


@dataclass(frozen=True)
class FlowLibrary:
    """Flow files in a folder, loaded and checked once per process; prompts served from `prompts_base_url`,
    or from a private Blob container through `links` (a SAS kept fresh)."""

    folder: Path
    prompts_base_url: str
    links: PromptLinks | None = None

    async def prompts_url(self) -> str:
        """The base URL Graph fetches prompts from, now."""
        return await self.links.base_url() if self.links is not None else self.prompts_base_url

    def bundle(self, name: str) -> Bundle:
        return _load(self.folder.resolve(), name)

    def pinned(self, name: str, snapshot: Mapping[str, Any] | None) -> Bundle:
        """The flow a call's session started with: the files' bundle while they are unchanged, else the one
        rebuilt from the snapshot the session carries (calling/flows/snapshot.py). A session without a
        snapshot gets the files' bundle. Raises FlowNotFound, SourceErrors or ValueError when neither runs."""
        if snapshot is None:
            return self.bundle(name)
        try:
            current: Bundle | None = self.bundle(name)
        except (FlowNotFound, SourceErrors):
            current = None
        wanted = str(snapshot.get("version") or "")
        if current is not None and current.version == wanted:
            return current
        bundle = _PINNED.get(wanted)
        if bundle is None:
            bundle = restore(snapshot)
            if len(_PINNED) >= _PINNED_MAX:
                _PINNED.pop(next(iter(_PINNED)))
            _PINNED[wanted] = bundle
        return bundle

    def path(self, name: str) -> Path:
        return self.folder / f"{name}.yaml"


#: Bundles rebuilt from sessions' snapshots, by version: a few per deployment that changed a flow mid-call.
_PINNED: dict[str, Bundle] = {}
_PINNED_MAX = 32


@cache
def _load(folder: Path, name: str) -> Bundle:
    path = folder / f"{name}.yaml"
    if not path.is_file():
        raise FlowNotFound(f"no flow {name!r}: {path} does not exist")
    return load_bundle(path, folder=folder)


@dataclass(frozen=True)
class Opening:
    """The engine's first step for a call, taken before the call is answered."""

    state: State
    commands: tuple[c.Command, ...]

    @property
    def leaving(self) -> c.Command | None:
        """A redirect, hang-up (= reject) or hand-off the flow chose before answering, if any."""
        return next((cmd for cmd in self.commands if isinstance(cmd, c.Redirect | c.HangUp | c.HandOff)), None)


def open_call(bundle: Bundle, *, caller: str, called: str, at: datetime, established: bool = False) -> Opening:
    state, commands = step(bundle, State(), e.Started(at=at, caller=caller, called=called, established=established))
    return Opening(state, tuple(commands))


@dataclass
class Session:
    """What the orchestration carries from one execution to the next (its input across continue-as-new)."""

    call_id: str
    tenant_id: str
    flow: str
    state: State
    commands: list[c.Command] = field(default_factory=list)
    timers: dict[str, str] = field(default_factory=dict)  # ref -> ISO due time (keepalive included)
    executions: int = 1
    consult: Consult | None = None  # the bot's second call of a consultative transfer, while it lasts
    #: The flow as the call started it (calling/flows/snapshot.py): a deployment mid-call does not change it.
    snapshot: Mapping[str, Any] | None = None
    #: Graph operation ids of the operations the engine awaits, by the engine's ref: what to GET if their
    #: completion never comes (calling/watch.py).
    ops: dict[str, str] = field(default_factory=dict)
    #: How many times each watch (calling/watch.py) has looked: its waits are bounded.
    looks: dict[str, int] = field(default_factory=dict)
    #: Why the session itself let go of the call (a call never established), "" while the flow holds it.
    closing: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"v": SESSION_VERSION, "call_id": self.call_id, "tenant_id": self.tenant_id, "flow": self.flow,
                "state": self.state.to_json(), "commands": [c.command_to_json(x) for x in self.commands],
                "timers": dict(self.timers), "executions": self.executions,
                "consult": self.consult.to_json() if self.consult else None, "flow_snapshot": self.snapshot,
                "ops": dict(self.ops), "looks": dict(self.looks), "closing": self.closing}

    @classmethod
    def from_json(cls, data: Any) -> Session:
        if isinstance(data, str):  # the Python Durable client JSON-encodes inputs it is given as objects
            data = json.loads(data)
        if not isinstance(data, Mapping) or data.get("v") != SESSION_VERSION:
            raise ValueError(f"not a call session of version {SESSION_VERSION}: {data!r:.200}")
        return cls(str(data["call_id"]), str(data.get("tenant_id") or ""), str(data["flow"]),
                   State.from_json(data["state"]), [c.command_from_json(x) for x in data.get("commands") or []],
                   {str(k): str(v) for k, v in (data.get("timers") or {}).items()}, int(data.get("executions", 1)),
                   Consult.from_json(data["consult"]) if data.get("consult") else None,
                   data.get("flow_snapshot") if isinstance(data.get("flow_snapshot"), Mapping) else None,
                   {str(k): str(v) for k, v in (data.get("ops") or {}).items()},
                   {str(k): int(v) for k, v in (data.get("looks") or {}).items()}, str(data.get("closing") or ""))

    def start_timer(self, ref: str, due: datetime) -> None:
        self.timers[ref] = due.isoformat()

    def next_due(self) -> datetime | None:
        return min((datetime.fromisoformat(v) for v in self.timers.values()), default=None)

    def pop_due(self, now: datetime) -> list[str]:
        """Refs of the timers due by `now`, earliest first; they are removed."""
        due = sorted((datetime.fromisoformat(v), k) for k, v in self.timers.items() if datetime.fromisoformat(v) <= now)
        for _, ref in due:
            del self.timers[ref]
        return [ref for _, ref in due]

    def action(self, command: c.Command | Mapping[str, Any] | None = None,
               prompts: Mapping[str, PromptFile] | None = None) -> dict[str, Any]:
        """The input of the `call_action` activity: an engine command, a raw request (a consultative
        transfer's steps), or None for keepAlive. A command that plays prompts carries each one's content
        hash from the session's bundle (`prompts`), so the activity needs no flow file to name them."""
        if command is None:
            data: Mapping[str, Any] = {"type": "KeepAlive"}
        elif isinstance(command, c.Command):
            data = c.command_to_json(command)
        else:
            data = command
        request = {"call_id": self.call_id, "tenant_id": self.tenant_id, "flow": self.flow, "command": dict(data)}
        keys = command.prompts if isinstance(command, c.Play) else (
            (command.prompt,) if isinstance(command, c.Record) and command.prompt else ())
        if keys and prompts is not None:
            request["prompts"] = {key: prompts[key].sha256 for key in keys if key in prompts}
        return request


def unrunnable(bundle: Bundle, state: State) -> str | None:
    """Why `bundle` cannot carry on from `state` (a node or sub-flow it names is not there), or None."""
    frames = [(state.flow, state.node), *state.stack] if state.flow else []
    for flow_id, node in frames:
        flow = bundle.flows.get(flow_id)
        if flow is None:
            return f"the flow has no sub-flow {flow_id!r} any more"
        if node and node not in flow.nodes:
            return f"{flow_id} has no node {node!r} any more"
    return None


def translate(notifications: Iterable[Mapping[str, Any]], state: State, at: datetime) -> list[e.Event]:
    """Graph notifications (one raised batch) as engine events, in order.

    An operation's completion in the same batch as the call's end goes first, so a voicemail that
    finished as the caller hung up is still saved. Transfers carry no clientContext in v1.0: the
    outcome is matched to the transfer the engine awaits (`state.op`).
    """
    parsed: list[CallEvent] = []
    for raw in notifications:
        try:
            parsed.extend(parse_notification(raw))
        except NotificationError:
            continue  # the webhook already refused malformed batches; nothing here is worth failing a call for
    parsed.sort(key=lambda ev: isinstance(ev, CallStateChanged) and ev.is_terminated)
    events: list[e.Event] = []
    transfer = state.op if state.op.startswith("transfer") else ""
    for ev in parsed:
        if isinstance(ev, ToneReceived):
            events.append(e.Tone(at=at, key=ev.key, sequence=ev.sequence_id))
        elif isinstance(ev, OperationCompleted):
            events.extend(_operation(ev, at))
        elif isinstance(ev, CallStateChanged):
            events.extend(_state(ev, transfer, at))
    return events


def _operation(ev: OperationCompleted, at: datetime) -> list[e.Event]:
    ref = ev.client_context or ""
    kind = ev.operation_type.lower()
    ok = ev.succeeded  # completed, with no failing completionReason or resultInfo (see OperationCompleted)
    code = ev.result_info.code if ev.result_info else None
    subcode = ev.result_info.subcode if ev.result_info else None
    if not ref:
        return []
    if kind.startswith("playprompt"):
        return [e.PromptFinished(at=at, ref=ref) if ok else e.PromptFailed(at=at, ref=ref, code=code, subcode=subcode)]
    if kind.startswith("record"):
        return [e.RecordFinished(at=at, ref=ref, ok=ok and bool(ev.recording_location),
                                 location=ev.recording_location or "", token=ev.recording_access_token or "",
                                 duration=None, code=code, subcode=subcode)]
    if kind.startswith("invite"):
        return [e.InviteOutcome(at=at, ref=ref, ok=ok, code=code, subcode=subcode)]
    return []


def _state(ev: CallStateChanged, transfer: str, at: datetime) -> list[e.Event]:
    result = ev.result_info
    code = result.code if result else None
    subcode = result.subcode if result else None
    if ev.is_terminated:
        events: list[e.Event] = []
        if transfer and (subcode == 7015 or (ev.termination_reason or "").lower() == "apptransferred"):
            events.append(e.TransferOutcome(at=at, ref=transfer, outcome="completed", code=code, subcode=subcode))
        events.append(e.CallEnded(at=at, code=code, subcode=subcode, reason=ev.termination_reason or ""))
        return events
    if ev.state != "established":
        return []
    if transfer and code is not None and code >= 400:
        outcome = ring_outcome(code, subcode, result.message if result else None)
        return [e.TransferOutcome(at=at, ref=transfer, outcome=outcome, code=code, subcode=subcode)]
    if (ev.media_state or {}).get("audio", "active").lower() == "inactive":
        return []
    return [e.CallEstablished(at=at)]


def failure_event(command: c.Command, result: Mapping[str, Any], at: datetime) -> e.Event | None:
    """The engine event for a Graph action that failed for good (after the activity's own retries)."""
    if result.get("ok"):
        return None
    code = result.get("status")
    if code == 404 and result.get("gone"):
        return e.CallEnded(at=at, code=404, subcode=None, reason="call gone")
    if isinstance(command, c.Play):
        return e.PromptFailed(at=at, ref=command.ref, code=code)
    if isinstance(command, c.Record):
        return e.RecordFinished(at=at, ref=command.ref, ok=False, code=code)
    if isinstance(command, c.Transfer):
        return e.TransferOutcome(at=at, ref=command.ref, outcome="failed", code=code)
    if isinstance(command, c.Invite):
        return e.InviteOutcome(at=at, ref=command.ref, ok=False, code=code)
    if isinstance(command, c.Redirect):
        return e.Redirected(at=at, ref=command.ref, ok=False, code=code)
    return None
