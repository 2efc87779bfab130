"""The Durable HTTP management API, with the extension's routes, status codes and JSON shapes.

`DurableOrchestrationClient` talks to it through the `rpcBaseUrl` of its binding (`/durabletask/` here, the
extension's local RPC listener); the public webhook form (`/runtime/webhooks/durabletask/`) serves the URLs
that `create_check_status_response` hands out. Both follow `HttpApiHandler`: start (202 + management links,
400 for an unknown orchestrator), raise event (202, 404 unknown, 410 finished, 400 non-JSON), status (202 while
running, 200 once finished, 404 unknown; `showHistory`, `showHistoryOutput`, `showInput`), list and filter,
terminate / suspend / resume (202, 404, 410), restart, purge (one or by filter), and the entity routes
(`entities/{name}/{key}`: GET reads the committed state, 200 or 404; POST `?op=` signals and DELETE signals
`delete`, 202, 400 for an unknown entity or a bad key; GET `entities/{name}` lists, `top` at a time). Rewind
answers 501: the local host does not implement it.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Callable, Collection
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from devhost.durable import history, payloads
from devhost.durable.engine import Engine, InstanceExists, UnknownFunction
from devhost.durable.store import TERMINAL, InstanceRecord
from simulator.clock import Clock

log = logging.getLogger("devhost.durable")

TASK_HUB = "TestHubName"  # the extension's hub name when no site name is set, as under `func start`
CONNECTION = "Storage"
WEBHOOK_PATH = "/runtime/webhooks/durabletask"
RPC_PATH = "/durabletask"
INSTANCE_PLACEHOLDER = "INSTANCEID"
_BAD_ARGUMENTS = "One or more of the arguments submitted is incorrect"
#: EntityQuery.PageSize when the list request has no `top`.
ENTITY_PAGE_SIZE = 100


def client_binding(base_url: str, *, code: str | None = None) -> str:
    """The `durableClient` input binding's JSON, as the extension serialises OrchestrationClientInputData."""
    webhook = base_url + WEBHOOK_PATH
    universal = f"code={code}" if code else ""
    creation = f"{webhook}/orchestrators/{{functionName}}[/{{instanceId}}]"
    return json.dumps({
        "taskHubName": TASK_HUB,
        "connectionName": None,
        "creationUrls": {
            "createNewInstancePostUri": f"{creation}?{universal}",
            "createAndWaitOnNewInstancePostUri":
                f"{creation}?timeout={{timeoutInSeconds}}&pollingInterval={{intervalInSeconds}}&{universal}",
        },
        "managementUrls": {"id": INSTANCE_PLACEHOLDER, **links(base_url, INSTANCE_PLACEHOLDER, code=code,
                                                               rewind=True)},
        "baseUrl": webhook,
        "requiredQueryStringParameters": universal,
        "rpcBaseUrl": f"{base_url}{RPC_PATH}/",
        "httpBaseUrl": base_url,
    })


def links(base_url: str, instance_id: str, *, code: str | None = None, rewind: bool = False) -> dict[str, str]:
    """HttpManagementPayload: where to poll, raise events, terminate, purge, restart, suspend and resume."""
    instance = f"{base_url}{WEBHOOK_PATH}/instances/{instance_id}"
    suffix = f"taskHub={TASK_HUB}&connection={CONNECTION}" + (f"&code={code}" if code else "")
    payload = {
        "statusQueryGetUri": f"{instance}?{suffix}",
        "sendEventPostUri": f"{instance}/raiseEvent/{{eventName}}?{suffix}",
        "terminatePostUri": f"{instance}/terminate?reason={{text}}&{suffix}",
        "rewindPostUri": f"{instance}/rewind?reason={{text}}&{suffix}",
        "purgeHistoryDeleteUri": f"{instance}?{suffix}",
        "restartPostUri": f"{instance}/restart?{suffix}",
        "suspendPostUri": f"{instance}/suspend?reason={{text}}&{suffix}",
        "resumePostUri": f"{instance}/resume?reason={{text}}&{suffix}",
    }
    if not rewind:
        del payload["rewindPostUri"]
    return payload


