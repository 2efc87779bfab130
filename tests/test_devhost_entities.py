"""Durable entities on devhost: the SDK's own Entity handle and replay, fed the extension's JSON shapes.

A test-only DFApp holds a counter entity and orchestrators that call and signal it. Time is a VirtualClock.
Assertions are on results, entity state (through the real DurableOrchestrationClient), histories, and the
batches the entity function was handed.
"""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import azure.durable_functions as df
import azure.functions as func
import pytest

from devhost import DevHost, MemoryStore, SqliteStore
from devhost.durable import actions, entities
from simulator.clock import VirtualClock
from tests.durable_waits import finished

app = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)
#: Every operation the entity ran: (batch context object, operation name). The contexts are kept alive, so
#: `is` tells batches apart.
seen: list[tuple[Any, str]] = []
gate = threading.Event()
slow_started = threading.Event()
#: How many more times `flaky` makes the worker's answer unusable (the extension aborts and retries the batch).
flaky_failures: list[None] = []
#: One entry per run of `moving_key`.
moving_runs: list[None] = []


@app.entity_trigger(context_name="context", entity_name="Counter")
def counter(context: df.DurableEntityContext) -> None:
    seen.append((context, str(context.operation_name)))
    total = context.get_state(lambda: 0)
    operation = context.operation_name
    if operation == "add":
        amount = context.get_input()
        if amount < 0:
            raise ValueError("no negative amounts")
        context.set_state(total + amount)
        context.set_result(total + amount)
    elif operation == "get":
        context.set_result(total)
    elif operation == "shift":  # order-sensitive: 1, 2, 3 give 123
        context.set_state(total * 10 + context.get_input())
    elif operation == "flaky":
        if flaky_failures:
            flaky_failures.pop()
            context.set_state(object())  # not JSON-serialisable: the SDK cannot write the result
        else:
            context.set_state(total + 1000)
            context.set_result("flaky done")
    elif operation == "slow":
        slow_started.set()
        gate.wait(10)
        context.set_state(total + 100)
        context.set_result("slow done")
    elif operation == "delete":
        context.destruct_on_exit()
    else:
        raise NotImplementedError(f"no operation {operation}")


@app.orchestration_trigger(context_name="context")
def adder(context: df.DurableOrchestrationContext) -> Any:
    """Add 1 to counter/<input key> `times` times, one call after the other; the totals it got back."""
    spec = context.get_input()
    totals = []
    for _ in range(spec["times"]):
        total = yield context.call_entity(df.EntityId("counter", spec["key"]), "add", 1)
        totals.append(total)
    return totals


@app.orchestration_trigger(context_name="context")
def call_and_signal(context: df.DurableOrchestrationContext) -> Any:
    entity = df.EntityId("Counter", context.get_input())  # upper case: the extension lower-cases entity names
    context.signal_entity(entity, "add", 10)
    total = yield context.call_entity(entity, "add", 5)
    return total


@app.orchestration_trigger(context_name="context")
def catches(context: df.DurableOrchestrationContext) -> Any:
    entity = df.EntityId("counter", context.get_input())
    try:
        yield context.call_entity(entity, "add", -1)
    except Exception as exc:
        after = yield context.call_entity(entity, "get")
        return {"error": str(exc), "after": after}
    return "not reached"


@app.orchestration_trigger(context_name="context")
def does_not_catch(context: df.DurableOrchestrationContext) -> Any:
    yield context.call_entity(df.EntityId("counter", "x"), "add", -5)
    return "not reached"


@app.orchestration_trigger(context_name="context")
def calls(context: df.DurableOrchestrationContext) -> Any:
    spec = context.get_input()
    result = yield context.call_entity(df.EntityId("counter", spec["key"]), spec["op"])
    return result


@app.orchestration_trigger(context_name="context")
def signals_three(context: df.DurableOrchestrationContext) -> Any:
    entity = df.EntityId("counter", context.get_input())
    for digit in (1, 2, 3):
        context.signal_entity(entity, "shift", digit)
    yield context.create_timer(context.current_utc_datetime + timedelta(seconds=1))
    return "sent"


