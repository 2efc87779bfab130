"""(b) The registered `calls` function, from an incoming-call notification to the answer reaching Graph.

The real function (as the Functions worker calls it: the HttpRequest and the Durable client binding as
a JSON string) runs with the real runtime, configured through the environment to use the stub on
loopback. The baseline is a handler that only parses the JSON body and answers 202, driven the same way.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import azure.functions as func
import jwt

from bench.stats import summary
from bench.stub import ISSUER, KID, StubServer

BOT_APP_ID = "8f0c2b6e-1d3a-4c5b-9e7f-0a1b2c3d4e5f"
BOT_TENANT_ID = "2a4c6e80-b1d3-4f57-8a9c-0e1f2a3b4c5d"
INSTANCE_ID = "5b7d9f1a-2c4e-4a6b-8d0f-1a2b3c4d5e6f"
CALLER = "+14255550100"

Handler = Callable[..., Awaitable[func.HttpResponse]]


@dataclass
class Phase:
    """One run of `count` notifications at `concurrency`: per-notification latencies and the wall time."""

    concurrency: int
    to_answer_s: list[float] = field(default_factory=list)  # call -> answer arrived at the stub
    to_return_s: list[float] = field(default_factory=list)  # call -> function returned
    wall_s: float = 0.0
    cpu_s: float = 0.0  # CPU time of the driving thread (the app's event loop; the stub has its own thread)
    errors: int = 0
    truncated: bool = False  # stopped early at the time budget

    @property
    def throughput(self) -> float:
        done = len(self.to_return_s)
        return done / self.wall_s if self.wall_s > 0 else float("nan")

    @property
    def cpu_ms(self) -> float:
        done = len(self.to_return_s)
        return self.cpu_s / done * 1000 if done else float("nan")

    def as_json(self) -> dict[str, Any]:
        return {"concurrency": self.concurrency, "notifications": len(self.to_return_s), "errors": self.errors,
                "truncated": self.truncated, "wall_s": self.wall_s, "throughput_per_s": self.throughput,
                "cpu_ms_per_notification": self.cpu_ms,
                "to_return": summary(self.to_return_s),
                "to_answer": summary(self.to_answer_s) if self.to_answer_s else None}


@dataclass
class Results:
    app_cold: Phase
    app: dict[str, Phase]
    baseline: dict[str, Phase]
    key_fetches: int
    answers: int
    unexpected_requests: list[str]

    def as_json(self) -> dict[str, Any]:
        return {"app_first_notification": self.app_cold.as_json(),
                "app": {k: v.as_json() for k, v in self.app.items()},
                "baseline": {k: v.as_json() for k, v in self.baseline.items()},
                "stub": {"openid_fetches": self.key_fetches, "answers_received": self.answers,
                         "unexpected_requests": self.unexpected_requests[:20]}}


def environment(stub: StubServer) -> dict[str, str]:
    return {
        "BOT_APP_ID": BOT_APP_ID,
        "BOT_TENANT_ID": BOT_TENANT_ID,
        "BOT_PUBLIC_URL": "https://bot.example.com",
        "CALLING_OPENID_CONFIG_URL": f"{stub.base}/openid",
        "GRAPH_BASE_URL": f"{stub.base}/v1.0",
    }


def client_binding(stub: StubServer) -> str:
    """The Durable client binding as the host passes it (fields of DurableOrchestrationBindings)."""
    return json.dumps({
        "taskHubName": "hub",
        "creationUrls": {},
        "managementUrls": {},
        "baseUrl": f"{stub.base}/runtime/webhooks/durabletask",
        "requiredQueryStringParameters": "",
        "rpcBaseUrl": f"{stub.base}/durabletask/",
        "httpBaseUrl": "",
        "maxGrpcMessageSizeInBytes": 0,
        "grpcHttpClientTimeout": "00:01:40",
    })


def sign_token(stub: StubServer) -> str:
    now = int(time.time())
    claims = {"aud": BOT_APP_ID, "iss": ISSUER, "tid": BOT_TENANT_ID, "iat": now, "nbf": now - 60,
              "exp": now + 3600}
    return jwt.encode(claims, stub.private_key, algorithm="RS256", headers={"kid": KID})


def notification(call_id: str) -> bytes:
    """A commsNotifications envelope with one incoming PSTN call to the bot's resource account."""
    return json.dumps({"value": [{
        "@odata.type": "#microsoft.graph.commsNotification",
        "changeType": "created",
        "resourceUrl": f"/communications/calls/{call_id}",
        "resourceData": {
            "@odata.type": "#microsoft.graph.call",
            "@odata.id": f"/communications/calls/{call_id}",
            "state": "incoming",
            "direction": "incoming",
            "callbackUri": "https://bot.example.com/api/calls",
            "source": {"@odata.type": "#microsoft.graph.participantInfo", "identity": {
                "@odata.type": "#microsoft.graph.identitySet",
                "phone": {"@odata.type": "#microsoft.graph.identity", "id": CALLER}}},
            "targets": [{"@odata.type": "#microsoft.graph.invitationParticipantInfo", "identity": {
                "@odata.type": "#microsoft.graph.identitySet",
                "applicationInstance": {"@odata.type": "#microsoft.graph.identity", "id": INSTANCE_ID,
                                        "displayName": "Main line", "tenantId": BOT_TENANT_ID}}}],
            "requestedModalities": ["audio"],
            "tenantId": BOT_TENANT_ID,
            "callChainId": str(uuid.uuid4()),
        },
    }]}).encode()


