"""The benchmark still exercises the real incoming-call path (it broke once when answering gained a step), the
IVR step path through the local host and the engine directly, whole calls run side by side (the load section), the
recorder, and the hand-off of a policy-recording call to an in-process media worker that answers it.

No figures are asserted: speed is the benchmark's business, not the tests'."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_quick_benchmark_answers_every_call_times_every_menu_step_and_runs_calls_side_by_side(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = subprocess.run([sys.executable, "-m", "bench", "--quick", "--json", str(out)], cwd=ROOT,
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "0 unexpected request(s)" in result.stdout
    document = json.loads(out.read_text())

    # (c) IVR step: every press of one call per path was timed, both windows have figures on both paths.
    assert "(c) IVR step" in result.stdout
    for row in ("step 1 (presses 1-20): tone -> cancelMediaProcessing p50, ms",
                "step 1 (presses 1-20): tone -> playPrompt p50, ms",
                "step 50 (presses 41-60): tone -> playPrompt p99, ms", "step 50 / step 1: tone -> playPrompt p50"):
        assert row in result.stdout, row
    assert "0 press(es) without a playPrompt" in result.stdout
    ivr = document["ivr"]
    assert ivr["iterations"] == 60 and ivr["replay_check"] is False
    assert ivr["executions"] >= 2  # continue-as-new happened in the measured call
    for path in ("host", "direct"):
        assert len(ivr[path]["presses"]) == 60
        assert all(p["first_action"] == "cancelMediaProcessing" for p in ivr[path]["presses"])
        for window in ("early", "late"):
            figures = ivr[path][window]
            assert figures["to_play"]["n"] == 20
            assert 0 < figures["to_first"]["p50_ms"] <= figures["to_play"]["p50_ms"]
    assert ivr["host"]["late"]["history_max"] < 250

    # (d) Load: every call of every level went through, and every notification has exactly one outcome.
    assert "(d) Load" in result.stdout
    assert "breaks at: did not break up to 10 simultaneous calls" in result.stdout
    calls = document["load"]
    assert calls["clock"] == "real" and calls["broke_at"] is None
    assert [level["concurrency"] for level in calls["levels"]] == [5, 10]
    for level in [calls["baseline"], *calls["levels"]]:
        assert level["calls"] == level["clean"] > 0
        counts = level["notifications"]
        assert counts["lost"] == 0
        assert counts["answered"] == level["calls"]
        assert counts["answered"] + counts["read"] + counts["late"] == counts["posted"]
        assert set(counts["late_by_label"]) <= {"terminated"}  # only the bot's call to sales ending after the caller's
        assert level["answer"]["n"] == level["press"]["n"] == level["calls"]

    # (e) Recorder: every frame fed went through every sink measured, nothing lost, beside its baseline.
    assert "(e) Compliance recorder" in result.stdout
    recording = document["recorder"]
    assert recording["baseline"]["frames"] == 10_000
    for run in recording["recorder"].values():
        assert run["frames"] == 10_000 and run["lost_frames"] == 0 and run["failures"] == 0
    for run in recording["concurrent"].values():
        assert run["frames"] == 20 * 10 * 50 and run["lost_frames"] == 0 and run["failures"] == 0
    assert set(recording["recorder"]) >= {"discard", "folder"}

    # (f) Hand-off latency: every policy-recording invite was handed off and answered by the media worker (its
    # app-hosted answer reached Graph), none rejected or answered by a fallback; the baseline answered every call.
    assert "(f) Hand-off latency" in result.stdout
    assert "handed-off calls: 20 answered by the worker; baseline: 20 answered" in result.stdout
    handing = document["handoff"]
    assert handing["calls"] == 20 and handing["truncated"] is False
    handed, base = handing["handed_off"], handing["baseline"]
    assert handed["calls"] == base["calls"] == 20 and handed["errors"] == base["errors"] == 0
    assert handed["outcomes"] == {"answered by the worker": 20} and base["outcomes"] == {"answered": 20}
    for figures in (handed["to_answer"], handed["to_taken"], handed["taken_to_answer"], handed["to_return"],
                    base["to_answer"], base["to_return"]):
        assert figures["n"] == 20
        assert 0 < figures["min_ms"] <= figures["p50_ms"] <= figures["p99_ms"] <= figures["max_ms"]
    assert handed["to_taken"]["p50_ms"] < handed["to_answer"]["p50_ms"]  # taken before it answered, each call
    worker = handing["worker"]
    assert worker["taken"] == handing["worker_ended"] == 20 + handing["warmup"] and worker["live"] == 0
    assert worker["dropped"] == worker["failed"] == worker["unsupported"] == 0
    assert handing["stub"]["unexpected_requests"] == []
    assert handing["stub"]["sessions_started"] == 20 + handing["warmup"]  # one per service-hosted answer

    # (g) Call queue: the line's operation was timed at each size, beside its one-caller baseline.
    assert "(g) Call queue" in result.stdout
    line = document["queue"]
    assert line["repeats"] == 40 and [s["callers"] for s in line["sizes"]] == [10, 50, 200]
    for size in [line["baseline"], *line["sizes"]]:
        assert size["op_us"] > 0 and size["state_bytes"] > 0 and size["need_per_s"] == size["callers"] / 5
    assert line["sizes"][-1]["state_bytes"] > line["sizes"][0]["state_bytes"]  # every caller is in the state
