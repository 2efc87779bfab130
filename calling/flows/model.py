"""The flow language as typed, frozen dataclasses: a flow file, its nodes, and how every field is read.

Each field carries a `FieldSpec` (its YAML key, its kind, one line of documentation), so the loader, the
JSON Schema and the diagram all come from this one declaration and cannot drift apart. Values are
plain data (strings, ints, tuples, dates) so a loaded flow is cheap to hold and easy to compare.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any, ClassVar

from calling.flows.speech import Say
from calling.queues import IN_ORDER, ROUTINGS
from calling.yamlsource import PathKey

VERSION = 1
SPEC = "flow_spec"

MAX_PROMPTS = 20  # playPrompt takes 1 to 20 prompts
MAX_REDIRECT_TARGETS = 25  # redirect rings up to 25 targets at once
MAX_INVITE_TARGETS = 5  # invite takes 1 to 5 participants
MAX_QUEUE_AGENTS = 20  # agents a queue rings, one at a time
MAX_DIGITS = 32
KEYS = "0123456789*#"  # the keys a caller can press (Graph's tone0..tone9, star, pound)
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


# --- field kinds: what a value looks like in YAML -------------------------------------------------

@dataclass(frozen=True)
class Text:
    """Free text."""


@dataclass(frozen=True)
class Integer:
    minimum: int
    maximum: int


@dataclass(frozen=True)
class Boolean:
    """true or false."""


@dataclass(frozen=True)
class Choice:
    values: tuple[str, ...]


@dataclass(frozen=True)
class Version:
    """The file format's version: only 1."""


@dataclass(frozen=True)
class NodeRef:
    """The name of another node of the same flow."""


@dataclass(frozen=True)
class Prompt:
    """A WAV file path, relative to the flow file, or `{say: text, voice?, language?}` (calling/flows/speech.py);
    `many`: one prompt or a list of 1 to 20. Loaded, each is a key: a say prompt's is its rendered file's."""

    many: bool = False


@dataclass(frozen=True)
class Target:
    """`+E164`, `user:<object id>` or `instance:<object id>`; `many`: a list of 1 to `max_items`."""

    many: bool = False
    max_items: int = 1


@dataclass(frozen=True)
class Keys:
    """One key (`many` False) or a list of keys, each one of 0-9 * #."""

    many: bool = False


@dataclass(frozen=True)
class Options:
    """Keys pressed (`"1"`, `"42"`, `"*"`) to the node they lead to."""


@dataclass(frozen=True)
class TimeZone:
    """An IANA time zone name, e.g. America/Los_Angeles."""


@dataclass(frozen=True)
class Weekly:
    """Day spec (`mon-fri`, `sat`, `sat,sun`) to time ranges (`"08:30-17:30"` or a list of them)."""


@dataclass(frozen=True)
class Holidays:
    """Dates `YYYY-MM-DD`, ranges `YYYY-MM-DD..YYYY-MM-DD`, or `MM-DD` for every year."""


@dataclass(frozen=True)
class TimeRanges:
    """One time range `"08:30-17:30"` or a list of them."""


@dataclass(frozen=True)
class Days:
    """Days of the week: `mon-fri`, `sat`, `sat,sun`."""


@dataclass(frozen=True)
class Globs:
    """Patterns with `*` (a number prefix, a user id): one or a list."""


@dataclass(frozen=True)
class FlowPath:
    """A sub-flow file, relative to the flow."""


@dataclass(frozen=True)
class Object:
    """A nested mapping read as the dataclass `cls`."""

    cls: type[Any]


@dataclass(frozen=True)
class Items:
    """A list of mappings, each read as the dataclass `cls`."""

    cls: type[Any]
    min_items: int = 1


@dataclass(frozen=True)
class NodeMap:
    """Node names to nodes: the flow's `nodes` mapping."""


Kind = (Text | Integer | Boolean | Choice | Version | NodeRef | Prompt | Target | Keys | Options | TimeZone
        | Weekly | Holidays | TimeRanges | Days | Globs | FlowPath | Object | Items | NodeMap)


