"""The app's functions, indexed once the way the Functions host reads them: by trigger and binding.

`app.get_functions()` is the worker's indexing entry point. It records every function name on the app and
refuses a second call in the same process (the worker indexes once); tests and the CLI may build several
hosts over one app, so indexing restores that bookkeeping afterwards and leaves the app as it found it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from devhost import invocation, signatures

log = logging.getLogger("devhost")

_SUPPORTED_INPUTS = {"durableClient"}
_SUPPORTED_OUTPUTS = {"http"}


@dataclass(frozen=True)
class HttpFunction:
    name: str
    route: str
    methods: frozenset[str] | None
    auth_level: str  # "anonymous" | "function" | "admin"
    request_param: str
    client_params: tuple[str, ...]
    function: Callable[..., Any]
    wants_context: bool
    pattern: re.Pattern[str]

    def match(self, method: str, path: str) -> dict[str, str] | None:
        """Route parameters when `path` (after the route prefix) and `method` select this function."""
        if self.methods is not None and method.upper() not in self.methods:
            return None
        found = self.pattern.fullmatch(path)
        if found is None:
            return None
        return {k: v for k, v in found.groupdict().items() if v is not None}


@dataclass(frozen=True)
class OrchestratorFunction:
    name: str
    handle: Callable[..., Any]


@dataclass(frozen=True)
class ActivityFunction:
    name: str
    input_param: str
    client_params: tuple[str, ...]
    function: Callable[..., Any]
    wants_context: bool


@dataclass(frozen=True)
class EntityFunction:
    """An `entityTrigger` function: `@app.entity_trigger` registers the SDK's `Entity.create` handle."""

    name: str  # as registered (the trigger's entity_name, else the function name)
    context_param: str
    client_params: tuple[str, ...]
    function: Callable[..., Any]
    wants_context: bool  # a `context` parameter that is not the trigger's own binding


@dataclass
class AppIndex:
    http: list[HttpFunction]
    orchestrators: dict[str, OrchestratorFunction]  # keyed by casefolded name: the extension's names ignore case
    activities: dict[str, ActivityFunction]
    skipped: list[tuple[str, str]]
    entities: dict[str, EntityFunction] = field(default_factory=dict)

    def orchestrator(self, name: str) -> OrchestratorFunction | None:
        return self.orchestrators.get(name.casefold())

    def activity(self, name: str) -> ActivityFunction | None:
        return self.activities.get(name.casefold())

    def entity(self, name: str) -> EntityFunction | None:
        return self.entities.get(name.casefold())


def route_pattern(template: str) -> re.Pattern[str]:
    """A Functions route template (`items/{id}`, `{id:int}`, `{name?}`, `{*rest}`) as a regular expression."""
    parts: list[str] = []
    position = 0
    for found in re.finditer(r"\{(\*)?([A-Za-z_][A-Za-z0-9_]*)(?::([^}?]*))?(\?)?\}", template):
        parts.append(re.escape(template[position:found.start()]))
        catch_all, name, constraint, optional = found.groups()
        if catch_all:
            expression = ".*"
        elif constraint and constraint.split("(")[0] in ("int", "long"):
            expression = "-?[0-9]+"
        else:
            expression = "[^/]+"
        group = f"(?P<{name}>{expression})"
        if optional or catch_all:
            # An optional last segment may be absent together with the slash before it.
            if parts and parts[-1].endswith("/"):
                parts[-1] = parts[-1][:-1]
                group = f"(?:/{group})?"
            else:
                group += "?"
        parts.append(group)
        position = found.end()
    parts.append(re.escape(template[position:]))
    return re.compile("".join(parts), re.IGNORECASE)


def _functions_of(app: Any) -> list[Any]:
    saved = getattr(app, "functions_bindings", None)
    app.functions_bindings = {}
    try:
        return list(app.get_functions())
    finally:
        app.functions_bindings = saved


def _level(value: Any) -> str:
    text = str(getattr(value, "value", value) or "function")
    return text.rsplit(".", 1)[-1].lower()


def index(app: Any) -> AppIndex:
    """Index `app` (a DFApp / FunctionApp); functions the local host cannot run are skipped with a reason.

    Raises signatures.FunctionLoadError for a function the Azure Functions Python worker would refuse: there,
    one such function means no function of the app is indexed at all.
    """
    result = AppIndex(http=[], orchestrators={}, activities={}, skipped=[])
    functions = _functions_of(app)
    for fn in functions:
        signatures.check(fn.get_function_name(), fn.get_user_function(), [b.name for b in fn.get_bindings()])
    for fn in functions:
        name: str = fn.get_function_name()
        trigger = fn.get_trigger()
        bindings = [b for b in fn.get_bindings() if b is not trigger]
        unsupported = sorted({b.type for b in bindings
                              if b.type not in (_SUPPORTED_INPUTS | _SUPPORTED_OUTPUTS)})
        if unsupported:
            result.skipped.append((name, f"bindings not supported by devhost: {', '.join(unsupported)}"))
            continue
        clients = tuple(b.name for b in bindings if b.type == "durableClient")
        user = fn.get_user_function()
        kind = trigger.type
        if kind == "httpTrigger":
            route = trigger.route if trigger.route is not None else name
            methods = frozenset(str(getattr(m, "value", m)).upper() for m in trigger.methods) if trigger.methods \
                else None
            result.http.append(HttpFunction(
                name=name, route=route.strip("/"), methods=methods, auth_level=_level(trigger.auth_level),
                request_param=trigger.name, client_params=clients, function=user,
                wants_context=invocation.wants_context(user), pattern=route_pattern(route.strip("/"))))
        elif kind == "orchestrationTrigger":
            registered = getattr(trigger, "orchestration", None) or name
            result.orchestrators[registered.casefold()] = OrchestratorFunction(registered, user)
        elif kind == "activityTrigger":
            registered = getattr(trigger, "activity", None) or name
            result.activities[registered.casefold()] = ActivityFunction(
                name=registered, input_param=trigger.name, client_params=clients, function=user,
                wants_context=invocation.wants_context(user))
        elif kind == "entityTrigger":
            registered = getattr(trigger, "entity_name", None) or name
            result.entities[registered.casefold()] = EntityFunction(
                name=registered, context_param=trigger.name, client_params=clients, function=user,
                wants_context=trigger.name != "context" and invocation.wants_context(user))
        else:
            result.skipped.append((name, f"{kind} functions are not run by devhost"))
    for name, reason in result.skipped:
        log.warning("skipping function %s: %s", name, reason)
    return result
