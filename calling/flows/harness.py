"""Drive a flow through the engine without Graph, Durable or a phone: for tests of flows and of the engine.

`FlowCall` plays the orchestration's part: it feeds events to `step`, keeps the commands, answers
what the engine waits for (a prompt finishes, a timer fires, a transfer rings out), and keeps a
virtual clock that moves by the prompts' lengths and the timers' durations. A test reads like a call:

    call = FlowCall(load_bundle("flows/main-menu.yaml"), at=datetime(2026, 3, 3, 17, tzinfo=UTC))
    call.start()
    call.finish_prompt()        # welcome
    call.press("2")             # support
    call.finish_prompt()        # "please hold"
    call.transfer("no_answer")  # rings out: voicemail
    assert call.node == "support-voicemail"
"""

from __future__ import annotations

import io
import math
import re
import struct
import wave
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

from calling.flows import commands as c
from calling.flows import events as e
from calling.flows import model as m
from calling.flows import queueing
from calling.flows.engine import step
from calling.flows.state import State
from calling.queues import Line

DEFAULT_START = datetime(2026, 3, 3, 17, 0, tzinfo=UTC)  # a Tuesday, 09:00 in Los Angeles


class FlowCall:
    def __init__(self, bundle: m.Bundle, *, caller: str = "+14255550123", called: str = "+14255550100",
                 at: datetime = DEFAULT_START, lines: dict[str, Line] | None = None, call_id: str = "call-1") -> None:
        self.bundle = bundle
        #: Queue lines by name, shared by calls in one test: queue commands are carried out on them at once.
        self.lines = lines
        self.call_id = call_id
        self.caller = caller
        self.called = called
        self.now = at
        self.state = State()
        self.commands: list[c.Command] = []  # every command so far
        self.last: list[c.Command] = []  # the commands of the latest step
        self.steps = 0
        self._tone_seq = 0

    # --- sending events ---------------------------------------------------------------------------

    def send(self, event: e.Event) -> list[c.Command]:
        self.state, self.last = step(self.bundle, self.state, event)
        self.commands.extend(self.last)
        self.steps += 1
        if self.lines is not None:
            self.last = [*self.last, *self._serve_lines(self.last)]
        return self.last

    def _serve_lines(self, commands: list[c.Command]) -> list[c.Command]:
        """Carry out queue commands on the shared in-memory lines, as the queue entity would; answer them."""
        out: list[c.Command] = []
        assert self.lines is not None
        for command in commands:
            if isinstance(command, c.QUEUE):
                line = self.lines.setdefault(command.queue, Line())
                name, data = queueing.operation(command, self.call_id, self.now)
                reply = queueing.reply_event(command, line.apply(name, data), self.now)
                if reply is not None:
                    out += self.send(reply)
        return out

    def start(self, *, established: bool = True) -> list[c.Command]:
        return self.send(e.Started(at=self.now, caller=self.caller, called=self.called, established=established))

    def establish(self) -> list[c.Command]:
        return self.send(e.CallEstablished(at=self.now))

    def press(self, keys: str) -> list[c.Command]:
        out: list[c.Command] = []
        for key in keys:
            self._tone_seq += 1
            out += self.send(e.Tone(key=key, sequence=self._tone_seq, at=self.now))
        return out

    def finish_prompt(self, *, failed: bool = False) -> list[c.Command]:
        ref = self._awaited(self.state.play, "a prompt")
        self.advance(self._play_seconds(ref))
        event = e.PromptFailed(ref=ref, at=self.now) if failed else e.PromptFinished(ref=ref, at=self.now)
        return self.send(event)

    def fire_timer(self) -> list[c.Command]:
        ref = self._awaited(self.state.timer, "a timer")
        self.advance(self._timer_seconds(ref))
        return self.send(e.TimerFired(ref=ref, at=self.now))

    def transfer(self, outcome: str, *, after: float = 10, code: int | None = None,
                 subcode: int | None = None) -> list[c.Command]:
        ref = self._awaited(self.state.op, "a transfer")
        self.advance(after)
        return self.send(e.TransferOutcome(ref=ref, outcome=outcome, code=code, subcode=subcode, at=self.now))

    def record(self, *, ok: bool = True, location: str = "https://recordings.example/1",
               token: str = "recording-access-token",  # noqa: S107 (a stand-in, not a secret)
               duration: float = 8.0) -> list[c.Command]:
        ref = self._awaited(self.state.op, "a recording")
        self.advance(duration)
        return self.send(e.RecordFinished(ref=ref, ok=ok, location=location if ok else "", token=token,
                                          duration=duration if ok else None, at=self.now))

    def invite(self, *, ok: bool = True) -> list[c.Command]:
        ref = self._awaited(self.state.op, "an invitation")
        return self.send(e.InviteOutcome(ref=ref, ok=ok, at=self.now))

    def end(self, *, code: int = 200, subcode: int = 5001) -> list[c.Command]:
        return self.send(e.CallEnded(code=code, subcode=subcode, at=self.now))

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    # --- reading ----------------------------------------------------------------------------------

    @property
    def node(self) -> str:
        return self.state.node

    @property
    def phase(self) -> str:
        return self.state.phase

    def of(self, kind: type[c.Command], *, last: bool = False) -> list[c.Command]:
        """Commands of one kind, from the whole call or the latest step."""
        return [cmd for cmd in (self.last if last else self.commands) if isinstance(cmd, kind)]

    def played(self) -> list[str]:
        """Every prompt asked for, in order."""
        return [p for cmd in self.commands if isinstance(cmd, c.Play) for p in cmd.prompts]

    def milestones(self, name: str) -> list[dict[str, c.Fact]]:
        return [dict(cmd.facts) for cmd in self.commands if isinstance(cmd, c.Milestone) and cmd.name == name]

    def path(self) -> list[str]:
        """The nodes left so far, in order (from the flow.node milestones)."""
        return [str(f["node"]) for f in self.milestones("flow.node")]

    # --- internals --------------------------------------------------------------------------------

    def _awaited(self, ref: str, what: str) -> str:
        if not ref:
            raise AssertionError(f"the engine is not waiting for {what} (node {self.node!r}, stage "
                                 f"{self.state.stage!r})")
        return ref

    def _play_seconds(self, ref: str) -> float:
        for cmd in reversed(self.commands):
            if isinstance(cmd, c.Play) and cmd.ref == ref:
                return sum(self.bundle.prompts[p].duration if p in self.bundle.prompts else 1.0 for p in cmd.prompts)
        return 0.0

    def _timer_seconds(self, ref: str) -> float:
        for cmd in reversed(self.commands):
            if isinstance(cmd, c.StartTimer) and cmd.ref == ref:
                return cmd.seconds
        return 0.0