@app.orchestration_trigger(context_name="context")
def race(context: df.DurableOrchestrationContext) -> Any:
    call = context.call_entity(df.EntityId("counter", "race"), "slow")
    timeout = context.create_timer(context.current_utc_datetime + timedelta(seconds=10))
    winner = yield context.task_any([call, timeout])
    if winner == call:
        timeout.cancel()
        return {"winner": "entity", "result": call.result}
    return {"winner": "timer"}


@app.orchestration_trigger(context_name="context")
def impatient(context: df.DurableOrchestrationContext) -> Any:
    """Calls `flaky` with a 5 s timeout. On a timeout it returns, or continues as new once to read the counter."""
    spec = context.get_input()
    entity = df.EntityId("counter", spec["key"])
    if spec.get("read"):
        total = yield context.call_entity(entity, "get")
        return total
    call = context.call_entity(entity, "flaky")
    timeout = context.create_timer(context.current_utc_datetime + timedelta(seconds=5))
    winner = yield context.task_any([call, timeout])
    if winner == call:
        timeout.cancel()
        return "entity"
    if spec.get("continue"):
        context.continue_as_new({"key": spec["key"], "read": True})  # the call is still waiting for its answer
        return None
    return "timer"


@app.orchestration_trigger(context_name="context")
def moving_key(context: df.DurableOrchestrationContext) -> Any:
    """Nondeterministic on purpose: the first call goes to another entity on every run."""
    moving_runs.append(None)
    first = yield context.call_entity(df.EntityId("counter", f"moving-{len(moving_runs)}"), "add", 1)
    second = yield context.call_entity(df.EntityId("counter", "moving-fixed"), "add", 1)
    return [first, second]


@app.orchestration_trigger(context_name="context")
def signals_then_fails(context: df.DurableOrchestrationContext) -> Any:
    entity = df.EntityId("counter", context.get_input())
    total = yield context.call_entity(entity, "add", 1)
    context.signal_entity(entity, "add", 10)
    raise ValueError(f"failed after {total}")


@app.orchestration_trigger(context_name="context")
def fan_out(context: df.DurableOrchestrationContext) -> Any:
    totals = yield context.task_all([context.call_entity(df.EntityId("counter", key), "add", 1)
                                     for key in context.get_input()])
    return totals


@app.orchestration_trigger(context_name="context")
def unknown(context: df.DurableOrchestrationContext) -> Any:
    yield context.call_entity(df.EntityId("nosuch", "k"), "add", 1)
    return "not reached"


@pytest.fixture(autouse=True)
def _fresh() -> Iterator[None]:
    seen.clear()
    gate.clear()
    slow_started.clear()
    flaky_failures.clear()
    moving_runs.clear()
    yield
    gate.set()  # never leave a worker thread blocked


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture
async def host(clock: VirtualClock) -> AsyncIterator[DevHost]:
    async with DevHost(app, clock=clock) as dev:
        yield dev


@pytest.fixture
def client(host: DevHost) -> df.DurableOrchestrationClient:
    return df.DurableOrchestrationClient(host.client_binding())




def state_of(host: DevHost, key: str) -> Any:
    entity = host.entity("counter", key)
    return None if entity is None or not entity["exists"] else entity["state"]


def batches() -> list[list[str]]:
    """The operations the entity function ran, grouped by the batch (invocation) they came in."""
    grouped: list[tuple[Any, list[str]]] = []
    for context, operation in seen:
        if grouped and grouped[-1][0] is context:
            grouped[-1][1].append(operation)
        else:
            grouped.append((context, [operation]))
    return [operations for _, operations in grouped]


async def test_the_entity_is_indexed_under_its_entity_name(host: DevHost) -> None:
    assert [(e.name, e.context_param) for e in host.index.entities.values()] == [("Counter", "context")]
    assert host.index.skipped == []


