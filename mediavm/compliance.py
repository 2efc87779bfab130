"""Policy-based (compliance) recording: the media worker's first application.

Graph's rule (updateRecordingStatus): a bot must have set `recording` successfully before it records or
keeps any media, and says `failed` when recording breaks. So nothing reaches the recorder until Graph has
accepted `recording`, which the first audio triggers; the frames that arrive meanwhile wait in the media
engine's queue. A status Graph refuses twice means this bot may not record the call: it says `failed` and
leaves the call, and the tenant's recording policy decides what happens to the recorded user's call.
Media that stops, or a recorder that cannot keep what it gets, is reported `failed` once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from calling import telemetry
from calling.errors import GraphError
from calling.events import ParticipantState
from mediavm.engine import AudioFrame
from mediavm.recorder import COMMIT_SECONDS, CallRecorder

if TYPE_CHECKING:
    from calling.events import IncomingCall
    from calling.graph import CallControl, RecordingStatusName
    from calling.handoff import HandoffMessage
    from mediavm.sinks import RecordingSink
    from mediavm.worker import AppFactory

log = logging.getLogger("mediavm.compliance")

#: What a recording marked partial says, by what broke it.
_WHY = {"media": "the call's media stopped while the call was up",
        "recorder": "storage failed; the recording keeps what was stored before"}


class Recorder(Protocol):
    """Keeps a call's audio: one track per participant (mediavm/recorder.py)."""

    def feed(self, tick: list[AudioFrame]) -> None: ...

    def participants(self, roster: Sequence[ParticipantState]) -> None: ...

    @property
    def failure(self) -> str | None:
        """Why it can no longer keep what it is fed, once it cannot."""

    async def close(self, *, complete: bool = True, reason: str | None = None) -> None: ...


class ComplianceRecording:
    """One recorded call: the recording status as Graph requires it, and the recorder behind it."""

    def __init__(self, control: CallControl, call_id: str, recorder: Recorder) -> None:
        self._control = control
        self._call_id = call_id
        self._recorder = recorder
        self.status: str = "notRecording"  # as Graph last accepted it
        self._refused = False
        self._failed = False
        self._why: str | None = None
        self._roster: Sequence[ParticipantState] = ()

    async def on_audio(self, tick: list[AudioFrame]) -> None:
        if self._refused:
            return
        if self.status != "recording":
            if not await self._set("recording", attempts=2):
                self._refused = True
                log.error("call %s: Graph refused the recording status; this bot does not record it", self._call_id)
                await self._set("failed", attempts=1)
                await self._leave()
                return
            self._recorder.participants(self._roster)
        self._recorder.feed(tick)
        if self._recorder.failure is not None and not self._failed:
            log.error("call %s: the recording cannot be kept: %s", self._call_id, self._recorder.failure)
            await self._fail("recorder")

    def on_roster(self, participants: Sequence[ParticipantState]) -> None:
        self._roster = participants
        if self.status == "recording":
            self._recorder.participants(participants)

    async def media_lost(self) -> None:
        if self.status == "recording" and not self._failed:
            await self._fail("media")

    async def close(self, *, complete: bool, reason: str | None = None) -> None:
        if self._failed and complete:
            reason = self._why
        await self._recorder.close(complete=complete and not self._failed, reason=reason)

    async def _fail(self, why: str) -> None:
        self._failed = True
        self._why = _WHY.get(why, why)
        telemetry.emit("media.recording_failed", why=why)
        await self._set("failed", attempts=1)

    async def _set(self, status: RecordingStatusName, *, attempts: int) -> bool:
        for attempt in range(1, attempts + 1):
            try:
                await self._control.update_recording_status(self._call_id, status)
            except GraphError as exc:
                log.warning("call %s: updateRecordingStatus(%s) failed (attempt %d): %s", self._call_id, status,
                            attempt, exc)
                continue
            self.status = status
            telemetry.emit("media.recording_status", status=status)
            return True
        return False

    async def _leave(self) -> None:
        try:
            await self._control.hang_up(self._call_id)
        except GraphError as exc:
            log.warning("call %s: leaving the call failed: %s", self._call_id, exc)


def recording_app(sink: RecordingSink, *, clock: Callable[[], datetime] | None = None,
                  commit_seconds: float = COMMIT_SECONDS) -> AppFactory:
    """The worker's application factory: a compliance recording, into `sink`, for each policy-recording
    invite. Nothing else is recorded: a bot records a call only when the tenant's recording policy invited
    it (any other hand-off is left unanswered, so the webhook falls back or rejects it)."""

    def build(control: CallControl, message: HandoffMessage, incoming: IncomingCall) -> ComplianceRecording | None:
        if not incoming.is_policy_recording:
            return None
        subject = incoming.source if incoming.source.kind == "user" else None  # the recorded user
        recorder = CallRecorder(sink, call_id=message.call_id, tenant_id=message.tenant_id or incoming.tenant_id or "",
                                subject=subject, clock=clock, commit_seconds=commit_seconds,
                                on_failure=lambda name, why: log.error("call %s: recording %s failed: %s",
                                                                       message.call_id, name, why))
        return ComplianceRecording(control, message.call_id, recorder)

    return build
