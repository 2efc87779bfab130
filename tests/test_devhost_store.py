"""Orchestration state on devhost: the same behaviour over each store, and a SQLite file that outlives the host
(a new DevHost over the same file re-arms timers, reruns interrupted activities and keeps finished instances)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import azure.durable_functions as df
import azure.functions as func
import pytest

from devhost import DevHost, MemoryStore, SqliteStore
from devhost.durable.store import Store
from simulator.clock import DEFAULT_EPOCH, VirtualClock

app = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)
runs: list[str] = []
gate: dict[str, asyncio.Event] = {}


@app.activity_trigger(input_name="value")
async def wait_for_gate(value: str) -> str:
    runs.append(value)
    await gate["open"].wait()
    return value.upper()


@app.activity_trigger(input_name="value")
def shout(value: str) -> str:
    return value.upper()


@app.orchestration_trigger(context_name="context")
def nap(context: df.DurableOrchestrationContext) -> Any:
    word = yield context.call_activity("shout", context.get_input())
    yield context.create_timer(context.current_utc_datetime + timedelta(minutes=1))
    return {"word": word, "woke": context.current_utc_datetime.isoformat()}


@app.orchestration_trigger(context_name="context")
def gated(context: df.DurableOrchestrationContext) -> Any:
    result = yield context.call_activity("wait_for_gate", context.get_input())
    return result


def done(host: DevHost, instance_id: str) -> bool:
    return (host.status(instance_id) or {}).get("runtimeStatus") == "Completed"


@pytest.fixture(autouse=True)
def _fresh() -> None:
    runs.clear()
    gate["open"] = asyncio.Event()


@pytest.mark.parametrize("make", [MemoryStore, lambda: SqliteStore(":memory:"), lambda: None],
                         ids=["memory", "sqlite-memory", "default"])
async def test_each_store_runs_an_orchestration(make: Any) -> None:
    clock = VirtualClock()
    store: Store | None = make()
    async with DevHost(app, clock=clock, store=store) as host:
        client = df.DurableOrchestrationClient(host.client_binding())
        await client.start_new("nap", "n-1", "hi")
        await clock.run_until(lambda: done(host, "n-1"), within=120)
        assert host.status("n-1")["output"] == {
            "word": "HI", "woke": (DEFAULT_EPOCH + timedelta(minutes=1)).isoformat()}
        assert [e["EventType"] for e in host.history("n-1")].count("OrchestratorStarted") == 3


async def test_a_sqlite_file_survives_the_host(tmp_path: Path) -> None:
    path = tmp_path / "state" / "durable.sqlite3"
    first_clock = VirtualClock()
    async with DevHost(app, clock=first_clock, store=path) as first:
        client = df.DurableOrchestrationClient(first.client_binding())
        await client.start_new("nap", "finished", "a")
        await client.start_new("nap", "sleeping", "b")
        await first_clock.run_until(lambda: done(first, "finished"), within=120)
        # Start a second nap at t=60 so it is mid-timer when the host stops.
        await client.start_new("nap", "later", "c")
        await first_clock.run_until(lambda: "TimerCreated" in [e["EventType"] for e in first.history("later")],
                                    within=1)
        finished_history = first.history("finished")
    assert path.exists()

    second_clock = VirtualClock(DEFAULT_EPOCH + timedelta(seconds=60))
    async with DevHost(app, clock=second_clock, store=path) as second:
        assert second.status("finished")["output"]["word"] == "A"
        assert second.history("finished") == finished_history
        assert second.status("sleeping")["runtimeStatus"] == "Completed"
        assert second.status("later")["runtimeStatus"] == "Running"
        await second_clock.run_until(lambda: done(second, "later"), within=120)
        assert second_clock.elapsed() == 60
        assert second.status("later")["output"] == {
            "word": "C", "woke": (DEFAULT_EPOCH + timedelta(minutes=2)).isoformat()}


async def test_an_activity_interrupted_by_a_stop_runs_again_on_the_next_host(tmp_path: Path) -> None:
    path = tmp_path / "durable.sqlite3"
    clock = VirtualClock()
    async with DevHost(app, clock=clock, store=path) as first:
        client = df.DurableOrchestrationClient(first.client_binding())
        await client.start_new("gated", "g-1", "again")
        await wait_for(lambda: runs == ["again"])  # the activity is in flight when the host stops
    gate["open"].set()
    async with DevHost(app, clock=clock, store=path) as second:
        await clock.run_until(lambda: done(second, "g-1"), within=1)
        assert second.status("g-1")["output"] == "AGAIN"
        kinds = [e["EventType"] for e in second.history("g-1")]
    assert runs == ["again", "again"], "at least once: the interrupted activity ran again"
    assert kinds.count("TaskScheduled") == 1 and kinds.count("TaskCompleted") == 1


async def wait_for(condition: Any) -> None:
    """Poll on wall time: an activity blocked on the gate holds the virtual clock, as any work in flight does."""
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("not reached within 5 s")


async def test_events_held_in_the_file_are_delivered_by_the_next_host(tmp_path: Path) -> None:
    path = tmp_path / "durable.sqlite3"
    clock = VirtualClock()
    async with DevHost(app, clock=clock, store=path) as first:
        client = df.DurableOrchestrationClient(first.client_binding())
        await client.start_new("gated", "g-2", "held")
        await wait_for(lambda: runs == ["held"])
        await client.suspend("g-2", "hold everything")
        await wait_for(lambda: first.status("g-2")["runtimeStatus"] == "Suspended")
        await client.raise_event("g-2", "note", {"n": 1})
    store = SqliteStore(path)
    try:
        assert [m["event"]["Name"] for _, m in store.messages("g-2")] == ["note"]
    finally:
        store.close()
    gate["open"].set()
    async with DevHost(app, clock=clock, store=path) as second:
        await df.DurableOrchestrationClient(second.client_binding()).resume("g-2", "go on")
        await clock.run_until(lambda: done(second, "g-2"), within=1)
        kinds = [e["EventType"] for e in second.history("g-2")]
    assert kinds.index("ExecutionSuspended") < kinds.index("ExecutionResumed") < kinds.index("EventRaised")