async def test_calls_are_answered_and_the_history_has_the_extension_shape(
        clock: VirtualClock, host: DevHost, client: df.DurableOrchestrationClient) -> None:
    await client.start_new("adder", "one", {"key": "k1", "times": 2})
    status = await finished(clock, host, "one")
    assert status["output"] == [1, 2]
    events = host.history("one")
    execution = events[1]["OrchestrationInstance"]["ExecutionId"]
    assert [e["EventType"] for e in events] == [
        "OrchestratorStarted", "ExecutionStarted", "EventSent", "OrchestratorCompleted",
        "OrchestratorStarted", "EventRaised", "EventSent", "OrchestratorCompleted",
        "OrchestratorStarted", "EventRaised", "ExecutionCompleted", "OrchestratorCompleted"]
    sent = [e for e in events if e["EventType"] == "EventSent"]
    assert [(e["EventId"], e["InstanceId"], e["Name"]) for e in sent] == [
        (0, "@counter@k1", "op"), (1, "@counter@k1", "op")]
    first = json.loads(sent[0]["Input"])
    assert list(first) == ["op", "input", "id", "parent", "parentExecution", "Timestamp", "Predecessor"]
    assert first["op"] == "add" and first["parent"] == "one" and first["parentExecution"] == execution
    assert first["input"] == json.dumps("1"), "the SDK's JSON text, kept as a JSON string (RequestMessage.SetInput)"
    # DurableOrchestrationContext.NewGuid: GuidManager.CreateDeterministicGuid(UrlNamespaceValue,
    # "one_2026-03-03T18:00:00.0000000Z_0"), a v5 UUID worked out with hashlib.sha1 over the namespace bytes and
    # the UTF-8 name, not with devhost's code.
    assert first["id"] == "52a5eacb-7143-52a5-8cf0-0fb8661eb464"
    assert first["Timestamp"] == "2026-03-03T18:00:00Z" and first["Predecessor"] == entities.NO_TIME
    second = json.loads(sent[1]["Input"])
    assert second["Predecessor"] == "2026-03-03T18:00:00Z" and second["Timestamp"] == "2026-03-03T18:00:00.0000001"
    raised = [e for e in events if e["EventType"] == "EventRaised"]
    assert [e["Name"] for e in raised] == [first["id"], second["id"]]
    assert [e["Input"] for e in raised] == ['{"result":"1"}', '{"result":"2"}']
    assert uuid.UUID(first["id"]).version == 5


async def test_a_signal_takes_a_sequence_number_and_gets_no_answer(
        clock: VirtualClock, host: DevHost, client: df.DurableOrchestrationClient) -> None:
    await client.start_new("call_and_signal", "cs", "k2")
    status = await finished(clock, host, "cs")
    assert status["output"] == 15, "the signal sent first ran first"
    events = host.history("cs")
    sent = [json.loads(e["Input"]) for e in events if e["EventType"] == "EventSent"]
    assert [(s["op"], s.get("signal", False)) for s in sent] == [("add", True), ("add", False)]
    assert [e["EventId"] for e in events if e["EventType"] == "EventSent"] == [0, 1]
    assert [e["Name"] for e in events if e["EventType"] == "EventRaised"] == [sent[1]["id"]]
    assert state_of(host, "k2") == 15
    remote = await client.read_entity_state(df.EntityId("counter", "k2"))
    assert remote.entity_exists and remote.entity_state == 15


async def test_concurrent_orchestrations_are_serialised_on_one_entity(
        clock: VirtualClock, host: DevHost, client: df.DurableOrchestrationClient) -> None:
    ids = [await client.start_new("adder", f"many-{n}", {"key": "shared", "times": 10}) for n in range(5)]
    totals: list[int] = []
    for instance_id in ids:
        status = await finished(clock, host, instance_id)
        assert status["runtimeStatus"] == "Completed"
        assert status["output"] == sorted(status["output"]), "each orchestration's calls ran in its order"
        totals.extend(status["output"])
    assert sorted(totals) == list(range(1, 51)), "every add saw the one before it: no lost update, no overlap"
    assert state_of(host, "shared") == 50
    assert sum(len(b) for b in batches()) == 50
    assert clock.elapsed() == 0