@dataclass(frozen=True)
class FieldSpec:
    """How one field is written: `key` in YAML (default: the field name), its kind and documentation.

    `required` None means: required when the dataclass field has no default. `default_doc` explains a
    default that is derived from other fields rather than a constant.
    """

    kind: Kind
    doc: str
    key: str = ""
    required: bool | None = None
    default_doc: str = ""
    nullable: bool = False


def meta(kind: Kind, doc: str, *, key: str = "", required: bool | None = None, default_doc: str = "",
         nullable: bool = False) -> dict[str, Any]:
    return {SPEC: FieldSpec(kind, doc, key, required, default_doc, nullable)}


@dataclass(frozen=True)
class Spec:
    """A field of a model as the flow language sees it."""

    name: str
    key: str
    spec: FieldSpec
    required: bool
    default: Any


def specs(cls: type[Any]) -> tuple[Spec, ...]:
    """The written fields of a model class, in declaration order (fields without a FieldSpec are internal)."""
    out: list[Spec] = []
    for f in dataclasses.fields(cls):
        spec = f.metadata.get(SPEC)
        if not isinstance(spec, FieldSpec):
            continue
        has_default = f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        required = spec.required if spec.required is not None else not has_default
        out.append(Spec(f.name, spec.key or f.name, spec, required, default))
    return tuple(out)


# --- values that are more than a string -----------------------------------------------------------

@dataclass(frozen=True)
class TimeRange:
    """Minutes after local midnight; `end` may be 1440 (24:00). `start > end` runs past midnight."""

    start: int
    end: int
    text: str = field(default="", compare=False)

    def contains(self, minute: int) -> bool:
        if self.start < self.end:
            return self.start <= minute < self.end
        return minute >= self.start or minute < self.end


@dataclass(frozen=True)
class OpenHours:
    """Open on `days` (0 = Monday) during `time`; a range past midnight belongs to the day it starts."""

    days: tuple[int, ...]
    time: TimeRange


@dataclass(frozen=True)
class Holiday:
    """Closed from `first` to `last` inclusive; `annual` compares month and day only."""

    first: date
    last: date
    annual: bool = False

    def contains(self, day: date) -> bool:
        if not self.annual:
            return self.first <= day <= self.last
        return (self.first.month, self.first.day) <= (day.month, day.day) <= (self.last.month, self.last.day)


@dataclass(frozen=True, kw_only=True)
class When:
    """Every condition given must hold; within a list any value may match. Empty matches every call."""

    caller: tuple[str, ...] = field(default=(), metadata=meta(
        Globs(), "The caller: `+E164` number, `user:<id>`, `instance:<id>` or `anonymous`; glob patterns."))
    called: tuple[str, ...] = field(default=(), metadata=meta(
        Globs(), "The number or identity called, in the same form as `caller`; glob patterns."))
    time: tuple[TimeRange, ...] = field(default=(), metadata=meta(
        TimeRanges(), "Local time of day ranges `HH:MM-HH:MM` (a range may run past midnight)."))
    days: tuple[int, ...] = field(default=(), metadata=meta(
        Days(), "Local days: `mon`..`sun`, ranges `mon-fri`, or a list."))


@dataclass(frozen=True, kw_only=True)
class Case:
    when: When = field(metadata=meta(Object(When), "The conditions; all must hold."))
    next: str = field(metadata=meta(NodeRef(), "The node to go to when they hold."))


# --- nodes ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Edge:
    """A transition: `label` (outcome or key), target node, whether it needs the caller to press a key
    (`idle` False), and where it is written (relative to the node)."""

    label: str
    target: str
    idle: bool
    path: PathKey


