"""HTTP triggers on devhost: routing, function keys, the worker's request/response conversion, failures, the
clock's busy scope, the project's real function_app (the calls webhook raising events through the Durable
client), and the `python -m devhost` command line."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import azure.durable_functions as df
import azure.functions as func
import pytest

import function_app
from devhost import DevHost
from devhost.__main__ import main
from functions import runtime
from functions.calls import bp as calls_blueprint
from simulator.clock import VirtualClock
from tests.stubs import APP_ID, TENANT_ID, LoopbackServer, Signer, call_update, envelope

ROOT = Path(__file__).resolve().parents[1]

app = df.DFApp(http_auth_level=func.AuthLevel.FUNCTION)
seen: dict[str, Any] = {}


@app.route(route="items/{id:int}", methods=["GET"])
def get_item(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(json.dumps({"id": req.route_params["id"], "q": req.params.get("q"),
                                         "method": req.method, "url": req.url,
                                         "header": req.headers.get("x-custom")}),
                             mimetype="application/json", headers={"X-Item": "yes"})


@app.route(route="echo", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
async def echo(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(req.get_body(), status_code=201, mimetype="application/octet-stream")


@app.route(route="text", auth_level=func.AuthLevel.ANONYMOUS)
def text(req: func.HttpRequest) -> str:
    return "plain words"


@app.route(route="nothing", auth_level=func.AuthLevel.ANONYMOUS)
def nothing(req: func.HttpRequest) -> None:
    return None


@app.route(route="broken", auth_level=func.AuthLevel.ANONYMOUS)
async def broken(req: func.HttpRequest) -> func.HttpResponse:
    raise RuntimeError("secret detail")


@app.route(route="whoami", auth_level=func.AuthLevel.ANONYMOUS)
def whoami(req: func.HttpRequest, context: func.Context) -> str:
    return f"{context.function_name} {len(context.invocation_id)}"


@app.route(route="slow", auth_level=func.AuthLevel.ANONYMOUS)
async def slow(req: func.HttpRequest) -> str:
    clock: VirtualClock = seen["clock"]
    seen["entered"] = clock.elapsed()
    seen["in_flight"].set()
    await asyncio.sleep(0.2)  # wall time; the virtual clock must not move meanwhile
    seen["left"] = clock.elapsed()
    return "done"


@app.route(route="start/{name}", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
@app.durable_client_input(client_name="client")
async def start(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    instance_id = await client.start_new("hello", req.route_params["name"], req.get_json())
    return client.create_check_status_response(req, instance_id)


@app.orchestration_trigger(context_name="context")
def hello(context: df.DurableOrchestrationContext) -> Any:
    return f"hello {context.get_input()['who']}"
    yield  # a generator, as orchestrators are


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture
async def host(clock: VirtualClock) -> AsyncIterator[DevHost]:
    async with DevHost(app, clock=clock) as dev:
        yield dev


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def test_route_params_query_headers_and_response_headers(host: DevHost, http: aiohttp.ClientSession) -> None:
    response = await http.get(f"{host.url}/api/items/42?q=find", headers={"X-Custom": "abc"})
    assert response.status == 200
    assert response.headers["X-Item"] == "yes"
    assert response.headers["Content-Type"] == "application/json"
    assert await response.json() == {"id": "42", "q": "find", "method": "GET", "url": f"{host.url}/api/items/42?q=find",
                                     "header": "abc"}


async def test_unknown_routes_methods_and_constraints_are_404(host: DevHost, http: aiohttp.ClientSession) -> None:
    assert (await http.get(f"{host.url}/api/nowhere")).status == 404
    assert (await http.post(f"{host.url}/api/items/42")).status == 404
    assert (await http.get(f"{host.url}/api/items/forty-two")).status == 404
    assert (await http.get(f"{host.url}/elsewhere")).status == 404


async def test_bodies_text_and_empty_results(host: DevHost, http: aiohttp.ClientSession) -> None:
    echoed = await http.post(f"{host.url}/api/echo", data=b"\x00\x01binary")
    assert (echoed.status, await echoed.read()) == (201, b"\x00\x01binary")
    plain = await http.get(f"{host.url}/api/text")
    assert (plain.status, await plain.text(), plain.content_type) == (200, "plain words", "text/plain")
    assert (await http.get(f"{host.url}/api/nothing")).status == 204
    assert await (await http.get(f"{host.url}/api/whoami")).text() == "whoami 36"


async def test_keys_are_not_checked_unless_configured(host: DevHost, http: aiohttp.ClientSession) -> None:
    assert (await http.get(f"{host.url}/api/items/1")).status == 200  # like `func start`


async def test_function_keys_guard_function_level_routes(clock: VirtualClock, http: aiohttp.ClientSession) -> None:
    async with DevHost(app, clock=clock, function_keys={"default": "k-123"}) as dev:
        assert (await http.get(f"{dev.url}/api/items/1")).status == 401
        assert (await http.get(f"{dev.url}/api/items/1?code=wrong")).status == 401
        assert (await http.get(f"{dev.url}/api/items/1?code=k-123")).status == 200
        assert (await http.get(f"{dev.url}/api/items/1", headers={"x-functions-key": "k-123"})).status == 200
        assert (await http.post(f"{dev.url}/api/echo", data=b"x")).status == 201  # anonymous
        assert (await http.get(f"{dev.url}/runtime/webhooks/durabletask/instances/")).status == 401
        assert (await http.get(f"{dev.url}/durabletask/instances/")).status == 200  # the client's local RPC path
        links = json.loads(dev.client_binding())["managementUrls"]
        assert links["statusQueryGetUri"].endswith("&code=k-123")


async def test_a_failing_function_is_a_json_500_without_traceback(
        host: DevHost, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture) -> None:
    response = await http.get(f"{host.url}/api/broken")
    assert response.status == 500
    body = await response.text()
    assert json.loads(body)["error"] == "function_failed"
    assert "secret detail" not in body and "Traceback" not in body
    [record] = [r for r in caplog.records if r.name == "devhost" and r.exc_info]
    assert "Functions.broken" in record.getMessage()
    assert record.exc_info is not None and str(record.exc_info[1]) == "secret detail"


async def test_the_clock_does_not_move_while_a_request_is_in_flight(
        clock: VirtualClock, host: DevHost, http: aiohttp.ClientSession) -> None:
    seen.update(clock=clock, in_flight=asyncio.Event())
    fired: list[float] = []
    clock.call_later(1, lambda: fired.append(clock.elapsed()))
    request = asyncio.ensure_future(http.get(f"{host.url}/api/slow"))
    await seen["in_flight"].wait()
    await clock.run_until(lambda: bool(fired), within=5)
    response = await request
    assert await response.text() == "done"
    assert (seen["entered"], seen["left"], fired) == (0, 0, [1])


async def test_a_durable_starter_gets_a_client_that_talks_to_this_host(
        clock: VirtualClock, host: DevHost, http: aiohttp.ClientSession) -> None:
    response = await http.post(f"{host.url}/api/start/ann", json={"who": "Ann"})
    assert response.status == 202
    links = await response.json()
    assert links["id"] == "ann"
    assert response.headers["Location"] == links["statusQueryGetUri"]
    assert links["statusQueryGetUri"].startswith(f"{host.url}/runtime/webhooks/durabletask/instances/ann?")
    await clock.run_until(lambda: (host.status("ann") or {}).get("runtimeStatus") == "Completed", within=5)
    status = await http.get(links["statusQueryGetUri"])
    assert (await status.json())["output"] == "hello Ann"


# ----------------------------------------------------------------------------- the project's function_app


@pytest.fixture
def webhook_env(server: LoopbackServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for key in ("BOT_ALLOWED_TENANTS", "ROUTING_POLICY_PATH", "MEDIA_HANDOFF_TRANSPORT", "WEBHOOK_MAX_BODY_BYTES",
                "GRAPH_CREDENTIAL", "BOT_CLIENT_SECRET", "BOT_CERTIFICATE_PATH", "BOT_MANAGED_IDENTITY_CLIENT_ID",
                "APPLICATIONINSIGHTS_CONNECTION_STRING"):
        monkeypatch.delenv(key, raising=False)
    for key, value in {"BOT_APP_ID": APP_ID, "BOT_TENANT_ID": TENANT_ID, "BOT_PUBLIC_URL": "https://bot.example.com",
                       "CALLING_OPENID_CONFIG_URL": server.openid_url, "GRAPH_BASE_URL": server.graph_url}.items():
        monkeypatch.setenv(key, value)
    runtime.reset()
    yield
    runtime.reset()


async def test_the_real_webhook_drops_notifications_for_a_call_without_orchestration(
        webhook_env: None, signer: Signer, clock: VirtualClock, http: aiohttp.ClientSession,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    async with DevHost(function_app.app, clock=clock) as dev:
        response = await http.post(f"{dev.url}/api/calls", data=envelope(call_update("call-404", "established")),
                                   headers={"Authorization": f"Bearer {signer.token()}",
                                            "Content-Type": "application/json"})
        assert response.status == 202
    raised = [r.getMessage() for r in caplog.records if r.name == "devhost.access" and "raiseEvent" in r.getMessage()]
    assert len(raised) == 1
    assert "/durabletask/instances/call-404/raiseEvent/graph_notification" in raised[0] and '" 404 ' in raised[0]
    assert "no orchestration runs this call" in caplog.text


flow_app = df.DFApp(http_auth_level=func.AuthLevel.FUNCTION)
flow_app.register_functions(calls_blueprint)


@flow_app.orchestration_trigger(context_name="context")
def call_flow(context: df.DurableOrchestrationContext) -> Any:
    event = yield context.wait_for_external_event("graph_notification")
    # The Python Durable client posts the event as a JSON string, which the extension keeps as a string.
    notifications = json.loads(event)["notifications"]
    return [n["resourceData"]["state"] for n in notifications]


async def test_the_real_webhook_delivers_notifications_to_the_calls_orchestration(
        webhook_env: None, signer: Signer, clock: VirtualClock, http: aiohttp.ClientSession) -> None:
    async with DevHost(flow_app, clock=clock) as dev:
        client = df.DurableOrchestrationClient(dev.client_binding())
        await client.start_new("call_flow", "call-7")
        response = await http.post(f"{dev.url}/api/calls",
                                   data=envelope(call_update("call-7", "established"),
                                                 call_update("call-7", "terminated")),
                                   headers={"Authorization": f"Bearer {signer.token()}",
                                            "Content-Type": "application/json"})
        assert response.status == 202
        await clock.run_until(lambda: (dev.status("call-7") or {}).get("runtimeStatus") == "Completed", within=5)
        assert dev.status("call-7")["output"] == ["established", "terminated"]


# --------------------------------------------------------------------------------------------- command line


def test_the_cli_says_what_to_do_when_the_port_is_busy(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["--port", str(port)]) == 2
    assert f"port {port} is in use; pass --port N or stop the other process" in capsys.readouterr().err


def test_the_cli_serves_function_app_until_interrupted_and_leaves_nothing_listening() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BOT_", "CALLING_", "GRAPH_"))}
    process = subprocess.Popen([sys.executable, "-m", "devhost", "--port", "0"], cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        banner = process.stdout.readline()
        assert banner.startswith("devhost: serving function_app.py at http://127.0.0.1:"), banner
        url = banner.split(" at ", 1)[1].split(" ", 1)[0]
        routes = [process.stdout.readline() for _ in range(4)]  # the banner lists every HTTP trigger
        assert any(f"[POST] {url}/api/calls/{{session?}}\n" in line for line in routes), routes
        answer = asyncio.run(_post(f"{url}/api/calls"))
        assert answer == (503, "not_configured"), "the real webhook, without settings"
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=10)
        assert process.returncode == 0, err
        assert out.rstrip().endswith("devhost: stopped")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    port = int(url.rsplit(":", 1)[1])
    with socket.socket() as probe, pytest.raises(OSError):
        probe.connect(("127.0.0.1", port))


async def _post(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.post(url, data=b"{}") as response:
        return response.status, (await response.json())["error"]