async def test_calls_fanned_out_with_task_all_each_get_their_own_answer(
        clock: VirtualClock, host: DevHost, client: df.DurableOrchestrationClient) -> None:
    await client.signal_entity(df.EntityId("counter", "f2"), "add", 10)
    await clock.run_until(lambda: state_of(host, "f2") == 10, within=5)
    await client.start_new("fan_out", "fan", ["f1", "f2", "f3"])
    status = await finished(clock, host, "fan")
    assert status["output"] == [1, 11, 1]
    sent = [(e["EventId"], e["InstanceId"]) for e in host.history("fan") if e["EventType"] == "EventSent"]
    assert sent == [(0, "@counter@f1"), (1, "@counter@f2"), (2, "@counter@f3")]


async def test_requests_queued_together_run_as_one_batch_in_arrival_order(
        clock: VirtualClock, host: DevHost, client: df.DurableOrchestrationClient) -> None:
    await client.start_new("signals_three", "three", "batch")
    await finished(clock, host, "three")
    assert batches() == [["shift", "shift", "shift"]], "the three signals of one episode arrived together"
    assert state_of(host, "batch") == 123, "and ran in the order they were sent"


async def test_an_operation_error_reaches_the_orchestrator_as_an_exception(
        clock: VirtualClock, host: DevHost, client: df.DurableOrchestrationClient) -> None:
    await client.signal_entity(df.EntityId("counter", "err"), "add", 3)
    await clock.run_until(lambda: state_of(host, "err") == 3, within=5)
    await client.start_new("catches", "c-1", "err")
    status = await finished(clock, host, "c-1")
    assert status["output"] == {"error": "no negative amounts", "after": 3}
    [failed, _] = [e for e in host.history("c-1") if e["EventType"] == "EventRaised"]
    assert json.loads(failed["Input"]) == {"result": json.dumps("no negative amounts"), "exceptionType": "Error"}


async def test_an_uncaught_operation_error_fails_the_orchestration(
        clock: VirtualClock, host: DevHost, client: df.DurableOrchestrationClient) -> None:
    await client.start_new("does_not_catch", "f-1")
    status = await finished(clock, host, "f-1")
    assert status["runtimeStatus"] == "Failed"
    assert status["output"] == "Orchestrator function 'does_not_catch' failed: no negative amounts"


async def test_an_unknown_entity_fails_the_orchestration_with_the_extensions_message(
        clock: VirtualClock, host: DevHost, client: df.DurableOrchestrationClient) -> None:
    await client.start_new("unknown", "u-1")
    status = await finished(clock, host, "u-1")
    assert status["runtimeStatus"] == "Failed"
    assert ("The function 'nosuch' doesn't exist, is disabled, or is not an entity function. Additional info: "
            "The following are the known entity functions: 'Counter'.") in status["output"]
    with pytest.raises(Exception, match="unexpected status code 400"):
        await client.signal_entity(df.EntityId("nosuch", "k"), "add", 1)


async def test_keys_are_case_sensitive_and_names_are_not(
        clock: VirtualClock, host: DevHost, client: df.DurableOrchestrationClient) -> None:
    await client.signal_entity(df.EntityId("COUNTER", "Key"), "add", 2)
    await client.signal_entity(df.EntityId("counter", "key"), "add", 5)
    await clock.run_until(lambda: state_of(host, "Key") == 2 and state_of(host, "key") == 5, within=5)
    assert (await client.read_entity_state(df.EntityId("Counter", "Key"))).entity_state == 2


