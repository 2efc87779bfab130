"""(f) Hand-off latency: a signed policy-recording invite reaches the registered `calls` function, which hands it
to app-hosted media over the in-process transport; a media worker in this process takes it and answers it with
its blob. Measured: the notification reaching the function -> the worker's answer reaching the stub Graph.

The baseline, measured in the same run and interleaved call by call: a PSTN call to the same function, which
answers it itself inside the request (service-hosted media). Both on the real clock, one call at a time.

- the app: the `calls` function as registered (bench/webhook.py), MEDIA_HANDOFF_TRANSPORT=inprocess;
- the worker: mediavm/local.py's LocalWorker (a real MediaWorker, the loopback engine, its own endpoint), with
  the compliance recording application into a folder, taking hand-offs from the runtime's in-process queue;
- the stub Graph (bench/stub.py) also keeps each call's state, so the webhook's look at the call after a
  hand-off (GET /communications/calls/{id}) sees `establishing` once the worker has answered;
- after each handed-off call (not measured) its media connection ends and the worker gets its `terminated`
  notification, as when a caller hangs up, so it holds one call at a time (without the media's end first, the
  worker waits MEDIA_FLUSH_SECONDS for it on every call).

`measure()` returns the figures; `report()` prints them as bench/stats.py tables; `python -m bench.handoff`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import azure.functions as func
from aiohttp import web

from bench import webhook
from bench.stats import fmt, ratio, summary, table
from bench.stub import StubServer

if TYPE_CHECKING:
    from calling.handoff import InProcessTransport, Taken
    from mediavm.local import LocalWorker

RECORDED_USER = "7c1e9a40-3b5d-4f6a-8c2e-9d0f1a2b3c4d"
CALLS_PATH = "/v1.0/communications/calls/"
#: Outcomes of a handed-off call, by what reached the stub Graph for it.
WORKER, FALLBACK, REJECTED, UNANSWERED = "answered by the worker", "service-hosted answer (fallback)", \
    "rejected", "unanswered"


class GraphStub(StubServer):
    """bench/stub.py's stub, keeping each call's state as Graph would: `establishing` once answered."""

    def __init__(self) -> None:
        super().__init__()
        self.states: dict[str, str] = {}
        self.answered: dict[str, dict[str, Any]] = {}  # call id -> the answer's body
        self.rejected: set[str] = set()
        self.looks = 0  # GET /communications/calls/{id}
        self.hang_ups = 0

    async def _answer(self, request: web.Request) -> web.Response:
        arrived = time.perf_counter()
        body = await request.json()
        call_id = request.match_info["call_id"]
        self.arrivals[call_id] = arrived
        self.answered[call_id] = body if isinstance(body, dict) else {}
        self.states[call_id] = "establishing"
        self.answers += 1
        return web.Response(status=202)

    async def _other(self, request: web.Request) -> web.Response:
        path = request.path
        if not path.startswith(CALLS_PATH):
            return await super()._other(request)
        call_id, _, action = path[len(CALLS_PATH):].partition("/")
        if request.method == "GET" and not action:
            self.looks += 1
            return web.json_response({"@odata.type": "#microsoft.graph.call", "id": call_id,
                                      "state": self.states.get(call_id, "incoming")})
        if request.method == "POST" and action == "reject":
            await request.read()
            self.rejected.add(call_id)
            self.states[call_id] = "terminated"
            return web.Response(status=202)
        if request.method == "DELETE" and not action:
            self.hang_ups += 1
            self.states[call_id] = "terminated"
            return web.Response(status=204)
        return await super()._other(request)


class TimedInbox:
    """The runtime's in-process queue as the worker's inbox, noting when the worker takes each hand-off."""

    def __init__(self, transport: InProcessTransport) -> None:
        self._transport = transport
        self.taken: dict[str, float] = {}

    async def take(self, wait_seconds: float) -> Taken | None:
        taken = await self._transport.take(wait_seconds)
        if taken is not None:
            self.taken[taken.message.call_id] = time.perf_counter()
        return taken

    async def close(self) -> None:
        await self._transport.close()


@dataclass
class Side:
    """One path's calls: per-call latencies (seconds) and what became of each call."""

    to_answer_s: list[float] = field(default_factory=list)  # notification -> the answer reached the stub
    to_return_s: list[float] = field(default_factory=list)  # notification -> the function returned
    to_taken_s: list[float] = field(default_factory=list)  # notification -> the worker took the hand-off
    taken_to_answer_s: list[float] = field(default_factory=list)  # the worker took it -> its answer at the stub
    outcomes: Counter[str] = field(default_factory=Counter)
    errors: int = 0  # a status other than 202

    @property
    def calls(self) -> int:
        return len(self.to_return_s)

    def as_json(self) -> dict[str, Any]:
        return {"calls": self.calls, "errors": self.errors, "outcomes": dict(self.outcomes),
                "to_answer": summary(self.to_answer_s), "to_return": summary(self.to_return_s),
                "to_taken": summary(self.to_taken_s) if self.to_taken_s else None,
                "taken_to_answer": summary(self.taken_to_answer_s) if self.taken_to_answer_s else None}