@dataclass(frozen=True, kw_only=True)
class Node:
    TYPE: ClassVar[str] = ""
    MEDIA: ClassVar[bool] = False  # needs the call established, with service-hosted media
    BEFORE_ANSWER: ClassVar[bool] = False  # Graph can do it only to a call that is not answered yet
    ENDS: ClassVar[bool] = False  # the call leaves the flow here (hang-up, redirect, hand-off)

    id: str = ""  # the node's name (its key under `nodes`), set by the loader
    description: str = field(default="", metadata=meta(Text(), "Free text for readers and diagrams."))

    def edges(self) -> Iterator[Edge]:
        """Every transition out of this node, from its NodeRef, Options and Cases fields."""
        for s in specs(type(self)):
            value = getattr(self, s.name)
            kind = s.spec.kind
            if isinstance(kind, NodeRef) and value:
                yield Edge(s.key, value, True, (s.key,))
            elif isinstance(kind, Options):
                for key, target in value.items():
                    yield Edge(key, target, False, (s.key, key))
            elif isinstance(kind, Items) and kind.cls is Case:
                for i, case in enumerate(value):
                    yield Edge(f"case {i + 1}", case.next, True, (s.key, i, "next"))

    def prompts(self) -> Iterator[tuple[PathKey, str]]:
        """Every prompt this node can play, with where it is written (relative to the node)."""
        for s in specs(type(self)):
            value = getattr(self, s.name)
            if isinstance(s.spec.kind, Prompt) and value:
                if isinstance(value, str):
                    yield (s.key,), value
                else:
                    for i, item in enumerate(value):
                        yield (s.key, i), item


@dataclass(frozen=True, kw_only=True)
class Play(Node):
    """Play one or more prompts, then go on."""

    TYPE = "play"
    MEDIA = True

    prompt: tuple[str, ...] = field(metadata=meta(Prompt(many=True), "The prompts, played in order."))
    next: str = field(metadata=meta(NodeRef(), "The node after the last prompt."))


@dataclass(frozen=True, kw_only=True)
class Menu(Node):
    """Play a prompt and collect keys; the keys pressed choose the next node. Retries are built in."""

    TYPE = "menu"
    MEDIA = True

    prompt: tuple[str, ...] = field(metadata=meta(
        Prompt(many=True), "The prompts of each attempt. A key pressed during them interrupts them (barge_in)."))
    options: Mapping[str, str] = field(metadata=meta(
        Options(), "Keys to press (`1`, `42`, `\"*\"`) to the node each leads to. At least one."))
    on_max_retries: str = field(metadata=meta(NodeRef(), "The node after the last attempt fails."))
    retries: int = field(default=2, metadata=meta(
        Integer(0, 9), "Attempts after the first when the caller presses nothing or a wrong key."))
    no_input_timeout: int = field(default=5, metadata=meta(
        Integer(1, 60), "Seconds to wait for a first key once the prompt has finished."))
    inter_digit_timeout: int = field(default=3, metadata=meta(
        Integer(1, 30), "Seconds to wait for the next key once one was pressed; then the input is complete."))
    min_digits: int = field(default=1, metadata=meta(Integer(1, MAX_DIGITS), "Fewest keys for a valid input."))
    max_digits: int | None = field(default=None, metadata=meta(
        Integer(1, MAX_DIGITS), "Most keys; input is complete when this many are pressed.",
        default_doc="the length of the longest option"))
    terminator: str | None = field(default="#", metadata=meta(
        Keys(), "A key that completes the input early; `null` for none.", nullable=True))
    no_input_prompt: tuple[str, ...] = field(default=(), metadata=meta(
        Prompt(many=True), "Played before the prompt on a retry after no key was pressed."))
    no_match_prompt: tuple[str, ...] = field(default=(), metadata=meta(
        Prompt(many=True), "Played before the prompt on a retry after an input that is not an option."))
    barge_in: bool = field(default=True, metadata=meta(
        Boolean(), "Whether a key pressed during the prompt stops it (false: such keys are ignored)."))

    @property
    def digits_max(self) -> int:
        return self.max_digits or max((len(k) for k in self.options), default=1)