def _time(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")  # DateTime.ToString("s") + "Z"


def status_payload(record: InstanceRecord, *, show_input: bool = True,
                   events: list[history.Event] | None = None, show_output: bool = False) -> dict[str, Any]:
    """StatusResponsePayload; `historyEvents` only when history was asked for."""
    payload: dict[str, Any] = {
        "name": record.name,
        "instanceId": record.instance_id,
        "runtimeStatus": record.status,
        "input": payloads.value_of(record.input) if show_input else None,
        "customStatus": payloads.value_of(record.custom_status),
        "output": payloads.value_of(record.output),
        "createdTime": _time(record.created_time),
        "lastUpdatedTime": _time(record.last_updated_time),
    }
    if events is not None:
        payload["historyEvents"] = history_view(events, show_input=show_input, show_output=show_output)
    return payload


def history_view(events: list[history.Event], *, show_input: bool, show_output: bool) -> list[dict[str, Any]]:
    """The extension's summarised history: completions carry their function name, input and scheduled time."""
    items = [dict(e) for e in events]
    scheduled: dict[str, tuple[int, Any, Any, Any]] = {}
    folded: list[int] = []
    for index, item in enumerate(items):
        kind = history.kind(item)
        name = history.EVENT_NAMES.get(kind, str(kind))
        item["EventType"] = name
        if name in ("TaskScheduled", "SubOrchestrationInstanceCreated"):
            scheduled[f"{name}_{item.get('EventId')}"] = (index, item.get("Name"), item.get("Timestamp"),
                                                           item.get("Input"))
            item.pop("Version", None)
        elif name in ("TaskCompleted", "TaskFailed", "SubOrchestrationInstanceCompleted",
                      "SubOrchestrationInstanceFailed"):
            prefix = "TaskScheduled" if name.startswith("Task") else "SubOrchestrationInstanceCreated"
            found = scheduled.get(f"{prefix}_{item.get('TaskScheduledId')}")
            if found is not None:
                item["ScheduledTime"], item["FunctionName"] = found[2], found[1]
                if show_input:
                    item["Input"] = found[3]
                folded.append(found[0])
            item.pop("TaskScheduledId", None)
            if name.endswith("Completed"):
                if show_output:
                    item["Result"] = payloads.value_of(item.get("Result"))
                else:
                    item.pop("Result", None)
        elif name == "ExecutionStarted":
            item["FunctionName"] = item.pop("Name", None)
            for key in ("OrchestrationInstance", "ParentInstance", "Version", "Tags"):
                item.pop(key, None)
        elif name == "ExecutionCompleted":
            item["OrchestrationStatus"] = history.OrchestrationStatus(item["OrchestrationStatus"]).name
            if show_output:
                item["Result"] = payloads.value_of(item.get("Result"))
            else:
                item.pop("Result", None)
        elif name == "TimerFired":
            item.pop("TimerId", None)
        elif name in ("OrchestratorStarted", "OrchestratorCompleted"):
            folded.append(index)
        if not show_input:
            item.pop("Input", None)
        item.pop("EventId", None)
        item.pop("IsPlayed", None)
    dropped = set(folded)
    return [item for index, item in enumerate(items) if index not in dropped]


def _flag(request: web.Request, name: str, default: bool) -> bool:
    value = request.query.get(name)
    if value is None or value.lower() not in ("true", "false"):
        return default
    return value.lower() == "true"


def _when(request: web.Request, name: str) -> datetime | None:
    value = request.query.get(name)
    if not value:
        return None
    try:
        parsed = history.parse_time(value)
    except ValueError:
        return None
    return parsed


def _error(status: int, message: str, exc: BaseException | None = None, exc_type: str | None = None) -> web.Response:
    """HttpRequestMessage.CreateErrorResponse's HttpError body."""
    body: dict[str, Any] = {"Message": message}
    if exc is not None:
        body.update({"ExceptionMessage": str(exc), "ExceptionType": exc_type or type(exc).__name__,
                     "StackTrace": None})
    return web.json_response(body, status=status)


class ManagementApi:
    """aiohttp handlers over the engine; each request is one busy scope on the clock."""

    def __init__(self, engine: Engine, clock: Clock, *, base_url: Callable[[], str], keys: Collection[str]) -> None:
        self._engine = engine
        self._clock = clock
        self._base_url = base_url
        self._keys = tuple(keys)

    def add_routes(self, app: web.Application) -> None:
        for base, checked in ((RPC_PATH, False), (WEBHOOK_PATH, True)):
            def guard(handler: Callable[[web.Request], Any], checked: bool = checked) -> Any:
                async def guarded(request: web.Request) -> web.StreamResponse:
                    if checked and not self._authorized(request):
                        return web.Response(status=401)
                    response: web.StreamResponse = await handler(request)
                    return response
                return guarded

            app.router.add_post(f"{base}/orchestrators/{{functionName}}", guard(self.start))
            app.router.add_post(f"{base}/orchestrators/{{functionName}}/{{instanceId}}", guard(self.start))
            app.router.add_get(f"{base}/instances", guard(self.query))
            app.router.add_get(f"{base}/instances/", guard(self.query))
            app.router.add_delete(f"{base}/instances", guard(self.purge_where))
            app.router.add_delete(f"{base}/instances/", guard(self.purge_where))
            app.router.add_get(f"{base}/instances/{{instanceId}}", guard(self.status))
            app.router.add_delete(f"{base}/instances/{{instanceId}}", guard(self.purge))
            app.router.add_post(f"{base}/instances/{{instanceId}}/raiseEvent/{{eventName}}", guard(self.raise_event))
            app.router.add_post(f"{base}/instances/{{instanceId}}/{{operation}}", guard(self.operation))
            for listing in ("/entities", "/entities/", "/entities/{entityName}"):
                app.router.add_get(base + listing, guard(self.list_entities))
            app.router.add_get(f"{base}/entities/{{entityName}}/{{entityKey}}", guard(self.read_entity))
            for method in ("POST", "DELETE"):
                app.router.add_route(method, f"{base}/entities/{{entityName}}", guard(self.signal_entity))
                app.router.add_route(method, f"{base}/entities/{{entityName}}/{{entityKey}}", guard(self.signal_entity))
            app.router.add_route("*", f"{base}/entities/{{tail:.*}}", guard(self.not_found))

    def _authorized(self, request: web.Request) -> bool:
        if not self._keys:
            return True
        offered = request.headers.get("x-functions-key") or request.query.get("code") or ""
        return any(hmac.compare_digest(offered, key) for key in self._keys)

    def _check_status(self, instance_id: str) -> web.Response:
        payload = {"id": instance_id, **links(self._base_url(), instance_id, code=self._code)}
        return web.json_response(payload, status=202, headers={"Location": payload["statusQueryGetUri"],
                                                               "Retry-After": "10"})

    @property
    def _code(self) -> str | None:
        return self._keys[0] if self._keys else None

    async def start(self, request: web.Request) -> web.Response:
        name = request.match_info["functionName"]
        async with self._clock.busy():
            try:
                input_text = payloads.body_to_text(await request.text())
            except payloads.InvalidJson as exc:
                return _error(400, "Invalid JSON content", exc, "Newtonsoft.Json.JsonReaderException")
            try:
                instance_id = self._engine.start_new(name, request.match_info.get("instanceId"), input_text)
            except UnknownFunction as exc:
                return _error(400, _BAD_ARGUMENTS, exc, "System.ArgumentException")
            except InstanceExists as exc:
                return _error(500, "Something went wrong while processing your request", exc,
                              "DurableTask.Core.Exceptions.OrchestrationAlreadyExistsException")
            except ValueError as exc:
                return _error(400, _BAD_ARGUMENTS, exc, "System.ArgumentException")
        timeout, interval = request.query.get("timeout"), request.query.get("pollingInterval")
        if timeout and interval:
            return await self._wait_or_check(request, instance_id, seconds=float(timeout))
        return self._check_status(instance_id)

    async def _wait_or_check(self, request: web.Request, instance_id: str, *, seconds: float) -> web.Response:
        """WaitForCompletionOrCreateCheckStatusResponse; waits outside any busy scope, so clocks can move."""
        record = await self._engine.wait(instance_id, seconds)
        if record is not None and record.status == "Completed":
            return web.json_response(payloads.value_of(record.output), status=200)
        if record is not None and record.status in TERMINAL:
            failed = record.status == "Failed" and _flag(request, "returnInternalServerErrorOnFailure", False)
            return web.json_response(status_payload(record), status=500 if failed else 200)
        return self._check_status(instance_id)

    async def status(self, request: web.Request) -> web.Response:
        async with self._clock.busy():
            record = self._engine.get(request.match_info["instanceId"])
            if record is None:
                return web.Response(status=404)
            show_history = _flag(request, "showHistory", False)
            events = self._engine.events(record.instance_id) if show_history and record.status != "Pending" else None
            payload = status_payload(record, show_input=_flag(request, "showInput", True), events=events,
                                     show_output=_flag(request, "showHistoryOutput", False))
            headers: dict[str, str] = {}
            if record.status in TERMINAL:
                failed = record.status == "Failed" and _flag(request, "returnInternalServerErrorOnFailure", False)
                code = 500 if failed else 200
            else:
                code = 202
                headers = {"Location": str(request.url), "Retry-After": "5"}
            return web.json_response(payload, status=code, headers=headers)

    def _matching(self, request: web.Request) -> list[InstanceRecord]:
        prefix = request.query.get("instanceIdPrefix")
        since, until = _when(request, "createdTimeFrom"), _when(request, "createdTimeTo")
        wanted = {s for v in request.query.getall("runtimeStatus", []) for s in v.split(",") if s}
        found = []
        for record in self._engine.instances():
            if prefix and not record.instance_id.startswith(prefix):
                continue
            if since and record.created_time < since:
                continue
            if until and record.created_time > until:
                continue
            if wanted and record.status not in wanted:
                continue
            found.append(record)
        return sorted(found, key=lambda r: (r.created_time, r.instance_id))

    async def query(self, request: web.Request) -> web.Response:
        async with self._clock.busy():
            records = self._matching(request)
            show_input = _flag(request, "showInput", True)
            start = int(request.headers.get("x-ms-continuation-token") or 0) \
                if (request.headers.get("x-ms-continuation-token") or "").isdigit() else 0
            top = request.query.get("top")
            size = int(top) if top and top.isdigit() and int(top) > 0 else len(records)
            page = records[start:start + size]
            token = str(start + size) if start + size < len(records) else ""
            return web.json_response([status_payload(r, show_input=show_input) for r in page],
                                     headers={"x-ms-continuation-token": token})

    async def purge(self, request: web.Request) -> web.Response:
        async with self._clock.busy():
            record = self._engine.get(request.match_info["instanceId"])
            if record is None:
                return web.Response(status=404)
            deleted = 1 if record.status in TERMINAL and self._engine.purge(record.instance_id) else 0
            return web.json_response({"instancesDeleted": deleted})

    async def purge_where(self, request: web.Request) -> web.Response:
        async with self._clock.busy():
            if _when(request, "createdTimeFrom") is None:
                return web.json_response("Please provide value for 'createdTimeFrom' parameter.", status=400)
            deleted = sum(1 for r in self._matching(request)
                          if r.status in TERMINAL and self._engine.purge(r.instance_id))
            if deleted == 0:
                return web.Response(status=404)
            return web.json_response({"instancesDeleted": deleted})

    async def raise_event(self, request: web.Request) -> web.Response:
        instance_id, name = request.match_info["instanceId"], request.match_info["eventName"]
        async with self._clock.busy():
            record = self._engine.get(instance_id)
            if record is None:
                return web.Response(status=404)
            if record.status in TERMINAL:
                return web.Response(status=410)
            if request.content_type.lower() != "application/json":
                return _error(400, "Only application/json request content is supported")
            try:
                data = payloads.body_to_text(await request.text())
            except payloads.InvalidJson as exc:
                return _error(400, "Invalid JSON content", exc, "Newtonsoft.Json.JsonReaderException")
            if not self._engine.raise_event(instance_id, name, data):
                return web.Response(status=410)
            return web.Response(status=202)

    async def operation(self, request: web.Request) -> web.Response:
        instance_id = request.match_info["instanceId"]
        operation = request.match_info["operation"].lower()
        reason = request.query.get("reason")
        async with self._clock.busy():
            record = self._engine.get(instance_id)
            if operation == "restart":
                if record is None:
                    return _error(400, "InstanceId does not match a valid orchestration instance.",
                                  ValueError(f"An orchestration with the instanceId {instance_id} was not found."),
                                  "System.ArgumentException")
                fresh = _flag(request, "restartWithNewInstanceId", True)
                new_id = self._engine.start_new(record.name, None if fresh else instance_id, record.input)
                return self._check_status(new_id)
            if operation not in ("terminate", "suspend", "resume", "rewind"):
                return web.Response(status=404)
            if record is None:
                return web.Response(status=404)
            if operation == "rewind":
                if record.status in ("Canceled", "Terminated", "Completed"):
                    return web.Response(status=410)
                return web.json_response("Rewind is not supported by devhost.", status=501)
            if record.status in TERMINAL or not self._engine.control(instance_id, operation, reason):
                return web.Response(status=410)
            return web.Response(status=202)

    async def read_entity(self, request: web.Request) -> web.Response:
        """HandleGetEntityRequestAsync: the state as JSON, 404 while the entity does not exist; `$` is the empty key."""
        name, key = request.match_info["entityName"], request.match_info["entityKey"]
        async with self._clock.busy():
            record = self._engine.entity(name, "" if key == "$" else key)
            if record is None or not record.exists:
                return web.Response(status=404)
            return web.json_response(payloads.value_of(record.state))

    async def signal_entity(self, request: web.Request) -> web.Response:
        """HandlePostEntityOperationRequestAsync: JSON bodies are parsed, other bodies are a string input."""
        name, key = request.match_info["entityName"], request.match_info.get("entityKey", "")
        operation = "delete" if request.method == "DELETE" else request.query.get("op", "")
        async with self._clock.busy():
            body = await request.text()
            input_text: str | None = None
            if body:
                if request.content_type.lower() == "application/json":
                    try:
                        input_text = payloads.body_to_text(body)
                    except payloads.InvalidJson as exc:
                        return _error(400, f"Could not parse JSON content: {exc}")
                else:
                    input_text = payloads.text_of(body)
            try:
                self._engine.signal_entity(name, key, operation, input_text)
            except ValueError as exc:  # UnknownFunction too: the extension's ArgumentException
                return _error(400, str(exc))
            return web.Response(status=202)

    async def list_entities(self, request: web.Request) -> web.Response:
        """HandleListEntitiesRequestAsync: existing entities (of one name), state only with `fetchState=true`.

        `top` is the page size (EntityQuery.PageSize, 100 unless given); `lastOperationTimeFrom` and
        `lastOperationTimeTo` bound the last operation time, both ends included.
        """
        name = request.match_info.get("entityName")
        async with self._clock.busy():
            fetch = _flag(request, "fetchState", False)
            since, until = _when(request, "lastOperationTimeFrom"), _when(request, "lastOperationTimeTo")
            records = [r for r in self._engine.entity_records()
                       if r.exists and (not name or r.name == name.lower())
                       and (since is None or r.last_operation_time >= since)
                       and (until is None or r.last_operation_time <= until)]
            token = request.headers.get("x-ms-continuation-token") or ""
            start = int(token) if token.isdigit() else 0
            size = request.query.get("top") or ""
            count = int(size) if size.isdigit() and int(size) > 0 else ENTITY_PAGE_SIZE
            page = records[start:start + count]
            payload = [{"entityId": {"name": r.name, "key": r.key},
                        "lastOperationTime": history.timestamp(r.last_operation_time),
                        "state": payloads.value_of(r.state) if fetch else None} for r in page]
            more = str(start + count) if start + count < len(records) else ""
            return web.json_response(payload, headers={"x-ms-continuation-token": more})

    async def not_found(self, request: web.Request) -> web.Response:
        return web.Response(status=404)