@dataclass
class Results:
    calls: int  # asked for, per path
    warmup: int
    handed_off: Side
    baseline: Side
    worker: dict[str, Any]  # the worker's health at the end: taken, dropped, failed, unsupported
    ended: int  # handed-off calls the worker let go of on their terminated notification
    looks: int  # the webhook's GETs of a call
    sessions: int  # Durable start-new requests (each service-hosted answer starts its session first)
    unexpected_requests: list[str]
    truncated: bool
    wall_s: float

    def as_json(self) -> dict[str, Any]:
        from calling.webhook import HANDOFF_FIRST_LOOKS, HANDOFF_LOOK

        return {"calls": self.calls, "warmup": self.warmup, "truncated": self.truncated, "wall_s": self.wall_s,
                "handoff_look_s": HANDOFF_LOOK, "handoff_first_looks_s": list(HANDOFF_FIRST_LOOKS),
                "handed_off": self.handed_off.as_json(),
                "baseline": self.baseline.as_json(), "worker": self.worker, "worker_ended": self.ended,
                "stub": {"looks": self.looks, "sessions_started": self.sessions,
                         "unexpected_requests": self.unexpected_requests[:20]}}


def recording_invite(call_id: str) -> bytes:
    """bench/webhook.py's incoming call, made a policy-recording invite: the recorded user calls out, Teams
    invites the bot (applicationMetadata.botData.inviteReasons)."""
    envelope = json.loads(webhook.notification(call_id))
    data = envelope["value"][0]["resourceData"]
    data["source"] = {"@odata.type": "#microsoft.graph.participantInfo", "id": str(uuid.uuid4()), "identity": {
        "@odata.type": "#microsoft.graph.identitySet",
        "user": {"@odata.type": "#microsoft.graph.identity", "id": RECORDED_USER, "tenantId": webhook.BOT_TENANT_ID}}}
    data["applicationMetadata"] = {"botData": {
        "mediaHostedRegion": "USEA", "inviteReasons": ["PolicyBasedRecording"], "policyIdentifier": "Bench policy",
        "user": {"id": RECORDED_USER, "participationMethod": "caller", "clientLocation": "US"}}}
    return json.dumps(envelope).encode()


def _request(token: str, body: bytes) -> func.HttpRequest:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json",
               "Content-Length": str(len(body)), "Scenario-Id": str(uuid.uuid4()),
               "X-Microsoft-Skype-Chain-Id": str(uuid.uuid4())}
    return func.HttpRequest(method="POST", url="http://localhost/api/calls", headers=headers, body=body)


def _terminated(call_id: str) -> bytes:
    return json.dumps({"value": [{
        "@odata.type": "#microsoft.graph.commsNotification", "changeType": "deleted",
        "resourceUrl": f"/communications/calls/{call_id}",
        "resourceData": {"@odata.type": "#microsoft.graph.call", "id": call_id, "state": "terminated"}}]}).encode()


