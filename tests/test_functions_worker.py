"""The app as Azure runs it: Microsoft's own Python worker library indexes, loads and invokes function_app.py.

The deployment layout (the files `.funcignore` keeps, `requirements.txt` installed into
`.python_packages/lib/site-packages` with Python 3.13) is handed to `azure-functions-runtime`, the library
the Azure Functions Python worker runs for the v2 programming model, through its own handlers: the host's
WorkerInitRequest, FunctionsMetadataRequest, FunctionLoadRequest and InvocationRequest messages, serialized
and parsed on the way (tests/functions_worker/). The local host (devhost) is ours; this is the worker's word.
Also: requirements.txt installs into a clean Python 3.11 `--target` folder and `import function_app` works
from there with nothing else on the path, as on the Python 3.11 Flex Consumption plan infra/ deploys.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from calling.flows import load_bundle
from calling.session import Session, open_call
from calling.sink import NOTIFICATION_EVENT
from calling.watch import ESTABLISH_WAIT
from devhost.durable import history, replay
from devhost.durable.management import client_binding
from tests.functions_worker import layout
from tests.stubs import APP_ID as STUB_APP_ID
from tests.stubs import TENANT_ID as STUB_TENANT_ID
from tests.stubs import LoopbackServer, Signer, envelope, incoming_call

HOST = Path(layout.HERE) / "host.py"
APP_ID = "11111111-1111-1111-1111-111111111111"
TENANT_ID = "22222222-2222-2222-2222-222222222222"
CALL_ID = "491f0b00-ffff-4bc9-a43e-b226498ec22a"
SETTINGS = {
    "BOT_APP_ID": APP_ID,
    "BOT_TENANT_ID": TENANT_ID,
    "BOT_PUBLIC_URL": "https://bot.example.com",
    "BOT_MANAGED_IDENTITY_CLIENT_ID": "33333333-3333-3333-3333-333333333333",
}

#: Every function of the app and its bindings, as the worker reports them to the host.
EXPECTED = {
    "calls": {"req": ("httpTrigger", "in"), "client": ("durableClient", "in"), "$return": ("http", "out")},
    "place_call": {"req": ("httpTrigger", "in"), "client": ("durableClient", "in"), "$return": ("http", "out")},
    "join_meeting": {"req": ("httpTrigger", "in"), "client": ("durableClient", "in"), "$return": ("http", "out")},
    "outbound_call": {"req": ("httpTrigger", "in"), "client": ("durableClient", "in"), "$return": ("http", "out")},
    "prompts": {"req": ("httpTrigger", "in"), "$return": ("http", "out")},
    "call_session": {"context": ("orchestrationTrigger", "in")},
    "call_action": {"request": ("activityTrigger", "in")},
    "queue_line": {"context": ("entityTrigger", "in")},
}
ROUTES = {
    "calls": ("calls/{session?}", ["POST"], "ANONYMOUS"),
    "place_call": ("outbound/calls", ["POST"], "FUNCTION"),
    "join_meeting": ("outbound/meetings", ["POST"], "FUNCTION"),
    "outbound_call": ("outbound/calls/{id}", ["GET", "DELETE"], "FUNCTION"),
    "prompts": ("prompts/{*path}", ["GET"], "ANONYMOUS"),
}


@pytest.fixture(scope="module")
def worker() -> Path:
    base = layout.find_python("3.13")
    if base is None:
        pytest.skip("no Python 3.13 here (azure-functions-runtime needs 3.13+): set PYTHON313 to one, or install "
                    "it with pyenv")
    return layout.worker_python(base)


@pytest.fixture(scope="module")
def packages_313() -> Path:
    base = layout.find_python("3.13")
    if base is None:
        pytest.skip("no Python 3.13 here")
    return layout.site_packages(base, "cp313")


@pytest.fixture
def app(tmp_path: Path, packages_313: Path) -> Path:
    return layout.deployment(tmp_path / "wwwroot", packages_313)


def _host(worker: Path, app: Path, out: Path, invocations: list[dict[str, Any]] | None = None,
          settings: dict[str, str] | None = None) -> dict[str, Any]:
    """Run the host stand-in against the deployed app; its decoded response messages."""
    args = [str(worker), str(HOST), str(app), str(out)]
    if invocations is not None:
        spec = out.with_suffix(".invocations.json")
        spec.write_text(json.dumps(invocations))
        args.append(str(spec))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BOT_", "PYTHON", "VIRTUAL_ENV"))}
    done = subprocess.run(args, capture_output=True, text=True, timeout=180, env={**env, **(settings or SETTINGS)},
                          check=False)
    assert done.returncode == 0, done.stderr[-4000:]
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def _metadata(result: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = result["metadata"]["function_metadata_response"].get("function_metadata_results", [])
    return found


def test_the_worker_indexes_and_loads_every_function(worker: Path, app: Path, tmp_path: Path) -> None:
    result = _host(worker, app, tmp_path / "out.json")

    init = result["init"]["worker_init_response"]["result"]
    assert init.get("status") == "Success", init.get("exception", {}).get("message")
    functions = {f["name"]: f for f in _metadata(result)}
    assert set(functions) == set(EXPECTED)
    for name, bindings in EXPECTED.items():
        reported = {k: (v["type"], v.get("direction", "in")) for k, v in functions[name]["bindings"].items()}
        assert reported == bindings, name
        assert functions[name]["script_file"].endswith("function_app.py")
        assert functions[name]["properties"] == {"worker_indexed": "True"}
    for name, (route, methods, level) in ROUTES.items():
        trigger = next(json.loads(raw) for raw in functions[name]["raw_bindings"] if "httpTrigger" in raw)
        assert (trigger["route"], trigger["methods"], trigger["authLevel"]) == (route, methods, level), name
    orchestrator = json.loads(functions["call_session"]["raw_bindings"][0])
    activity = json.loads(functions["call_action"]["raw_bindings"][0])
    assert orchestrator["orchestration"] == "call_session"
    assert activity["activity"] == "call_action"
    entity = json.loads(functions["queue_line"]["raw_bindings"][0])
    assert entity["entityName"] == "queue_line"

    loads = [r["function_load_response"] for r in result["load"]]
    assert [r["function_id"] for r in loads] == [f["function_id"] for f in _metadata(result)]
    assert all(r["result"].get("status") == "Success" for r in loads), loads


def test_the_worker_refuses_a_pep585_binding_annotation(worker: Path, app: Path, tmp_path: Path) -> None:
    """The defect this test exists for: one such annotation and Azure indexes no function at all."""
    module = app / "orchestrations" / "call_session.py"
    source = module.read_text()
    assert "async def call_action(request: typing.Mapping[str, Any])" in source
    module.write_text(source.replace("import typing\n", "import collections.abc\nimport typing\n", 1).replace(
        "async def call_action(request: typing.Mapping[str, Any])",
        "async def call_action(request: collections.abc.Mapping[str, Any])"))

    result = _host(worker, app, tmp_path / "out.json")

    init = result["init"]["worker_init_response"]["result"]
    assert init.get("status", "Failure") == "Failure"
    assert ("cannot load the call_action function: binding request has invalid non-type annotation "
            "collections.abc.Mapping[str, typing.Any]") in init["exception"]["message"]
    assert _metadata(result) == []


def _body(response: dict[str, Any]) -> bytes:
    return base64.b64decode(response["return_value"]["http"].get("body", {}).get("bytes", ""))


def test_the_worker_runs_the_webhook_the_prompts_and_the_orchestrator(worker: Path, app: Path,
                                                                     tmp_path: Path) -> None:
    bundle = load_bundle(app / "flows" / "main-menu.yaml", folder=app / "flows")
    opening = open_call(bundle, caller="phone:+14255550100", called="app:bot", at=datetime(2026, 12, 1, 17, tzinfo=UTC))
    session = Session(CALL_ID, TENANT_ID, "main-menu", opening.state, list(opening.commands))
    now = datetime(2026, 12, 1, 17, tzinfo=UTC)
    context = replay.context_json(instance_id=CALL_ID, parent_instance_id=None, new_from=0, events=[
        history.orchestrator_started(now),
        history.execution_started(now, instance_id=CALL_ID, execution_id="e1", name="call_session",
                                  input_text=json.dumps(session.to_json()), parent=None, generation=0)])
    prompt = app / "flows" / "prompts" / "welcome.wav"
    invocations = [
        {"function": "calls", "http": {"url": "https://bot.example.com/api/calls", "body": '{"value": []}',
                                       "headers": {"content-type": "application/json"}},
         "inputs": {"client": {"string": client_binding("http://127.0.0.1:9")}}},
        {"function": "prompts", "http": {"method": "GET", "url": "https://bot.example.com/api/prompts/prompts/welcome.wav",
                                         "params": {"path": "prompts/welcome.wav"}}},
        {"function": "prompts", "http": {"method": "GET", "url": "https://bot.example.com/api/prompts/..%2Fhost.json",
                                         "params": {"path": "../host.json"}}},
        {"function": "call_session", "inputs": {"context": {"json": context}}},
    ]

    result = _host(worker, app, tmp_path / "out.json", invocations)

    webhook, wav, escape, orchestration = (r["invocation_response"] for r in result["invocations"])
    assert all(r["result"].get("status") == "Success" for r in (webhook, wav, escape, orchestration)), result
    assert webhook["return_value"]["http"]["status_code"] == "401"
    assert json.loads(_body(webhook)) == {"error": "unauthorized", "reason": "missing Authorization header"}
    assert wav["return_value"]["http"]["status_code"] == "200"
    assert _body(wav) == prompt.read_bytes()
    assert escape["return_value"]["http"]["status_code"] == "404"
    # Before Graph says the call is established the session waits: for a notification, or the bounded wait
    # after which it asks Graph (calling/watch.py).
    state = json.loads(orchestration["return_value"]["json"])
    assert state["isDone"] is False
    [[waiting]] = state["actions"]
    event, timer = waiting["compoundActions"]
    assert event["externalEventName"] == NOTIFICATION_EVENT
    assert history.parse_time(timer["fireAt"]) == now + ESTABLISH_WAIT


@pytest.fixture(scope="module")
def python_311() -> Iterator[Path]:
    found = layout.find_python("3.11")
    if found is None:
        pytest.skip("no Python 3.11 here (the version infra/ deploys): set PYTHON311 to one")
    yield found


def test_requirements_install_into_a_clean_311_target_and_the_app_imports(python_311: Path, tmp_path: Path) -> None:
    packages = layout.site_packages(python_311, "cp311")
    app = layout.deployment(tmp_path / "wwwroot", packages)
    probe = ("import sys; sys.path[:0] = [sys.argv[1], sys.argv[2]]; import function_app; "
             "import azure.functions, azure.durable_functions; "
             "print(len(function_app.app.get_functions()), azure.functions.__file__)")
    # -S: no site-packages of the interpreter, -E: no PYTHON* variables: only the deployed folders count.
    done = subprocess.run([str(python_311), "-S", "-E", "-c", probe, str(packages), str(app)], cwd=app,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-4000:]
    count, location = done.stdout.split()
    assert int(count) == len(EXPECTED)
    assert Path(location).resolve().is_relative_to(packages.resolve())


async def test_the_worker_answers_a_signed_call_and_runs_call_action_against_graph(
        worker: Path, app: Path, tmp_path: Path, server: LoopbackServer, signer: Signer) -> None:
    """The whole webhook path and the activity the worker once refused, with Graph and Durable on a stub."""
    settings = {"BOT_APP_ID": STUB_APP_ID, "BOT_TENANT_ID": STUB_TENANT_ID, "BOT_PUBLIC_URL": "https://bot.example.com",
                "CALLING_OPENID_CONFIG_URL": server.openid_url, "GRAPH_BASE_URL": server.graph_url}
    binding = json.dumps({"taskHubName": "hub", "creationUrls": {}, "managementUrls": {},
                          "rpcBaseUrl": f"{server.url}/durabletask/", "baseUrl": f"{server.url}/runtime"})
    bundle = load_bundle(app / "flows" / "main-menu.yaml", folder=app / "flows")
    welcome = bundle.prompts["prompts/welcome.wav"]
    play = {"call_id": "call-w", "tenant_id": STUB_TENANT_ID, "flow": "main-menu",
            "command": {"type": "Play", "ref": "play-3", "prompts": [welcome.key]},
            "prompts": {welcome.key: welcome.sha256}}
    invocations = [
        {"function": "calls", "http": {"url": "https://bot.example.com/api/calls",
                                       "body": envelope(incoming_call("call-w")).decode(),
                                       "headers": {"content-type": "application/json",
                                                   "authorization": f"Bearer {signer.token()}"}},
         "inputs": {"client": {"string": binding}}},
        {"function": "call_action", "inputs": {"request": {"json": json.dumps(play)}}},
    ]

    result = await asyncio.to_thread(_host, worker, app, tmp_path / "out.json", invocations, settings)

    webhook, action = (r["invocation_response"] for r in result["invocations"])
    assert webhook["result"].get("status") == "Success", webhook
    assert webhook["return_value"]["http"]["status_code"] == "202", _body(webhook)
    started = [r.path for r in server.durable_requests()]
    assert started == ["/durabletask/orchestrators/call_session/call-w"]
    [answer, played] = server.graph_requests()
    assert answer.path == "/v1.0/communications/calls/call-w/answer"
    assert answer.json["callbackUri"] == "https://bot.example.com/api/calls"
    assert len(answer.json["mediaConfig"]["preFetchMedia"]) == len(bundle.prompts)

    assert action["result"].get("status") == "Success", action
    assert json.loads(action["return_value"]["json"])["ok"] is True
    assert played.path == "/v1.0/communications/calls/call-w/playPrompt"
    [prompt] = played.json["prompts"]
    assert prompt["mediaInfo"]["uri"] == ("https://bot.example.com/api/prompts/prompts/welcome.wav"
                                          f"?v={welcome.sha256[:16]}")
    assert played.json["clientContext"] == "play-3"
