"""`python -m calling.flows`: check, render, schema; positioned errors and never a traceback."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from calling.flows.__main__ import main
from calling.flows.harness import write_flows
from calling.flows.schema import schema_text

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = sorted(str(p) for p in (ROOT / "flows").glob("*.yaml"))


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def test_check_passes_the_sample_flows() -> None:
    code, out, err = run("check", *SAMPLES)
    assert (code, err) == (0, "")
    assert [line.split(": ")[1].split(" ")[0] for line in out.splitlines()] == ["ok"] * len(SAMPLES)
    assert "main-menu.yaml: ok (19 nodes, 1 sub-flow(s), 11 prompts" in out


def test_check_prints_one_line_per_error_and_fails(tmp_path: Path) -> None:
    write_flows(tmp_path, {"bad.yaml": "nodes:\n  a: {type: play, prompt: a.wav, next: b}\n  c: {type: hangup}\n",
                           "good.yaml": "nodes:\n  a: {type: hangup}\n"})
    code, out, err = run("check", str(tmp_path / "bad.yaml"), str(tmp_path / "good.yaml"))
    assert code == 1
    assert err.splitlines() == [
        f"{tmp_path}/bad.yaml:2:34: nodes.a.next: no node named 'b'",
        f"{tmp_path}/bad.yaml:3:3: nodes.c: unreachable: no transition from the start node 'a' leads here",
    ]
    assert out == f"{tmp_path}/good.yaml: ok (1 nodes, 0 prompts, 0.0 s of audio)\n"


@pytest.mark.parametrize(("content", "message"), [
    (None, "missing.yaml:1:1: cannot read: [Errno 2] No such file or directory"),
    (b"nodes: [unclosed\n", "missing.yaml:2:1: YAML syntax: expected ',' or ']', but got '<stream end>'"),
    ("nodes:\n  caf\xe9: {type: hangup}\n".encode("latin-1"), "missing.yaml:1:1: cannot read: 'utf-8' codec can't "
                                                              "decode byte 0xe9"),
    (b"\x00\x01\x02 binary", "missing.yaml:1:1: YAML syntax: unacceptable character #x0000: special characters "
                                "are not allowed"),
])
def test_unreadable_input_is_a_positioned_error_not_a_traceback(tmp_path: Path, content: bytes | None,
                                                                message: str) -> None:
    path = tmp_path / "missing.yaml"
    if content is not None:
        path.write_bytes(content)
    code, out, err = run("check", str(path))
    assert code == 1 and out == ""
    assert err.startswith(f"{tmp_path}/{message}")
    assert "Traceback" not in err


def test_a_directory_is_an_error_too(tmp_path: Path) -> None:
    code, _, err = run("check", str(tmp_path))
    assert code == 1 and err.startswith(f"{tmp_path}:1:1: cannot read:")


def test_an_unexpected_failure_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_: object, **__: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr("calling.flows.load.load_bundle", broken)
    assert run("check", SAMPLES[0]) == (2, "", "internal error: RuntimeError: boom\n")


def test_render_prints_a_mermaid_flowchart() -> None:
    code, out, _ = run("render", str(ROOT / "flows" / "main-menu.yaml"))
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "flowchart TD"
    assert lines[1] == '    start(("start")) --> n0'
    assert '    n2{{"main-menu<br/><i>menu</i><br/>prompts/main-menu.wav"}}' in lines
    assert '    n2 -- "0 / on_max_retries" --> n5' in lines
    assert '    n2 -- "9" --> n2' in lines
    assert '    n7 -- "no_answer / declined / failed" --> n10' in lines  # support falls back to voicemail
    assert '    n0 -- "closed / holiday" --> n12' in lines


def test_render_of_a_broken_file_prints_its_errors(tmp_path: Path) -> None:
    (tmp_path / "f.yaml").write_text("nodes:\n  a: {type: nope}\n")
    code, out, err = run("render", str(tmp_path / "f.yaml"))
    assert (code, out) == (1, "")
    assert err.startswith(f"{tmp_path}/f.yaml:2:7: nodes.a.type: must be one of")


def test_schema_prints_the_json_schema() -> None:
    code, out, _ = run("schema")
    assert code == 0 and out == schema_text()
    assert json.loads(out)["title"] == "IVR flow"


def python(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                          check=False)


def test_the_module_runs_as_a_program(tmp_path: Path) -> None:
    ok = python("-m", "calling.flows", "check", *SAMPLES)
    assert ok.returncode == 0, ok.stderr
    (tmp_path / "bad.yaml").write_text("version: 3\nnodes:\n  a: {type: hangup}\n")
    bad = python("-m", "calling.flows", "check", str(tmp_path / "bad.yaml"))
    assert bad.returncode == 1
    assert bad.stderr == f"{tmp_path}/bad.yaml:1:1: version: only version 1 is supported\n"
    usage = python("-m", "calling.flows")
    assert usage.returncode == 2 and "usage:" in usage.stderr and "Traceback" not in usage.stderr


def test_folder_sets_where_keys_are_relative_to(tmp_path: Path) -> None:
    code, out, _ = run("check", "--folder", str(ROOT), str(ROOT / "flows" / "reminder.yaml"))
    assert code == 0 and "6 prompts" in out
    (tmp_path / "elsewhere.yaml").write_text("nodes:\n  a: {type: hangup}\n")
    code, _, err = run("check", "--folder", str(ROOT / "flows"), str(tmp_path / "elsewhere.yaml"))
    assert code == 1 and err == f"{tmp_path}/elsewhere.yaml:1:1: is outside the flows folder {ROOT / 'flows'}\n"
