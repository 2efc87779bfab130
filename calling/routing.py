"""The incoming-call policy: pure data in, a decision out, no I/O.

A policy is an ordered list of rules (first match wins) and a default. A rule matches on the call's
target (the bot itself, a resource account, a number) and its caller (number patterns, tenant, Teams
user, kind, anonymity); its action answers with a named flow, hands off to app-hosted media, redirects,
or rejects. Policy-based (compliance) recording invites always go to app-hosted media, whatever the
rules say: only the media VM can answer them. docs/routing.md documents the file format.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from calling.events import IncomingCall
from calling.identities import Party, application_instance, phone, teams_user
from calling.yamlsource import Document, PathKey, SourceError, SourceErrors, load_file, load_text


@dataclass(frozen=True)
class Answer:
    """Answer service-hosted and run `flow`."""

    flow: str
    rule: str = "default"


@dataclass(frozen=True)
class HandOff:
    """Give the call to the app-hosted media VM, which answers it with its own media session."""

    reason: str
    rule: str = "default"


@dataclass(frozen=True)
class Redirect:
    targets: tuple[Party, ...]
    timeout: int | None = None
    rule: str = "default"


@dataclass(frozen=True)
class Reject:
    reason: str = "none"
    rule: str = "default"


Decision = Answer | HandOff | Redirect | Reject
POLICY_RECORDING_RULE = "policy-recording"


@dataclass(frozen=True)
class Match:
    """All given conditions must hold; within a list, any value may match. Patterns are globs."""

    caller_phone: tuple[str, ...] = ()
    caller_user: tuple[str, ...] = ()
    caller_tenant: tuple[str, ...] = ()
    caller_kind: tuple[str, ...] = ()
    caller_anonymous: bool | None = None
    target_bot: bool | None = None
    target_instance: tuple[str, ...] = ()
    target_phone: tuple[str, ...] = ()
    tenant: tuple[str, ...] = ()

    def matches(self, call: IncomingCall, bot_app_id: str) -> bool:
        src = call.source
        checks: list[bool] = []
        if self.caller_phone:
            checks.append(src.kind == "phone" and _glob(src.id, self.caller_phone))
        if self.caller_user:
            checks.append(src.kind == "user" and _lower(src.id) in self.caller_user)
        if self.caller_tenant:
            checks.append(_lower(src.tenant_id) in self.caller_tenant)
        if self.caller_kind:
            checks.append(src.kind in self.caller_kind)
        if self.caller_anonymous is not None:
            checks.append(src.is_anonymous == self.caller_anonymous)
        if self.target_bot is not None:
            to_bot = any(t.kind == "application" and _lower(t.id) == bot_app_id.lower() for t in call.targets)
            checks.append(to_bot == self.target_bot)
        if self.target_instance:
            checks.append(any(t.kind == "applicationInstance" and _lower(t.id) in self.target_instance
                              for t in call.targets))
        if self.target_phone:
            checks.append(any(t.kind == "phone" and _glob(t.id, self.target_phone) for t in call.targets))
        if self.tenant:
            checks.append(_lower(call.tenant_id) in self.tenant)
        return all(checks)


@dataclass(frozen=True)
class Rule:
    name: str
    match: Match
    decision: Decision


@dataclass(frozen=True)
class Policy:
    rules: tuple[Rule, ...] = ()
    default: Decision = field(default_factory=lambda: Answer("main"))


def default_policy(flow: str = "main") -> Policy:
    """Out of the box: answer every call with the default flow (compliance recording still hands off)."""
    return Policy(rules=(), default=Answer(flow))


class Router:
    def __init__(self, policy: Policy, *, bot_app_id: str) -> None:
        self.policy = policy
        self._bot_app_id = bot_app_id

    def decide(self, call: IncomingCall) -> Decision:
        if call.is_policy_recording:
            return HandOff("policy_recording", rule=POLICY_RECORDING_RULE)
        for rule in self.policy.rules:
            if rule.match.matches(call, self._bot_app_id):
                return rule.decision
        return self.policy.default


def _glob(value: str | None, patterns: Sequence[str]) -> bool:
    return value is not None and any(fnmatch.fnmatchcase(value, p) for p in patterns)


def _lower(value: str | None) -> str:
    return (value or "").lower()


# --- loading -------------------------------------------------------------------------------------

_ACTIONS = ("answer", "handoff", "redirect", "reject")
_REJECT_REASONS = ("none", "busy", "forbidden")
_CALLER_KEYS = {"phone", "user", "tenant", "kind", "anonymous"}
_TARGET_KEYS = {"bot", "application_instance", "phone"}


def load_policy(path: str | Path, *, default_flow: str = "main") -> Policy:
    """Read a routing policy file. Raises SourceErrors naming file, line and field for each problem."""
    return _build(load_file(path), default_flow)


def parse_policy(text: str, *, file: str = "<routing>", default_flow: str = "main") -> Policy:
    return _build(load_text(text, file), default_flow)


def _build(doc: Document, default_flow: str) -> Policy:
    errors: list[SourceError] = []
    data = doc.data if doc.data is not None else {}
    if not isinstance(data, Mapping):
        raise SourceErrors([doc.error((), "a routing policy is a mapping with 'rules' and 'default'")])
    _unknown(doc, data, (), {"version", "rules", "default"}, errors)
    version = data.get("version", 1)
    if type(version) is not int or version != 1:
        errors.append(doc.error(("version",), "only version 1 is supported"))
    rules: list[Rule] = []
    raw_rules = data.get("rules", [])
    if not isinstance(raw_rules, list):
        errors.append(doc.error(("rules",), "must be a list of rules"))
        raw_rules = []
    for index, raw in enumerate(raw_rules):
        path: PathKey = ("rules", index)
        if not isinstance(raw, Mapping):
            errors.append(doc.error(path, "a rule is a mapping with name, match and action"))
            continue
        name = raw.get("name", f"rule {index + 1}")
        if not isinstance(name, str):
            errors.append(doc.error((*path, "name"), "must be a string"))
            name = f"rule {index + 1}"
        decision = _decision(doc, raw, path, name, errors, {"name", "match"})
        match = _match(doc, raw.get("match", {}), (*path, "match"), errors)
        if decision is not None:
            rules.append(Rule(name, match, decision))
    default: Decision = Answer(default_flow)
    if "default" in data:
        raw_default = data["default"]
        if isinstance(raw_default, Mapping):
            decided = _decision(doc, raw_default, ("default",), "default", errors, set())
            default = decided or default
        else:
            errors.append(doc.error(("default",), "must be a mapping with an action"))
    if errors:
        raise SourceErrors(errors)
    return Policy(tuple(rules), default)


def _decision(doc: Document, raw: Mapping[str, Any], path: PathKey, name: str, errors: list[SourceError],
              extra_keys: set[str]) -> Decision | None:
    action = raw.get("action")
    if action not in _ACTIONS:
        errors.append(doc.error((*path, "action"), f"must be one of {', '.join(_ACTIONS)}, got {action!r}"))
        return None
    allowed = {"action", *extra_keys, *{"answer": {"flow"}, "handoff": {"reason"},
                                         "redirect": {"targets", "timeout"}, "reject": {"reason"}}[action]}
    _unknown(doc, raw, path, allowed, errors)
    if action == "answer":
        flow = raw.get("flow")
        if not isinstance(flow, str) or not flow:
            errors.append(doc.error((*path, "flow"), "answer needs the name of a flow"))
            return None
        return Answer(flow, rule=name)
    if action == "handoff":
        return HandOff(str(raw.get("reason", "app_hosted_media")), rule=name)
    if action == "reject":
        reason = raw.get("reason", "none")
        if reason not in _REJECT_REASONS:
            errors.append(doc.error((*path, "reason"), f"must be one of {', '.join(_REJECT_REASONS)}"))
            return None
        return Reject(reason, rule=name)
    targets = raw.get("targets")
    if not isinstance(targets, list) or not 1 <= len(targets) <= 25:
        errors.append(doc.error((*path, "targets"), "redirect needs a list of 1 to 25 targets"))
        return None
    parties: list[Party] = []
    for i, target in enumerate(targets):
        try:
            parties.append(parse_target(target))
        except ValueError as exc:
            errors.append(doc.error((*path, "targets", i), str(exc)))
    timeout = raw.get("timeout")
    if timeout is not None and (not isinstance(timeout, int) or isinstance(timeout, bool)
                                or not 15 <= timeout <= 90):
        errors.append(doc.error((*path, "timeout"), "must be a whole number of seconds, 15 to 90"))
        return None
    return Redirect(tuple(parties), timeout, rule=name) if len(parties) == len(targets) else None


def parse_target(value: Any) -> Party:
    """`+E164` for a number, `user:<object id>` for a Teams user, `instance:<object id>` for a resource account."""
    if not isinstance(value, str):
        raise ValueError(f"a target is a string like +14255550100 or user:<id>, got {value!r}")
    if value.startswith("+"):
        return phone(value)
    kind, _, ident = value.partition(":")
    if kind == "user" and ident:
        return teams_user(ident)
    if kind == "instance" and ident:
        return application_instance(ident)
    raise ValueError(f"a target is +E164, user:<object id> or instance:<object id>, got {value!r}")


def _match(doc: Document, raw: Any, path: PathKey, errors: list[SourceError]) -> Match:
    if not isinstance(raw, Mapping):
        errors.append(doc.error(path, "match is a mapping with caller, target and tenant"))
        return Match()
    _unknown(doc, raw, path, {"caller", "target", "tenant"}, errors)
    caller = raw.get("caller", {})
    target = raw.get("target", {})
    for part, keys, value in (("caller", _CALLER_KEYS, caller), ("target", _TARGET_KEYS, target)):
        if not isinstance(value, Mapping):
            errors.append(doc.error((*path, part), "must be a mapping"))
        else:
            _unknown(doc, value, (*path, part), keys, errors)
    caller = caller if isinstance(caller, Mapping) else {}
    target = target if isinstance(target, Mapping) else {}
    return Match(
        caller_phone=_strings(doc, caller.get("phone"), (*path, "caller", "phone"), errors),
        caller_user=_strings(doc, caller.get("user"), (*path, "caller", "user"), errors, lower=True),
        caller_tenant=_strings(doc, caller.get("tenant"), (*path, "caller", "tenant"), errors, lower=True),
        caller_kind=_strings(doc, caller.get("kind"), (*path, "caller", "kind"), errors),
        caller_anonymous=_bool(doc, caller.get("anonymous"), (*path, "caller", "anonymous"), errors),
        target_bot=_bool(doc, target.get("bot"), (*path, "target", "bot"), errors),
        target_instance=_strings(doc, target.get("application_instance"),
                                 (*path, "target", "application_instance"), errors, lower=True),
        target_phone=_strings(doc, target.get("phone"), (*path, "target", "phone"), errors),
        tenant=_strings(doc, raw.get("tenant"), (*path, "tenant"), errors, lower=True),
    )


def _strings(doc: Document, value: Any, path: PathKey, errors: list[SourceError], *,
             lower: bool = False) -> tuple[str, ...]:
    if value is None:
        return ()
    items = value if isinstance(value, list) else [value]
    if not all(isinstance(v, str) and v for v in items):
        errors.append(doc.error(path, "must be a string or a list of strings (quote +numbers)"))
        return ()
    return tuple(v.lower() if lower else v for v in items)


def _bool(doc: Document, value: Any, path: PathKey, errors: list[SourceError]) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    errors.append(doc.error(path, "must be true or false"))
    return None


def _unknown(doc: Document, raw: Mapping[str, Any], path: PathKey, allowed: set[str],
             errors: list[SourceError]) -> None:
    for key in raw:
        if key not in allowed:
            errors.append(doc.error((*path, key), f"unknown key (expected one of {', '.join(sorted(allowed))})"))