def tone_wav(seconds: float = 1.0, *, rate: int = 16_000, channels: int = 1, width: int = 2,
             hz: float = 440.0) -> bytes:
    """A sine tone as WAV bytes (16 kHz mono 16-bit unless told otherwise): a stand-in prompt."""
    frames = max(1, int(seconds * rate))
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(channels)
        writer.setsampwidth(width)
        writer.setframerate(rate)
        peak = (1 << (8 * width - 1)) - 1
        fmt = {1: "b", 2: "h", 4: "i"}[width]
        samples = (int(peak * 0.3 * math.sin(2 * math.pi * hz * i / rate)) for i in range(frames))
        data = b"".join(struct.pack(f"<{fmt}", s) * channels for s in samples)
        if width == 1:  # 8-bit WAV samples are unsigned
            data = bytes((b + 128) % 256 for b in data)
        writer.writeframes(data)
    return buffer.getvalue()


def write_flows(folder: str | Path, files: Mapping[str, str], *, prompt_seconds: float = 1.0) -> Path:
    """Write flow files into `folder`, with a stand-in WAV for every prompt they name that is missing.

    For tests of flows whose real prompts are not recorded yet. Returns the folder.
    """
    folder = Path(folder)
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        for prompt in re.findall(r"[\w./-]+\.wav", text):
            wav = path.parent / prompt
            if not wav.exists():
                wav.parent.mkdir(parents=True, exist_ok=True)
                wav.write_bytes(tone_wav(prompt_seconds))
    return folder
