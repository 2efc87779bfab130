"""Orchestrations on devhost, driven through the real DurableOrchestrationClient and the SDK's replay engine.

A test-only DFApp holds small orchestrators and activities; time is a VirtualClock, so timers and retry
delays take no wall time and land on exact instants. Assertions are on outputs, statuses and histories.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import typing
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any

import azure.durable_functions as df
import azure.functions as func
import pytest

from devhost import DevHost
from simulator.clock import DEFAULT_EPOCH, VirtualClock
from tests.durable_waits import finished

app = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)
calls: dict[str, int] = {}


@app.activity_trigger(input_name="value")
def double(value: int) -> int:
    return value * 2


@app.activity_trigger(input_name="name")
async def greet(name: str) -> str:
    await asyncio.sleep(0)
    return f"hello {name}"


@app.activity_trigger(input_name="payload")
def flaky(payload: typing.Mapping[str, Any]) -> str:  # the worker refuses dict[str, Any] (devhost/signatures.py)
    calls[payload["key"]] = calls.get(payload["key"], 0) + 1
    if calls[payload["key"]] <= payload["failures"]:
        raise ValueError(f"attempt {calls[payload['key']]} failed")
    return f"ok after {calls[payload['key']]}"


@app.activity_trigger(input_name="message")
def boom(message: str) -> None:
    raise RuntimeError(message)


@app.orchestration_trigger(context_name="context")
def sequence(context: df.DurableOrchestrationContext) -> Any:
    first = yield context.call_activity("double", context.get_input())
    second = yield context.call_activity("greet", str(first))
    return [first, second]


@app.orchestration_trigger(context_name="context")
def fan_out(context: df.DurableOrchestrationContext) -> Any:
    results = yield context.task_all([context.call_activity("double", n) for n in context.get_input()])
    return results


@app.orchestration_trigger(context_name="context")
def sleeper(context: df.DurableOrchestrationContext) -> Any:
    yield context.create_timer(context.current_utc_datetime + timedelta(seconds=context.get_input()))
    return context.current_utc_datetime.isoformat()


@app.orchestration_trigger(context_name="context")
def approval(context: df.DurableOrchestrationContext) -> Any:
    context.set_custom_status("waiting for approval")
    timeout = context.create_timer(context.current_utc_datetime + timedelta(seconds=30))
    answer = context.wait_for_external_event("approval")
    winner = yield context.task_any([answer, timeout])
    if winner == answer:
        timeout.cancel()
        return {"approved": answer.result, "at": context.current_utc_datetime.isoformat()}
    return {"approved": None, "at": context.current_utc_datetime.isoformat()}


@app.orchestration_trigger(context_name="context")
def busy_then_wait(context: df.DurableOrchestrationContext) -> Any:
    yield context.call_activity("double", 1)
    yield context.create_timer(context.current_utc_datetime + timedelta(seconds=10))
    event = yield context.wait_for_external_event("go")
    return event


@app.orchestration_trigger(context_name="context")
def collector(context: df.DurableOrchestrationContext) -> Any:
    items = []
    for _ in range(context.get_input()):
        item = yield context.wait_for_external_event("item")
        items.append(item)
    return items


@app.orchestration_trigger(context_name="context")
def retrying(context: df.DurableOrchestrationContext) -> Any:
    options = df.RetryOptions(first_retry_interval_in_milliseconds=5000, max_number_of_attempts=3)
    try:
        result = yield context.call_activity_with_retry("flaky", options, context.get_input())
    except Exception as exc:
        return {"error": str(exc).splitlines()[0].strip()}
    return {"result": result, "at": context.current_utc_datetime.isoformat()}


@app.orchestration_trigger(context_name="context")
def retry_among_others(context: df.DurableOrchestrationContext) -> Any:
    options = df.RetryOptions(first_retry_interval_in_milliseconds=1000, max_number_of_attempts=2)
    results = yield context.task_all([context.call_activity_with_retry("flaky", options, context.get_input()),
                                      context.call_activity("double", 4)])
    after = yield context.call_activity("double", 5)
    return [*results, after]


@app.orchestration_trigger(context_name="context")
def catches(context: df.DurableOrchestrationContext) -> Any:
    try:
        yield context.call_activity("boom", "kaput")
    except Exception as exc:
        return str(exc).splitlines()[0].strip()
    return "not reached"


@app.orchestration_trigger(context_name="context")
def failing(context: df.DurableOrchestrationContext) -> Any:
    yield context.call_activity("double", 1)
    raise ValueError("bad input")


@app.orchestration_trigger(context_name="context")
def counter(context: df.DurableOrchestrationContext) -> Any:
    count = context.get_input()
    yield context.wait_for_external_event("tick")
    if count >= 2:
        return count + 1
    context.continue_as_new(count + 1)
    return None


@app.orchestration_trigger(context_name="context")
def child(context: df.DurableOrchestrationContext) -> Any:
    value = yield context.call_activity("double", context.get_input())
    if value < 0:
        raise ValueError(f"negative: {value}")
    return {"child": context.instance_id, "parent": context.parent_instance_id, "value": value}


@app.orchestration_trigger(context_name="context")
def parent(context: df.DurableOrchestrationContext) -> Any:
    named = yield context.call_sub_orchestrator("child", 5, "child-of-" + context.instance_id)
    generated = yield context.call_sub_orchestrator("child", 7)
    try:
        yield context.call_sub_orchestrator("child", -1)
    except Exception as exc:
        return [named, generated, str(exc).splitlines()[0].strip()]
    return [named, generated, None]


@app.orchestration_trigger(context_name="context")
def flaky_child(context: df.DurableOrchestrationContext) -> Any:
    result = yield context.call_activity("flaky", context.get_input())
    return result


@app.orchestration_trigger(context_name="context")
def parent_with_retry(context: df.DurableOrchestrationContext) -> Any:
    options = df.RetryOptions(first_retry_interval_in_milliseconds=2000, max_number_of_attempts=2)
    result = yield context.call_sub_orchestrator_with_retry("flaky_child", options, context.get_input())
    return result


flip = itertools.count()


@app.orchestration_trigger(context_name="context")
def nondeterministic(context: df.DurableOrchestrationContext) -> Any:
    name = "double" if next(flip) % 2 == 0 else "greet"  # global state: differs between replays
    result = yield context.call_activity(name, 1)
    return result


@app.orchestration_trigger(context_name="context")
def random_input(context: df.DurableOrchestrationContext) -> Any:
    result = yield context.call_activity("greet", str(uuid.uuid4()))  # should be context.new_uuid()
    return result


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture(autouse=True)
def _reset_calls() -> Iterator[None]:
    calls.clear()
    yield
    calls.clear()


@pytest.fixture
async def host(clock: VirtualClock) -> AsyncIterator[DevHost]:
    async with DevHost(app, clock=clock) as dev:
        yield dev


@pytest.fixture
def client(host: DevHost) -> df.DurableOrchestrationClient:
    return df.DurableOrchestrationClient(host.client_binding())




def kinds(host: DevHost, instance_id: str) -> list[str]:
    return [e["EventType"] for e in host.history(instance_id)]


async def test_activities_run_in_order_and_history_has_the_extension_shape(
        clock: VirtualClock, host: DevHost, client: df.DurableOrchestrationClient) -> None:
    instance_id = await client.start_new("sequence", "seq-1", 21)
    assert instance_id == "seq-1"
    status = await finished(clock, host, "seq-1")
    assert status["runtimeStatus"] == "Completed"
    assert status["output"] == [42, "hello 42"]
    assert kinds(host, "seq-1") == [
        "OrchestratorStarted", "ExecutionStarted", "TaskScheduled", "OrchestratorCompleted",
        "OrchestratorStarted", "TaskCompleted", "TaskScheduled", "OrchestratorCompleted",
        "OrchestratorStarted", "TaskCompleted", "ExecutionCompleted", "OrchestratorCompleted"]
    events = host.history("seq-1")
    scheduled = [e for e in events if e["EventType"] == "TaskScheduled"]
    assert [(e["EventId"], e["Name"]) for e in scheduled] == [(0, "double"), (1, "greet")]
    completed = [e for e in events if e["EventType"] == "TaskCompleted"]
    assert [(e["TaskScheduledId"], json.loads(e["Result"])) for e in completed] == [(0, 42), (1, "hello 42")]
    assert events[1]["Name"] == "sequence"
    assert events[1]["OrchestrationInstance"]["InstanceId"] == "seq-1"


async def test_task_all_fans_out_with_sequence_numbers_in_order(
        clock: VirtualClock, host: DevHost, client: df.DurableOrchestrationClient) -> None:
    await client.start_new("fan_out", "fan-1", [1, 2, 3])
    status = await finished(clock, host, "fan-1")
    assert status["output"] == [2, 4, 6]
    scheduled = [(e["EventId"], json.loads(json.loads(e["Input"]))) for e in host.history("fan-1")
                 if e["EventType"] == "TaskScheduled"]
    assert scheduled == [(0, 1), (1, 2), (2, 3)]


async def test_a_durable_timer_fires_on_virtual_time(
        clock: VirtualClock, host: DevHost, client: df.DurableOrchestrationClient) -> None:
    await client.start_new("sleeper", "nap", 90)
    await clock.run_until(lambda: "TimerCreated" in kinds(host, "nap"), within=1)
    assert host.status("nap")["runtimeStatus"] == "Running"
    status = await finished(clock, host, "nap", within=120)
    assert clock.elapsed() == 90
    assert status["output"] == (DEFAULT_EPOCH + timedelta(seconds=90)).isoformat()
    [created] = [e for e in host.history("nap") if e["EventType"] == "TimerCreated"]
    [fired] = [e for e in host.history("nap") if e["EventType"] == "TimerFired"]
    assert created["FireAt"] == fired["FireAt"] == "2026-03-03T18:01:30Z"
    assert fired["TimerId"] == created["EventId"]


async def test_task_any_lets_the_timeout_win_when_no_event_comes(
        clock: VirtualClock, host: DevHost, client: df.DurableOrchestrationClient) -> None:
    await client.start_new("approval", "ask-1")
    status = await finished(clock, host, "ask-1")
    assert status["output"] == {"approved": None, "at": (DEFAULT_EPOCH + timedelta(seconds=30)).isoformat()}
    assert status["customStatus"] == "waiting for approval"


async def test_an_event_wins_the_race_and_the_cancelled_timer_never_fires(
        clock: VirtualClock, host: DevHost, client: df.DurableOrchestrationClient) -> None:
    await client.start_new("approval", "ask-2")
    await clock.run_until(lambda: "TimerCreated" in kinds(host, "ask-2"), within=1)
    await client.raise_event("ask-2", "approval", {"by": "alice"})
    status = await finished(clock, host, "ask-2")
    # The Python client posts json.dumps(data) as JSON, so the extension stores (and the orchestrator gets)
    # the JSON text of the value, not the value.
    assert status["output"] == {"approved": json.dumps({"by": "alice"}), "at": DEFAULT_EPOCH.isoformat()}
    assert clock.pending() is None, "the cancelled 30 s timer was dropped"
    assert "TimerFired" not in kinds(host, "ask-2")


async def test_an_event_raised_before_the_orchestrator_waits_is_buffered_in_history(
        clock: VirtualClock, host: DevHost, client: df.DurableOrchestrationClient) -> None:
    await client.start_new("busy_then_wait", "early")
    await client.raise_event("early", "go", "now")  # the orchestrator is still at its activity and timer
    status = await finished(clock, host, "early")
    assert status["output"] == json.dumps("now")
    order = kinds(host, "early")
    assert order.index("EventRaised") < order.index("TimerFired"), "the event was recorded before it was awaited"


async def test_events_for_an_instance_are_processed_in_arrival_order(
        clock: VirtualClock, host: DevHost, client: df.DurableOrchestrationClient) -> None:
    await client.start_new("collector", "bag", 4)
    for n in range(4):
        await host_raise(host, "bag", "item", n)
    status = await finished(clock, host, "bag")
    assert status["output"] == [0, 1, 2, 3]


async def host_raise(host: DevHost, instance_id: str, name: str, value: Any) -> None:
    """Raise an event with a plain JSON body (as an HTTP caller of sendEventPostUri would)."""
    from aiohttp import ClientSession

    async with ClientSession() as session:
        response = await session.post(f"{host.url}/runtime/webhooks/durabletask/instances/{instance_id}"
                                      f"/raiseEvent/{name}", json=value)
        assert response.status == 202


async def test_retry_options_are_honoured_with_timers_on_the_clock(
        clock: VirtualClock, host: DevHost, client: df.DurableOrchestrationClient) -> None:
    await client.start_new("retrying", "retry-ok", {"key": "a", "failures": 2})
    status = await finished(clock, host, "retry-ok")
    assert status["output"] == {"result": "ok after 3", "at": (DEFAULT_EPOCH + timedelta(seconds=10)).isoformat()}
    assert calls["a"] == 3
    events = host.history("retry-ok")
    assert [e["EventType"] for e in events if e["EventType"] in ("TaskScheduled", "TaskFailed", "TimerCreated",
                                                                  "TimerFired", "TaskCompleted")] == [
        "TaskScheduled", "TaskFailed", "TimerCreated", "TimerFired", "TaskScheduled", "TaskFailed", "TimerCreated",
        "TimerFired", "TaskScheduled", "TaskCompleted"]
    timers = [e for e in events if e["EventType"] == "TimerCreated"]
    assert [t["FireAt"] for t in timers] == ["2026-03-03T18:00:05Z", "2026-03-03T18:00:10Z"]
    assert [e["EventId"] for e in events if e["EventType"] in ("TaskScheduled", "TimerCreated")] == [0, 1, 2, 3, 4]


async def test_retry_timers_and_attempts_take_sequence_numbers_as_the_sdk_expects(
        clock: VirtualClock, host: DevHost, client: df.DurableOrchestrationClient) -> None:
    await client.start_new("retry_among_others", "retry-mix", {"key": "m", "failures": 1})
    status = await finished(clock, host, "retry-mix")
    assert status["output"] == ["ok after 2", 8, 10]
    numbered = [(e["EventType"], e["EventId"], e.get("Name")) for e in host.history("retry-mix")
                if e["EventType"] in ("TaskScheduled", "TimerCreated")]
    assert numbered == [("TaskScheduled", 0, "flaky"), ("TaskScheduled", 1, "double"), ("TimerCreated", 2, None),
                        ("TaskScheduled", 3, "flaky"), ("TaskScheduled", 4, "double")]


async def test_retries_give_up_after_max_attempts_with_the_last_failure(
        clock: VirtualClock, host: DevHost, client: df.DurableOrchestrationClient) -> None:
    await client.start_new("retrying", "retry-no", {"key": "b", "failures": 5})
    status = await finished(clock, host, "retry-no")
    assert calls["b"] == 3
    assert status["output"] == {"error": "Activity function 'flaky' failed: ValueError: attempt 3 failed"}
    assert clock.elapsed() == 10, "two 5 s retry delays, then DurableTask's immediate back-compat timer"


async def test_an_activity_exception_reaches_the_orchestrator_as_task_failed(
        clock: VirtualClock, host: DevHost, client: df.DurableOrchestrationClient) -> None:
    await client.start_new("catches", "catch-1")
    status = await finished(clock, host, "catch-1")
    assert status["runtimeStatus"] == "Completed"
    assert status["output"] == "Activity function 'boom' failed: RuntimeError: kaput"
    [failed] = [e for e in host.history("catch-1") if e["EventType"] == "TaskFailed"]
    assert failed["Reason"] == "Activity function 'boom' failed: RuntimeError: kaput"
    assert "Traceback" in failed["Details"]


async def test_an_orchestrator_exception_fails_the_instance(
        clock: VirtualClock, host: DevHost, client: df.DurableOrchestrationClient) -> None:
    await client.start_new("failing", "fail-1")
    status = await finished(clock, host, "fail-1")
    assert status["runtimeStatus"] == "Failed"
    assert status["output"] == "Orchestrator function 'failing' failed: bad input"
    remote = await client.get_status("fail-1")
    assert remote.runtime_status == df.OrchestrationRuntimeStatus.Failed
    [completed] = [e for e in host.history("fail-1") if e["EventType"] == "ExecutionCompleted"]
    assert completed["OrchestrationStatus"] == 3


async def test_continue_as_new_starts_a_fresh_history_and_keeps_queued_events(
        clock: VirtualClock, host: DevHost, client: df.DurableOrchestrationClient) -> None:
    await client.start_new("counter", "loop", 0)
    for _ in range(3):  # all queued before the first generation has taken any
        await client.raise_event("loop", "tick")
    status = await finished(clock, host, "loop")
    assert status["output"] == 3
    events = host.history("loop")
    assert [e["EventType"] for e in events][:2] == ["OrchestratorStarted", "ExecutionStarted"]
    assert events[1]["Generation"] == 2
    assert json.loads(events[1]["Input"]) == "2"
    assert [e["EventType"] for e in events].count("EventRaised") == 1


async def test_sub_orchestrations_report_results_and_failures_to_their_parent(
        clock: VirtualClock, host: DevHost, client: df.DurableOrchestrationClient) -> None:
    await client.start_new("parent", "p-1")
    status = await finished(clock, host, "p-1")
    named, generated, failure = status["output"]
    assert named == {"child": "child-of-p-1", "parent": "p-1", "value": 10}
    assert generated["parent"] == "p-1" and generated["value"] == 14
    execution = host.history("p-1")[1]["OrchestrationInstance"]["ExecutionId"]
    assert generated["child"] == f"{execution}:1"
    assert failure == "Orchestrator function 'child' failed: negative: -2"
    assert host.status("child-of-p-1")["runtimeStatus"] == "Completed"
    created = [e for e in host.history("p-1") if e["EventType"] == "SubOrchestrationInstanceCreated"]
    assert [(e["EventId"], e["InstanceId"]) for e in created][:2] == [(0, "child-of-p-1"), (1, f"{execution}:1")]


async def test_sub_orchestrations_are_retried(
        clock: VirtualClock, host: DevHost, client: df.DurableOrchestrationClient) -> None:
    await client.start_new("parent_with_retry", "pr-1", {"key": "c", "failures": 1})
    status = await finished(clock, host, "pr-1")
    assert status["output"] == "ok after 2"
    assert clock.elapsed() == 2
    created = [e for e in host.history("pr-1") if e["EventType"] == "SubOrchestrationInstanceCreated"]
    assert [e["EventId"] for e in created] == [0, 2]


async def test_nondeterminism_is_caught_by_the_replay_after_each_step(
        clock: VirtualClock, host: DevHost, client: df.DurableOrchestrationClient) -> None:
    await client.start_new("nondeterministic", "nd-1")
    status = await finished(clock, host, "nd-1")
    assert status["runtimeStatus"] == "Failed"
    assert status["output"].startswith(
        "Orchestrator function 'nondeterministic' failed: Non-deterministic orchestrator")
    assert "CALL_ACTIVITY('double')" in status["output"] and "CALL_ACTIVITY('greet')" in status["output"]
    assert "TaskScheduled" not in kinds(host, "nd-1"), "nothing of the bad step was scheduled"


async def test_a_random_activity_input_is_caught_by_the_replay_check(
        clock: VirtualClock, host: DevHost, client: df.DurableOrchestrationClient) -> None:
    await client.start_new("random_input", "nd-2")
    status = await finished(clock, host, "nd-2")
    assert status["runtimeStatus"] == "Failed"
    assert "action #0 was CALL_ACTIVITY('greet')" in status["output"]
    assert "context.new_uuid()" in status["output"]


async def test_without_the_replay_check_the_next_replay_still_detects_nondeterminism(clock: VirtualClock) -> None:
    async with DevHost(app, clock=clock, replay_check=False) as dev:
        client = df.DurableOrchestrationClient(dev.client_binding())
        await client.start_new("nondeterministic", "nd-3")
        status = await finished(clock, dev, "nd-3")
    assert status["runtimeStatus"] == "Failed"
    assert status["output"].startswith("Orchestrator function 'nondeterministic' failed: Non-deterministic workflow "
                                       "detected: action #0 was CALL_ACTIVITY(")
