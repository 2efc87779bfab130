"""YAML scenarios: the loader's positioned errors, what a valid file reads as, and running scenarios against
the real bot on the local host; plus policy-recording calls through the harness."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import pytest

from calling.yamlsource import SourceErrors
from simulator.directory import Behaviour
from simulator.harness import BotHandle, Simulation
from simulator.scenario import Scenario, load_scenario, parse_scenario, run_scenario

ERROR_LINE = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+):(?P<column>\d+): (?P<field>[^:]+): (?P<message>.+)$")


def _errors(text: str, file: str = "scenario.yaml") -> list[dict[str, str]]:
    with pytest.raises(SourceErrors) as info:
        parse_scenario(text, file)
    lines = str(info.value).splitlines()
    assert len(lines) == len(info.value.errors)
    matches = [ERROR_LINE.match(line) for line in lines]
    assert all(matches), lines
    return [m.groupdict() for m in matches if m]


def _line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def _column_of(text: str, needle: str) -> int:
    line = text.splitlines()[_line_of(text, needle) - 1]
    return line.index(needle) + 1


VALID = """\
name: Support rings out; the caller leaves a voicemail
settings:
  DEFAULT_FLOW: main-menu
  FEATURE_X: true
clock: virtual
callees:
  "+14255550111": {outcome: no_answer, after: 20}
  "user:alice-id": answer
faults:
  graph:
    - {action: answer, status: 429, retry_after: 1, times: 1}
  notifications:
    - {match: established, kind: duplicate}
meetings:
  - {thread: "19:meeting_abc@thread.v2", organizer: "user:org-id", attendees: ["user:a-id"]}
call:
  from: "+14255550100"
  to: bot
  policy_recording: false
steps:
  - expect: answered
  - expect: {prompt: welcome}
  - press: "2"
  - expect: {transfer: "+14255550111", outcome: no_answer}
  - speak: 5
  - expect: recording
  - hang_up
  - expect: {ended: {code: 200, subcode: 540000}, within: 10}
"""


# -- loader errors -----------------------------------------------------------------------------------------


def test_an_unknown_top_level_key_is_reported_where_it_is() -> None:
    text = VALID.replace("clock: virtual", "clock: virtual\nsetings: {}")
    (error,) = _errors(text)
    assert error["file"] == "scenario.yaml"
    assert (int(error["line"]), int(error["column"])) == (_line_of(text, "setings"), 1)
    assert error["field"] == "setings" and "unknown field" in error["message"] and "settings" in error["message"]


@pytest.mark.parametrize("party", ["not-a-party", "14255550100", "+1", "user:", "phone:+14255550100"])
def test_a_bad_party_is_reported(party: str) -> None:
    text = VALID.replace('from: "+14255550100"', f'from: "{party}"')
    (error,) = _errors(text)
    assert int(error["line"]) == _line_of(text, f'from: "{party}"')
    assert error["field"] == "call.from" and "is not a party" in error["message"]


def test_a_bad_callee_outcome_and_a_bad_leg_outcome_are_reported() -> None:
    text = VALID.replace("outcome: no_answer, after: 20", "outcome: maybe, after: 20").replace(
        "outcome: no_answer}", "outcome: sideways}")
    callee, leg = _errors(text)
    assert int(callee["line"]) == _line_of(text, "outcome: maybe")
    assert int(callee["column"]) == _column_of(text, "outcome: maybe")
    assert callee["field"] == "callees.+14255550111.outcome" and "no_answer" in callee["message"]
    assert int(leg["line"]) == _line_of(text, "outcome: sideways")
    assert leg["field"] == "steps[3].expect.outcome" and "answered" in leg["message"]


@pytest.mark.parametrize(("step", "field", "message"), [
    ("- dance: 3", "steps[0]", "unknown step 'dance'"),
    ("- wait: -2", "steps[0].wait", "expected a number of seconds"),
    ("- speak: -1", "steps[0].speak", "expected a number of seconds"),
    ('- press: "1x"', "steps[0].press", "expected keys to press"),
    ('- press: "call me"', "steps[0].press", "expected keys to press"),
    ("- expect: {prompt: welcome, within: -5}", "steps[0].expect.within", "expected a number of seconds"),
    ("- expect: {smile: true}", "steps[0].expect", "expect exactly one of"),
])
def test_a_bad_step_is_reported_at_its_line(step: str, field: str, message: str) -> None:
    text = f'call: {{from: "+14255550100"}}\nsteps:\n  {step}\n'
    (error,) = _errors(text, "steps.yaml")
    assert error["file"] == "steps.yaml" and int(error["line"]) == 3
    assert error["field"] == field and message in error["message"]


def test_every_problem_in_a_file_is_reported_at_once() -> None:
    text = """\
name: many problems
bogus: 1
callees:
  "+14255550111": {outcome: maybe}
  "nobody": answer
call:
  from: "not-a-party"
