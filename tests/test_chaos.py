"""The chaos campaign (simulator/chaos.py) in CI: every caller path of the sample flows under every fault
kind the simulator has, seeded and on the virtual clock; the table goes to the terminal and any violation
fails the run. About a minute of wall time, most of it the bot's real-time retry waits."""

from __future__ import annotations

import pytest

from simulator import chaos
from simulator.calls import SimCall
from simulator.transcript import Transcript


def test_every_path_under_every_fault_ends_cleanly(capsys: pytest.CaptureFixture[str]) -> None:
    rows = chaos.run()
    with capsys.disabled():
        print("\n" + chaos.table(rows))
    assert len(rows) == len(chaos.PROFILES) * len(chaos.PATHS)
    assert sum(r.faults for r in rows if r.profile != "none") > 100  # the faults did happen
    assert all(r.faults == 0 for r in rows if r.profile == "none")
    bad = [f"{r.profile} / {r.path}: {'; '.join(r.violations)}" for r in rows if r.violations]
    assert bad == [], "\n".join(bad)


def test_the_judge_sees_an_action_done_twice(tmp_path: object) -> None:
    call = SimCall(id="c1", tenant_id="t", direction="incoming", source={}, targets=[], callback_uri="x",
                   remote="+1", transcript=Transcript("c1"))
    call.answered_at = 0.5
    call.transcript.add(0.0, "to-bot", "incoming call  [202]")
    call.transcript.add(0.1, "from-bot", "bot answers  [POST answer 202]")
    call.transcript.add(0.2, "from-bot", "bot answers  [POST answer 202]")
    call.transcript.add(9.0, "from-bot", "bot hangs up  [DELETE hangUp 204]")
    _, _, violations = chaos.judge(call, __import__("pathlib").Path(str(tmp_path)))
    assert violations == ["2 answers"]
