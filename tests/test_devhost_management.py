"""The Durable HTTP management API on devhost, through the real DurableOrchestrationClient and plain HTTP.

Status codes and bodies are the extension's (HttpApiHandler): the client library turns them into its return
values and exception texts, which application code matches on ("No instance with ID", "is gone").
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import aiohttp
import azure.durable_functions as df
import azure.functions as func
import pytest

from devhost import DevHost
from simulator.clock import DEFAULT_EPOCH, VirtualClock

app = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)


@app.activity_trigger(input_name="value")
def echo(value: Any) -> Any:
    return value


@app.orchestration_trigger(context_name="context")
def waiter(context: df.DurableOrchestrationContext) -> Any:
    context.set_custom_status({"step": "waiting"})
    data = yield context.wait_for_external_event("go")
    echoed = yield context.call_activity("echo", data)
    return {"input": context.get_input(), "event": echoed}


@app.orchestration_trigger(context_name="context")
def quick(context: df.DurableOrchestrationContext) -> Any:
    result = yield context.call_activity("echo", context.get_input())
    return result


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


def status_of(host: DevHost, instance_id: str) -> str | None:
    status = host.status(instance_id)
    return None if status is None else status["runtimeStatus"]


async def settle(clock: VirtualClock, host: DevHost, instance_id: str, *states: str) -> None:
    await clock.run_until(lambda: status_of(host, instance_id) in states, within=5)


async def test_the_binding_points_the_client_at_this_host(host: DevHost) -> None:
    binding = json.loads(host.client_binding())
    assert binding["rpcBaseUrl"] == f"{host.url}/durabletask/"
    assert binding["baseUrl"] == f"{host.url}/runtime/webhooks/durabletask"
    assert binding["taskHubName"] == "TestHubName"
    assert binding["managementUrls"]["id"] == "INSTANCEID"
    assert binding["managementUrls"]["statusQueryGetUri"] == (
        f"{host.url}/runtime/webhooks/durabletask/instances/INSTANCEID?taskHub=TestHubName&connection=Storage")
    assert binding["creationUrls"]["createNewInstancePostUri"].startswith(
        f"{host.url}/runtime/webhooks/durabletask/orchestrators/{{functionName}}")


async def test_status_while_running_and_once_completed(
        clock: VirtualClock, host: DevHost, client: df.DurableOrchestrationClient) -> None:
    await client.start_new("waiter", "w-1", {"n": 1})
    await settle(clock, host, "w-1", "Running")
    running = await client.get_status("w-1")
    assert running.runtime_status == df.OrchestrationRuntimeStatus.Running
    assert running.custom_status == {"step": "waiting"}
    assert running.created_time == DEFAULT_EPOCH
    async with aiohttp.ClientSession() as session:
        response = await session.get(f"{host.url}/runtime/webhooks/durabletask/instances/w-1")
        assert response.status == 202
        assert response.headers["Retry-After"] == "5"
        assert (await response.json())["runtimeStatus"] == "Running"
    await client.raise_event("w-1", "go", [1, 2])
    await settle(clock, host, "w-1", "Completed")
    done = await client.get_status("w-1", show_history=True, show_history_output=True, show_input=True)
    assert done.runtime_status == df.OrchestrationRuntimeStatus.Completed
    # The Python client posts JSON-encoded strings; the orchestrator decodes its input but gets events as text.
    assert done.output == {"input": {"n": 1}, "event": "[1, 2]"}
    assert done.input_ == json.dumps({"n": 1})
    events = done.historyEvents
    assert [e["EventType"] for e in events] == ["ExecutionStarted", "EventRaised", "TaskCompleted",
                                                "ExecutionCompleted"]
    assert events[0]["FunctionName"] == "waiter"
    assert events[2]["FunctionName"] == "echo" and events[2]["Result"] == "[1, 2]"
    assert events[3]["OrchestrationStatus"] == "Completed"
    terse = await client.get_status("w-1", show_history=True)
    assert "Result" not in terse.historyEvents[2], "outputs only with showHistoryOutput"
    async with aiohttp.ClientSession() as session:
        response = await session.get(f"{host.url}/durabletask/instances/w-1?showHistory=true&showInput=false")
        body = await response.json()
    assert body["input"] is None and "Input" not in body["historyEvents"][0]


async def test_raise_event_to_a_missing_or_finished_instance_raises_the_clients_errors(
        clock: VirtualClock, host: DevHost, client: df.DurableOrchestrationClient) -> None:
    with pytest.raises(Exception, match="No instance with ID nobody found"):
        await client.raise_event("nobody", "go", {})
    await client.start_new("quick", "q-1", 1)
    await settle(clock, host, "q-1", "Completed")
    with pytest.raises(Exception, match="Instance with ID q-1 is gone: either completed or failed"):
        await client.raise_event("q-1", "go", {})


async def test_raise_event_needs_json(clock: VirtualClock, host: DevHost,
                                      client: df.DurableOrchestrationClient) -> None:
    await client.start_new("waiter", "w-2")
    async with aiohttp.ClientSession() as session:
        url = f"{host.url}/runtime/webhooks/durabletask/instances/w-2/raiseEvent/go"
        wrong_type = await session.post(url, data="hello", headers={"Content-Type": "text/plain"})
        assert wrong_type.status == 400
        assert (await wrong_type.json())["Message"] == "Only application/json request content is supported"
        broken = await session.post(url, data="{", headers={"Content-Type": "application/json"})
        assert broken.status == 400
        assert (await broken.json())["Message"] == "Invalid JSON content"


async def test_start_new_with_an_unknown_orchestrator_is_a_400_the_client_raises(
        client: df.DurableOrchestrationClient) -> None:
    with pytest.raises(Exception, match=re.escape(
            "The function 'missing' doesn't exist, is disabled, or is not an orchestrator function. Additional info: "
            "The following are the known orchestrator functions: 'waiter', 'quick'.")):
        await client.start_new("missing")


async def test_start_new_without_an_id_generates_one_and_the_check_status_links_work(
        clock: VirtualClock, host: DevHost, client: df.DurableOrchestrationClient) -> None:
    instance_id = await client.start_new("quick", client_input="x")
    assert len(instance_id) == 32
    request = func.HttpRequest("POST", f"{host.url}/api/start", body=b"")
    response = client.create_check_status_response(request, instance_id)
    assert response.status_code == 202
    links = json.loads(response.get_body())
    await settle(clock, host, instance_id, "Completed")
    async with aiohttp.ClientSession() as session:
        status = await session.get(links["statusQueryGetUri"])
        assert status.status == 200
        assert (await status.json())["output"] == "x"


async def test_starting_an_existing_id_replaces_it_unless_running_states_are_protected(
        clock: VirtualClock, host: DevHost, client: df.DurableOrchestrationClient) -> None:
    await client.start_new("waiter", "dup")
    await settle(clock, host, "dup", "Running")
    await client.start_new("quick", "dup", 5)  # overridableExistingInstanceStates: AnyState (the default)
    await settle(clock, host, "dup", "Completed")
    assert host.status("dup")["output"] == 5
    guarded = DevHost(app, clock=clock, overridable_existing_instance_states="NonRunningStates")
    await guarded.start()
    try:
        strict = df.DurableOrchestrationClient(guarded.client_binding())
        await strict.start_new("waiter", "once")
        with pytest.raises(Exception, match=r"An Orchestration instance with the status (Pending|Running) already"):
            await strict.start_new("waiter", "once")
    finally:
        await guarded.stop()


async def test_terminate_stops_a_running_instance(
        clock: VirtualClock, host: DevHost, client: df.DurableOrchestrationClient) -> None:
    await client.start_new("waiter", "t-1")
    await settle(clock, host, "t-1", "Running")
    await client.terminate("t-1", "caller hung up")
    await settle(clock, host, "t-1", "Terminated")
    status = await client.get_status("t-1")
    assert status.runtime_status == df.OrchestrationRuntimeStatus.Terminated
    assert status.output == "caller hung up"
    await client.terminate("t-1", "again")  # 410: the client ignores it
    with pytest.raises(Exception, match="No instance with ID 'ghost' found"):
        await client.terminate("ghost", "why")
    with pytest.raises(Exception, match="is gone"):
        await client.raise_event("t-1", "go", 1)


async def test_suspend_holds_events_until_resume(
        clock: VirtualClock, host: DevHost, client: df.DurableOrchestrationClient) -> None:
    await client.start_new("waiter", "s-1")
    await settle(clock, host, "s-1", "Running")
    await client.suspend("s-1", "maintenance")
    await settle(clock, host, "s-1", "Suspended")
    await client.raise_event("s-1", "go", "later")
    await clock.run_until(lambda: True, within=1)
    assert status_of(host, "s-1") == "Suspended"
    assert "EventRaised" not in [e["EventType"] for e in host.history("s-1")]
    await client.resume("s-1", "done")
    await settle(clock, host, "s-1", "Completed")
    kinds = [e["EventType"] for e in host.history("s-1")]
    assert kinds.index("ExecutionSuspended") < kinds.index("ExecutionResumed") < kinds.index("EventRaised")


async def test_list_and_filter_instances(clock: VirtualClock, host: DevHost,
                                         client: df.DurableOrchestrationClient) -> None:
    await client.start_new("quick", "call-a", 1)
    await client.start_new("quick", "call-b", 2)
    await client.start_new("waiter", "other")
    await settle(clock, host, "call-b", "Completed")
    await settle(clock, host, "call-a", "Completed")
    everything = await client.get_status_all()
    assert sorted(s.instance_id for s in everything) == ["call-a", "call-b", "other"]
    finished = await client.get_status_by(runtime_status=[df.OrchestrationRuntimeStatus.Completed])
    assert sorted(s.instance_id for s in finished) == ["call-a", "call-b"]
    prefixed = await client.get_status_by(instance_id_prefix="call-")
    assert sorted(s.instance_id for s in prefixed) == ["call-a", "call-b"]
    later = await client.get_status_by(created_time_from=DEFAULT_EPOCH + timedelta(hours=1))
    assert later == []
    async with aiohttp.ClientSession() as session:
        page = await session.get(f"{host.url}/durabletask/instances/?top=2")
        assert len(await page.json()) == 2
        token = page.headers["x-ms-continuation-token"]
        rest = await session.get(f"{host.url}/durabletask/instances/?top=2",
                                 headers={"x-ms-continuation-token": token})
        assert len(await rest.json()) == 1


async def test_purge_one_instance_and_by_filter(clock: VirtualClock, host: DevHost,
                                                client: df.DurableOrchestrationClient) -> None:
    await client.start_new("quick", "old-1", 1)
    await client.start_new("quick", "old-2", 2)
    await client.start_new("waiter", "live")
    await settle(clock, host, "old-2", "Completed")
    await settle(clock, host, "old-1", "Completed")
    running = await client.purge_instance_history("live")
    assert running.instances_deleted == 0, "a running instance is not purged"
    one = await client.purge_instance_history("old-1")
    assert one.instances_deleted == 1
    assert host.status("old-1") is None and host.history("old-1") == []
    assert not await client.get_status("old-1")
    missing = await client.purge_instance_history("old-1")
    assert missing.instances_deleted == 0
    rest = await client.purge_instance_history_by(created_time_from=DEFAULT_EPOCH - timedelta(days=1))
    assert rest.instances_deleted == 1
    assert status_of(host, "live") == "Running"


async def test_restart_starts_the_same_orchestration_again(
        clock: VirtualClock, host: DevHost, client: df.DurableOrchestrationClient) -> None:
    await client.start_new("quick", "r-1", "again")
    await settle(clock, host, "r-1", "Completed")
    payload = await client.restart("r-1", restart_with_new_instance_id=True)
    new_id = payload["id"]
    assert new_id != "r-1"
    await settle(clock, host, new_id, "Completed")
    assert host.status(new_id)["output"] == "again"


async def test_rewind_is_refused_clearly_and_an_entity_never_used_is_not_found(
        clock: VirtualClock, host: DevHost, client: df.DurableOrchestrationClient) -> None:
    await client.start_new("waiter", "rw")
    await settle(clock, host, "rw", "Running")
    with pytest.raises(Exception, match="Rewind is not supported by devhost"):
        await client.rewind("rw", "try")
    async with aiohttp.ClientSession() as session:
        response = await session.get(f"{host.url}/durabletask/entities/counter/one")
        assert response.status == 404  # ReadEntityStateAsync: no such entity (tests/test_devhost_entities.py)


async def test_start_and_wait_returns_the_output_when_it_finishes_in_time(host: DevHost) -> None:
    async with aiohttp.ClientSession() as session:
        response = await session.post(
            f"{host.url}/runtime/webhooks/durabletask/orchestrators/quick?timeout=5&pollingInterval=1", json={"a": 1})
        assert response.status == 200
        assert await response.json() == {"a": 1}
