"""Scenarios: a whole simulated call written down in YAML, run against the real bot on the local host.

A scenario says who calls whom, what the caller does, how the parties the bot rings behave, which faults
Graph shows, and what must happen. The format is in docs/testing-flows.md; every problem in a file is
reported as `FILE:LINE:COLUMN: field: message`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from calling.yamlsource import Document, PathKey, SourceError, SourceErrors, load_file, load_text
from simulator.directory import OUTCOMES, Directory
from simulator.faults import NOTIFICATION_FAULTS, Faults, GraphFault, NotificationFault
from simulator.speech import Say, tone, wav

ACTIONS = ("press", "speak", "silence", "wait", "hang_up", "expect", "say", "stop_speaking", "join", "kill_worker")
#: Expectations about something the bot did with the caller, each with an outcome.
LEG_KINDS = ("consult", "transfer", "redirect", "invite")
EXPECTATIONS = ("answered", "prompt", "consult", "transfer", "redirect", "invite", "recording", "ended", "state",
                "media", "recording_status")
LEG_OUTCOMES = ("answered", "declined", "busy", "no_answer", "failed", "any")
RECORDING_STATUSES = ("recording", "notRecording", "failed")


@dataclass(frozen=True)
class Step:
    action: str
    args: Mapping[str, Any]
    line: int
    text: str

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class CallSpec:
    source: str
    to: str = "bot"
    policy_recording: bool = False
    display_name: str | None = None
    #: A policy-recorded call's other parties (the recorded user is `source`).
    others: tuple[str, ...] = ()


@dataclass
class Scenario:
    file: str
    name: str
    call: CallSpec
    steps: list[Step]
    settings: dict[str, str] = field(default_factory=dict)
    real_time: bool = False
    directory: Directory = field(default_factory=Directory)
    faults: Faults = field(default_factory=Faults)
    meetings: list[tuple[str, str, list[str]]] = field(default_factory=list)
    #: What each party says (`call.speech`), by target (`at` counting from the call's start).
    speech: dict[str, list[Say]] = field(default_factory=dict)
    #: Media workers run beside the local host (mediavm/local.py) for app-hosted calls: compliance recording.
    media_workers: int = 0


#: The most media workers a scenario may run.
MAX_MEDIA_WORKERS = 8


def load_scenario(path: str | Path) -> Scenario:
    return _build(load_file(path))


def parse_scenario(text: str, file: str = "<scenario>") -> Scenario:
    return _build(load_text(text, file))


class _Reader:
    def __init__(self, doc: Document) -> None:
        self.doc = doc
        self.errors: list[SourceError] = []

    def fail(self, path: PathKey, message: str) -> None:
        self.errors.append(self.doc.error(path, message))

    def mapping(self, value: Any, path: PathKey, allowed: set[str]) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            self.fail(path, "expected a mapping")
            return {}
        for key in value:
            if key not in allowed:
                self.fail((*path, key), f"unknown field; expected one of {', '.join(sorted(allowed))}")
        return value

    def text(self, value: Any, path: PathKey, *, required: bool = True) -> str | None:
        if value is None and not required:
            return None
        if not isinstance(value, str) or not value:
            self.fail(path, "expected text")
            return None
        return value

    def number(self, value: Any, path: PathKey, *, minimum: float = 0.0) -> float | None:
        if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
            self.fail(path, f"expected a number of seconds ≥ {minimum:g}")
            return None
        return float(value)


def _target(reader: _Reader, value: Any, path: PathKey) -> str | None:
    text = reader.text(value, path)
    if text is None:
        return None
    if text.startswith("+") and text[1:].isdigit() and 7 <= len(text) <= 16:
        return text
    if text.partition(":")[0] in ("user", "instance", "app", "guest") and text.partition(":")[2]:
        return text
    reader.fail(path, f"{text!r} is not a party: use +E164, user:<id>, instance:<id>")
    return None


def _build(doc: Document) -> Scenario:
    r = _Reader(doc)
    top = r.mapping(doc.data, (), {"name", "settings", "clock", "callees", "faults", "meetings", "call", "steps",
                                   "media_workers"})
    name = r.text(top.get("name", Path(doc.file).stem), ("name",)) or ""
    settings: dict[str, str] = {}
    for key, value in r.mapping(top.get("settings", {}), ("settings",), set(top.get("settings") or {})).items():
        if not isinstance(value, str | int | float | bool):
            r.fail(("settings", key), "expected a value")
        settings[str(key)] = str(value).lower() if isinstance(value, bool) else str(value)
    workers = top.get("media_workers", 0)
    if isinstance(workers, bool) or not isinstance(workers, int) or not 0 <= workers <= MAX_MEDIA_WORKERS:
        r.fail(("media_workers",), f"expected a whole number of media workers, 0 to {MAX_MEDIA_WORKERS}")
        workers = 0
    clock = top.get("clock", "virtual")
    if clock not in ("virtual", "real"):
        r.fail(("clock",), "expected virtual or real")
    directory = Directory()
    for target, raw_spec in r.mapping(top.get("callees", {}), ("callees",), set(top.get("callees") or {})).items():
        path: PathKey = ("callees", target)
        if _target(r, target, path) is None:
            continue
        spec = r.mapping({"outcome": raw_spec} if isinstance(raw_spec, str) else raw_spec, path, {"outcome", "after"})
        outcome = spec.get("outcome", "answer")
        if outcome not in OUTCOMES:
            r.fail((*path, "outcome"), f"expected one of {', '.join(OUTCOMES)}")
            continue
        after = r.number(spec["after"], (*path, "after")) if "after" in spec else None
        directory.set(target, outcome, after)
    faults = _faults(r, top.get("faults", {}))
    meetings = []
    for index, raw in enumerate(top.get("meetings") or []):
        path = ("meetings", index)
        spec = r.mapping(raw, path, {"thread", "organizer", "attendees"})
        thread = r.text(spec.get("thread"), (*path, "thread"))
        organizer = _target(r, spec.get("organizer"), (*path, "organizer"))
        attendees = [a for i, a in enumerate(spec.get("attendees") or [])
                     if _target(r, a, (*path, "attendees", i))]
        if thread and organizer:
            meetings.append((thread, organizer, attendees))
    call_spec = r.mapping(top.get("call"), ("call",), {"from", "to", "policy_recording", "display_name", "with",
                                                       "speech"})
    source = _target(r, call_spec.get("from"), ("call", "from"))
    to = call_spec.get("to", "bot")
    if to not in ("bot", "app"):
        _target(r, to, ("call", "to"))
    policy = bool(call_spec.get("policy_recording"))
    others: list[str] = []
    raw_others = call_spec.get("with", [])
    if not isinstance(raw_others, list):
        r.fail(("call", "with"), "expected a list of parties")
        raw_others = []
    if raw_others and not policy:
        r.fail(("call", "with"), "the other parties of a policy-recorded call: set policy_recording: true")
    if raw_others and source is not None and not source.startswith("user:"):
        r.fail(("call", "from"), "a policy-recorded party is a Teams user (user:<id>)")
    for index, other in enumerate(raw_others):
        if (party := _target(r, other, ("call", "with", index))) is not None:
            others.append(party)
    speech = {}
    raw_speech = call_spec.get("speech", {})
    for who, raw_items in r.mapping(raw_speech, ("call", "speech"), set(raw_speech or {})).items():
        where: PathKey = ("call", "speech", who)
        if _target(r, who, where) is None:
            continue
        if who != source and who not in others:
            r.fail(where, f"{who} is not in the call (from: or with:)")
        speech[str(who)] = _speech_items(r, raw_items, where)
    steps = _steps(r, top.get("steps"))
    if r.errors:
        raise SourceErrors(r.errors)
    return Scenario(doc.file, name, CallSpec(source or "", str(to), policy, call_spec.get("display_name"),
                                             tuple(others)),
                    steps, settings, clock == "real", directory, faults, meetings, speech, workers)


def _speech_items(r: _Reader, raw: Any, path: PathKey) -> list[Say]:
    if not isinstance(raw, list):
        r.fail(path, "expected a list of things said: {tone: HZ, seconds: S, at: S} or {wav: FILE, at: S}")
        return []
    items = [_say(r, item, (*path, index)) for index, item in enumerate(raw)]
    return [item for item in items if item is not None]


def _say(r: _Reader, raw: Any, path: PathKey, *, extra: frozenset[str] = frozenset()) -> Say | None:
    """One thing said: `{tone: HZ, seconds: S}` or `{wav: FILE}` (mono 16-bit 16 kHz, relative to the
    scenario file), with `at: S` (seconds from when it is given) and `seconds` to cut a clip short."""
    spec = r.mapping(raw, path, {"tone", "wav", "at", "seconds"} | extra)
    if ("tone" in spec) == ("wav" in spec):
        r.fail(path, "say either a tone (tone: HZ) or a clip (wav: FILE)")
        return None
    at = r.number(spec.get("at", 0), (*path, "at"))
    seconds = r.number(spec["seconds"], (*path, "seconds")) if "seconds" in spec else None
    if at is None or ("seconds" in spec and seconds is None):
        return None
    try:
        if "tone" in spec:
            if seconds is None:
                r.fail(path, "a tone needs seconds")
                return None
            frequency = spec["tone"]
            if isinstance(frequency, bool) or not isinstance(frequency, int | float):
                r.fail((*path, "tone"), "expected a frequency in Hz")
                return None
            return tone(float(frequency), seconds=seconds, at=at)
        clip = r.text(spec["wav"], (*path, "wav"))
        if clip is None:
            return None
        folder = Path(r.doc.file).parent if not r.doc.file.startswith("<") else Path()
        return wav(folder / clip, at=at, seconds=seconds)
    except (OSError, ValueError) as exc:
        r.fail(path, str(exc))
        return None


def _faults(r: _Reader, raw: Any) -> Faults:
    faults = Faults()
    spec = r.mapping(raw or {}, ("faults",), {"graph", "notifications"})
    for index, raw_item in enumerate(spec.get("graph") or []):
        path: PathKey = ("faults", "graph", index)
        item = r.mapping(raw_item, path, {"action", "status", "times", "retry_after", "delay"})
        try:
            faults.graph.append(GraphFault(str(item.get("action", "*")), int(item.get("status", 503)),
                                           int(item.get("times", 1)),
                                           float(item["retry_after"]) if "retry_after" in item else None,
                                           float(item.get("delay", 0.0))))
        except (TypeError, ValueError) as exc:
            r.fail(path, str(exc))
    for index, raw_fault in enumerate(spec.get("notifications") or []):
        path = ("faults", "notifications", index)
        fault = r.mapping(raw_fault, path, {"match", "kind", "times", "seconds"})
        kind = fault.get("kind")
        if kind not in NOTIFICATION_FAULTS:
            r.fail((*path, "kind"), f"expected one of {', '.join(NOTIFICATION_FAULTS)}")
            continue
        try:
            faults.notifications.append(NotificationFault(str(fault.get("match", "*")), kind,
                                                          int(fault.get("times", 1)),
                                                          float(fault.get("seconds", 5.0))))
        except (TypeError, ValueError) as exc:
            r.fail(path, str(exc))
    return faults


def _steps(r: _Reader, raw: Any) -> list[Step]:
    if not isinstance(raw, list) or not raw:
        r.fail(("steps",), "expected a list of steps")
        return []
    steps = []
    for index, raw_step in enumerate(raw):
        path: PathKey = ("steps", index)
        line = r.doc.where(path)[0]
        item = {raw_step: None} if isinstance(raw_step, str) else raw_step
        if not isinstance(item, Mapping) or len(item) != 1:
            r.fail(path, f"a step is one of {', '.join(ACTIONS)}")
            continue
        ((action, value),) = item.items()
        if action not in ACTIONS:
            r.fail(path, f"unknown step {action!r}; expected one of {', '.join(ACTIONS)}")
            continue
        args = _step_args(r, action, value, (*path, action))
        if args is not None:
            steps.append(Step(action, args, line, _describe(action, value)))
    return steps


def _step_args(r: _Reader, action: str, value: Any, path: PathKey) -> dict[str, Any] | None:
    if action == "press":
        digits = str(value) if isinstance(value, str | int) else ""
        if not digits or any(d.upper() not in "0123456789*#ABCD" for d in digits):
            r.fail(path, "expected keys to press (0-9, *, #)")
            return None
        return {"digits": digits}
    if action in ("speak", "wait"):
        seconds = r.number(value, path)
        return None if seconds is None else {"seconds": seconds}
    if action in ("silence", "hang_up", "kill_worker"):
        return {}
    if action == "stop_speaking":
        who = _target(r, value, path)
        return None if who is None else {"who": who}
    if action == "say":
        spec = r.mapping(value, path, {"who", "tone", "wav", "at", "seconds"})
        who = _target(r, spec.get("who"), (*path, "who"))
        said = _say(r, {k: v for k, v in spec.items() if k != "who"}, path)
        return None if who is None or said is None else {"who": who, "say": said}
    if action == "join":
        spec = r.mapping({"who": value} if isinstance(value, str) else value, path, {"who", "speech"})
        who = _target(r, spec.get("who"), (*path, "who"))
        joiner_says = _speech_items(r, spec.get("speech", []), (*path, "speech"))
        return None if who is None else {"who": who, "speech": joiner_says}
    if isinstance(value, str):
        value = {value: None}
    if not isinstance(value, Mapping) or not value:
        r.fail(path, f"expected one of {', '.join(EXPECTATIONS)}")
        return None
    kinds = [k for k in value if k in EXPECTATIONS]
    if len(kinds) != 1:
        r.fail(path, f"expect exactly one of {', '.join(EXPECTATIONS)}")
        return None
    kind = kinds[0]
    allowed = ({kind, "within"} | ({"outcome"} if kind in LEG_KINDS else set())
               | ({"until"} if kind == "prompt" else set()))
    spec = r.mapping(value, path, allowed)
    args: dict[str, Any] = {"expect": kind, "value": spec[kind]}
    if "within" in spec:
        args["within"] = r.number(spec["within"], (*path, "within"))
    if "outcome" in spec:
        if spec["outcome"] not in LEG_OUTCOMES:
            r.fail((*path, "outcome"), f"expected one of {', '.join(LEG_OUTCOMES)}")
        args["outcome"] = None if spec["outcome"] == "any" else spec["outcome"]
    if kind in LEG_KINDS and spec[kind] is not None:
        _target(r, spec[kind], (*path, kind))
    if kind == "prompt":
        r.text(spec[kind], (*path, kind))
        if spec.get("until", "end") not in ("start", "end"):
            r.fail((*path, "until"), "expected start (the prompt began) or end (heard to its end, the default)")
        args["to_the_end"] = spec.get("until", "end") == "end"
    if kind == "ended" and spec[kind] is not None:
        r.mapping(spec[kind], (*path, kind), {"code", "subcode"})
    if kind == "recording_status" and spec[kind] not in RECORDING_STATUSES:
        r.fail((*path, kind), f"expected one of {', '.join(RECORDING_STATUSES)}")
    return args


def _describe(action: str, value: Any) -> str:
    if value is None:
        return action.replace("_", " ")
    if isinstance(value, Mapping):
        inner = ", ".join(f"{k} {v}" if v is not None else str(k) for k, v in value.items())
        return f"{action} {inner}"
    return f"{action} {value}"


# -- running -------------------------------------------------------------------------------------


@dataclass
class Outcome:
    passed: bool
    failed_step: Step | None
    message: str
    transcript: str
    transcript_json: list[dict[str, Any]]
    #: Recordings the bot stored (relative paths in its RECORDINGS_DIR) with their sizes.
    stored: list[tuple[str, int]] = field(default_factory=list)


def run_scenario(scenario: Scenario, *, real_time: bool | None = None, settings: Mapping[str, str] | None = None,
                 progress: Callable[[str], None] | None = None, ports: tuple[int, int] = (0, 0)) -> Outcome:
    """Run `scenario` against the bot on the local host; `progress` hears each step as it starts."""
    from simulator.harness import ExpectationFailed, Simulation

    sim = Simulation(settings={**scenario.settings, **(settings or {})},
                     real_time=scenario.real_time if real_time is None else real_time,
                     directory=scenario.directory, faults=scenario.faults, sim_port=ports[0], host_port=ports[1],
                     watchdog=False, media_workers=scenario.media_workers)
    with sim:
        for thread, organizer, attendees in scenario.meetings:
            sim.meeting(thread, organizer, attendees)
        source = scenario.call.source
        to = None if scenario.call.to == "bot" else scenario.call.to
        if scenario.call.policy_recording and source.startswith("user:"):
            call = sim.policy_call(source, scenario.call.others, speech=scenario.speech, to=to,
                                   display_name=scenario.call.display_name)
        else:
            call = sim.dial(from_phone=source if source.startswith("+") else None,
                            from_user=None if source.startswith("+") else source.partition(":")[2],
                            to=to, display_name=scenario.call.display_name,
                            policy_recording=scenario.call.policy_recording)
            for who, said in scenario.speech.items():
                for item in said:
                    call.say(who, item)
        failed: Step | None = None
        message = ""
        for step in scenario.steps:
            if progress is not None:
                progress(f"{scenario.file}:{step.line}: {step}")
            try:
                perform(call, step)
            except ExpectationFailed as exc:
                failed, message = step, f"{scenario.file}:{step.line}: {step}: {str(exc).split(chr(10))[0]}"
                break
        if failed is None:
            sim.wait(0.5)  # the bot stores the last recording after the call's end
        stored = [(str(p.relative_to(sim.recordings_dir)), p.stat().st_size)
                  for p in sorted(sim.recordings_dir.rglob("*.wav"))]
        watchdog = []
        if failed is None and not sim.real_time:  # the watchdog, as for every test (simulator/watchdog.py)
            watchdog = sim.check_calls()
            if watchdog:
                message = f"{scenario.file}: the watchdog found: " + "; ".join(map(str, watchdog))
        transcripts = sim.transcripts()
    text = "\n\n".join(t.render() for t in transcripts)
    data = [t.to_json() for t in transcripts]
    return Outcome(failed is None and not watchdog, failed, message, text, data, stored)


def perform(call: Any, step: Step) -> None:
    """Do one step with a `simulator.harness.CallHandle`; ExpectationFailed when an expectation is not met."""
    args = step.args
    if step.action == "press":
        call.press(args["digits"])
    elif step.action == "speak":
        call.speak(args["seconds"])
    elif step.action == "silence":
        call.stay_silent()
    elif step.action == "wait":
        call.wait(args["seconds"])
    elif step.action == "hang_up":
        call.hang_up()
    elif step.action == "say":
        call.say(args["who"], args["say"])
    elif step.action == "stop_speaking":
        call.stop_speaking(args["who"])
    elif step.action == "join":
        call.participant_joining(args["who"], speech=args["speech"])
    elif step.action == "kill_worker":
        call.kill_worker()
    else:
        _expect(call, args)


def _expect(call: Any, args: Mapping[str, Any]) -> None:
    kind, value = args["expect"], args["value"]
    within = {"within": args["within"]} if args.get("within") is not None else {}
    if kind == "answered":
        call.expect_answered(**within)
    elif kind == "prompt":
        call.expect_prompt(value, to_the_end=args.get("to_the_end", True), **within)
    elif kind in LEG_KINDS:
        outcome = {"outcome": args["outcome"]} if "outcome" in args else {}
        getattr(call, f"expect_{kind}")(value, **outcome, **within)
    elif kind == "recording":
        call.expect_recording(**within)
    elif kind == "ended":
        spec = value or {}
        call.expect_ended(code=spec.get("code"), subcode=spec.get("subcode"), **within)
    elif kind == "state":
        call.expect_state(value, **within)
    elif kind == "media":
        call.expect_media(**within)
    elif kind == "recording_status":
        call.expect_recording_status(value, **within)