@dataclass(frozen=True, kw_only=True)
class Record(Node):
    """Record the caller (voicemail). The engine asks for the recording to be stored; then go on."""

    TYPE = "record"
    MEDIA = True

    prompt: str | None = field(default=None, metadata=meta(Prompt(), "Played before the beep (one prompt)."))
    beep: bool = field(default=True, metadata=meta(Boolean(), "Whether a beep sounds before recording."))
    max_duration: int = field(default=60, metadata=meta(Integer(1, 120), "Longest recording, in seconds."))
    initial_silence_timeout: int = field(default=5, metadata=meta(
        Integer(1, 120), "Seconds of silence at the start after which recording stops."))
    max_silence_timeout: int = field(default=5, metadata=meta(
        Integer(1, 120), "Seconds of silence after speech after which recording stops."))
    stop_tones: tuple[str, ...] = field(default=("#",), metadata=meta(
        Keys(many=True), "Keys that end the recording."))
    mailbox: str = field(default="", metadata=meta(
        Text(), "Where the recording is filed (a label for storage).", default_doc="the node's name"))
    next: str = field(metadata=meta(NodeRef(), "The node after recording (also when the caller said nothing)."))
    failed: str | None = field(default=None, metadata=meta(
        NodeRef(), "The node when recording failed.", default_doc="`next`"))


@dataclass(frozen=True, kw_only=True)
class Transfer(Node):
    """Transfer the caller. On success the bot leaves the call; otherwise the matching branch runs."""

    TYPE = "transfer"
    MEDIA = True

    target: str = field(metadata=meta(Target(), "`user:<object id>`, `+E164` or `instance:<object id>`."))
    mode: str = field(default="blind", metadata=meta(
        Choice(("blind", "consultative")),
        "`blind`: Graph transfers at once. `consultative`: the bot calls the target first, then transfers."))
    ring_timeout: int = field(default=30, metadata=meta(
        Integer(5, 120), "Seconds the target may ring before the transfer counts as not answered."))
    no_answer: str | None = field(default=None, metadata=meta(
        NodeRef(), "The node when the target does not answer.", default_doc="`failed`"))
    declined: str | None = field(default=None, metadata=meta(
        NodeRef(), "The node when the target declines or is busy.", default_doc="`no_answer`, else `failed`"))
    failed: str = field(metadata=meta(NodeRef(), "The node when the transfer fails for any other reason."))

    def branch(self, outcome: str) -> str:
        if outcome == "declined":
            return self.declined or self.no_answer or self.failed
        if outcome == "no_answer":
            return self.no_answer or self.failed
        return self.failed


