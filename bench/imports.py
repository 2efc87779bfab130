"""(a) Cold import of `function_app` in fresh interpreters, against interpreter start and the SDKs alone.

The host imports function_app on every cold start before it routes a request; the core (calling/) and
msgraph-sdk load on the first invocation and the first Graph request instead. The last two cases measure
that deferred work, so the figure shows where the time went, not only that it left the import.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT_SECONDS = 30.0

# label -> the code run by `python -c`; the app is measured against each baseline in the same run.
CASES: dict[str, str] = {
    "python -c pass": "pass",
    "import azure.functions": "import azure.functions",
    "import azure.durable_functions": "import azure.durable_functions",
    "import function_app": "import function_app",
    "+ the core (first invocation)": "import function_app, calling.webhook, functions.runtime, "
                                     "orchestrations.session_loop",
    "+ msgraph-sdk (first Graph request)": "import function_app, calling.webhook, functions.runtime, "
                                           "orchestrations.session_loop, calling.graph, calling.graphclient, "
                                           "msgraph.graph_service_client",
}
APP = "import function_app"
#: The issue's goal for `import function_app` in a fresh process on the CI machine, median.
GOAL_MS = 400.0
BASELINES = ("python -c pass", "import azure.functions", "import azure.durable_functions")


@dataclass
class ImportTimes:
    runs_s: dict[str, list[float]]
    top_cumulative: list[tuple[str, float, float]]  # (module, self ms, cumulative ms)
    top_self: list[tuple[str, float, float]]

    def min_ms(self, label: str) -> float:
        return min(self.runs_s[label]) * 1000

    def median_ms(self, label: str) -> float:
        return statistics.median(self.runs_s[label]) * 1000

    def as_json(self) -> dict[str, Any]:
        return {
            "cases": {label: {"code": CASES[label], "runs_ms": [r * 1000 for r in runs],
                              "min_ms": self.min_ms(label), "median_ms": self.median_ms(label)}
                      for label, runs in self.runs_s.items()},
            "importtime_top_cumulative": [{"module": m, "self_ms": s, "cumulative_ms": c}
                                          for m, s, c in self.top_cumulative],
            "importtime_top_self": [{"module": m, "self_ms": s, "cumulative_ms": c} for m, s, c in self.top_self],
        }


def _run(code: str, *extra: str) -> tuple[float, str]:
    """Wall time of one fresh `python [extra] -c code` from the repository root, and its stderr."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, *extra, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          timeout=TIMEOUT_SECONDS, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"`python -c {code!r}` failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return elapsed, done.stderr


def importtime_top(code: str, count: int = 10) -> tuple[list[tuple[str, float, float]], list[tuple[str, float, float]]]:
    """`python -X importtime`: the modules with the largest cumulative and self times (ms)."""
    _, stderr = _run(code, "-X", "importtime")
    rows: list[tuple[str, float, float]] = []
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        parts = line[len("import time:"):].split("|")
        if len(parts) != 3 or not parts[0].strip().isdigit():
            continue  # the header line
        rows.append((parts[2].strip(), int(parts[0]) / 1000, int(parts[1]) / 1000))
    by_cumulative = sorted(rows, key=lambda r: r[2], reverse=True)[:count]
    by_self = sorted(rows, key=lambda r: r[1], reverse=True)[:count]
    return by_cumulative, by_self


def measure(iterations: int, budget_s: float) -> ImportTimes:
    """Each case `iterations` times, interleaved (so drift hits all alike), after one unmeasured run each.

    No new round starts once `budget_s` is spent (at least one round always runs).
    """
    stop_at = time.perf_counter() + budget_s
    for code in CASES.values():
        _run(code)  # warm the page cache and the .pyc files
    runs: dict[str, list[float]] = {label: [] for label in CASES}
    for _ in range(iterations):
        for label, code in CASES.items():
            runs[label].append(_run(code)[0])
        if time.perf_counter() > stop_at:
            break
    top_cumulative, top_self = importtime_top(CASES[APP])
    return ImportTimes(runs, top_cumulative, top_self)
