"""A deployment that changes a flow while calls run it: each running call keeps the flow it started with.

The flow files are replaced between two steps of one call, and the process's flow cache is dropped as a
new worker's would be; the call goes on by the flow it began, and the next call takes the new one. When a
session's flow cannot be rebuilt at all, the bot hangs up rather than leave the caller in silence.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from calling import session as session_module
from calling.flows import load_bundle
from calling.flows.snapshot import restore, snapshot
from calling.session import FlowLibrary
from calling.yamlsource import SourceErrors
from simulator.harness import Simulation

ROOT = Path(__file__).resolve().parent.parent
CALLER = "+14255550123"
OPERATOR = "+14255550100"

#: The "new release" of main-menu: no node of the old menu is left, and 0 now says goodbye.
NEW_MAIN_MENU = """\
version: 1
name: main-menu
start: menu
nodes:
  menu:
    type: menu
    prompt: prompts/main-menu.wav
    options:
      0: bye
    on_max_retries: bye
  bye:
    type: play
    prompt: prompts/goodbye.wav
    next: end
  end:
    type: hangup
"""


def _new_process() -> None:
    """What a fresh worker after the deployment has: no flow loaded yet."""
    session_module._load.cache_clear()
    session_module._PINNED.clear()


@pytest.fixture
def flows(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "flows"
    shutil.copytree(ROOT / "flows", folder)
    _new_process()
    yield folder
    _new_process()


def test_a_call_keeps_its_flow_when_a_deployment_changes_it_between_two_steps(flows: Path) -> None:
    with Simulation(settings={"FLOWS_DIR": str(flows)}) as sim:
        sim.callee(OPERATOR, "answer", after=3)
        first = sim.dial(from_phone=CALLER, to=sim.bot)
        first.expect_prompt("main-menu", to_the_end=False)

        (flows / "main-menu.yaml").write_text(NEW_MAIN_MENU)
        _new_process()

        first.press("0")  # the old flow: 0 is the operator
        first.expect_prompt("connecting")
        first.expect_transfer(to=OPERATOR)
        first.expect_ended(code=0, subcode=7015)
        assert "goodbye" not in [h.name for h in first.heard]

        second = sim.dial(from_phone=CALLER, to=sim.bot)  # a new call runs the new release
        second.expect_prompt("main-menu", to_the_end=False)
        second.press("0")
        second.expect_prompt("goodbye")
        second.expect_ended(code=200, subcode=7000)
        assert "welcome" not in [h.name for h in second.heard]


def test_a_session_whose_flow_cannot_be_rebuilt_is_hung_up_not_left_silent(
        flows: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def unreadable(self: FlowLibrary, name: str, pinned: object) -> None:
        raise SourceErrors([])  # what a deployment whose flow language refuses the old snapshot would raise

    monkeypatch.setattr(FlowLibrary, "pinned", unreadable)
    with Simulation(settings={"FLOWS_DIR": str(flows)}) as sim:
        call = sim.dial(from_phone=CALLER, to=sim.bot)
        call.expect_ended(code=200, subcode=7000)  # the bot's own hang-up
        sim.wait(5)
        status = sim._host.status(call.id)
        assert status is not None and status["runtimeStatus"] == "Completed"
        assert status["output"]["left"] == "hangup"
        hang_ups = [e for e in call.transcript.entries if e.direction == "from-bot" and "DELETE" in e.summary]
        assert len(hang_ups) == 1


def test_the_library_serves_the_files_bundle_while_it_is_unchanged_and_the_snapshot_after(flows: Path) -> None:
    library = FlowLibrary(flows, "https://bot.example.com/api/prompts")
    started = library.bundle("main-menu")
    pinned = json.loads(json.dumps(snapshot(started)))  # as it crosses the orchestration's input
    assert library.pinned("main-menu", pinned) is started

    (flows / "main-menu.yaml").write_text(NEW_MAIN_MENU)
    _new_process()
    assert library.bundle("main-menu").version != started.version
    kept = library.pinned("main-menu", pinned)
    assert kept == started and kept.version == started.version
    assert set(kept.flows["main-menu.yaml"].nodes) == set(started.flows["main-menu.yaml"].nodes)
    assert library.pinned("main-menu", pinned) is kept  # rebuilt once per process and version

    (flows / "main-menu.yaml").unlink()
    _new_process()
    assert library.pinned("main-menu", pinned) == started  # the file is gone; the call still has its flow


def test_a_snapshot_that_does_not_match_its_version_is_refused() -> None:
    bundle = load_bundle(ROOT / "flows" / "main-menu.yaml", folder=ROOT / "flows")
    tampered = snapshot(bundle)
    tampered["sources"] = {**tampered["sources"], "main-menu.yaml": tampered["sources"]["main-menu.yaml"] + "\n# x"}
    with pytest.raises(ValueError, match="does not match its version"):
        restore(tampered)
    with pytest.raises(ValueError, match="not a flow snapshot"):
        restore({"v": 99})
    broken = snapshot(bundle)
    broken["sources"] = {"main-menu.yaml": "version: 1\nstart: nowhere\nnodes: {}\n"}
    with pytest.raises(SourceErrors):
        restore(broken)
