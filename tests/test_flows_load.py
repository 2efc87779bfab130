"""Reading flow files: what each field becomes, and every mistake as FILE:LINE:COLUMN: field: message."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from calling.flows import model as m
from calling.flows.harness import write_flows
from calling.flows.load import load_bundle, load_flow, parse_flow
from calling.yamlsource import SourceErrors


def errors_of(text: str, file: str = "f.yaml") -> list[str]:
    with pytest.raises(SourceErrors) as info:
        parse_flow(text, file)
    return [str(e) for e in info.value.errors]


def test_a_full_flow_reads_into_typed_nodes() -> None:
    flow = parse_flow("""
version: 1
name: demo
start: hours
nodes:
  hours:
    type: hours
    timezone: Europe/London
    weekly: {mon-fri: ["08:30-12:00", "13:00-17:30"], "sat,sun": "10:00-12:00", fri-mon: "22:00-24:00"}
    holidays: [2026-12-25, "2026-12-31..2027-01-01", "05-01"]
    open: menu
    closed: bye
  menu:
    type: menu
    prompt: [prompts/a.wav, prompts/b.wav]
    options: {1: bye, 01: bye, "*": bye, 100: bye}
    terminator: null
    on_max_retries: bye
  bye: {type: hangup}
""", "flows/demo.yaml")
    hours = flow.nodes["hours"]
    assert isinstance(hours, m.Hours)
    assert [(r.days, r.time.start, r.time.end) for r in hours.weekly] == [
        ((0, 1, 2, 3, 4), 510, 720), ((0, 1, 2, 3, 4), 780, 1050), ((5, 6), 600, 720), ((0, 4, 5, 6), 1320, 1440)]
    assert hours.holidays == (m.Holiday(date(2026, 12, 25), date(2026, 12, 25)),
                              m.Holiday(date(2026, 12, 31), date(2027, 1, 1)),
                              m.Holiday(date(2000, 5, 1), date(2000, 5, 1), annual=True))
    menu = flow.nodes["menu"]
    assert isinstance(menu, m.Menu)
    assert list(menu.options) == ["1", "01", "*", "100"]  # keys keep their digits, as written
    assert menu.digits_max == 3 and menu.terminator is None and menu.retries == 2
    assert menu.prompt == ("prompts/a.wav", "prompts/b.wav")
    assert (flow.name, flow.start, flow.id) == ("demo", "hours", "demo.yaml")


def test_defaults_name_start_and_mailbox() -> None:
    flow = parse_flow("nodes:\n  vm: {type: record, next: bye}\n  bye: {type: hangup}\n", "dir/voicemail.yaml")
    assert (flow.name, flow.start) == ("voicemail", "vm")
    record = flow.nodes["vm"]
    assert isinstance(record, m.Record)
    assert (record.mailbox, record.max_duration, record.stop_tones, record.beep) == ("vm", 60, ("#",), True)


def test_every_structural_error_at_once_with_its_position() -> None:
    text = """version: 2
colour: red
start: welcom
nodes:
  welcome:
    type: play
    prompt: hello.mp3
    next: menu
  menu:
    type: menu
    prompt: menu.wav
    options: {1: sales, 2: nowhere}
    retries: 12
    no_input_timeout: "5"
    on_max_retries: menu
  sales:
    type: transfer
    target: bob
    mode: warm
    failed: menu
  weird:
    type: plya
  untyped:
    next: menu
