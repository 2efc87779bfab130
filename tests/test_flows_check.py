"""Graph and prompt checks: the mistakes that would strand a caller, reported where they are written."""

from __future__ import annotations

from pathlib import Path

import pytest

from calling.flows.harness import tone_wav, write_flows
from calling.flows.load import load_bundle
from calling.yamlsource import SourceErrors

FLOWS = Path(__file__).resolve().parent.parent / "flows"


def problems(tmp_path: Path, files: dict[str, str], root: str = "flow.yaml") -> list[str]:
    write_flows(tmp_path, files)
    with pytest.raises(SourceErrors) as info:
        load_bundle(tmp_path / root)
    return [str(e).replace(f"{tmp_path}/", "") for e in info.value.errors]


@pytest.mark.parametrize("name", ["main-menu.yaml", "after-hours.yaml", "reminder.yaml"])
def test_the_sample_flows_are_valid(name: str) -> None:
    bundle = load_bundle(FLOWS / name)
    assert bundle.root == name


def test_graph_problems_are_reported_together(tmp_path: Path) -> None:
    text = """nodes:
  welcome:
    type: play
    prompt: hi.wav
    next: menu
  menu:
    type: menu
    prompt: hi.wav
    options:
      1: sales
      2: suport
    on_max_retries: sorry
  sales:
    type: transfer
    target: user:abc
    failed: sorry
  sorry:
    type: play
    prompt: hi.wav
    next: again
  again:
    type: condition
    cases:
      - when: {caller: "+1*"}
        next: sorry
    else: sorry
  orphan:
    type: hangup
"""
    assert problems(tmp_path, {"flow.yaml": text}) == [
        "flow.yaml:11:7: nodes.menu.options.2: no node named 'suport'",
        "flow.yaml:17:3: nodes.sorry: no way out: from here the call can never end or leave the flow (every path "
        "loops back)",
        "flow.yaml:21:3: nodes.again: no way out: from here the call can never end or leave the flow (every path "
        "loops back)",
        "flow.yaml:27:3: nodes.orphan: unreachable: no transition from the start node 'welcome' leads here",
    ]


def test_a_loop_a_silent_caller_cannot_leave_is_an_error(tmp_path: Path) -> None:
    text = """nodes:
  menu:
    type: menu
    prompt: menu.wav
    options: {1: bye, 9: menu}
    on_max_retries: sorry
  sorry:
    type: play
    prompt: sorry.wav
    next: menu
  bye: {type: hangup}
"""
    assert problems(tmp_path, {"flow.yaml": text}) == [
        "flow.yaml:2:3: nodes.menu: a caller who presses nothing would loop forever: menu -> sorry -> menu; every "
        "loop needs a key press",
    ]


def test_a_transfer_retry_loop_is_an_error_too(tmp_path: Path) -> None:
    text = """nodes:
  agent: {type: transfer, target: user:a, failed: hold}
  hold: {type: play, prompt: hold.wav, next: agent}
"""
    assert problems(tmp_path, {"flow.yaml": text}) == [
        "flow.yaml:2:3: nodes.agent: a caller who presses nothing would loop forever: agent -> hold -> agent; every "
        "loop needs a key press",
    ]


