"""HTTP triggers: `/<routePrefix>/<route>` for every function with an httpTrigger, invoked as the worker does.

The request goes through azure-functions' own `HttpRequestConverter` (the worker's path from the host's RPC
message to `func.HttpRequest`) and the result through `HttpResponseConverter`. Function keys are not checked
unless the host was given some, matching `func start`; with keys, FUNCTION and ADMIN routes need
`x-functions-key` or `?code=`. A function that raises answers 500 with a short JSON body and the traceback
goes to the log only.
"""

from __future__ import annotations

import hmac
import logging
import uuid
from collections.abc import Callable, Collection
from typing import Any

from aiohttp import web
from azure.functions import meta
from azure.functions.http import HttpRequestConverter, HttpResponseConverter
from multidict import CIMultiDict

from devhost import invocation
from devhost.functions import HttpFunction
from simulator.clock import HOLD_HEADER, Clock

log = logging.getLogger("devhost")


def _joined(pairs: Any, separator: str) -> dict[str, meta.Datum]:
    values: dict[str, list[str]] = {}
    for key, value in pairs.items():
        values.setdefault(key, []).append(value)
    return {k: meta.Datum(separator.join(v), "string") for k, v in values.items()}


def _specificity(function: HttpFunction) -> tuple[int, int]:
    """Literal routes before parameterised ones, longer before shorter, as ASP.NET routing orders them."""
    return (function.route.count("{"), -len(function.route))


class HttpTriggers:
    def __init__(self, functions: list[HttpFunction], clock: Clock, *, route_prefix: str, keys: Collection[str],
                 binding: Callable[[], str]) -> None:
        self._functions = sorted(functions, key=_specificity)
        self._clock = clock
        self._prefix = route_prefix.strip("/")
        self._keys = tuple(keys)
        self._binding = binding

    def add_routes(self, app: web.Application) -> None:
        path = f"/{self._prefix}/{{tail:.*}}" if self._prefix else "/{tail:.*}"
        app.router.add_route("*", path, self.handle)

    def urls(self, base_url: str) -> list[tuple[str, str, str]]:
        """(methods, URL, function name) for a startup banner."""
        prefix = f"/{self._prefix}" if self._prefix else ""
        return [(",".join(sorted(f.methods)) if f.methods else "*", f"{base_url}{prefix}/{f.route}", f.name)
                for f in self._functions]

    def _select(self, method: str, path: str) -> tuple[HttpFunction, dict[str, str]] | None:
        for function in self._functions:
            params = function.match(method, path)
            if params is not None:
                return function, params
        return None

    def _authorized(self, function: HttpFunction, request: web.Request) -> bool:
        if not self._keys or function.auth_level == "anonymous":
            return True
        offered = request.headers.get("x-functions-key") or request.query.get("code") or ""
        return any(hmac.compare_digest(offered, key) for key in self._keys)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        async with self._clock.busy():
            if hold := request.headers.get(HOLD_HEADER):
                self._clock.release(hold)  # the sender's hold on time ends now that this request's scope began
            selected = self._select(request.method, request.match_info["tail"].strip("/"))
            if selected is None:
                return web.Response(status=404)
            function, route_params = selected
            if not self._authorized(function, request):
                return web.Response(status=401)
            invocation_id = str(uuid.uuid4())
            body = await request.read()
            datum = meta.Datum({
                "method": meta.Datum(request.method, "string"),
                "url": meta.Datum(str(request.url), "string"),
                "headers": _joined(CIMultiDict((k, v) for k, v in request.headers.items()
                                               if k.lower() != HOLD_HEADER), ", "),
                "query": _joined(request.query, ","),
                "params": {k: meta.Datum(v, "string") for k, v in route_params.items()},
                "body": meta.Datum(body, "bytes"),
            }, "http")
            kwargs: dict[str, Any] = {function.request_param: HttpRequestConverter.decode(datum, trigger_metadata=None)}
            kwargs.update({param: self._binding() for param in function.client_params})
            if function.wants_context:
                kwargs["context"] = invocation.Context(function.name, invocation_id)
            try:
                result = await invocation.call(function.function, kwargs)
                return _response(result)
            except Exception:
                log.exception("Executed 'Functions.%s' (Failed, Id=%s)", function.name, invocation_id)
                return web.json_response(
                    {"error": "function_failed", "function": function.name, "invocationId": invocation_id,
                     "reason": "the function raised an exception; see the host's log"}, status=500)


def _response(result: Any) -> web.Response:
    """The function's return value as the host would answer it (HttpResponse, str, or nothing)."""
    if result is None:
        return web.Response(status=204)
    try:
        datum = HttpResponseConverter.encode(result, expected_type=None)
    except NotImplementedError:
        raise TypeError(f"an HTTP function returned {type(result).__name__}, not func.HttpResponse or str") from None
    if datum.type == "string":
        return web.Response(status=200, text=str(datum.value), content_type="text/plain")
    value = datum.value
    headers: CIMultiDict[str] = CIMultiDict((name, str(v.value)) for name, v in value["headers"].items())
    for cookie in value.get("cookies") or []:
        for morsel in cookie.values():
            headers.add("Set-Cookie", morsel.OutputString())
    return web.Response(status=int(value["status_code"].value), body=value["body"].value, headers=headers)