async def test_client_signal_read_and_delete(
        clock: VirtualClock, host: DevHost, client: df.DurableOrchestrationClient) -> None:
    missing = await client.read_entity_state(df.EntityId("counter", "c"))
    assert not missing.entity_exists and missing.entity_state is None
    await client.signal_entity(df.EntityId("counter", "c"), "add", 4)
    await clock.run_until(lambda: state_of(host, "c") == 4, within=5)
    async with aiohttp.ClientSession() as session:
        base = f"{host.url}/runtime/webhooks/durabletask/entities"
        # The SDK's get_input() decodes twice (json.loads, then df_loads), so it needs what the Python client
        # posts: the JSON text of the value, as a JSON string. A plain `6` fails the operation, as in Azure.
        response = await session.post(f"{base}/counter/c?op=add", json=6)
        assert response.status == 202
        await clock.run_until(lambda: len(seen) == 2, within=5)
        assert state_of(host, "c") == 4
        response = await session.post(f"{base}/counter/c?op=add", json=json.dumps(6))
        assert response.status == 202
        await clock.run_until(lambda: state_of(host, "c") == 10, within=5)
        response = await session.get(f"{base}/counter/c")
        assert response.status == 200 and await response.json() == 10
        response = await session.get(f"{base}/counter?fetchState=true")
        assert [(e["entityId"], e["state"]) for e in await response.json()] == [({"name": "counter", "key": "c"}, 10)]
        response = await session.post(f"{base}/counter/c?op=add", data="{not json", headers={
            "Content-Type": "application/json"})
        assert response.status == 400
        response = await session.delete(f"{base}/counter/c")
        assert response.status == 202
        await clock.run_until(lambda: not (host.entity("counter", "c") or {}).get("exists", True), within=5)
        response = await session.get(f"{base}/counter/c")
        assert response.status == 404
    assert not (await client.read_entity_state(df.EntityId("counter", "c"))).entity_exists


async def test_virtual_time_stands_still_while_an_operation_runs(
        clock: VirtualClock, host: DevHost, client: df.DurableOrchestrationClient) -> None:
    async def release() -> None:
        assert await asyncio.to_thread(slow_started.wait, 10)
        await asyncio.sleep(0.05)  # time enough for the clock to jump to the 10 s timer, if anything let it
        gate.set()

    releasing = asyncio.get_running_loop().create_task(release())
    await client.start_new("race", "r-1")
    status = await finished(clock, host, "r-1")
    await releasing
    assert status["output"] == {"winner": "entity", "result": "slow done"}
    assert clock.elapsed() == 0


@pytest.mark.parametrize("make", [MemoryStore, lambda: SqliteStore(":memory:")], ids=["memory", "sqlite"])
async def test_each_store_keeps_entities(make: Any) -> None:
    clock = VirtualClock()
    async with DevHost(app, clock=clock, store=make()) as dev:
        client = df.DurableOrchestrationClient(dev.client_binding())
        await client.start_new("adder", "s-1", {"key": "stored", "times": 3})
        status = await finished(clock, dev, "s-1")
        assert status["output"] == [1, 2, 3]
        assert dev.entity("Counter", "stored") == {"exists": True, "state": 3,
                                                   "lastOperationTime": "2026-03-03T18:00:00Z"}
        assert dev.entity("counter", "never") is None
        assert [e["name"] for e in dev.instances()] == ["adder"], "entities are not orchestration instances"


