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
from pathlib import Path
from typing import Any

from bench import imports, webhook
from bench.stats import fmt, ratio, summary, table


@dataclasses.dataclass(frozen=True)
class Plan:
    import_runs: int
    import_budget_s: float  # no new round of fresh interpreters after this long
    warmup: int
    sequential: int
    concurrent: int
    concurrency: int
    phase_budget_s: float  # no phase starts a new notification after this long


FULL = Plan(import_runs=10, import_budget_s=40.0, warmup=40, sequential=500, concurrent=1000, concurrency=20,
            phase_budget_s=10.0)
QUICK = Plan(import_runs=3, import_budget_s=15.0, warmup=10, sequential=60, concurrent=120, concurrency=20,
             phase_budget_s=4.0)


def report_imports(result: imports.ImportTimes) -> str:
    runs = len(result.runs_s[imports.APP])
    rows = [[label, fmt(result.min_ms(label)), fmt(result.median_ms(label))] for label in imports.CASES]
    out = [table(f"(a) Cold import in a fresh interpreter, {runs} run(s) each, ms", ["command", "min", "median"],
                 rows)]
    app = result.median_ms(imports.APP)
    lines = []
    for base in [label for label in imports.CASES if label != imports.APP]:
        b = result.median_ms(base)
        lines.append([f"import function_app vs {base}", fmt(app), fmt(b), ratio(app, b), fmt(app - b)])
    out.append(table("    medians, ms", ["metric", "app", "baseline", "ratio", "app - baseline"], lines))
    out.append("    function_app needs azure.durable_functions (DFApp); the last difference is the app's own code\n"
               "    and what only it pulls in (msgraph-sdk, kiota, httpx, PyJWT, cryptography, PyYAML)")
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
    print(report_webhook(hook, plan), flush=True)
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
            "imports": import_result.as_json(), "webhook": hook.as_json(),
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(document, indent=2) + "\n")
        print(f"bench: results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