@dataclass(frozen=True, kw_only=True)
class Queue(Node):
    """Hold the caller with music and ring agents one at a time; the first to answer gets the call.

    Calls in nodes with the same `queue` name, in any flow, wait in one line and share the agents
    (calling/queues.py). On success the bot leaves the call, as after a transfer."""

    TYPE = "queue"
    MEDIA = True

    agents: tuple[str, ...] = field(metadata=meta(
        Target(many=True, max_items=MAX_QUEUE_AGENTS),
        "1 to 20 agents, in order: Teams users `user:<object id>` (also `+E164`, `instance:<object id>`)."))
    music: str = field(metadata=meta(Prompt(), "Hold music, played again and again while the caller waits."))
    queue: str = field(default="", metadata=meta(
        Text(), "The line's name: callers in nodes with the same name, in any flow, wait in one line.",
        default_doc="the flow's name and the node's, `main-menu/support`"))
    routing: str = field(default=IN_ORDER, metadata=meta(
        Choice(ROUTINGS), "`in_order`: every caller rings the agents from the first. `round_robin`: each "
                          "caller starts after the agent offered the last call."))
    greeting: tuple[str, ...] = field(default=(), metadata=meta(
        Prompt(many=True), "Played once, as the caller joins the line, before the music."))
    positions: tuple[str, ...] = field(default=(), metadata=meta(
        Prompt(many=True), "The caller's place in line: the first prompt is said to the caller next in line, "
                           "the second to the one after, and so on; a caller further back hears none. Said on "
                           "joining and every `announce_every` seconds."))
    announce_every: int = field(default=60, metadata=meta(
        Integer(15, 600), "Seconds between announcements of the caller's place in line."))
    ring_timeout: int = field(default=20, metadata=meta(
        Integer(5, 120), "Seconds an agent may ring before the next one is tried."))
    max_wait: int = field(default=600, metadata=meta(
        Integer(10, 3600), "Longest wait in line, in seconds; then `timeout`."))
    max_callers: int = field(default=20, metadata=meta(
        Integer(1, 200), "Most calls waiting in this line; a caller beyond it goes to `overflow` at once."))
    rounds: int = field(default=2, metadata=meta(
        Integer(1, 10), "Rounds of ringing for one caller without an answer before it goes to `no_agents`. "
                        "A round rings every agent that is free; agents taken by other calls are not waited for."))
    wrap_up: int = field(default=60, metadata=meta(
        Integer(0, 3600), "Seconds after answering a queue call before an agent is rung again (the bot "
                          "leaves the call at the transfer and cannot see when it ends)."))
    timeout: str = field(metadata=meta(NodeRef(), "The node after `max_wait` without an agent."))
    overflow: str | None = field(default=None, metadata=meta(
        NodeRef(), "The node when the line is full (`max_callers`).", default_doc="`timeout`"))
    no_agents: str | None = field(default=None, metadata=meta(
        NodeRef(), "The node when every agent was rung `rounds` times and none answered.",
        default_doc="`timeout`"))


@dataclass(frozen=True, kw_only=True)
class Redirect(Node):
    """Ring other targets instead of the bot (simultaneously). Only before the call is answered."""

    TYPE = "redirect"
    BEFORE_ANSWER = True
    ENDS = True

    targets: tuple[str, ...] = field(metadata=meta(
        Target(many=True, max_items=MAX_REDIRECT_TARGETS), "1 to 25 targets, rung at the same time."))
    timeout: int | None = field(default=None, metadata=meta(
        Integer(15, 90), "Ring time in seconds.", default_doc="Graph's (55 s for one target, 60 s for several)"))


@dataclass(frozen=True, kw_only=True)
class Invite(Node):
    """Invite participants into the call; for group calls and meetings only."""

    TYPE = "invite"
    MEDIA = True

    targets: tuple[str, ...] = field(metadata=meta(
        Target(many=True, max_items=MAX_INVITE_TARGETS), "1 to 5 participants to invite."))
    next: str = field(metadata=meta(NodeRef(), "The node once they were invited."))
    failed: str | None = field(default=None, metadata=meta(
        NodeRef(), "The node when the invitation failed.", default_doc="`next`"))


@dataclass(frozen=True, kw_only=True)
class Hours(Node):
    """Branch on business hours and holidays, in a time zone."""

    TYPE = "hours"

    timezone: str = field(metadata=meta(TimeZone(), "An IANA time zone, such as `Europe/London`."))
    weekly: tuple[OpenHours, ...] = field(metadata=meta(
        Weekly(), "Opening hours: day spec (`mon-fri`, `sat`, `sat,sun`) to `\"HH:MM-HH:MM\"` or a list."))
    holidays: tuple[Holiday, ...] = field(default=(), metadata=meta(
        Holidays(), "Closed days: `YYYY-MM-DD`, `YYYY-MM-DD..YYYY-MM-DD`, or `MM-DD` every year."))
    open: str = field(metadata=meta(NodeRef(), "The node while open."))
    closed: str = field(metadata=meta(NodeRef(), "The node outside opening hours."))
    holiday: str | None = field(default=None, metadata=meta(
        NodeRef(), "The node on a holiday.", default_doc="`closed`"))


