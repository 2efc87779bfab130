"""`python -m simulator`: check and run scenario files as a user would, in a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

PASSING = """\
name: the bot answers
call: {from: "+14255550100", to: bot}
steps:
  - expect: answered
  - wait: 1
  - hang_up
  - expect: {ended: {code: 200, subcode: 540000}}
"""

FAILING = """\
name: a prompt that never plays
call: {from: "+14255550100", to: bot}
steps:
  - expect: answered
  - expect: {prompt: never-recorded, within: 30}
"""

BAD = """\
name: bad
bogus: 1
call: {from: "nobody"}
steps:
  - wait: -1
  - press: "1x"
"""


def simulator(*args: str | Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "simulator", *map(str, args)]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert "Traceback" not in result.stdout + result.stderr
    return result


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    out = {}
    for name, text in (("passing", PASSING), ("failing", FAILING), ("bad", BAD), ("syntax", "steps: [\n")):
        path = tmp_path / f"{name}.yaml"
        path.write_text(text, encoding="utf-8")
        out[name] = path
    return out


def test_check_accepts_good_files(files: dict[str, Path]) -> None:
    result = simulator("check", files["passing"], files["failing"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"{files['passing']}: ok (4 steps)", f"{files['failing']}: ok (2 steps)"]


def test_check_reports_each_problem_on_one_line_and_exits_2(files: dict[str, Path]) -> None:
    result = simulator("check", files["bad"])
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    bad = str(files["bad"])
    assert lines == [
        f"{bad}:2:1: bogus: unknown field; expected one of call, callees, clock, faults, media_workers, meetings, "
        "name, settings, steps",
        f"{bad}:3:8: call.from: 'nobody' is not a party: use +E164, user:<id>, instance:<id>",
        f"{bad}:5:5: steps[0].wait: expected a number of seconds ≥ 0",
        f"{bad}:6:5: steps[1].press: expected keys to press (0-9, *, #)",
    ]


@pytest.mark.parametrize("problem", ["syntax", "missing"])
def test_check_reports_unreadable_files_in_one_line(files: dict[str, Path], tmp_path: Path, problem: str) -> None:
    path = files.get(problem, tmp_path / "missing.yaml")
    result = simulator("check", path)
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"{path}:")


def test_check_reports_the_problems_of_every_file(files: dict[str, Path]) -> None:
    result = simulator("check", files["bad"], files["syntax"])
    assert result.returncode == 2
    assert any(line.startswith(f"{files['syntax']}:") for line in result.stderr.splitlines())


def test_run_a_passing_scenario_prints_its_transcript_and_exits_0(files: dict[str, Path]) -> None:
    result = simulator("run", files["passing"])
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "+14255550100 dials +14255550199" in out
    assert "→ bot   incoming call  [202]" in out and "[POST answer 202]" in out
    assert "call ended: 200/540000" in out
    assert f"PASS {files['passing']}: the bot answers" in out


def test_run_a_failing_scenario_exits_1_naming_the_step(files: dict[str, Path]) -> None:
    result = simulator("run", files["failing"])
    assert result.returncode == 1
    fail = [line for line in result.stdout.splitlines() if line.startswith("FAIL ")]
    assert len(fail) == 1
    assert fail[0].startswith(f"FAIL {files['failing']}:5: expect prompt never-recorded")


def test_run_refuses_a_file_with_errors_with_2(files: dict[str, Path]) -> None:
    result = simulator("run", files["bad"], files["passing"])
    assert result.returncode == 2
    assert "PASS" not in result.stdout and "dials" not in result.stdout


def test_run_json_writes_every_scenarios_transcript(files: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    result = simulator("run", "--json", out, files["passing"], files["failing"])
    assert result.returncode == 1
    data = json.loads(out.read_text(encoding="utf-8"))
    assert [(d["scenario"], d["passed"]) for d in data] == [(str(files["passing"]), True),
                                                            (str(files["failing"]), False)]
    for scenario in data:
        (call,) = scenario["calls"]
        assert call["callId"] and call["title"] == "+14255550100 calls +14255550199"
        assert {"at", "direction", "summary"} <= set(call["entries"][0])
        assert {e["direction"] for e in call["entries"]} >= {"caller", "to-bot", "from-bot"}
    requests = [e for e in data[0]["calls"][0]["entries"] if e["summary"].endswith("[POST answer 202]")]
    assert requests[0]["detail"]["request"]["acceptedModalities"] == ["audio"]


def test_main_in_process(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    from simulator.__main__ import main

    assert main(["check", str(files["passing"])]) == 0
    assert capsys.readouterr().out == f"{files['passing']}: ok (4 steps)\n"
    assert main(["check", str(files["bad"])]) == 2
    assert len(capsys.readouterr().err.splitlines()) == 4