def test_microsofts_worker_takes_the_batch_devhost_builds_and_answers_what_devhost_reads(tmp_path: Path) -> None:
    """The deployed app's own entity, invoked by azure-functions-runtime (tests/functions_worker/) with the
    batch JSON devhost hands the entity function: the worker's return value parses as OutOfProcResult."""
    import os
    import subprocess

    import function_app
    from devhost import functions
    from tests.functions_worker import layout

    base = layout.find_python("3.13")
    if base is None:
        pytest.skip("no Python 3.13 here (azure-functions-runtime needs 3.13+)")
    indexed = list(functions.index(function_app.app).entities.values())
    if not indexed:
        pytest.skip("the app has no entity function")
    entity = indexed[0]
    app_dir = layout.deployment(tmp_path / "wwwroot", layout.site_packages(base, "cp313"))
    operation = entities.Operation(1, json.loads(entities.request(
        "devhost-probe", signal=False, input_text=json.dumps(json.dumps({"probe": 1})), request_id=str(uuid.uuid4()),
        parent="probe")))
    context = entities.batch_request(entity.name.lower(), "probe", False, None, [operation])
    spec = tmp_path / "invocations.json"
    spec.write_text(json.dumps([{"function": entity.name, "inputs": {entity.context_param: {"json": context}}}]))
    out = tmp_path / "out.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    done = subprocess.run([str(layout.worker_python(base)), str(layout.HERE / "host.py"), str(app_dir), str(out),
                           str(spec)], capture_output=True, text=True, timeout=180, env=env, check=False)
    assert done.returncode == 0, done.stderr[-4000:]
    [invocation] = json.loads(out.read_text())["invocations"]
    answer = invocation["invocation_response"]
    assert answer["result"].get("status") == "Success", answer
    result = entities.parse_result(answer["return_value"]["json"], 1)
    assert isinstance(result.results[0].get("isError"), bool) and isinstance(result.results[0].get("result"), str)
    assert result.signals == []


async def test_state_survives_the_host_and_an_interrupted_batch_runs_again(tmp_path: Path) -> None:
    path = tmp_path / "durable.sqlite3"
    clock = VirtualClock()
    async with DevHost(app, clock=clock, store=path) as first:
        client = df.DurableOrchestrationClient(first.client_binding())
        await client.start_new("adder", "before", {"key": "kept", "times": 3})
        await finished(clock, first, "before")
        await client.signal_entity(df.EntityId("counter", "kept"), "slow")
        # The batch is in flight (on a worker thread) when the host stops.
        assert await asyncio.to_thread(slow_started.wait, 10)
    gate.set()
    async with DevHost(app, clock=clock, store=path) as second:
        client = df.DurableOrchestrationClient(second.client_binding())
        await clock.run_until(lambda: state_of(second, "kept") == 103, within=5)
        await client.start_new("adder", "after", {"key": "kept", "times": 1})
        status = await finished(clock, second, "after")
        assert status["output"] == [104]
    assert [operation for _, operation in seen].count("slow") == 2, "at least once: the interrupted batch ran again"


async def test_a_signal_queued_behind_an_interrupted_batch_survives_the_host(tmp_path: Path) -> None:
    path = tmp_path / "durable.sqlite3"
    clock = VirtualClock()
    async with DevHost(app, clock=clock, store=path) as first:
        client = df.DurableOrchestrationClient(first.client_binding())
        await client.signal_entity(df.EntityId("counter", "queued"), "slow")
        assert await asyncio.to_thread(slow_started.wait, 10)
        # Accepted (committed to the store) while the entity is busy: it waits in the queue.
        await client.signal_entity(df.EntityId("counter", "queued"), "add", 1)
        assert batches() == [["slow"]]
    gate.set()
    seen.clear()
    async with DevHost(app, clock=clock, store=path) as second:
        await clock.run_until(lambda: state_of(second, "queued") == 101, within=5)
    assert batches() == [["slow", "add"]], "the new host ran the interrupted request and the queued signal, in order"


# ------------------------------------------------------------------------------ abort and retry of a batch

async def test_an_aborted_batch_is_retried_and_its_caller_answered_once(
        clock: VirtualClock, host: DevHost, client: df.DurableOrchestrationClient) -> None:
    flaky_failures.append(None)
    await client.start_new("calls", "retry", {"key": "retry", "op": "flaky"})
    status = await finished(clock, host, "retry")
    assert status["output"] == "flaky done"
    assert batches() == [["flaky"], ["flaky"]], "the unusable answer aborted the batch; the retry ran it again"
    assert state_of(host, "retry") == 1000, "nothing of the aborted attempt was committed"
    raised = [e for e in host.history("retry") if e["EventType"] == "EventRaised"]
    assert [json.loads(e["Input"]) for e in raised] == [{"result": json.dumps("flaky done")}]


