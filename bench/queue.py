"""(g) A call queue's line (calling/queues.py): what one `queue_line` entity operation costs as the line grows.

Every waiting caller's session asks its line for an agent every 5 s, and Durable runs one line's operations one
at a time, so the operation's cost bounds how many callers one line can hold. Measured as the entity runs it:
the state read from JSON, the operation, the state written back to JSON (`from_json` + `apply` + `to_json`).

- lines: N callers waiting (N = 10, 50, 200) for 20 agents, all taken but the last one; the operation is the
  offer of the caller at the back, the costliest (it walks every caller ahead);
- baseline: the same operation with 1 caller in line, measured in the same run;
- need: N callers x one offer per 5 s; headroom = what one core does / what N callers need.
This is the line's own CPU time in Python: Durable's queueing, storage and the worker's invocation come on top
and are not measured here (they cannot run here; see docs/flows.md, "Cost").

`measure()` returns the figures; `report()` prints them as bench/stats.py tables; `python -m bench.queue`.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.stats import fmt, ratio, table
from calling.queues import IN_ORDER, Line, Taken

AGENTS = [f"user:agent-{i:02d}" for i in range(20)]
LOOK_SECONDS = 5  # a waiting caller's session asks every 5 s (calling/flows/engine.py QUEUE_LOOK)
AT = datetime(2026, 3, 3, 17, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Size:
    callers: int
    op_us: float  # one offer, as the entity runs it (JSON in, apply, JSON out), median
    state_bytes: int
    ops_per_s: float  # one core
    need_per_s: float  # the callers' offers

    @property
    def headroom(self) -> float:
        return self.ops_per_s / self.need_per_s if self.need_per_s else float("inf")


@dataclass(frozen=True)
class Results:
    baseline: Size
    sizes: list[Size]
    repeats: int

    def as_json(self) -> dict[str, Any]:
        return {"baseline": asdict(self.baseline), "sizes": [asdict(s) for s in self.sizes], "repeats": self.repeats}


def _line(callers: int) -> dict[str, Any]:
    """A line's state with `callers` waiting and every agent but the last taken by other calls."""
    line = Line()
    for i in range(callers):  # all asked within the last 20 s: none has lost its place (calling.queues.LEASE)
        line.join(f"call-{i}", AT + timedelta(seconds=20 * i / callers), 1000, 3600, AGENTS)
    for agent in AGENTS[:-1]:
        line.taken[agent] = Taken("elsewhere", "connected", (AT + timedelta(hours=1)).isoformat())
    return line.to_json()


def _time(state: dict[str, Any], callers: int, repeats: int) -> tuple[float, int]:
    text = json.dumps(state)
    data = {"call": f"call-{callers - 1}", "now": (AT + timedelta(seconds=21)).isoformat(),
            "agents": AGENTS, "routing": IN_ORDER, "rounds": 2, "ring": 20}
    runs = []
    out = ""
    for _ in range(repeats):
        started = time.perf_counter()
        line = Line.from_json(json.loads(text))
        line.apply("offer", data)
        out = json.dumps(line.to_json())
        runs.append(time.perf_counter() - started)
    runs.sort()
    return runs[len(runs) // 2] * 1e6, len(out.encode())


def _size(callers: int, repeats: int) -> Size:
    op_us, size = _time(_line(callers), callers, repeats)
    return Size(callers, op_us, size, 1e6 / op_us if op_us else float("inf"), callers / LOOK_SECONDS)


def measure(repeats: int = 400, sizes: tuple[int, ...] = (10, 50, 200)) -> Results:
    _size(1, 20)  # warm-up
    return Results(_size(1, repeats), [_size(n, repeats) for n in sizes], repeats)


def report(result: Results) -> str:
    base = result.baseline
    header = ["callers in line", "offer, us (median)", "vs 1 caller", "state, bytes", "offers/s, one core",
              "needed/s", "headroom"]
    rows = [[str(s.callers), fmt(s.op_us), ratio(s.op_us, base.op_us), str(s.state_bytes), fmt(s.ops_per_s),
             fmt(s.need_per_s), f"{fmt(s.headroom)}x"] for s in [base, *result.sizes]]
    title = (f"(g) Call queue: one queue_line entity operation (JSON state in, the offer of the caller at the back, "
             f"JSON out),\n    {len(AGENTS)} agents, all but one taken; median of {result.repeats}; baseline = 1 "
             f"caller in line; needed = one offer per caller every {LOOK_SECONDS} s")
    return table(title, header, rows) + (
        "\n    the line's own CPU time only: Durable's queueing, storage and the invocation come on top")


if __name__ == "__main__":
    print(report(measure()))
