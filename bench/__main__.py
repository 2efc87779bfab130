"""python -m bench [--quick] [--json PATH]: print the figures, each beside a baseline from the same run."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import platform
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench import handoff, imports, ivr, load, queue, recorder, webhook
from bench.stats import fit, fmt, ratio, summary, table


@dataclasses.dataclass(frozen=True)
class Plan:
    import_runs: int
    import_budget_s: float  # no new round of fresh interpreters after this long
    warmup: int
    sequential: int
    concurrent: int
    concurrency: int
    phase_budget_s: float  # no phase starts a new notification after this long
    ivr_presses: int  # presses of 9 in the one measured call per path
    ivr_window: int  # presses in each of the "step 1" and "step N" windows
    ivr_warmup: int  # presses in the unmeasured warm-up call per path
    load_baseline: int  # calls one at a time, the load section's baseline (concurrency 1)
    load_levels: tuple[int, ...]  # simultaneous calls at each load level
    recorder_frames: int  # frames through one recorder per sink
    recorder_calls: int  # recorders fed side by side
    recorder_call_seconds: float  # audio of each of them
    recorder_blob: bool  # also through Blob Storage (Azurite), when it is installed
    handoff_calls: int  # hand-offs to the media worker, and service-hosted answers beside them (one at a time)
    queue_repeats: int  # line operations timed at each size of line


FULL = Plan(import_runs=10, import_budget_s=40.0, warmup=40, sequential=500, concurrent=1000, concurrency=20,
            phase_budget_s=10.0, ivr_presses=520, ivr_window=41, ivr_warmup=20, load_baseline=5,
            load_levels=(50, 100, 200), recorder_frames=100_000, recorder_calls=200, recorder_call_seconds=30.0,
            recorder_blob=True, handoff_calls=200, queue_repeats=400)
QUICK = Plan(import_runs=3, import_budget_s=15.0, warmup=10, sequential=60, concurrent=120, concurrency=20,
             phase_budget_s=4.0, ivr_presses=60, ivr_window=20, ivr_warmup=10, load_baseline=2,
             load_levels=(5, 10), recorder_frames=10_000, recorder_calls=20, recorder_call_seconds=10.0,
             recorder_blob=False, handoff_calls=20, queue_repeats=40)


def report_imports(result: imports.ImportTimes) -> str:
    runs = len(result.runs_s[imports.APP])
    rows = [[label, fmt(result.min_ms(label)), fmt(result.median_ms(label))] for label in imports.CASES]
    out = [table(f"(a) Cold import in a fresh interpreter, {runs} run(s) each, ms", ["command", "min", "median"],
                 rows)]
    app = result.median_ms(imports.APP)
    lines = []
    for base in imports.BASELINES:
        b = result.median_ms(base)
        lines.append([f"import function_app vs {base}", fmt(app), fmt(b), ratio(app, b), fmt(app - b)])
    out.append(table("    medians, ms", ["metric", "app", "baseline", "ratio", "app - baseline"], lines))
    verdict = "met" if app < imports.GOAL_MS else "NOT MET"
    out.append(f"    goal: import function_app under {imports.GOAL_MS:.0f} ms median: {fmt(app)} ms, {verdict}\n"
               "    function_app needs azure.durable_functions (DFApp); the difference is the blueprints and the\n"
               "    settings module. The core and msgraph-sdk load later, on the first invocation and the first\n"
               "    Graph request (the last two cases of the table above).")
    for title, top in (("cumulative", result.top_cumulative), ("self", result.top_self)):
        rows = [[module, fmt(own), fmt(cumulative)] for module, own, cumulative in top]
        out.append(table(f"    python -X importtime -c 'import function_app': top {len(rows)} by {title} time, ms",
                         ["module", "self", "cumulative"], rows))
    return "\n\n".join(out)


def report_webhook(result: webhook.Results, plan: Plan) -> str:
    cold = result.app_cold
    rows: list[list[str]] = [["first notification (cold runtime): to answer, ms", fmt(cold.to_answer_s[0] * 1000),
                              "-", "-"]]
    for name, label in (("sequential", "sequential"), ("concurrent", f"concurrency {plan.concurrency}")):
        app, base = result.app[name], result.baseline[name]
        answer, returned, base_ret = summary(app.to_answer_s), summary(app.to_return_s), summary(base.to_return_s)
        for stat in ("p50", "p99", "mean"):
            a, b = answer[f"{stat}_ms"], base_ret[f"{stat}_ms"]
            rows.append([f"{label}: latency to answer {stat}, ms", fmt(a), fmt(b), ratio(a, b)])
        a, b = returned["p50_ms"], base_ret["p50_ms"]
        rows.append([f"{label}: latency to return p50, ms", fmt(a), fmt(b), ratio(a, b)])
        rows.append([f"{label}: throughput, notifications/s", fmt(app.throughput), fmt(base.throughput),
                     ratio(app.throughput, base.throughput)])
        rows.append([f"{label}: CPU per notification, ms", fmt(app.cpu_ms), fmt(base.cpu_ms),
                     ratio(app.cpu_ms, base.cpu_ms)])
        rows.append([f"{label}: notifications (errors)", f"{len(app.to_return_s)} ({app.errors})",
                     f"{len(base.to_return_s)} ({base.errors})", ""])
    title = ("(b) Webhook: incoming-call notification -> POST /v1.0/communications/calls/{id}/answer at a stub Graph\n"
             "    app      = the registered `calls` function: JWT auth, parse, route, answer through msgraph-sdk\n"
             "    baseline = a handler that parses the JSON body and returns 202 (its latency is to return)")
    notes = []
    truncated = [f"{side} {name}" for side, phases in (("app", result.app), ("baseline", result.baseline))
                 for name, phase in phases.items() if phase.truncated]
    if truncated:
        notes.append(f"    stopped early at the {plan.phase_budget_s:g} s phase budget: {', '.join(truncated)}")
    notes.append(f"    stub: {result.answers} answers received, {result.key_fetches} OpenID configuration "
                 f"fetch(es), {len(result.unexpected_requests)} unexpected request(s)")
    return "\n".join([table(title, ["metric", "app", "baseline", "ratio"], rows), *notes])


def report_ivr(result: ivr.Results) -> str:
    names = {"early": f"step {result.early[0]}", "late": f"step {round(sum(result.late) / 2)}"}
    play_p50: dict[tuple[str, str], float] = {}
    cpu_p50: dict[tuple[str, str], float] = {}
    rows: list[list[str]] = []
    for label, (first, last) in result.windows().items():
        name = f"{names[label]} (presses {first}-{last})"
        host, direct = result.host.window(first, last), result.direct.window(first, last)
        for what, attr in (("tone -> cancelMediaProcessing", "to_first_s"), ("tone -> playPrompt", "to_play_s")):
            a = summary([getattr(p, attr) for p in host])
            b = summary([getattr(p, attr) for p in direct])
            for stat in ("p50", "p99"):
                rows.append([f"{name}: {what} {stat}, ms", fmt(a[f"{stat}_ms"]), fmt(b[f"{stat}_ms"]),
                             ratio(a[f"{stat}_ms"], b[f"{stat}_ms"])])
            play_p50[label, "host"], play_p50[label, "direct"] = a["p50_ms"], b["p50_ms"]
        a, b = summary([p.cpu_s for p in host]), summary([p.cpu_s for p in direct])
        rows.append([f"{name}: tone -> playPrompt, loop thread CPU p50, ms", fmt(a["p50_ms"]), fmt(b["p50_ms"]),
                     ratio(a["p50_ms"], b["p50_ms"])])
        cpu_p50[label, "host"], cpu_p50[label, "direct"] = a["p50_ms"], b["p50_ms"]
        returned = summary([p.to_return_s for p in host if p.to_return_s is not None])
        rows.append([f"{name}: tone -> the bot's HTTP answer p50, ms", fmt(returned["p50_ms"]), "-", ""])
        episodes = summary([p.episodes_s for p in host])
        count = max((p.episodes for p in host), default=0)
        rows.append([f"{name}: in {count} orchestrator episodes p50, ms", fmt(episodes["p50_ms"]), "-", ""])
    for what, p50 in (("tone -> playPrompt p50", play_p50), ("loop thread CPU p50", cpu_p50)):
        rows.append([f"{names['late']} / {names['early']}: {what}", ratio(p50["late", "host"], p50["early", "host"]),
                     ratio(p50["late", "direct"], p50["early", "direct"]), ""])
    title = (f"(c) IVR step: in one call per path the caller presses 9 (repeat the menu) {result.iterations} times, "
             "each during the menu\n"
             "    (barge-in); wall time from the simulator POSTing the tone to it reading the bot's next Graph\n"
             "    requests: cancelMediaProcessing, then playPrompt of the menu again\n"
             "    local host    = POST /api/calls on devhost: auth, parse, raise event; call_session replayed by\n"
             "                    azure-functions-durable; call_action activity; msgraph-sdk -> simulator Graph\n"
             "    engine direct = the same notification in-process: translate, engine step, the call_action\n"
             "                    activity's function called directly, msgraph-sdk -> simulator Graph\n"
             "                    (no webhook, no HTTP to the bot, no Durable)")
    out = [table(title, ["metric", "local host", "engine direct", "ratio"], rows)]
    histories = {label: [p.history for p in result.host.window(first, last) if p.history is not None]
                 for label, (first, last) in result.windows().items()}
    executions = result.executions or 0
    per = f", {result.iterations / executions:.1f} presses each" if executions else ""
    out.append(f"    local host: devhost replay_check off (production-like: one replay per episode); call_session ran "
               f"{executions} executions\n"
               f"      in the measured call (continue-as-new every {result.events_per_execution} engine events{per}); "
               "history replayed at a press:\n      "
               + ", ".join(f"{min(h)}-{max(h)} events at {names[label]}" for label, h in histories.items() if h))
    pairs = [(float(p.history), p.to_play_s * 1000) for p in result.host.presses if p.history is not None]
    line = fit([x for x, _ in pairs], [y for _, y in pairs])
    if line is not None:
        intercept, slope = line
        out.append(f"    local host tone -> playPrompt against the history replayed (least squares over all presses): "
                   f"{fmt(intercept)} ms\n      + {fmt(slope * 100)} ms per 100 events")
    out.append("    loop thread CPU: CPU time of the one thread running the simulator, devhost and the bot, tone to "
               "playPrompt;\n      it equals the wall time unless other processes take the CPU: the path never "
               "waits, it is all work")
    out.append("    the bot's HTTP answer waits for the first orchestrator episode: devhost runs the webhook, the "
               "orchestrator\n      and the simulator on one event loop (the Functions host answers once the event "
               "is queued)")
    first, last = result.late
    if last - first + 1 < 100:
        out.append(f"    {last - first + 1} presses per window: p99 is the window's slowest press")
    requests = ", ".join(f"{count} {action}" for action, count in sorted(result.graph_requests.items()))
    missing = result.host.missing + result.direct.missing
    out.append(f"    measured calls: {requests} received; {missing} press(es) without a playPrompt;\n"
               f"      after a warm-up call of {result.warmup} presses per path; this section took "
               f"{result.wall_s:.1f} s")
    return "\n".join(out)


def report_load(result: load.Results) -> str:
    base, levels = result.baseline, result.levels
    columns = [base, *levels]
    header = ["metric", f"alone, x{base.calls} (baseline)", *(f"{level.concurrency} at once" for level in levels)]

    def ms(values: list[float], stat: str) -> float:
        return summary(values)[f"{stat}_ms"]

    rows: list[list[str]] = [
        ["calls started / completed cleanly", *(f"{c.calls} / {c.clean}" for c in columns)],
        ["notifications posted", *(str(c.posted) for c in columns)],
        ["  answered (incoming) + read by their session", *(str(c.outcomes["answered"] + c.outcomes["read"])
                                                            for c in columns)],
        ["  late (reached a session that had ended)", *(str(c.outcomes["late"]) for c in columns)],
        ["  lost", *(str(c.outcomes["lost"]) for c in columns)],
    ]
    for what, attr, stats in (("answer latency", "answer_s", ("p50", "p99", "max")),
                              ("press -> cancelMediaProcessing", "press_s", ("p50", "p99")),
                              ("notification POST -> the bot's HTTP answer", "post_s", ("p50", "p99"))):
        for stat in stats:
            rows.append([f"{what} {stat}, ms", *(fmt(ms(getattr(c, attr), stat)) for c in columns)])
        for stat in ("p50", "p99"):
            rows.append([f"  {stat} / baseline", "",
                         *(ratio(ms(getattr(c, attr), stat), ms(getattr(base, attr), stat)) for c in levels)])
    rows.append(["dial -> answer max (Teams drops a call at 15 s), ms",
                 *(fmt(ms(c.dial_to_answer_s, "max")) for c in columns)])
    rows.append(["call duration p50 (dial -> transferred), s", *(fmt(ms(c.call_s, "p50") / 1000) for c in columns)])
    rows.append(["  p50 / baseline", "", *(ratio(ms(c.call_s, "p50"), ms(base.call_s, "p50")) for c in levels)])
    rows.append(["incoming calls posted within, ms", "-", *(fmt(c.incoming_spread_s * 1000) for c in levels)])
    rows.append(["wall time, s", *(fmt(c.wall_s) for c in columns)])
    rows.append(["event loop: CPU / idle / neither, % of wall",
                 *(f"{_share(c.cpu_s, c.wall_s)} / {_share(c.idle_s, c.wall_s)} / "
                   f"{_share(None if c.idle_s is None else c.wall_s - c.cpu_s - c.idle_s, c.wall_s)}"
                   for c in columns)])
    rows.append(["machine load average (1 min) at the end", *(fmt(c.load_average) for c in columns)])
    title = (f"(d) Load: N callers dial at once; each call is flows/main-menu.yaml: answered, welcome, the menu, "
             f"{load.SALES_KEY} pressed\n"
             f"    {load.PRESS_AFTER:g} s into it (sales), connecting, the bot rings sales (answers after "
             f"{load.SALES_ANSWERS_AFTER:g} s), consultative transfer; real clock\n"
             "    through the local host (webhook, Durable replay, call_action) against the simulator, all on one "
             "event loop;\n"
             "    baseline = the same call alone, one after another, on the same warm host\n"
             "    answer latency = the simulator POSTs the incoming call -> it reads the bot's answer request")
    out = [table(title, header, rows)]
    broke = result.broke_at()
    if broke is None:
        top = levels[-1].concurrency if levels else 1
        out.append(f"    breaks at: did not break up to {top} simultaneous calls (every call clean, nothing lost, "
                   f"every answer under {load.ANSWER_DEADLINE:g} s)")
    else:
        out.append(f"    breaks at: {broke.concurrency} simultaneous calls: {broke.breaks()}")
        for problem in broke.problems[:5]:
            out.append(f"      {problem}")
        if broke.lost:
            out.append("      lost: " + ", ".join(f"{n} {why}" for why, n in broke.lost.most_common()))
    late = Counter[str]()
    for c in columns:
        late.update(c.late)
    out.append("    a notification is lost unless the bot's answer reached the simulator (incoming call), or the "
               "orchestrator of\n      its session read it (each history replayed again, noting what the loop "
               "reads), or it reached\n      the session after the event that ended it (late: "
               + (", ".join(f"{n} {label}" for label, n in late.most_common()) or "none") + ")")
    unchecked = sum(c.unchecked for c in columns)
    if unchecked:
        out.append(f"    {unchecked} session(s) could not be replayed: their notifications count as read when in "
                   "their history")
    out.append("    event loop: its thread's CPU time, time in select() with nothing ready, and the rest (the "
               "OS ran other\n      processes): with the loop never idle, a level is bound by this one thread; "
               "a large rest means\n      other work on the machine took the CPU and the figures are noisy")
    out.append(f"    after a warm-up call; this section took {result.wall_s:.1f} s")
    return "\n".join(out)


def _share(part: float | None, whole: float) -> str:
    if part is None or whole <= 0:
        return "-"
    return f"{max(part, 0.0) / whole * 100:.0f}"


def load_average() -> tuple[float, float, float] | None:
    try:
        return os.getloadavg()
    except (AttributeError, OSError):  # not on Windows
        return None


def describe_load(when: str, load: tuple[float, float, float] | None) -> str:
    if load is None:
        return ""
    busy = load[0] >= 0.5 * (os.cpu_count() or 1)
    warning = " (other work is running: expect noisy figures)" if busy else ""
    return f"bench: load average {when}: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}{warning}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer iterations (a smoke run)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the results as JSON to PATH")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    started = time.perf_counter()
    load_before = load_average()
    print(f"bench: Python {platform.python_version()} on {platform.platform()}, {os.cpu_count()} CPU(s), "
          f"{'quick' if args.quick else 'full'} run", flush=True)
    if load_before is not None:
        print(describe_load("before", load_before), flush=True)

    import_result = imports.measure(plan.import_runs, plan.import_budget_s)
    print("\n" + report_imports(import_result) + "\n", flush=True)

    hook = asyncio.run(webhook.run(plan.sequential, plan.concurrent, plan.concurrency, plan.warmup,
                                   plan.phase_budget_s))
    print(report_webhook(hook, plan) + "\n", flush=True)

    steps = ivr.run(plan.ivr_presses, plan.ivr_window, plan.ivr_warmup)
    print(report_ivr(steps) + "\n", flush=True)

    calls = load.run(plan.load_baseline, plan.load_levels)
    print(report_load(calls) + "\n", flush=True)

    recording = recorder.measure(plan.recorder_frames, plan.recorder_calls, plan.recorder_call_seconds,
                                 blob=plan.recorder_blob)
    print(recorder.report(recording) + "\n", flush=True)

    handing = handoff.measure(plan.handoff_calls)
    print(handoff.report(handing) + "\n", flush=True)

    line = queue.measure(plan.queue_repeats)
    print(queue.report(line), flush=True)
    elapsed = time.perf_counter() - started
    load_after = load_average()
    print()
    if load_after is not None:
        print(describe_load("after", load_after))
    print(f"bench: done in {elapsed:.1f} s")

    if args.json:
        document: dict[str, Any] = {
            "python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
            "quick": args.quick, "plan": dataclasses.asdict(plan), "elapsed_s": elapsed,
            "load_average": {"before": load_before, "after": load_after},
            "imports": import_result.as_json(), "webhook": hook.as_json(), "ivr": steps.as_json(),
            "load": calls.as_json(), "recorder": recording.as_json(), "handoff": handing.as_json(),
            "queue": line.as_json(),
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(document, indent=2) + "\n")
        print(f"bench: results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