async def test_a_new_request_waits_for_the_retry_of_an_aborted_batch(
        clock: VirtualClock, host: DevHost, client: df.DurableOrchestrationClient) -> None:
    flaky_failures.append(None)
    await client.signal_entity(df.EntityId("counter", "wait"), "flaky")
    await clock.run_until(lambda: len(seen) == 1, within=1)
    await client.signal_entity(df.EntityId("counter", "wait"), "add", 1)
    await clock.settle()
    assert batches() == [["flaky"]] and state_of(host, "wait") is None, "the new signal did not start the retry"
    await clock.run_until(lambda: state_of(host, "wait") == 1001, within=30)
    assert batches() == [["flaky"], ["flaky", "add"]], "the retried batch took the signal that arrived meanwhile"


async def test_a_timer_that_beats_an_entity_call_ignores_the_late_answer(
        clock: VirtualClock, host: DevHost, client: df.DurableOrchestrationClient) -> None:
    flaky_failures.append(None)  # the call's batch is aborted: its answer comes with the retry, after the timer
    await client.start_new("impatient", "late", {"key": "late"})
    status = await finished(clock, host, "late")
    assert status["runtimeStatus"] == "Completed" and status["output"] == "timer"
    before = host.history("late")
    await clock.run_until(lambda: state_of(host, "late") == 1000, within=30)
    await clock.settle()
    assert batches() == [["flaky"], ["flaky"]], "the call was answered after all"
    assert host.status("late") == status and host.history("late") == before, "the finished orchestration ignored it"


async def test_continue_as_new_with_a_call_still_pending(
        clock: VirtualClock, host: DevHost, client: df.DurableOrchestrationClient) -> None:
    flaky_failures.append(None)
    await client.start_new("impatient", "again", {"key": "again", "continue": True})
    status = await finished(clock, host, "again")
    assert status["runtimeStatus"] == "Completed"
    assert status["output"] == 1000, "the new execution's call ran after the old execution's request"
    events = host.history("again")
    assert json.loads(json.loads(events[1]["Input"])) == {"key": "again", "read": True}  # the SDK's JSON text
    [sent] = [json.loads(e["Input"]) for e in events if e["EventType"] == "EventSent"]
    assert sent["op"] == "get" and sent["parentExecution"] == events[1]["OrchestrationInstance"]["ExecutionId"]
    assert [e["Name"] for e in events if e["EventType"] == "EventRaised"] == [sent["id"]], \
        "the answer to the old execution's call did not reach the new execution"
    assert batches() == [["flaky"], ["flaky", "get"]]


# ----------------------------------------------------------------------- what DurableTask.Core lets through

async def test_an_entity_key_that_changes_between_episodes_is_not_nondeterminism(clock: VirtualClock) -> None:
    """HandleEventSentEvent checks only that an `op` event is sent at that sequence number, not where to."""
    async with DevHost(app, clock=clock, replay_check=False) as dev:
        client = df.DurableOrchestrationClient(dev.client_binding())
        await client.start_new("moving_key", "moving")
        status = await finished(clock, dev, "moving")
        assert status["runtimeStatus"] == "Completed", status["output"]
        assert status["output"] == [1, 1]
        assert len(moving_runs) == 3, "the orchestrator ran once per episode, each time calling another entity"


async def test_replay_check_still_refuses_an_entity_key_that_changes(
        clock: VirtualClock, host: DevHost, client: df.DurableOrchestrationClient) -> None:
    await client.start_new("moving_key", "strict")
    status = await finished(clock, host, "strict")
    assert status["runtimeStatus"] == "Failed" and "Non-deterministic" in status["output"]


def test_the_prefix_check_compares_entity_actions_as_durable_task_core_does() -> None:
    call = {"actionType": 7, "instanceId": "@counter@a", "operation": "add"}
    signal = {"actionType": 9, "instanceId": "@counter@b", "operation": "add"}
    activity = {"actionType": 0, "functionName": "work"}
    recorded = [actions.signature(call)]
    assert actions.prefix_mismatch(recorded, [signal]) is None, "a call and a signal are both a SendEvent `op`"
    assert actions.prefix_mismatch(recorded, [activity]) is not None
    assert "SIGNAL_ENTITY('@counter@b')" in (actions.prefix_mismatch(recorded, [signal], strict=True) or "")
    assert actions.prefix_mismatch(recorded, [call], strict=True) is None