steps:
  - dance: 3
  - expect: {transfer: "+14255550111", outcome: sideways}
  - wait: -2
  - press: "12x"
"""
    errors = _errors(text, "many.yaml")
    found = {(e["field"], int(e["line"])) for e in errors}
    assert found == {
        ("bogus", 2),
        ("callees.+14255550111.outcome", 4),
        ("callees.nobody", 5),
        ("call.from", 7),
        ("steps[0]", 9),
        ("steps[1].expect.outcome", 10),
        ("steps[2].wait", 11),
        ("steps[3].press", 12),
    }
    assert all(e["file"] == "many.yaml" for e in errors)


def test_a_file_with_errors_names_its_path(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text('call: {from: "+14255550100"}\nsteps:\n  - wait: -1\n', encoding="utf-8")
    with pytest.raises(SourceErrors) as info:
        load_scenario(path)
    assert str(info.value).startswith(f"{path}:3:")


# -- a valid scenario ---------------------------------------------------------------------------------------


def _summary(scenario: Scenario) -> dict[str, object]:
    return {
        "name": scenario.name,
        "settings": scenario.settings,
        "real_time": scenario.real_time,
        "callees": dict(scenario.directory.behaviours),
        "graph_faults": [(f.action, f.status, f.times, f.retry_after) for f in scenario.faults.graph],
        "notification_faults": [(f.match, f.kind, f.times) for f in scenario.faults.notifications],
        "meetings": scenario.meetings,
        "call": scenario.call,
        "steps": [(s.action, dict(s.args), s.line, s.text) for s in scenario.steps],
    }


def test_a_valid_scenario_reads_as_written() -> None:
    scenario = parse_scenario(VALID, "support.yaml")
    summary = _summary(scenario)
    assert summary["name"] == "Support rings out; the caller leaves a voicemail"
    assert summary["settings"] == {"DEFAULT_FLOW": "main-menu", "FEATURE_X": "true"}
    assert summary["real_time"] is False
    assert summary["callees"] == {"+14255550111": Behaviour("no_answer", 20.0), "user:alice-id": Behaviour("answer")}
    assert summary["graph_faults"] == [("answer", 429, 1, 1.0)]
    assert summary["notification_faults"] == [("established", "duplicate", 1)]
    assert summary["meetings"] == [("19:meeting_abc@thread.v2", "user:org-id", ["user:a-id"])]
    assert (scenario.call.source, scenario.call.to, scenario.call.policy_recording) == ("+14255550100", "bot", False)
    steps = scenario.steps
    assert [s.action for s in steps] == ["expect", "expect", "press", "expect", "speak", "expect", "hang_up",
                                         "expect"]
    assert [s.line for s in steps] == [_line_of(VALID, needle) for needle in (
        "expect: answered", "prompt: welcome", 'press: "2"', "transfer:", "speak: 5", "expect: recording",
        "- hang_up", "ended:")]
    assert dict(steps[1].args) == {"expect": "prompt", "value": "welcome", "to_the_end": True}
    assert dict(steps[2].args) == {"digits": "2"}
    assert dict(steps[3].args) == {"expect": "transfer", "value": "+14255550111", "outcome": "no_answer"}
    assert dict(steps[4].args) == {"seconds": 5.0}
    assert dict(steps[7].args) == {"expect": "ended", "value": {"code": 200, "subcode": 540000}, "within": 10.0}
    assert str(steps[0]) == "expect answered" and str(steps[6]) == "hang up"


def test_a_valid_scenario_reads_the_same_from_a_file_and_from_text(tmp_path: Path) -> None:
    path = tmp_path / "support.yaml"
    path.write_text(VALID, encoding="utf-8")
    from_file, from_text = load_scenario(path), parse_scenario(VALID, str(path))
    assert from_file.file == str(path)
    assert _summary(from_file) == _summary(from_text)


def test_the_documented_example_scenario_is_valid() -> None:
    docs = (Path(__file__).parent.parent / "docs" / "testing-flows.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```yaml\n(.*?)```", docs, re.DOTALL)
    scenario_blocks = [b for b in blocks if "steps:" in b]
    assert scenario_blocks
    for block in scenario_blocks:
        scenario = parse_scenario(block, "testing-flows.md")
        assert scenario.steps


# -- running scenarios against the real bot -------------------------------------------------------------------


def test_a_scenario_expecting_the_answer_passes() -> None:
    scenario = parse_scenario("""\
name: the bot answers
call: {from: "+14255550100", to: bot}
steps:
  - expect: answered
  - expect: {state: established}
  - wait: 2
  - hang_up
  - expect: {ended: {code: 200, subcode: 540000}}
