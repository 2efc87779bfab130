"""A session's Graph commands, carried out: what the orchestration's `call_action` activity runs.

Transient failures (429, 5xx, transport) raise, so the activity's Durable retry policy tries again;
other Graph refusals come back as `{"ok": False, ...}` for the engine to take its failure branch
(`calling.session.failure_event`). A 404 means the call is gone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from calling import watch
from calling.errors import GraphError
from calling.flows import commands as c
from calling.flows.prompts import graph_prompt, graph_prompt_of
from calling.identities import application_instance
from calling.recordings import RecordingStore
from calling.routing import parse_target
from calling.session import FlowLibrary

if TYPE_CHECKING:  # msgraph-sdk loads with the first Graph request (cold start: the app imports this module)
    from calling.graph import CallControl, Prompt

log = logging.getLogger("calling.actions")

TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
#: Requests of a consultative transfer that are not engine commands (calling/consult.py decides them).
CONSULT_HAND_OVER = "Consult.HandOver"
CONSULT_END = "Consult.End"


def is_transient(exc: GraphError) -> bool:
    return exc.status in TRANSIENT_STATUSES or exc.code in ("transportError", "authenticationFailed")


async def perform(control: CallControl, flows: FlowLibrary, store: RecordingStore | None,
                  request: Mapping[str, Any], *, instance_id: str | None = None) -> dict[str, Any]:
    """Carry out one request of the session. `instance_id`: the bot's resource account, the caller id
    when the bot rings a phone number for a consultative transfer."""
    call_id = str(request["call_id"])
    data = request["command"]
    try:
        kind = data.get("type")
        if kind == "KeepAlive":
            await control.keep_alive(call_id)
            return {"ok": True}
        if kind == CONSULT_HAND_OVER:
            # The target answered the bot's second call: the caller's call replaces it.
            await control.transfer(call_id, parse_target(data["target"]), replaces_call_id=str(data["consult_call_id"]))
            return {"ok": True}
        if kind == CONSULT_END:
            await control.hang_up(str(data["consult_call_id"]))
            return {"ok": True}
        if kind == watch.CALL_GET:  # a notification never came: ask Graph (calling/watch.py)
            info = await control.get_call(str(data.get("call_id") or call_id))
            return {"ok": True, "call": dict(info.raw)}
        if kind == watch.OPERATION_GET:
            operation = await control.get_operation(call_id, str(data["operation_id"]))
            return {"ok": True, "operation": dict(operation.raw)}
        if kind == watch.CALL_REJECT:  # answered, yet never established: the answer did not take
            await control.reject(call_id, reason="busy")
            return {"ok": True}
        command = c.command_from_json(data)
        prompts = _prompts(request, flows)
        return await _perform(control, flows, store, call_id, prompts, command, instance_id)
    except GraphError as exc:
        if is_transient(exc):
            raise
        log.warning("%s failed: %s", data.get("type"), exc)
        return {"ok": False, "status": exc.status, "code": exc.code, "message": exc.message,
                "gone": exc.status == 404}


def _prompts(request: Mapping[str, Any], flows: FlowLibrary) -> Callable[[str, str], Prompt]:
    """How this request names its prompts: by the content hashes it carries (the session's own flow, which
    a deployment mid-call may have replaced on disk), or, for a request without them, by the flow file."""
    carried = request.get("prompts")
    if isinstance(carried, Mapping):
        return lambda key, base_url: graph_prompt_of(key, str(carried[key]), base_url)
    return lambda key, base_url: graph_prompt(flows.bundle(str(request["flow"])), key, base_url)


async def _perform(control: CallControl, flows: FlowLibrary, store: RecordingStore | None, call_id: str,
                   prompt: Callable[[str, str], Prompt], command: c.Command, instance_id: str | None
                   ) -> dict[str, Any]:
    if isinstance(command, c.Play):
        base_url = await flows.prompts_url()
        prompts = [prompt(key, base_url) for key in command.prompts]
        op = await control.play_prompt(call_id, prompts, client_context=command.ref)
        return {"ok": True, "operation": op.id}
    if isinstance(command, c.SubscribeTones):
        await control.subscribe_to_tone(call_id, client_context=command.ref)
    elif isinstance(command, c.CancelMedia):
        await control.cancel_media_processing(call_id, client_context=command.ref)
    elif isinstance(command, c.Record):
        intro = prompt(command.prompt, await flows.prompts_url()) if command.prompt else None
        op = await control.record_response(
            call_id, prompt=intro, play_beep=command.beep, max_record_duration=command.max_duration,
            initial_silence_timeout=command.initial_silence_timeout, max_silence_timeout=command.max_silence_timeout,
            stop_tones=command.stop_tones, client_context=command.ref)
        return {"ok": True, "operation": op.id}
    elif isinstance(command, c.SaveRecording):
        return await _save(control, store, call_id, command)
    elif isinstance(command, c.Transfer) and command.mode == "consultative":
        return await _consult(control, call_id, command, instance_id)
    elif isinstance(command, c.Transfer):
        await control.transfer(call_id, parse_target(command.target))
    elif isinstance(command, c.Invite):
        op = await control.invite(call_id, [parse_target(t) for t in command.targets], client_context=command.ref)
        return {"ok": True, "operation": op.id}
    elif isinstance(command, c.Redirect):
        await control.redirect(call_id, [parse_target(t) for t in command.targets], timeout=command.timeout)
    elif isinstance(command, c.HangUp):
        await control.hang_up(call_id)
    else:
        return {"ok": False, "code": "unsupported", "message": f"{type(command).__name__} is not a Graph action"}
    return {"ok": True}


async def _consult(control: CallControl, call_id: str, command: c.Transfer, instance_id: str | None
                   ) -> dict[str, Any]:
    """Ring the target on a call of the bot's own, its notifications routed to the caller's session."""
    target = parse_target(command.target)
    callback = f"{control.callback_uri.rstrip('/')}/{call_id}"
    source = application_instance(instance_id) if instance_id and target.kind == "phone" else None
    if target.kind == "phone" and source is None:
        return {"ok": False, "code": "no_instance", "message": "ringing a phone number needs BOT_INSTANCE_ID "
                "(the bot's resource account) as the caller id"}
    from calling.graph import ServiceHostedMedia

    try:
        info = await control.create_call([target], source=source, media=ServiceHostedMedia(), callback_uri=callback)
    except GraphError as exc:
        if exc.status is not None and exc.status < 500 and exc.status != 408:
            raise  # refused (4xx), or throttled (429: retried), so nothing was placed
        # A 5xx, a timeout, no answer at all: Graph may have placed the call. Never retried blindly; the
        # session looks for it first (calling/consult.py, PLACING).
        log.warning("placing the consult call is uncertain: %s", exc)
        return {"ok": False, "uncertain": True, "status": exc.status, "code": exc.code, "message": exc.message}
    return {"ok": True, "consult_call_id": info.id}


def _seconds(reported: float | None, audio: bytes) -> float:
    """The recording's length: Graph's recordResponse doesn't say, the WAV header does."""
    if reported is not None:
        return reported
    from calling.flows.wav import WavError, read_info

    try:
        return round(read_info(audio).duration, 2)
    except WavError:
        return 0.0


async def _save(control: CallControl, store: RecordingStore | None, call_id: str,
                command: c.SaveRecording) -> dict[str, Any]:
    if store is None:
        log.warning("a recording was made but no recording store is configured; it is not kept")
        return {"ok": False, "code": "no_store", "message": "no recording store configured"}
    audio = await control.download_recording(command.location, command.token)
    at = command.at or datetime.now(UTC).isoformat()
    name = f"{command.mailbox or 'default'}/{at[:10]}/{call_id}-{command.ref}.wav"
    where = await store.save(name, audio, {
        "call_id": call_id, "mailbox": command.mailbox, "caller": command.caller, "called": command.called,
        "at": at, "duration": f"{_seconds(command.duration, audio):g}",
        "flow": command.flow, "node": command.node, "bytes": str(len(audio))})
    return {"ok": True, "stored": where, "bytes": len(audio)}