def requests(token: str, count: int) -> list[tuple[str, func.HttpRequest]]:
    """`count` notifications, each for a new call id (the webhook acts on a call id once), built up front."""
    built = []
    for _ in range(count):
        call_id = str(uuid.uuid4())
        body = notification(call_id)
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json",
                   "Content-Length": str(len(body)), "Scenario-Id": str(uuid.uuid4()),
                   "X-Microsoft-Skype-Chain-Id": str(uuid.uuid4())}
        built.append((call_id, func.HttpRequest(method="POST", url="http://localhost/api/calls",
                                                headers=headers, body=body)))
    return built


async def baseline_handler(req: func.HttpRequest, client: str) -> func.HttpResponse:
    """What any webhook must do at least: read the JSON body and answer."""
    json.loads(req.get_body())
    return func.HttpResponse(status_code=202)


async def run_phase(handler: Handler, batch: list[tuple[str, func.HttpRequest]], binding: str, concurrency: int,
                    arrivals: dict[str, float] | None, budget_s: float) -> Phase:
    """Drive `handler` with `concurrency` workers over `batch`, stopping new calls once `budget_s` is spent."""
    phase = Phase(concurrency)
    queue = iter(batch)
    started, cpu_started = time.perf_counter(), time.thread_time()
    stop_at = started + budget_s

    async def worker() -> None:
        for call_id, req in queue:
            if time.perf_counter() > stop_at:
                phase.truncated = True
                return
            t0 = time.perf_counter()
            response = await handler(req=req, client=binding)
            t1 = time.perf_counter()
            phase.to_return_s.append(t1 - t0)
            if response.status_code != 202:
                phase.errors += 1
            if arrivals is not None:
                arrived = arrivals.get(call_id)
                if arrived is None:
                    phase.errors += 1
                else:
                    phase.to_answer_s.append(arrived - t0)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    phase.wall_s = time.perf_counter() - started
    phase.cpu_s = time.thread_time() - cpu_started
    return phase


@functools.cache
def calls_function() -> Handler:
    """The `calls` function exactly as registered on the app (with the Durable client middleware). Cached:
    azure-functions indexes an app once per process."""
    import function_app

    matches = [f for f in function_app.app.get_functions() if f.get_function_name() == "calls"]
    if not matches:
        raise RuntimeError("function_app registers no function named 'calls'")
    handler: Handler = matches[0].get_user_function()
    return handler


async def _close_graph_clients() -> None:
    """Close the Graph connection pools the runtime opened (CallControls keeps one client per tenant)."""
    from functions import runtime

    try:
        rt = runtime.get()
    except runtime.NotConfigured:
        return
    for control in getattr(rt.calls, "_by_tenant", {}).values():
        http = getattr(control._client.request_adapter, "_http_client", None)
        if http is not None:
            await http.aclose()


def set_environ(values: Mapping[str, str | None]) -> dict[str, str | None]:
    """Set (None: unset) these environment variables; returns what they were, to set back the same way."""
    saved = {name: os.environ.get(name) for name in values}
    for name, value in values.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    return saved


async def run(sequential: int, concurrent: int, concurrency: int, warmup: int, budget_s: float) -> Results:
    """Cold first call, warm-up, then each of sequential / concurrent: baseline, then the app."""
    from functions import runtime

    with StubServer() as stub:
        saved = set_environ(environment(stub))
        runtime.reset()
        try:
            app = calls_function()
            binding = client_binding(stub)
            token = sign_token(stub)
            # The first notification builds the runtime, fetches the signing keys and the Graph client.
            cold = await run_phase(app, requests(token, 1), binding, 1, stub.arrivals, budget_s)
            if cold.errors or not cold.to_answer_s:
                raise RuntimeError(f"the first notification did not answer the call (stub saw "
                                   f"{stub.unexpected or 'no request'}); is the app configured?")
            settings = runtime.get().settings
            if settings.graph_credential != "local":
                raise RuntimeError(f"expected the local Graph credential, got {settings.graph_credential}")
            warm_s = budget_s / 2
            await run_phase(app, requests(token, warmup), binding, 1, stub.arrivals, warm_s)
            await run_phase(app, requests(token, warmup), binding, concurrency, stub.arrivals, warm_s)
            await run_phase(baseline_handler, requests(token, warmup), binding, 1, None, warm_s)

            app_phases: dict[str, Phase] = {}
            base_phases: dict[str, Phase] = {}
            for name, count, workers in (("sequential", sequential, 1), ("concurrent", concurrent, concurrency)):
                base_phases[name] = await run_phase(baseline_handler, requests(token, count), binding, workers,
                                                    None, budget_s)
                app_phases[name] = await run_phase(app, requests(token, count), binding, workers, stub.arrivals,
                                                   budget_s)
            return Results(cold, app_phases, base_phases, stub.key_fetches, stub.answers, list(stub.unexpected))
        finally:
            await _close_graph_clients()
            await _close_durable_session()
            runtime.reset()
            set_environ(saved)


async def _close_durable_session() -> None:
    """azure-functions-durable keeps one process-wide aiohttp session; close it before the loop ends."""
    from azure.durable_functions.models.utils import http_utils

    session = http_utils._client_session
    if session is not None and not session.closed:
        await session.close()
    http_utils._client_session = None