""", "answered.yaml")
    heard: list[str] = []
    outcome = run_scenario(scenario, progress=heard.append)
    assert outcome.passed, outcome.message
    assert outcome.failed_step is None and outcome.message == ""
    assert heard[0] == "answered.yaml:4: expect answered" and len(heard) == 5
    assert "[POST answer 202]" in outcome.transcript
    assert "call ended: 200/540000" in outcome.transcript
    (call,) = outcome.transcript_json
    assert any(e["direction"] == "from-bot" and e["summary"].startswith("bot answers") for e in call["entries"])


def test_a_scenario_expecting_a_prompt_that_never_plays_fails_at_its_step() -> None:
    text = """\
name: a prompt that never plays
call: {from: "+14255550100", to: bot}
steps:
  - expect: answered
  - expect: {prompt: never-recorded, within: 120}
  - press: "1"
"""
    scenario = parse_scenario(text, "never.yaml")
    outcome = run_scenario(scenario)
    assert not outcome.passed
    assert outcome.failed_step is scenario.steps[1]
    assert outcome.message.startswith("never.yaml:5: expect prompt never-recorded")
    assert "'never-recorded'" in outcome.message and "\n" not in outcome.message
    assert "caller presses" not in outcome.transcript  # the steps after the failed one did not run


def test_scenario_settings_reach_the_bot(tmp_path: Path) -> None:
    policy = tmp_path / "routing.yaml"
    policy.write_text("rules:\n  - name: everyone\n    action: reject\n    reason: forbidden\n", encoding="utf-8")
    scenario = parse_scenario(f"""\
settings:
  ROUTING_POLICY_PATH: "{policy}"
call: {{from: "+14255550100", to: bot}}
steps:
  - expect: {{ended: {{}}, within: 20}}
""", "rejected.yaml")
    outcome = run_scenario(scenario)
    assert outcome.passed, outcome.message
    assert "[POST reject 202]" in outcome.transcript and "POST answer" not in outcome.transcript


def test_the_transcript_lists_the_incoming_call_before_the_answer(sim: Simulation, bot: BotHandle) -> None:
    """As docs/testing-flows.md shows: a notification's line is written when it is posted, not when the bot's
    response arrives, so what the bot does inside that request (answering) comes after it."""
    call = sim.dial(from_phone="+14255550100", to=bot)
    call.expect_answered()
    summaries = [e.summary for e in call.transcript.entries]
    incoming = next(i for i, s in enumerate(summaries) if s.startswith("incoming call"))
    answer = next(i for i, s in enumerate(summaries) if s.startswith("bot answers"))
    assert incoming < answer


# -- policy-recording calls through the harness -----------------------------------------------------------------


def _requests(call: object, action: str) -> list[dict[str, object]]:
    entries = call.transcript.entries  # type: ignore[attr-defined]
    return [e.detail.get("request") or {} for e in entries
            if e.direction == "from-bot" and f"[POST {action} " in e.summary]


def test_policy_recording_without_a_media_transport_is_rejected_busy(sim: Simulation, bot: BotHandle) -> None:
    call = sim.dial(from_user="recorded-user-id", to=bot, policy_recording=True)
    call.expect_ended(within=5)
    assert _requests(call, "reject") == [{"reason": "busy"}]
    assert _requests(call, "answer") == []
    assert call.call.result_info is not None and call.call.result_info["code"] == 486


class TestWithTheInProcessMediaTransport:
    @pytest.fixture
    def sim_settings(self) -> Mapping[str, str]:
        return {"MEDIA_HANDOFF_TRANSPORT": "inprocess"}

    def test_a_policy_recording_call_is_handed_to_media(self, sim: Simulation, bot: BotHandle) -> None:
        from functions import runtime

        call = sim.dial(from_user="recorded-user-id", to=bot, policy_recording=True)
        sim.wait(1)
        handoff = runtime.get().handoff
        assert handoff is not None
        assert handoff.pending() == 1  # type: ignore[attr-defined]
        message = sim._run(handoff.receive(1))  # type: ignore[attr-defined]
        assert message.call_id == call.id and message.tenant_id == bot.tenant_id
        assert message.decision["action"] == "handoff"
        assert message.notification["resourceData"]["applicationMetadata"]["botData"]["inviteReasons"] == [
            "PolicyBasedRecording"]
        assert _requests(call, "answer") == [] and _requests(call, "reject") == []
        # Nobody in this test plays the media VM, so Teams drops the call at the 5 s deadline.
        call.expect_ended(within=5)
        assert call.call.ended_at is not None and call.call.ended_at < 5.5

    def test_a_participant_joining_is_answered_with_invite_new_bot(self, sim: Simulation, bot: BotHandle) -> None:
        call = sim.dial(from_user="recorded-user-id", to=bot, policy_recording=True)
        response = call.participant_joining("user:joiner-id")
        assert response["status"] == 200
        assert response["body"] == {"@odata.type": "#microsoft.graph.inviteNewBotResponse",
                                    "inviteUri": f"{bot.url}/api/calls"}
        assert any("bot answers the join: 200" in e.summary for e in call.transcript.entries)