"""
    assert errors_of(text) == [
        "f.yaml:1:1: version: only version 1 is supported",
        "f.yaml:2:1: colour: unknown key (expected one of description, name, nodes, start, version)",
        "f.yaml:3:1: start: no node named 'welcom' (did you mean 'welcome'?)",
        "f.yaml:7:5: nodes.welcome.prompt: a prompt is the path of a .wav file, relative to the flow file, "
        "or {say: text}, got 'hello.mp3'",
        "f.yaml:13:5: nodes.menu.retries: must be a whole number from 0 to 9",
        "f.yaml:14:5: nodes.menu.no_input_timeout: must be a whole number from 1 to 60",
        "f.yaml:18:5: nodes.sales.target: a target is +E164, user:<object id> or instance:<object id>, got 'bob'",
        "f.yaml:19:5: nodes.sales.mode: must be one of blind, consultative, got 'warm'",
        "f.yaml:22:5: nodes.weird.type: must be one of play, menu, record, transfer, queue, redirect, invite, "
        "hours, condition, hangup, handoff, subflow, return, got 'plya'",
        "f.yaml:23:3: nodes.untyped.type: required: one of play, menu, record, transfer, queue, redirect, invite, "
        "hours, condition, hangup, handoff, subflow, return",
    ]


@pytest.mark.parametrize(("text", "expected"), [
    ("nodes:\n  a: {type: play, next: a}\n", "f.yaml:2:3: nodes.a.prompt: required: the prompts, played in order"),
    ("nodes:\n  a: {type: play, prompt: a.wav, next: b, extra: 1}\n",
     "f.yaml:2:43: nodes.a.extra: unknown key (expected one of description, next, prompt, type)"),
    ("nodes:\n  a: {type: play, prompt: [], next: b}\n",
     "f.yaml:2:19: nodes.a.prompt: must be a prompt (a .wav path or {say: text}) or a list of 1 to 20 of them"),
    ("nodes:\n  a: {type: play, prompt: /abs/a.wav, next: b}\n",
     "f.yaml:2:19: nodes.a.prompt: a prompt path is relative, with /, got '/abs/a.wav'"),
    ("nodes:\n  a: {type: play, prompt: ../../a.wav, next: b}\n",
     "f.yaml:2:19: nodes.a.prompt: the prompt '../../a.wav' is outside the flows folder"),
    ("nodes:\n  a: {type: play, prompt: a.wav, next: 3}\n",
     "f.yaml:2:34: nodes.a.next: must be the name of a node, got 3"),
    ("nodes:\n  a: {type: menu, prompt: a.wav, options: {x: b}, on_max_retries: b}\n",
     "f.yaml:2:44: nodes.a.options.x: an option is 1 to 32 of the keys 0-9 * #, got 'x'"),
    ("nodes:\n  a: {type: menu, prompt: a.wav, options: {12: b}, max_digits: 1, on_max_retries: b}\n",
     "f.yaml:2:44: nodes.a.options.12: '12' can never be entered: inputs are 1 to 1 keys (min_digits, max_digits)"),
    ("nodes:\n  a: {type: menu, prompt: a.wav, options: {'#': b}, on_max_retries: b}\n",
     "f.yaml:2:44: nodes.a.options.#: '#' contains the terminator '#'; set terminator to another key or null"),
    ("nodes:\n  a: {type: menu, prompt: a.wav, options: {1: b}, min_digits: 3, max_digits: 2, on_max_retries: b}\n",
     "f.yaml:2:51: nodes.a.min_digits: is more than max_digits (2)"),
    ("nodes:\n  a: {type: record, stop_tones: [x], next: b}\n",
     "f.yaml:2:34: nodes.a.stop_tones[0]: a key is one of 0-9, \"*\" or \"#\" (quote * and #), got 'x'"),
    ("nodes:\n  a: {type: redirect, targets: []}\n", "f.yaml:2:23: nodes.a.targets: must be a list of 1 to 25 targets"),
    ("nodes:\n  a: {type: redirect, targets: [+14255550100]}\n",
     "f.yaml:2:33: nodes.a.targets[0]: a target is a string like +14255550100 or user:<id>, got 14255550100"),
    ("nodes:\n  a: {type: redirect, targets: ['+1'], timeout: 10}\n",
     "f.yaml:2:40: nodes.a.timeout: must be a whole number from 15 to 90"),
    ("nodes:\n  a: {type: invite, targets: [user:a, user:b, user:c, user:d, user:e, user:f], next: a}\n",
     "f.yaml:2:21: nodes.a.targets: must be a list of 1 to 5 targets"),
    ("nodes:\n  a: {type: hours, timezone: UTC, weekly: {mon: 9:00-17:00x}, open: a, closed: a}\n",
     "f.yaml:2:44: nodes.a.weekly.mon: a time range is \"HH:MM-HH:MM\" with different times (24:00 ends a day), "
     "got '9:00-17:00x'"),
    ("nodes:\n  a: {type: hours, timezone: UTC, weekly: {mon: 9:00}, open: a, closed: a}\n",
     "f.yaml:2:44: nodes.a.weekly.mon: a time range is a quoted string like \"09:00-17:00\", got 540"),
    ("nodes:\n  a: {type: hours, timezone: UTC, weekly: {Mon: '09:00-17:00'}, open: a, closed: a}\n",
     "f.yaml:2:44: nodes.a.weekly.Mon: days are mon, tue, wed, thu, fri, sat, sun, ranges like mon-fri, or lists "
     "like sat,sun, got 'Mon'"),
    ("nodes:\n  a: {type: hours, timezone: Mars/Base, weekly: {mon: '09:00-17:00'}, open: a, closed: a}\n",
     "f.yaml:2:20: nodes.a.timezone: must be an IANA time zone such as Europe/London, got 'Mars/Base'"),
    ("nodes:\n  a: {type: hours, timezone: UTC, weekly: {mon: '09:00-17:00'}, holidays: ['12-31..01-02'], open: a, "
     "closed: a}\n",
     "f.yaml:2:76: nodes.a.holidays[0]: a holiday is YYYY-MM-DD, a range YYYY-MM-DD..YYYY-MM-DD, or MM-DD (every "
     "year), in order and not across the new year, got '12-31..01-02'"),
    ("nodes:\n  a: {type: condition, cases: [{when: {caller: +1425}, next: a}], else: a}\n",
     "f.yaml:2:40: nodes.a.cases[0].when.caller: must be a string or a list of strings (quote +numbers)"),
    ("nodes:\n  a: {type: condition, cases: [{when: {colour: red}, next: a}], else: a}\n",
     "f.yaml:2:40: nodes.a.cases[0].when.colour: unknown key (expected one of called, caller, days, time)"),
    ("nodes:\n  a: {type: condition, cases: [], else: a}\n",
     "f.yaml:2:24: nodes.a.cases: must be a list of at least 1"),
    ("nodes:\n  a: {type: subflow, flow: other.json, next: a}\n",
     "f.yaml:2:22: nodes.a.flow: must be the path of a .yaml flow file, relative to this one, got 'other.json'"),
    ("nodes: {}\n", "f.yaml:1:1: nodes: must map node names to nodes (at least one)"),
    ("nodes:\n  a: hello\n", "f.yaml:2:3: nodes.a: a node is a mapping with a type (play, menu, record, transfer, "
                            "queue, redirect, invite, hours, condition, hangup, handoff, subflow, return)"),
    ("- a\n", "f.yaml:1:1: a flow is a mapping with version, start and nodes"),
    ("", "f.yaml:1:1: a flow is a mapping with version, start and nodes"),
    ("nodes:\n  a: {type: play\n", "f.yaml:3:1: YAML syntax: expected ',' or '}', but got '<stream end>'"),
    ("nodes:\n  a: {type: play}\n  a: {type: hangup}\n", "f.yaml:3:3: nodes.a: duplicate key"),
    ("nodes:\n  a: {type: hours, timezone: UTC, weekly: {mon: '09:00-17:00'}, holidays: [2026-13-01], open: a, "
     "closed: a}\n", "f.yaml:2:76: nodes.a.holidays[0]: cannot read '2026-13-01': month must be in 1..12 "
                     "(quote it to make it a string)"),
])
def test_each_mistake_is_positioned(text: str, expected: str) -> None:
    assert expected in errors_of(text)


def test_unreadable_files_are_positioned_errors(tmp_path: Path) -> None:
    with pytest.raises(SourceErrors, match=r"missing.yaml:1:1: cannot read"):
        load_flow(tmp_path / "missing.yaml")
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("nodes:\n  caf\xe9: {type: hangup}\n".encode("latin-1"))
    with pytest.raises(SourceErrors, match=r"latin.yaml:1:1: cannot read: 'utf-8' codec"):
        load_flow(latin)


def test_bundle_reads_sub_flows_and_prompts_relative_to_each_file(tmp_path: Path) -> None:
    write_flows(tmp_path, {
        "main.yaml": "nodes:\n  s: {type: subflow, flow: parts/greet.yaml, next: bye}\n  bye: {type: hangup}\n",
        "parts/greet.yaml": "nodes:\n  hi: {type: play, prompt: ../prompts/hi.wav, next: r}\n  r: {type: return}\n",
    }, prompt_seconds=0.5)
    bundle = load_bundle(tmp_path / "main.yaml")
    assert list(bundle.flows) == ["main.yaml", "parts/greet.yaml"]
    assert bundle.flows["main.yaml"].nodes["s"] == m.SubFlow(id="s", flow="parts/greet.yaml", next="bye")
    assert list(bundle.prompts) == ["prompts/hi.wav"]
    assert bundle.prompts["prompts/hi.wav"].duration == 0.5