@dataclass(frozen=True, kw_only=True)
class Condition(Node):
    """Branch on call facts: caller, number called, local time and day. The first matching case wins."""

    TYPE = "condition"

    timezone: str = field(default="UTC", metadata=meta(TimeZone(), "The time zone of `time` and `days`."))
    cases: tuple[Case, ...] = field(metadata=meta(Items(Case), "Tried in order; each has `when` and `next`."))
    otherwise: str = field(metadata=meta(NodeRef(), "The node when no case matches.", key="else"))


@dataclass(frozen=True, kw_only=True)
class HangUp(Node):
    """End the call."""

    TYPE = "hangup"
    ENDS = True

    reason: str = field(default="completed", metadata=meta(Text(), "Why, for telemetry."))


@dataclass(frozen=True, kw_only=True)
class HandOff(Node):
    """Give the call to app-hosted media (the media VM). Only before the call is answered."""

    TYPE = "handoff"
    BEFORE_ANSWER = True
    ENDS = True

    reason: str = field(default="app_hosted_media", metadata=meta(Text(), "Carried in the hand-off message."))


@dataclass(frozen=True, kw_only=True)
class SubFlow(Node):
    """Run another flow file; when it reaches a `return` node, go on here."""

    TYPE = "subflow"

    flow: str = field(metadata=meta(FlowPath(), "The flow file, relative to this one."))
    next: str = field(metadata=meta(NodeRef(), "The node after the sub-flow returns."))


@dataclass(frozen=True, kw_only=True)
class Return(Node):
    """Go back to the flow that ran this one as a sub-flow; in a flow run on its own, hang up."""

    TYPE = "return"


NODE_TYPES: Mapping[str, type[Node]] = {cls.TYPE: cls for cls in (
    Play, Menu, Record, Transfer, Queue, Redirect, Invite, Hours, Condition, HangUp, HandOff, SubFlow,
    Return)}


# --- flows ----------------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class Flow:
    """One flow file: named nodes and where to start. A flow runs one call."""

    version: int = field(default=VERSION, metadata=meta(Version(), "The flow language version: 1."))
    name: str = field(default="", metadata=meta(Text(), "A name for telemetry.", default_doc="the file name"))
    description: str = field(default="", metadata=meta(Text(), "Free text for readers."))
    start: str = field(default="", metadata=meta(NodeRef(), "The first node.", default_doc="the first node"))
    nodes: Mapping[str, Node] = field(default_factory=dict, metadata=meta(
        NodeMap(), "The nodes by name; each has a `type`.", required=True))

    id: str = ""  # the file's path relative to the bundle's folder: how sub-flow nodes and state name it
    file: str = ""  # the path the file was read from, for messages
    positions: Mapping[PathKey, tuple[int, int]] = field(default_factory=dict, compare=False, repr=False)
    #: The say prompts' keys (their rendered files, `.rendered/say-<digest>.wav`) to what they say.
    says: Mapping[str, Say] = field(default_factory=dict, compare=False, repr=False)

    def where(self, path: PathKey) -> tuple[int, int]:
        """Line and column of `path` in the file (or of its nearest written ancestor)."""
        for cut in range(len(path), -1, -1):
            if path[:cut] in self.positions:
                return self.positions[path[:cut]]
        return (1, 1)


@dataclass(frozen=True)
class PromptFile:
    """A prompt as deployed: `key` is its path relative to the bundle's folder (the URL path too)."""

    key: str
    sha256: str
    duration: float
    size: int


@dataclass(frozen=True)
class Bundle:
    """A flow and every sub-flow it can run, checked together: what the engine runs."""

    root: str
    flows: Mapping[str, Flow]
    prompts: Mapping[str, PromptFile] = field(default_factory=dict)
    folder: str = ""
    #: Each flow file's text by flow id, as loaded: what a call's session carries (calling/flows/snapshot.py).
    sources: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)
    #: A digest of the sources and the prompts' hashes: the same for the same flow, wherever it is loaded.
    version: str = field(default="", compare=False)

    @property
    def flow(self) -> Flow:
        return self.flows[self.root]