async def test_signals_sent_before_an_orchestrator_fails_are_delivered(
        clock: VirtualClock, host: DevHost, client: df.DurableOrchestrationClient) -> None:
    await client.start_new("signals_then_fails", "fails", "sent")
    status = await finished(clock, host, "fails")
    assert status["runtimeStatus"] == "Failed"
    assert status["output"] == "Orchestrator function 'signals_then_fails' failed: failed after 1"
    events = host.history("fails")
    assert [e["EventType"] for e in events] == [
        "OrchestratorStarted", "ExecutionStarted", "EventSent", "OrchestratorCompleted",
        "OrchestratorStarted", "EventRaised", "EventSent", "ExecutionCompleted", "OrchestratorCompleted"]
    signal = [e for e in events if e["EventType"] == "EventSent"][1]
    assert signal["EventId"] == 1 and signal["InstanceId"] == "@counter@sent"
    assert json.loads(signal["Input"])["signal"] is True
    await clock.run_until(lambda: state_of(host, "sent") == 11, within=5)


# ----------------------------------------------------------------------------------------- listing entities

async def test_listing_entities_pages_by_top_and_filters_by_last_operation_time(
        clock: VirtualClock, host: DevHost, client: df.DurableOrchestrationClient) -> None:
    for key in ("a", "b", "c"):
        await client.signal_entity(df.EntityId("counter", key), "add", 1)
    await clock.run_until(lambda: all(state_of(host, k) == 1 for k in "abc"), within=5)
    await clock.pass_time(60)
    await client.signal_entity(df.EntityId("counter", "d"), "add", 1)
    await clock.run_until(lambda: state_of(host, "d") == 1, within=5)
    base = f"{host.url}/runtime/webhooks/durabletask/entities/counter"

    async def keys(session: aiohttp.ClientSession, query: str, token: str = "") -> tuple[list[str], str]:
        response = await session.get(f"{base}?{query}", headers={"x-ms-continuation-token": token})
        assert response.status == 200
        return [e["entityId"]["key"] for e in await response.json()], response.headers["x-ms-continuation-token"]

    async with aiohttp.ClientSession() as session:
        assert await keys(session, "top=3") == (["a", "b", "c"], "3")
        assert await keys(session, "top=3", "3") == (["d"], "")
        assert await keys(session, "pageSize=1") == (["a", "b", "c", "d"], ""), "the extension has no pageSize"
        assert await keys(session, "lastOperationTimeFrom=2026-03-03T18:00:30Z") == (["d"], "")
        assert await keys(session, "lastOperationTimeTo=2026-03-03T18:00:30Z") == (["a", "b", "c"], "")
        assert await keys(session, "lastOperationTimeFrom=2026-03-03T18:01:00Z&lastOperationTimeTo="
                                   "2026-03-03T18:01:00Z") == (["d"], ""), "both ends are included"


async def test_listing_entities_returns_100_at_a_time_by_default(
        clock: VirtualClock, host: DevHost, client: df.DurableOrchestrationClient) -> None:
    await asyncio.gather(*(client.signal_entity(df.EntityId("counter", f"e{n:03d}"), "add", 1) for n in range(101)))
    await clock.run_until(lambda: len(seen) == 101, within=5)
    async with aiohttp.ClientSession() as session:
        response = await session.get(f"{host.url}/runtime/webhooks/durabletask/entities/counter")
        page = await response.json()
        assert len(page) == 100 and response.headers["x-ms-continuation-token"] == "100"
        response = await session.get(f"{host.url}/runtime/webhooks/durabletask/entities/counter",
                                     headers={"x-ms-continuation-token": "100"})
        assert [e["entityId"]["key"] for e in await response.json()] == ["e100"]