def test_prompt_files_are_checked_and_named(tmp_path: Path) -> None:
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "narrow.wav").write_bytes(tone_wav(0.5, rate=8000))
    (tmp_path / "prompts" / "stereo.wav").write_bytes(tone_wav(0.5, channels=2, rate=44100))
    (tmp_path / "prompts" / "eight-bit.wav").write_bytes(tone_wav(0.5, width=1))
    (tmp_path / "prompts" / "song.wav").write_bytes(b"ID3\x03\x00 an mp3 named .wav")
    (tmp_path / "flow.yaml").write_text("""nodes:
  a:
    type: play
    prompt: [prompts/narrow.wav, prompts/stereo.wav, prompts/eight-bit.wav]
    next: b
  b:
    type: play
    prompt: prompts/song.wav
    next: c
  c:
    type: record
    prompt: prompts/missing.wav
    next: d
  d: {type: play, prompt: [prompts/narrow.wav], next: e}
  e: {type: hangup}
""")
    with pytest.raises(SourceErrors) as info:
        load_bundle(tmp_path / "flow.yaml")
    assert [str(e).replace(f"{tmp_path}/", "") for e in info.value.errors] == [
        "flow.yaml:4:14: nodes.a.prompt[0]: prompt prompts/narrow.wav: must be RIFF WAV, PCM, mono, 16-bit, 16 kHz; "
        "it has 8000 Hz",
        "flow.yaml:4:34: nodes.a.prompt[1]: prompt prompts/stereo.wav: must be RIFF WAV, PCM, mono, 16-bit, 16 kHz; "
        "it has 2 channels, 44100 Hz",
        "flow.yaml:4:54: nodes.a.prompt[2]: prompt prompts/eight-bit.wav: must be RIFF WAV, PCM, mono, 16-bit, "
        "16 kHz; it has 8-bit",
        "flow.yaml:8:5: nodes.b.prompt: prompt prompts/song.wav: not a WAV file (no RIFF/WAVE header)",
        "flow.yaml:12:5: nodes.c.prompt: prompt prompts/missing.wav: no such file",
    ]


def test_sub_flow_problems(tmp_path: Path) -> None:
    files = {
        "flow.yaml": "nodes:\n  a: {type: subflow, flow: b.yaml, next: c}\n  c: {type: subflow, flow: nope.yaml, "
                     "next: d}\n  d: {type: hangup}\n",
        "b.yaml": "nodes:\n  x: {type: subflow, flow: flow.yaml, next: y}\n  y: {type: return}\n",
    }
    assert problems(tmp_path, files) == [
        "flow.yaml:3:22: nodes.c.flow: no such flow file: nope.yaml",
        "b.yaml:2:22: nodes.x.flow: sub-flows run each other forever: flow.yaml -> b.yaml -> flow.yaml",
    ]


def test_errors_in_a_sub_flow_name_the_sub_flow_file(tmp_path: Path) -> None:
    files = {
        "flow.yaml": "nodes:\n  a: {type: subflow, flow: parts/b.yaml, next: d}\n  d: {type: hangup}\n",
        "parts/b.yaml": "nodes:\n  x: {type: play, prompt: hi.wav, next: nowhere}\n",
    }
    assert problems(tmp_path, files) == ["parts/b.yaml:2:35: nodes.x.next: no node named 'nowhere'"]


def test_redirect_and_handoff_only_before_the_call_is_answered(tmp_path: Path) -> None:
    ok = """nodes:
  route:
    type: condition
    cases: [{when: {caller: "+1206*"}, next: ring}]
    else: media
  ring: {type: redirect, targets: ["+14255550100"]}
  media: {type: handoff}
"""
    write_flows(tmp_path / "ok", {"flow.yaml": ok})
    load_bundle(tmp_path / "ok" / "flow.yaml")
    late = """nodes:
  hello: {type: play, prompt: hi.wav, next: ring}
  ring: {type: redirect, targets: ["+14255550100"]}
"""
    assert problems(tmp_path, {"flow.yaml": late}) == [
        "flow.yaml:3:3: nodes.ring: redirect works only before the call is answered, but this node can be reached "
        "after media was played or recorded; reach it from the start through hours, condition and subflow nodes",
    ]


def test_a_sub_flow_that_plays_makes_what_follows_answered(tmp_path: Path) -> None:
    files = {
        "flow.yaml": "nodes:\n  a: {type: subflow, flow: b.yaml, next: c}\n  c: {type: handoff}\n",
        "b.yaml": "nodes:\n  x: {type: play, prompt: hi.wav, next: y}\n  y: {type: return}\n",
    }
    assert problems(tmp_path, files)[0].startswith("flow.yaml:3:3: nodes.c: handoff works only before the call")