class Bench:
    def __init__(self, stub: GraphStub, app: webhook.Handler, local: LocalWorker, inbox: TimedInbox) -> None:
        self.stub, self.app, self.local, self.inbox = stub, app, local, inbox
        self.binding = webhook.client_binding(stub)
        self.token = webhook.sign_token(stub)
        self.ended = 0

    def media(self, call_id: str) -> dict[str, Any]:
        """The mediaConfig of the call's answer at the stub ({} when none came)."""
        media = self.stub.answered.get(call_id, {}).get("mediaConfig")
        return media if isinstance(media, dict) else {}

    async def service_hosted(self, side: Side) -> None:
        call_id = str(uuid.uuid4())
        t0 = time.perf_counter()
        response = await self.app(req=_request(self.token, webhook.notification(call_id)), client=self.binding)
        side.to_return_s.append(time.perf_counter() - t0)
        side.errors += response.status_code != 202
        media = self.media(call_id).get("@odata.type", "")
        if media == "#microsoft.graph.serviceHostedMediaConfig":
            side.to_answer_s.append(self.stub.arrivals[call_id] - t0)
            side.outcomes["answered"] += 1
        else:
            side.outcomes["rejected" if call_id in self.stub.rejected else f"not answered ({media or 'none'})"] += 1

    async def handed_off(self, side: Side) -> None:
        call_id = str(uuid.uuid4())
        t0 = time.perf_counter()
        response = await self.app(req=_request(self.token, recording_invite(call_id)), client=self.binding)
        side.to_return_s.append(time.perf_counter() - t0)
        side.errors += response.status_code != 202
        media = self.media(call_id).get("@odata.type", "")
        callback = self.stub.answered.get(call_id, {}).get("callbackUri")
        if call_id in self.stub.rejected:  # the webhook took it back (whether the worker answered it or not)
            side.outcomes[REJECTED] += 1
        elif media == "#microsoft.graph.appHostedMediaConfig" and callback == f"{self.local.url}/api/calls":
            side.outcomes[WORKER] += 1
            arrived = self.stub.arrivals[call_id]
            side.to_answer_s.append(arrived - t0)
            taken = self.inbox.taken.get(call_id)
            if taken is not None:
                side.to_taken_s.append(taken - t0)
                side.taken_to_answer_s.append(arrived - taken)
        elif media:
            side.outcomes[FALLBACK] += 1
        else:
            side.outcomes[UNANSWERED] += 1
        if call_id in self.local.worker.live:
            await self.hang_up(call_id)

    async def hang_up(self, call_id: str) -> None:
        """The caller hangs up, as Teams ends it: the call's media connection ends (hello, then bye, on the
        loopback wire), then Graph posts the call's terminated notification to the worker's callback."""
        from mediavm import wire

        where = wire.read_blob(str(self.media(call_id).get("blob", "")))
        _, writer = await asyncio.open_connection(where["host"], where["port"])
        writer.write(wire.hello(str(where["session"]), str(where["token"])) + wire.message(wire.BYE))
        await writer.drain()
        writer.close()
        await writer.wait_closed()
        body = _terminated(call_id)
        answer = await self.local.worker.handle(
            {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json",
             "Content-Length": str(len(body))}, body)
        self.ended += answer.status == 202 and call_id not in self.local.worker.live


async def _run(calls: int, warmup: int, budget_s: float, folder: Path) -> Results:
    from calling.handoff import InProcessTransport
    from functions import runtime
    from mediavm import local
    from mediavm.compliance import recording_app
    from mediavm.sinks import FolderSink

    started = time.perf_counter()
    stub = GraphStub()
    with stub:
        env = {**webhook.environment(stub), "MEDIA_HANDOFF_TRANSPORT": "inprocess"}
        saved = webhook.set_environ(env)
        runtime.reset()
        worker: LocalWorker | None = None
        try:
            app = webhook.calls_function()
            transport = runtime.get().handoff
            if not isinstance(transport, InProcessTransport):
                raise RuntimeError(f"expected the in-process hand-off transport, got {type(transport).__name__}")
            inbox = TimedInbox(transport)
            sink = FolderSink(folder)
            worker = await local.start(env, inbox, recording_app(sink))
            bench = Bench(stub, app, worker, inbox)
            for _ in range(warmup):
                await bench.service_hosted(Side())
                await bench.handed_off(Side())
            handed, base = Side(), Side()
            stop_at = time.perf_counter() + budget_s
            truncated = False
            for _ in range(calls):  # interleaved: both paths see the same machine, call by call
                if time.perf_counter() > stop_at:
                    truncated = True
                    break
                await bench.service_hosted(base)
                await bench.handed_off(handed)
            health = worker.worker.health()
            counts = {k: health[k] for k in ("taken", "dropped", "failed", "unsupported", "live")}
            return Results(calls, warmup, handed, base, counts, bench.ended, stub.looks, stub.sessions,
                           list(stub.unexpected), truncated, time.perf_counter() - started)
        finally:
            if worker is not None:
                await worker.stop(0)
                await _close_clients(worker)
            await webhook._close_graph_clients()
            await webhook._close_durable_session()
            runtime.reset()
            webhook.set_environ(saved)




async def _close_clients(worker: LocalWorker) -> None:
    """Close the worker's Graph connection pools (its own CallControls, one client per tenant)."""
    calls = getattr(worker.worker, "_calls", None)
    for control in getattr(calls, "_by_tenant", {}).values():
        http = getattr(control._client.request_adapter, "_http_client", None)
        if http is not None:
            await http.aclose()


def measure(calls: int = 200, warmup: int | None = None, budget_s: float | None = None) -> Results:
    """`calls` per path, after `warmup` per path (a tenth of them, at least 3); no new call after `budget_s`
    (by default a second per call: a healthy hand-off takes about the webhook's first look, 0.5 s)."""
    warm = max(3, calls // 10) if warmup is None else warmup
    with tempfile.TemporaryDirectory(prefix="bench-handoff-") as folder:
        return asyncio.run(_run(calls, warm, budget_s or max(30.0, calls * 1.0), Path(folder)))


def report(result: Results) -> str:
    from calling.webhook import HANDOFF_FIRST_LOOKS, HANDOFF_LOOK

    a, b = result.handed_off, result.baseline
    answer, base = summary(a.to_answer_s), summary(b.to_answer_s)
    rows: list[list[str]] = []
    for stat in ("p50", "p99", "mean", "min", "max"):
        x, y = answer[f"{stat}_ms"], base[f"{stat}_ms"]
        rows.append([f"notification -> answer at Graph {stat}, ms", fmt(x), fmt(y), ratio(x, y), fmt(x - y)])
    for what, values in (("notification -> the worker took the hand-off", a.to_taken_s),
                         ("the worker took it -> its answer at Graph", a.taken_to_answer_s)):
        s = summary(values)
        for stat in ("p50", "p99"):
            rows.append([f"  {what} {stat}, ms", fmt(s[f"{stat}_ms"]), "-", "", ""])
    returned, base_ret = summary(a.to_return_s), summary(b.to_return_s)
    for stat in ("p50", "p99"):
        x, y = returned[f"{stat}_ms"], base_ret[f"{stat}_ms"]
        rows.append([f"notification -> the function returned {stat}, ms", fmt(x), fmt(y), ratio(x, y), fmt(x - y)])
    rows.append(["calls (errors)", f"{a.calls} ({a.errors})", f"{b.calls} ({b.errors})", "", ""])
    title = ("(f) Hand-off latency: signed incoming-call notification -> POST /v1.0/communications/calls/{id}/answer "
             "at a stub Graph\n"
             "    hand-off = a policy-recording invite to the `calls` function: auth, parse, route to app-hosted "
             "media, HandoffMessage\n"
             "               over the in-process transport; a MediaWorker (loopback engine, compliance recording "
             "to a folder)\n"
             "               takes it and answers with its blob (appHostedMediaConfig, its own callbackUri)\n"
             "    baseline = a PSTN call to the same function, answered inside the request (serviceHostedMediaConfig)")
    out = [table(title, ["metric", "hand-off", "baseline", "ratio", "hand-off - baseline"], rows)]
    outcomes = ", ".join(f"{n} {what}" for what, n in a.outcomes.most_common()) or "none"
    out.append(f"    handed-off calls: {outcomes}; baseline: "
               + (", ".join(f"{n} {what}" for what, n in b.outcomes.most_common()) or "none"))
    out.append("    the baseline's answer waits for the flow's first step and its session's start (the Durable "
               "start-new, a round\n      trip to the stub) inside the request; a hand-off skips both, and the "
               "in-process queue is a\n      lower bound for Service Bus (a send and a receive over the network)")
    w = result.worker
    out.append(f"    worker: {w['taken']} taken, {w['dropped']} dropped (past the deadline), {w['failed']} failed, "
               f"{w['unsupported']} unsupported; {result.ended} ended on their terminated notification")
    first = ", ".join(f"{gap:g}" for gap in HANDOFF_FIRST_LOOKS)
    out.append(f"    the function returns a hand-off only once its look at the call (GET, after waits of {first} s, "
               f"then every {HANDOFF_LOOK:g} s)\n      sees it answered: {result.looks} look(s); stub: "
               f"{result.sessions} session start(s), {len(result.unexpected_requests)} unexpected request(s)")
    if result.truncated:
        out.append(f"    stopped early at the time budget: {a.calls} of {result.calls} calls per path")
    out.append(f"    one call at a time, the paths interleaved, real clock; after {result.warmup} warm-up call(s) per "
               f"path; this section took {result.wall_s:.1f} s")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.handoff", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="20 calls per path")
    parser.add_argument("--calls", type=int, help="calls per path (default 200)")
    parser.add_argument("--json", type=Path, metavar="PATH")
    args = parser.parse_args(argv)
    result = measure(args.calls or (20 if args.quick else 200))
    print(report(result))
    if args.json:
        args.json.write_text(json.dumps(result.as_json(), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
